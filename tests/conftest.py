"""Shared fixtures: a manual clock, the simulator on loopback, and an engine wired to both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from dmbot.actions import Action
from dmbot.clock import ManualClock
from dmbot.engine import Engine, EngineConfig, Identity
from dmbot.executor import Executor
from dmbot.mastodon import MastodonClient
from dmbot.models import Event
from dmbot.notifiers import NotifierConfig
from dmbot.notify import TargetOutcome
from dmbot.render import Notification
from dmbot.sim import Simulator
from dmbot.store import Store

TOKEN = "test-token-5f2a9c"


MARK_ALL_READ = """\
version: 1
rules:
  - name: read-everything
    if: {unread: true}
    do: [mark_read]
"""


@pytest.fixture
def live_sim() -> Iterator[Simulator]:
    """The simulator on its own (real-time) clock, for tests that run the daemon's loop."""
    simulator = Simulator(heartbeat=0.5)
    simulator.add_token(TOKEN)
    with simulator.serve():
        yield simulator


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 2, 12, 0, tzinfo=UTC))


@pytest.fixture
def sim(clock: ManualClock) -> Iterator[Simulator]:
    simulator = Simulator(clock)
    simulator.add_token(TOKEN, scopes=("read", "write", "follow"))
    with simulator.serve():
        yield simulator


@dataclass
class RecordingDecider:
    """Decides by a function (default: nothing) and remembers every event it saw, in order."""

    decide_fn: object = None
    seen: list[Event] = field(default_factory=list)

    async def prepare(self, events: Sequence[Event]) -> Sequence[Event]:
        return events

    def decide(self, event: Event) -> list[Action]:
        self.seen.append(event)
        if callable(self.decide_fn):
            result: list[Action] = self.decide_fn(event)
            return result
        return []


@dataclass
class RecordingNotifier:
    sent: list[tuple[str, Notification]] = field(default_factory=list)

    async def send(self, notifier: NotifierConfig, note: Notification) -> list[TargetOutcome]:
        self.sent.append((notifier.name, note))
        return [TargetOutcome(target=f"{notifier.name}-{i}", ok=True, error=None)
                for i, _ in enumerate(notifier.urls)]


@dataclass
class Harness:
    sim: Simulator
    clock: ManualClock
    data_dir: Path
    decider: RecordingDecider
    notifier: RecordingNotifier
    client: MastodonClient
    store: Store
    engine: Engine
    notifiers: dict[str, NotifierConfig] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return self.client.requests_made


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


def build_harness(
    sim: Simulator,
    clock: ManualClock,
    http: httpx.AsyncClient,
    data_dir: Path,
    config: EngineConfig | None = None,
) -> Harness:
    client = MastodonClient(http, sim.base_url, TOKEN, clock)
    store = Store.open(data_dir)
    decider = RecordingDecider()
    notifier = RecordingNotifier()
    notifiers: dict[str, NotifierConfig] = {}
    executor = Executor(
        client=client, store=store, clock=clock, notifier=notifier,
        notifiers=lambda: notifiers,
    )
    identity = Identity(account_id=sim.owner.id, acct="me", local_domain=sim.domain)
    engine = Engine(
        client=client, store=store, clock=clock, decider=decider, executor=executor,
        identity=identity, config=config,
    )
    return Harness(sim, clock, data_dir, decider, notifier, client, store, engine, notifiers)


@pytest.fixture
def harness(
    sim: Simulator, clock: ManualClock, http: httpx.AsyncClient, tmp_path: Path
) -> Iterator[Harness]:
    built = build_harness(sim, clock, http, tmp_path / "data")
    yield built
    built.store.close()
