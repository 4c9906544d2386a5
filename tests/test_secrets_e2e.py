"""No secret reaches anything dmbot prints or logs, on the happy path or the error paths.

The CLI runs in a subprocess against the simulator in another, as users run it, with JSON logs
at DEBUG; every line of stdout and stderr of `run --once`, `status`, `run --dry-run --once`,
`notify-test` and `check` is searched for the token and for every secret part of the Apprise
URLs (spelled out here, and as `dmbot.notify.url_secrets` enumerates them), and so is the
state file those commands leave behind. The same scenario
runs in-process under `structlog.testing.capture_logs()`, which sees the event dicts *before*
the redaction processor: there, a secret would mean the code put it in a log event itself.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from dmbot.app import open_app
from dmbot.clock import ManualClock
from dmbot.daemon import Outage, check_rules_reload, run_cycle
from dmbot.logging import Redactor
from dmbot.notify import url_secrets
from dmbot.settings import Settings
from dmbot.sim import Simulator

from conftest import TOKEN as IN_PROCESS_TOKEN
from receivers import JsonReceiver, SmtpSink

TOKEN = "secrets-e2e-token-0b7e55"
SMTP_USER = "dmbot-mailer"
SMTP_PASSWORD = "smtp-Pa55-e2e-91d2"
WRONG_PASSWORD = "wrong-Pa55-0c3f"
HOOK_CREDENTIAL = "hookuser:hook-SECRET-3f8a"
HOOK_PASSWORD = "hook-SECRET-3f8a"
HEADER_KEY = "hdr-key-6c0d"
FAIL_PASSWORD = "fail-SECRET-a1b2"
NTFY_PASSWORD = "ntfy-pass-77ee"
SPELLED_OUT = (
    SMTP_PASSWORD, WRONG_PASSWORD, HOOK_CREDENTIAL, HOOK_PASSWORD, HEADER_KEY, FAIL_PASSWORD,
    NTFY_PASSWORD,
)

RULES = """\
version: 1
notifiers:
  mail: "${MAIL}"
  wrong-password: "${MAIL_WRONG}"
  hook: "${HOOK}"
  header: "${HEADER}"
  broken: "${BROKEN}"
  closed: "${CLOSED}"
rules:
  - name: everything
    do: [notify, mark_read]
