"""`dmbot demo`, the quick start's first command, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_demo_shows_decisions_and_notifications(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMBOT_")}
    result = subprocess.run(
        [sys.executable, "-m", "dmbot.cli", "demo", "--fast"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "notification to [phone]: DM from Alice (@alice@example.social)" in out
    assert "Are we still on for lunch tomorrow?" in out
    assert "notification to [phone]: Urgent DM from Carol" in out
    assert "notification to [inbox]: 8 new direct messages" in out
    assert "outcome=ok rule=blocked-domains" in out
    assert "outcome=ok rule=quiet-bots" in out
    assert "notification to [inbox]: DM from News Bot" not in out
    assert "the spam conversation is gone" in out
    assert "Traceback" not in out + result.stderr
    assert not list(tmp_path.iterdir())  # it leaves nothing behind
