"""What the benchmarks share: the simulator on loopback and an engine that records events."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import structlog

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

TOKEN = "bench-token"


@dataclass
class CountingDecider:
    events: int = 0

    async def prepare(self, events: Sequence[Event]) -> Sequence[Event]:
        return events

    def decide(self, event: Event) -> list[Action]:
        self.events += 1
        return []


@dataclass
class NullNotifier:
    sent: list[str] = field(default_factory=list)

    async def send(self, notifier: NotifierConfig, note: Notification) -> list[TargetOutcome]:
        return []


def quiet_logs() -> None:
    """Benchmarks measure the loop, not the terminal: only warnings are printed."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def engine_for(
    sim: Simulator,
    clock: ManualClock,
    http: httpx.AsyncClient,
    data_dir: Path,
    config: EngineConfig | None = None,
) -> tuple[Engine, MastodonClient, Store, CountingDecider]:
    client = MastodonClient(http, sim.base_url, TOKEN, clock)
    store = Store.open(data_dir)
    decider = CountingDecider()
    executor = Executor(
        client=client, store=store, clock=clock, notifier=NullNotifier(), notifiers=dict
    )
    engine = Engine(
        client=client, store=store, clock=clock, decider=decider, executor=executor,
        identity=Identity(account_id=sim.owner.id, acct="me", local_domain=sim.domain),
        config=config,
    )
    return engine, client, store, decider
