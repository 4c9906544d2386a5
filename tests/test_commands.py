"""`dmbot check`, `explain`, `test` and `run --dry-run` as users run them: the CLI in a
subprocess, the simulator in another, and what the user sees (output, exit code, the server's
state, notifications that did or did not arrive)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from test_cli_e2e import (
    SIM_TOKEN,
    SimProcess,
    dmbot,
    dmbot_env,
    sim_process,  # noqa: F401 (a fixture: the simulator in a subprocess)
)

from receivers import JsonReceiver

RULES = """\
version: 1
notifiers:
  phone: "${HOOK}"
lists:
  blocked: [spam.example, bücher.example]
rules:
  - name: blocked
    if: {sender.domain: {in: blocked}}
    do: [delete]
    stop: true
  - name: bots
    if: {sender.bot: true}
    do: [mark_read]
  - name: urgent
    if: {text: {regex: "(?i)urgent"}}
    do:
      - notify: {to: phone, title: "Urgent from @{sender.acct}"}
"""

SENDERS = [  # oldest first
    ("old", "friends.example", False, "an old message nobody shows with --limit 5"),
    ("ads", "spam.example", False, "Buy now!"),
    ("beep", "bots.example", True, "beep boop"),
    ("alice", "friends.example", False, "URGENT: call me"),
    ("bob", "friends.example", False, "just saying hi"),
    ("carl", "bücher.example", False, "Bücher kaufen"),
]


class Instance:
    def __init__(self, sim: SimProcess) -> None:
        self.sim = sim

    def populate(self) -> None:
        for username, domain, bot, text in SENDERS:
            self.sim.control("POST", "accounts", username=username, domain=domain, bot=bot)
            self.sim.control("POST", "dms", author=f"{username}@{domain}", to=["me"], text=text)

    def state(self) -> dict[str, str]:
        """Sender -> read / unread, for every conversation on the server."""
        return {
            c["participants"][0]: "unread" if c["unread"] else "read"
            for c in self.sim.conversations()
        }

    def writes(self) -> list[str]:
        """POST and DELETE requests the server carried out (a 404 changed nothing)."""
        return [f"{r['method']} {r['path']}" for r in self.sim.requests()
                if r["method"] in ("POST", "DELETE") and r["status"] is not None
                and r["status"] < 400]

    def api(self, path: str) -> Any:
        response = self.sim.http.get(path, headers={"Authorization": f"Bearer {SIM_TOKEN}"})
        response.raise_for_status()
        return response.json()


@pytest.fixture
def instance(request: pytest.FixtureRequest) -> Instance:
    return Instance(request.getfixturevalue("sim_process"))


@pytest.fixture
def hook() -> Iterator[JsonReceiver]:
    with JsonReceiver() as receiver:
        yield receiver


@pytest.fixture
def env(instance: Instance, hook: JsonReceiver, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    return dmbot_env(instance.sim, tmp_path, HOOK=hook.apprise_url("/phone"))


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    """For what needs no server: `dmbot test`, argument checks."""
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    return dmbot_env(None, tmp_path, HOOK="json://127.0.0.1:9/phone")


def events(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def table(text: str) -> list[dict[str, str]]:
    """`dmbot explain`'s table as rows of cells, cut where the dashes under the header are;
    a line with no sender continues the row above (more rules or actions)."""
    header, dashes, *lines = text.splitlines()
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", dashes)]
    names = [header[a:b].strip() for a, b in spans]
    rows: list[dict[str, str]] = []
    for line in lines:
        cells = [line[a:b].strip() for a, b in spans[:-1]] + [line[spans[-1][0]:].strip()]
        if cells[0]:
            rows.append(dict(zip(names, cells, strict=True)))
        else:
            for name, cell in zip(names, cells, strict=True):
                rows[-1][name] = " ".join(filter(None, [rows[-1][name], cell]))
    return rows


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("dmbot: error: ")
    return line


# -- check ---------------------------------------------------------------------------------


def test_check_says_ok_with_a_summary(env: dict[str, str], instance: Instance) -> None:
    result = dmbot("check", env=env)
    assert result.returncode == 0, result.stderr
    assert "3 rules, 1 notifier, 1 list" in result.stdout
    assert "@me" in result.stdout
    assert "write:conversations" in result.stdout
    assert instance.writes() == []
    assert SIM_TOKEN not in result.stdout + result.stderr


def test_check_names_the_scope_a_deleting_rule_needs(
    env: dict[str, str], instance: Instance
) -> None:
    instance.sim.control("POST", "tokens", token="read-only-token-3e8a1f", scopes="read")
    result = dmbot("check", env={**env, "DMBOT_ACCESS_TOKEN": "read-only-token-3e8a1f"})
    line = one_error_line(result)
    assert "write:conversations" in line
    assert "read-only-token-3e8a1f" not in result.stdout + result.stderr


def test_check_points_at_the_broken_line(env: dict[str, str], tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("sender.bot", "sender.bto"), encoding="utf-8")
    line = one_error_line(dmbot("check", env=env))
    assert line == (
        f"dmbot: error: {rules}:12:10: unknown field 'sender.bto' (did you mean 'sender.bot'?)"
    )


# -- explain -------------------------------------------------------------------------------


def test_explain_shows_what_the_rules_would_do_and_changes_nothing(
    env: dict[str, str], instance: Instance, hook: JsonReceiver, tmp_path: Path
) -> None:
    instance.populate()
    before = instance.state()
    result = dmbot("explain", "--limit", "5", env=env)
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert [row["sender"] for row in rows] == [  # newest first, five of six
        "@carl@bücher.example", "@bob@friends.example", "@alice@friends.example",
        "@beep@bots.example", "@ads@spam.example",
    ]
    shown = {row["sender"]: (row["unread"], row["rules"], row["actions"]) for row in rows}
    assert shown == {
        "@carl@bücher.example": ("yes", "blocked (stop)", "delete"),
        "@bob@friends.example": ("yes", "-", "-"),
        "@alice@friends.example": ("yes", "urgent", "notify:phone"),
        "@beep@bots.example": ("yes", "bots", "mark_read"),
        "@ads@spam.example": ("yes", "blocked (stop)", "delete"),
    }
    assert rows[2]["message"].endswith("URGENT: call me")
    assert rows[4]["message"].endswith("Buy now!")

    assert instance.state() == before
    assert instance.writes() == []
    assert hook.requests == []
    assert not (tmp_path / "data").exists()  # no state: the cursor is the daemon's


def test_explain_limit_is_checked(offline_env: dict[str, str]) -> None:
    assert "--limit" in one_error_line(dmbot("explain", "--limit", "41", env=offline_env))


# -- test ----------------------------------------------------------------------------------


@pytest.fixture
def samples(instance: Instance, tmp_path: Path) -> dict[str, Any]:
    """Samples made of what the server really sends for `GET /api/v1/conversations`."""
    instance.populate()
    conversations = {c["last_status"]["account"]["acct"]: c
                     for c in instance.api("/api/v1/conversations")}
    punycode = json.loads(json.dumps(conversations["carl@bücher.example"]))
    punycode["last_status"]["account"]["acct"] = "carl@xn--bcher-kva.example"
    return {"samples": [
        {"name": "spam", "conversation": conversations["ads@spam.example"],
         "expect": ["delete"], "matched": ["blocked"]},
        {"name": "Unicode domain", "conversation": conversations["carl@bücher.example"],
         "expect": ["delete"]},
        {"name": "punycode domain", "conversation": punycode, "expect": ["delete"]},
        {"name": "urgent", "conversation": conversations["alice@friends.example"],
         "expect": ["notify:phone"]},
        {"name": "a bot", "conversation": conversations["beep@bots.example"],
         "expect": ["mark_read"]},
        {"name": "nothing", "conversation": conversations["bob@friends.example"],
         "expect": []},
    ]}


def run_test(env: dict[str, str], tmp_path: Path, data: object) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "samples.json"
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return dmbot("test", str(tmp_path / "rules.yaml"), str(path), env=env)


def test_samples_that_hold_exit_0(
    env: dict[str, str], tmp_path: Path, samples: dict[str, Any]
) -> None:
    result = run_test(env, tmp_path, samples)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "ok   spam: [delete]",
        "ok   Unicode domain: [delete]",
        "ok   punycode domain: [delete]",
        "ok   urgent: [notify:phone]",
        "ok   a bot: [mark_read]",
        "ok   nothing: []",
        "6 samples, 0 failed",
    ]


def test_a_failing_sample_exits_1_with_a_diff(
    env: dict[str, str], tmp_path: Path, samples: dict[str, Any]
) -> None:
    samples["samples"][3]["expect"] = ["notify:phone", "mark_read"]
    result = run_test(env, tmp_path, samples)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[3] == (
        "FAIL urgent: expected [mark_read, notify:phone], got [notify:phone] (matched: [urgent])"
    )
    assert lines[-1] == "6 samples, 1 failed"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"samples": [', "samples.json:1:14: invalid JSON"),
        ('[{"conversation": {}}]', "sample 1, expect: Field required"),
        ('[{"conversation": {"id": "1"}, "expect": []}]', "not a Mastodon conversation"),
    ],
)
def test_a_bad_samples_file_exits_2(
    offline_env: dict[str, str], tmp_path: Path, content: str, says: str
) -> None:
    path = tmp_path / "samples.json"
    path.write_text(content, encoding="utf-8")
    line = one_error_line(
        dmbot("test", str(tmp_path / "rules.yaml"), str(path), env=offline_env)
    )
    assert says in line


# -- run --dry-run -------------------------------------------------------------------------


def test_a_dry_run_acts_on_nothing_and_the_real_run_then_acts(
    env: dict[str, str], instance: Instance, hook: JsonReceiver
) -> None:
    instance.populate()
    before = instance.state()

    dry = dmbot("run", "--dry-run", "--once", env=env)
    assert dry.returncode == 0, dry.stderr
    assert instance.writes() == []
    assert instance.state() == before
    assert hook.requests == []
    planned = sorted((e["action"], e["sender"], e["outcome"]) for e in events(dry)
                     if e["event"] == "action")
    assert planned == [
        ("delete", "ads@spam.example", "dry_run"),
        ("delete", "carl@bücher.example", "dry_run"),
        ("mark_read", "beep@bots.example", "dry_run"),
        ("notify", "alice@friends.example", "dry_run"),
    ]
    assert "none yet" in dmbot("status", env=env).stdout

    real = dmbot("run", "--once", env=env)
    assert real.returncode == 0, real.stderr
    assert instance.state() == {
        "old@friends.example": "unread",
        "beep@bots.example": "read",
        "alice@friends.example": "unread",
        "bob@friends.example": "unread",
    }
    [note] = hook.wait_for(1)
    assert note.json["title"] == "Urgent from @alice@friends.example"

