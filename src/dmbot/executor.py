"""Runs what the outbox holds: notifications first, then mark_read, then delete.

Each outbox row is closed exactly once: `done` (also when the server answers 404, which for
read and delete means it is already so), `dropped` (quiet hours said drop, or a notifier was
removed from the rules), or `failed` (given up after `give_up_after`, or refused for good).
Anything transient is retried with exponential backoff and full jitter. A notifier's targets
are tracked one by one (by `target_key`, a hash: the state file never holds a URL), so a
retry never sends again to a target that already got it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog

from dmbot import delivery
from dmbot.actions import Notify
from dmbot.clock import Clock
from dmbot.mastodon import AuthError, MastodonClient, NotFound, PermanentError, TransientError
from dmbot.notifiers import NotifierConfig
from dmbot.notify import Notifier, target_key
from dmbot.store import OutboxItem, Store


@dataclass
class ExecutionResult:
    done: int = 0
    retried: int = 0
    failed: int = 0
    dropped: int = 0
    held: int = 0


class Executor:
    def __init__(
        self,
        *,
        client: MastodonClient,
        store: Store,
        clock: Clock,
        notifier: Notifier,
        notifiers: Callable[[], Mapping[str, NotifierConfig]],
        dry_run: bool = False,
        give_up_after: timedelta = timedelta(hours=24),
        rng: random.Random | None = None,
        stopping: asyncio.Event | None = None,
        on_outcome: Callable[[str, str], None] | None = None,
        logger: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._clock = clock
        self._notifier = notifier
        self._notifiers = notifiers
        self._dry_run = dry_run
        self._give_up_after = give_up_after
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self._stopping = stopping or asyncio.Event()
        self._on_outcome = on_outcome
        self._log = logger or structlog.get_logger("dmbot.executor")

    async def run(self) -> ExecutionResult:
        """Run what is due. Once stopping, only the action in flight is finished: cancelling
        one mid-request could repeat it after a restart; the rest waits in the outbox."""
        result = ExecutionResult()
        now = self._clock.now()
        try:
            await self._notify(self._store.due(now, ["notify"]), result)
        except Exception:  # a bug in rendering must not hold up mark_read and delete
            self._log.exception("notify.crashed")
        for kind in ("mark_read", "delete"):
            for item in self._store.due(now, [kind]):
                if self._stopping.is_set() or not await self._server_action(item, result):
                    return result
        return result

    async def _server_action(self, item: OutboxItem, result: ExecutionResult) -> bool:
        """Run one mark_read or delete; False when the server is unhappy and the rest must wait."""
        conversation_id = item.event.conversation.id
        started = time.monotonic()
        try:
            if self._dry_run:
                outcome = "dry_run"
            elif item.kind == "mark_read":
                await self._client.mark_read(conversation_id)
                outcome = "ok"
            else:
                await self._client.delete(conversation_id)
                outcome = "ok"
        except NotFound:
            outcome = "already_done"
        except (TransientError, AuthError) as error:
            self._later([item], result, str(error))
            return False
        except PermanentError as error:
            self._close(item, "failed", "refused", str(error), started, result)
            return True
        self._close(item, "done", outcome, None, started, result)
        return True

    def _close(
        self,
        item: OutboxItem,
        state: str,
        outcome: str,
        detail: str | None,
        started: float,
        result: ExecutionResult,
        target: str | None = None,
    ) -> None:
        duration_ms = int((time.monotonic() - started) * 1000)
        self._store.finish(
            [item.id], state=state, now=self._clock.now(), outcome=outcome,
            target=target, detail=detail, duration_ms=duration_ms,
        )
        if state == "done":
            result.done += 1
        elif state == "dropped":
            result.dropped += 1
        else:
            result.failed += 1
        self._log_action(item, outcome, detail, duration_ms, target)

    def _later(self, items: Sequence[OutboxItem], result: ExecutionResult, detail: str) -> None:
        """Retry `items` later, all at one time: rows sent together (a digest, a merged
        conversation) come back together, not one by one as each row's jitter falls."""
        now = self._clock.now()
        waiting = []
        for item in items:
            if delivery.expired(item.created_at, now, self._give_up_after):
                self._close(item, "failed", "given_up", detail, time.monotonic(), result)
            else:
                waiting.append(item)
        if not waiting:
            return
        attempts = max(item.attempts for item in waiting)
        retry_at = delivery.next_attempt(attempts, now, self._rng)
        self._store.retry_later(
            [item.id for item in waiting], now=now, next_attempt_at=retry_at, outcome="retry",
            detail=detail,
        )
        result.retried += len(waiting)
        for item in waiting:
            self._log_action(item, "retry", detail, None, None, retry_at=retry_at.isoformat())

    def _log_action(
        self,
        item: OutboxItem,
        outcome: str,
        detail: str | None,
        duration_ms: int | None,
        target: str | None,
        **extra: object,
    ) -> None:
        if self._on_outcome is not None:
            self._on_outcome(item.kind, outcome)
        failed = outcome in ("failed", "given_up", "refused")
        level = self._log.warning if failed else self._log.info
        level(
            "action",
            conversation_id=item.event.conversation.id,
            status_id=item.event.status.id,
            sender=item.event.sender.acct,
            rule=item.action.rule,
            action=item.kind,
            notifier=item.notifier,
            outcome=outcome,
            detail=detail,
            target=target,
            duration_ms=duration_ms,
            **extra,
        )

    async def _notify(self, items: Sequence[OutboxItem], result: ExecutionResult) -> None:
        if not items:
            return
        now = self._clock.now()
        configs = self._notifiers()
        by_id = {item.id: item for item in items}
        pending: list[delivery.Pending] = []
        for item in items:
            config = configs.get(item.notifier or "")
            if config is None:
                reason = f"notifier {item.notifier!r} is no longer in the rules"
                self._close(item, "dropped", "dropped", reason, time.monotonic(), result)
            elif {target_key(url) for url in config.urls} <= item.delivered:
                self._close(item, "done", "delivered", None, time.monotonic(), result)
            elif item.attempts and delivery.expired(item.created_at, now, self._give_up_after):
                self._close(item, "failed", "given_up", "retried too long", time.monotonic(),
                            result)
            elif isinstance(item.action, Notify):
                pending.append(delivery.Pending(
                    id=item.id, event=item.event, action=item.action,
                    notifier=item.notifier or "", created_at=item.created_at,
                    attempts=item.attempts, delivered=item.delivered,
                ))
        plan = delivery.plan(pending, now, configs, self._store.last_sent(configs))
        for step in plan:
            if self._stopping.is_set():
                return
            step_items = [by_id[i] for i in step.pending_ids]
            if isinstance(step, delivery.Hold):
                self._store.retry_later(
                    step.pending_ids, now=now, next_attempt_at=step.until, outcome="held",
                    detail=step.reason or None, count_attempt=False,
                )
                result.held += len(step_items)
                for item in step_items:
                    self._log_action(item, "held", step.reason or None, None, None,
                                     until=step.until.isoformat())
            elif isinstance(step, delivery.Drop):
                for item in step_items:
                    self._close(item, "dropped", "dropped", step.reason, time.monotonic(), result)
            else:
                await self._send(step, step_items, configs[step.notifier], result)

    async def _send(
        self,
        step: delivery.Send,
        items: Sequence[OutboxItem],
        config: NotifierConfig,
        result: ExecutionResult,
    ) -> None:
        started = time.monotonic()
        if self._dry_run:
            for item in items:
                self._close(item, "done", "dry_run", step.notification.title, started, result)
            return
        outcomes = await self._notifier.send(
            config.model_copy(update={"urls": step.urls}), step.notification
        )
        delivered = [target_key(url) for url, o in zip(step.urls, outcomes, strict=False) if o.ok]
        if delivered:
            self._store.add_delivered(step.pending_ids, delivered)
        targets = ", ".join(outcome.target for outcome in outcomes)
        failures = [outcome for outcome in outcomes if not outcome.ok]
        if not failures and len(outcomes) == len(step.urls):
            detail = step.reason or None
            for item in items:
                self._close(item, "done", "delivered", detail, started, result, target=targets)
            return
        detail = "; ".join(f"{o.target}: {o.error or 'failed'}" for o in failures)
        self._later(items, result, detail or "not every target answered")
