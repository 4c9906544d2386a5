"""`dmbot demo`: the first five minutes, with no account and no settings.

It starts the Mastodon simulator on 127.0.0.1, a small receiver standing in for your phone
and your inbox (Apprise really delivers to it, over HTTP), and dmbot's own engine with the
example rules. Sample accounts then write to you: a friend, a bot, a blocked domain, an
urgent stranger, a burst. Each decision and each notification is printed as it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import TextIO

from dmbot.app import App, open_app
from dmbot.clock import SystemClock
from dmbot.daemon import Outage, run_cycle
from dmbot.logging import Redactor, configure_logging
from dmbot.rules import RuleSet
from dmbot.settings import Settings
from dmbot.sim import SimAccount, Simulator

DEMO_TOKEN = "demo-token"  # noqa: S105 (the simulator's, not a real one)


def example_rules_text() -> str:
    return resources.files("dmbot").joinpath("rules.example.yaml").read_text(encoding="utf-8")


class Receiver:
    """Stands in for every notifier: Apprise's `json://` POSTs arrive here and are printed."""

    def __init__(self, show: Callable[[str, dict[str, object]], None]) -> None:
        show_note = show

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    body = json.loads(self.rfile.read(min(length, 1_000_000)))
                except ValueError:
                    body = {}
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                show_note(self.path.strip("/"), body if isinstance(body, dict) else {})

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"json://127.0.0.1:{self._server.server_address[1]}/{name}"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


Scene = Callable[[Simulator, dict[str, SimAccount]], None]


@dataclass(frozen=True)
class Step:
    say: str
    send: Scene


def _cast(sim: Simulator) -> dict[str, SimAccount]:
    old = datetime(2019, 5, 1, tzinfo=UTC)
    people = {
        "alice": sim.add_account("alice", "example.social", display_name="Alice",
                                 created_at=old, followers_count=120),
        "newsbot": sim.add_account("newsbot", "bots.example", display_name="News Bot", bot=True),
        "spammer": sim.add_account("deals", "spam.example", display_name="Best Deals"),
        "carol": sim.add_account("carol", "fediverse.example", display_name="Carol",
                                 created_at=old, followers_count=45),
    }
    for i in range(8):
        people[f"crowd{i}"] = sim.add_account(f"fan{i}", "crowd.example",
                                              display_name=f"Fan {i}", created_at=old)
    return people


def _dm(who: str, text: str, spoiler: str = "") -> Scene:
    def send(sim: Simulator, people: dict[str, SimAccount]) -> None:
        sim.send_dm(people[who], to=[sim.owner], text=text, spoiler_text=spoiler)

    return send


def _burst(sim: Simulator, people: dict[str, SimAccount]) -> None:
    for i in range(8):
        sim.send_dm(people[f"crowd{i}"], to=[sim.owner], text=f"Loved your talk! ({i + 1}/8)")


SCRIPT = (
    Step("a friend writes (alice is on the friends list)",
         _dm("alice", "Are we still on for lunch tomorrow?")),
    Step("a bot writes (it is marked read, nobody is disturbed)",
         _dm("newsbot", "Your daily digest is ready.")),
    Step("spam.example writes (a blocked domain: the conversation is deleted)",
         _dm("spammer", "Cheap watches! https://spam.example/deal")),
    Step("a stranger writes something urgent",
         _dm("carol", "URGENT: the conference room changed, please call me asap")),
    Step("a burst of 8 messages arrives at once (they come as one digest)", _burst),
)


def demo_rules(rules: RuleSet, receiver: Receiver) -> RuleSet:
    """The example rules, with every notifier pointed at the local receiver and no quiet
    hours (the demo would otherwise be silent at night in Berlin)."""
    notifiers = {
        name: config.model_copy(update={"urls": (receiver.url(name),), "quiet_hours": None})
        for name, config in rules.notifiers.items()
    }
    return dataclasses.replace(rules, notifiers=notifiers)


@contextlib.contextmanager
def _workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dmbot-demo-") as tmp:
        folder = Path(tmp)
        (folder / "rules.yaml").write_text(example_rules_text(), encoding="utf-8")
        (folder / "blocked_domains.csv").write_text("#domain\nspam.example\n", encoding="utf-8")
        yield folder


def run_demo(*, pause: float = 10.0, out: TextIO | None = None) -> int:
    stream = out or sys.stdout
    redactor = Redactor()
    configure_logging(fmt="console", level="INFO", redactor=redactor, stream=stream)
    try:
        asyncio.run(_demo(pause, stream, redactor))
    except KeyboardInterrupt:
        print("\nstopped.", file=stream)
    return 0


async def _demo(pause: float, out: TextIO, redactor: Redactor) -> None:
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    def show(name: str, body: dict[str, object]) -> None:
        say(f"\n  >> notification to [{name}]: {body.get('title', '')}")
        for line in str(body.get("message", "")).splitlines():
            say(f"     | {line}")

    sim = Simulator()
    sim.add_token(DEMO_TOKEN)
    people = _cast(sim)
    sim.set_relationship(sim.owner, people["alice"], following=True, followed_by=True)
    with sim.serve() as base_url, Receiver(show) as receiver, _workspace() as folder:
        settings = Settings(
            instance_url=base_url,
            access_token=DEMO_TOKEN,
            rules_file=folder / "rules.yaml",
            data_dir=folder / "data",
            poll_interval=10,
        )
        env = {"NTFY_TOPIC": "demo", "SMTP_USER": "demo", "SMTP_PASSWORD": "demo"}
        async with open_app(settings, clock=SystemClock(), redactor=redactor, env=env) as app:
            app.reloader.current = demo_rules(app.reloader.current, receiver)
            say(f"dmbot demo: a simulated instance at {base_url}, rules from rules.example.yaml")
            say(f"rules: {app.rules.summary()}\n")
            await _cycle(app)
            for step in SCRIPT:
                await asyncio.sleep(pause)
                say(f"\n--- {step.say}")
                step.send(sim, people)
                await _cycle(app)
            left = sim.conversations(sim.owner)
            say(f"\nOn the server now: {len(left)} conversations, "
                f"{sum(v.unread for v in left)} unread; the spam conversation is gone.")
            say("Next: copy rules.example.yaml to rules.yaml, set DMBOT_INSTANCE_URL and "
                "DMBOT_ACCESS_TOKEN, run `dmbot check`, then `dmbot run`.")


async def _cycle(app: App) -> None:
    await run_cycle(app, Outage(app.settings.poll_interval, app.log), random.Random())  # noqa: S311
