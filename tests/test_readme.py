"""The README's rules example is valid, so it cannot drift from the language."""

from __future__ import annotations

import re
from pathlib import Path

from dmbot.rules import load_rules

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_rules_example_loads(tmp_path: Path) -> None:
    section = README.read_text(encoding="utf-8").split("## Rules", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert example is not None
    (tmp_path / "rules.yaml").write_text(example.group(1), encoding="utf-8")
    (tmp_path / "blocked_domains.csv").write_text("#domain\nspam.example\n", encoding="utf-8")
    env = {"NTFY_TOPIC": "t", "SMTP_USER": "u", "SMTP_PASSWORD": "p"}
    rules = load_rules(tmp_path / "rules.yaml", env)
    assert [rule.name for rule in rules.rules] == ["blocked-domains", "bots", "friends"]
    assert rules.required_scopes == {"read:statuses", "write:conversations", "read:blocks"}
