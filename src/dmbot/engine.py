"""One poll cycle: fetch what is new, evaluate it, store it durably, then act.

Three ways of reading the conversation list, all feeding `_ingest`:

- **Bootstrap** (no cursor yet): the newest page; only conversations unread right now become
  events, then a walk down to the sweep horizon records everything else as already seen, so
  history is never replayed.
- **Catch-up** (every cycle): `min_id` at the cursor or, when that is more recent, at the
  start of the overlap window (the last few minutes, for rows Mastodon writes late with an
  older status id), then follow `rel="prev"` until a short page. N new conversations cost
  floor(N/40)+1 requests; an idle poll costs one.
- **Sweep** (hourly): newest first down to the horizon, for DMs that surface with old ids long
  after they were sent (released from message requests, late federation).

A conversation is new when its last status sorts after the one recorded in `seen`. Seen
marks, events, their actions and the cursor are written in one transaction per page, before
any action runs, so a crash at any point loses nothing and repeats nothing that had finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

import structlog

from dmbot.actions import Action
from dmbot.clock import Clock
from dmbot.executor import ExecutionResult, Executor
from dmbot.mastodon import MAX_PAGE, MastodonClient, Page
from dmbot.models import Conversation, Event
from dmbot.snowflake import from_time, is_snowflake, newer
from dmbot.store import Store


class Decider(Protocol):
    """What the rules look like from the engine: an async enrichment step, then a pure call."""

    async def prepare(self, events: Sequence[Event]) -> Sequence[Event]: ...

    def decide(self, event: Event) -> list[Action]: ...


@dataclass(frozen=True)
class Identity:
    """Who the token belongs to and what it may not do, learnt once at start."""

    account_id: str
    acct: str
    local_domain: str
    streaming_url: str | None = None
    missing_scopes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class EngineConfig:
    overlap: timedelta = timedelta(minutes=5)
    sweep_every: timedelta = timedelta(hours=1)
    sweep_horizon: timedelta = timedelta(days=7)
    sweep_max_pages: int = 25
    bootstrap_limit: int = MAX_PAGE
    include_own_messages: bool = False


@dataclass
class CycleResult:
    requests: int = 0
    fetched: int = 0
    new_events: int = 0
    actions_enqueued: int = 0
    swept: bool = False
    bootstrapped: bool = False
    cursor: str | None = None
    executed: ExecutionResult = field(default_factory=ExecutionResult)


class Engine:
    def __init__(
        self,
        *,
        client: MastodonClient,
        store: Store,
        clock: Clock,
        decider: Decider,
        executor: Executor,
        identity: Identity,
        config: EngineConfig | None = None,
        stopping: asyncio.Event | None = None,
        logger: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._clock = clock
        self._decider = decider
        self._executor = executor
        self._identity = identity
        self._config = config or EngineConfig()
        self._stopping = stopping or asyncio.Event()
        self._log = logger or structlog.get_logger("dmbot.engine")

    async def poll_once(self) -> CycleResult:
        result = CycleResult()
        started = self._client.requests_made
        if self._store.cursor is None:
            await self._bootstrap(result)
        elif self._store.get_meta("baseline_done") is None:
            await self._record_baseline(result, self._store.get_meta("baseline_from"))
        else:
            await self._catch_up(result)
        if self._sweep_due() and not self._stopping.is_set():
            await self._sweep(result)
        result.executed = await self._executor.run()
        result.requests = self._client.requests_made - started
        result.cursor = self._store.cursor
        self._store.set_time("last_success_at", self._clock.now())
        return result

    async def _bootstrap(self, result: CycleResult) -> None:
        result.bootstrapped = True
        page = await self._client.conversations(limit=MAX_PAGE)
        newest = {c.id for c in page.conversations[: self._config.bootstrap_limit]}
        await self._ingest(
            page,
            result,
            cursor=page.prev_min_id or "0",
            wanted=lambda c: c.unread and c.id in newest,
        )
        self._store.set_meta("baseline_from", page.next_max_id or "")
        await self._record_baseline(result, page.next_max_id)

    async def _record_baseline(self, result: CycleResult, max_id: str | None) -> None:
        """Mark everything down to the horizon as seen, so the sweep never replays history."""
        horizon = from_time(self._clock.now() - self._config.sweep_horizon)
        pages = 1
        while max_id and newer(max_id, horizon) and pages < self._config.sweep_max_pages:
            page = await self._client.conversations(limit=MAX_PAGE, max_id=max_id)
            await self._ingest(page, result, cursor=None, wanted=lambda _: False)
            max_id = page.next_max_id if page.size == MAX_PAGE else None
            pages += 1
        self._store.set_meta("baseline_done", "1")
        self._store.set_time("last_sweep_at", self._clock.now())

    async def _catch_up(self, result: CycleResult) -> None:
        cursor = self._store.cursor or "0"
        window_start = from_time(self._clock.now() - self._config.overlap)
        min_id = window_start if is_snowflake(cursor) and newer(cursor, window_start) else cursor
        while True:
            page = await self._client.conversations(limit=MAX_PAGE, min_id=min_id)
            await self._ingest(page, result, cursor=page.prev_min_id, wanted=lambda _: True)
            if page.size < MAX_PAGE or page.prev_min_id is None or self._stopping.is_set():
                return
            min_id = page.prev_min_id

    def _sweep_due(self) -> bool:
        last = self._store.get_time("last_sweep_at")
        return last is None or self._clock.now() - last >= self._config.sweep_every

    async def _sweep(self, result: CycleResult) -> None:
        now = self._clock.now()
        horizon = from_time(now - self._config.sweep_horizon)

        def within_horizon(conversation: Conversation) -> bool:
            status = conversation.last_status
            return status is not None and newer(status.id, horizon)

        max_id: str | None = None
        for _ in range(self._config.sweep_max_pages):
            page = await self._client.conversations(limit=MAX_PAGE, max_id=max_id)
            await self._ingest(
                page, result, cursor=None, wanted=within_horizon, only=within_horizon
            )
            max_id = page.next_max_id
            if page.size < MAX_PAGE or not max_id or not newer(max_id, horizon):
                break
            if self._stopping.is_set():
                return
        result.swept = True
        self._store.set_time("last_sweep_at", now)
        keep = self._config.sweep_horizon + self._config.overlap + timedelta(days=1)
        self._store.prune(now, keep)

    def _decide(self, event: Event) -> list[Action]:
        """The rules' verdict. A message that makes them fail (a bug, never a user error: the
        rules were validated) is logged and left alone, so it cannot block every later one."""
        try:
            return self._decider.decide(event)
        except Exception:
            self._log.exception(
                "rules.failed", conversation_id=event.conversation.id, status_id=event.status.id,
                sender=event.sender.acct,
            )
            return []

    async def _ingest(
        self,
        page: Page,
        result: CycleResult,
        *,
        cursor: str | None,
        wanted: Callable[[Conversation], bool],
        only: Callable[[Conversation], bool] | None = None,
    ) -> None:
        """Record one page, oldest first: seen marks, events with their actions, the cursor."""
        conversations = [c for c in reversed(page.conversations) if only is None or only(c)]
        result.fetched += page.size
        seen = self._store.seen_ids(c.id for c in conversations)
        marks: list[tuple[str, str]] = []
        fresh: list[Event] = []
        for conversation in conversations:
            status = conversation.last_status
            if status is None:
                continue
            prior = seen.get(conversation.id)
            if prior is not None and not newer(status.id, prior):
                continue
            seen[conversation.id] = status.id
            marks.append((conversation.id, status.id))
            event = Event.from_conversation(
                conversation,
                local_domain=self._identity.local_domain,
                own_account_id=self._identity.account_id,
            )
            if event.from_me and not self._config.include_own_messages:
                continue
            if wanted(conversation):
                fresh.append(event)
        prepared = await self._decider.prepare(fresh) if fresh else ()
        decided = [(event, self._decide(event)) for event in prepared]
        added = self._store.record(
            seen=marks,
            events=[(event, actions) for event, actions in decided if actions],
            cursor=cursor,
            now=self._clock.now(),
        )
        result.new_events += len(decided)
        result.actions_enqueued += added
        for event, actions in decided:
            self._log.info(
                "message.new",
                conversation_id=event.conversation.id,
                status_id=event.status.id,
                sender=event.sender.acct,
                unread=event.conversation.unread,
                actions=[_describe(action) for action in actions],
            )


def _describe(action: Action) -> str:
    return f"{action.kind}:{action.rule}"