"""


@dataclass
class Targets:
    """The local receivers and the notifier URLs pointing at them, working and failing."""

    smtp: SmtpSink
    hook: JsonReceiver
    broken: JsonReceiver  # answers 500 to everything
    closed_port: int  # bound, never listening: connection refused

    def env(self) -> dict[str, str]:
        mail = self.smtp.apprise_url(to="me@example.com")
        return {
            "MAIL": mail,
            "MAIL_WRONG": mail.replace(SMTP_PASSWORD, WRONG_PASSWORD),
            "HOOK": f"json://{HOOK_CREDENTIAL}@127.0.0.1:{self.hook.port}/",
            "HEADER": f"json://127.0.0.1:{self.hook.port}/hdr?+X-Api-Key={HEADER_KEY}",
            "BROKEN": f"json://failuser:{FAIL_PASSWORD}@127.0.0.1:{self.broken.port}/fail",
            "CLOSED": f"ntfy://ntfyuser:{NTFY_PASSWORD}@127.0.0.1:{self.closed_port}/dm-topic",
        }

    def secrets(self, token: str) -> set[str]:
        found = {token, *SPELLED_OUT}
        for url in self.env().values():
            found |= url_secrets(url)
        assert {SMTP_PASSWORD, HOOK_PASSWORD, HEADER_KEY, NTFY_PASSWORD} <= found
        return found


@pytest.fixture
def targets() -> Iterator[Targets]:
    with (
        SmtpSink(user=SMTP_USER, password=SMTP_PASSWORD) as smtp,
        JsonReceiver() as hook,
        JsonReceiver() as broken,
        socket.socket() as closed,
    ):
        broken.fail_next(10_000)
        closed.bind(("127.0.0.1", 0))
        yield Targets(smtp, hook, broken, closed.getsockname()[1])


def leaks(text: str, secrets: set[str]) -> list[tuple[str, str]]:
    """(secret, line) for every line that shows a secret."""
    return [(s, line) for line in text.splitlines() for s in secrets if s in line]


# -- the CLI in a subprocess ---------------------------------------------------------------


@pytest.fixture
def sim_url() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "dmbot.sim", "--port", "0", "--token", TOKEN],
        stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    match = re.search(r"(http://127\.0\.0\.1:\d+)", process.stdout.readline())
    assert match
    try:
        yield match.group(1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        process.stdout.close()


def dmbot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dmbot.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )


def json_events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_no_secret_in_any_line_the_cli_prints(
    sim_url: str, targets: Targets, tmp_path: Path
) -> None:
    with httpx.Client(base_url=sim_url, timeout=10) as sim:
        for name in ("alice", "bob"):
            sim.post("/_sim/accounts", json={"username": name, "domain": "remote.example"}
                     ).raise_for_status()
            sim.post("/_sim/dms", json={"author": f"{name}@remote.example", "to": ["me"],
                                        "text": f"hello from {name}"}).raise_for_status()
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMBOT_")}
    env.update(
        targets.env(),
        DMBOT_INSTANCE_URL=sim_url, DMBOT_ACCESS_TOKEN=TOKEN,
        DMBOT_RULES_FILE=str(tmp_path / "rules.yaml"), DMBOT_DATA_DIR=str(tmp_path / "data"),
        DMBOT_LOG_FORMAT="json", DMBOT_LOG_LEVEL="DEBUG",
    )

    runs = {
        "run": dmbot("run", "--once", env=env, cwd=tmp_path),
        "status": dmbot("status", env=env, cwd=tmp_path),
    }
    with httpx.Client(base_url=sim_url, timeout=10) as sim:  # something new for the dry run
        again = sim.post("/_sim/dms", json={"author": "alice@remote.example", "to": ["me"],
                                            "text": "and again"})
        new_status = again.raise_for_status().json()["id"]
    runs |= {
        "dry-run": dmbot("run", "--dry-run", "--once", env=env, cwd=tmp_path),
        "notify-test": dmbot("notify-test", env=env, cwd=tmp_path),
        "check": dmbot("check", env=env, cwd=tmp_path),
    }

    secrets = targets.secrets(TOKEN)
    for command, result in runs.items():
        assert leaks(result.stdout + "\n" + result.stderr, secrets) == [], command
    for state in (tmp_path / "data").iterdir():  # the SQLite file and its journal
        assert leaks(state.read_bytes().decode("latin-1"), secrets) == [], state.name
    # The scenario went down the paths it is meant to cover:
    assert runs["run"].returncode == 0, runs["run"].stderr
    actions = [e for e in json_events(runs["run"].stderr) if e["event"] == "action"]
    outcomes = {(e["notifier"], e["outcome"]) for e in actions if e["action"] == "notify"}
    assert outcomes == {
        ("mail", "delivered"), ("hook", "delivered"), ("header", "delivered"),
        ("wrong-password", "retry"), ("broken", "retry"), ("closed", "retry"),
    }
    assert all(e["detail"] for e in actions if e["outcome"] == "retry")
    assert len(targets.smtp.messages) == 2 + 1  # the two DMs, then notify-test's one
    assert "notify    retry" in runs["status"].stdout
    assert runs["notify-test"].returncode == 1
    assert runs["notify-test"].stdout.count("FAILED") == 3
    dry = [e for e in json_events(runs["dry-run"].stderr) if e["event"] == "action"]
    assert {e["outcome"] for e in dry} == {"dry_run"}  # retries fallen due included
    # The new message: a notification per notifier and a mark_read, all pretended.
    assert sum(e["status_id"] == new_status for e in dry) == 6 + 1
    assert "rules:    ok" in runs["check"].stdout


# -- the same scenario in-process, before redaction ----------------------------------------


async def test_no_secret_in_any_log_event_before_redaction(
    sim: Simulator, clock: ManualClock, targets: Targets, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    settings = Settings(
        instance_url=sim.base_url, access_token=IN_PROCESS_TOKEN, rules_file=rules,
        data_dir=tmp_path / "data", poll_interval=60,
    )
    for name in ("alice", "bob"):
        sim.send_dm(sim.add_account(name, "remote.example"), to=[sim.owner], text="hi")
    targets.smtp.refuse_next(1)
    targets.hook.fail_next(1)

    with capture_logs() as events:
        async with open_app(
            settings, clock=clock, redactor=Redactor(), env=targets.env()
        ) as app:
            await app.engine.poll_once()
            clock.advance(3600)
            await app.engine.poll_once()  # retries: some recover, some fail again
            rules.write_text(RULES.replace('"${HOOK}"', f'"jsn://{HOOK_CREDENTIAL}@x/"'),
                             encoding="utf-8")
            check_rules_reload(app, force=True)  # an invalid edit is logged as an error
            sim.stop_answering("drop")
            clock.advance(3600)
            assert await run_cycle(app, Outage(60, app.log), random.Random(1)) is None
            sim.resume()
        structlog.get_logger("test").info("done")

    secrets = targets.secrets(IN_PROCESS_TOKEN)
    assert leaks("\n".join(repr(event) for event in events), secrets) == []
    names = {event["event"] for event in events}
    assert {"action", "rules.invalid", "mastodon.unavailable"} <= names
    outcomes = {e["outcome"] for e in events if e["event"] == "action"}
    assert {"delivered", "retry"} <= outcomes
