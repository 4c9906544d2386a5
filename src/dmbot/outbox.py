"""The outbox and the action log: what the rules asked for until it is done, and what happened.

Outbox rows are added by `Store.record` in the transaction that stores their event and moves
the cursor, so a crash can lose or repeat nothing. From then on the executor owns them: `due`
hands out pending rows, and every attempt ends in `finish` (done, failed or dropped) or
`retry_later`, each writing one `action_log` row per outbox row. A notify is one row per
notifier, delivered apart; `delivered` remembers targets that already got it, so a retry
skips them. `action_log` is for `dmbot status` and for people; `Store.prune` forgets both.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from dmbot.actions import ACTION_ADAPTER, Notify
from dmbot.actions import Action as ActionT
from dmbot.models import Event
from dmbot.store_schema import from_ts, to_ts, transaction


@dataclass(frozen=True)
class OutboxItem:
    id: int
    event: Event
    action: ActionT
    notifier: str | None
    attempts: int
    created_at: datetime
    delivered: frozenset[str] = frozenset()

    @property
    def kind(self) -> str:
        return self.action.kind


@dataclass(frozen=True)
class LoggedAction:
    at: datetime
    event_key: str
    kind: str
    target: str | None
    outcome: str
    detail: str | None


@dataclass(frozen=True)
class Status:
    cursor: str | None
    last_success_at: datetime | None
    last_sweep_at: datetime | None
    pending: int
    failed: int
    oldest_pending_at: datetime | None
    recent: tuple[LoggedAction, ...]


class Outbox:
    """The `outbox` and `action_log` tables of one state file's connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def add(self, event: Event, actions: Sequence[ActionT], now: datetime) -> int:
        """Queue an event's actions; the caller holds the transaction. Returns rows added."""
        added = 0
        for action, notifier in _outbox_rows(actions):
            self._db.execute(
                "INSERT INTO outbox (event_key, kind, notifier, action, next_attempt_at, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event.key, action.kind, notifier, action.model_dump_json(),
                 to_ts(now), to_ts(now), to_ts(now)),
            )
            added += 1
        return added

    def due(self, now: datetime, kinds: Sequence[str]) -> list[OutboxItem]:
        marks = ",".join("?" * len(kinds))
        rows = self._db.execute(
            "SELECT o.id, e.payload, o.action, o.notifier, o.attempts, o.created_at, "  # noqa: S608
            "o.delivered "
            f"FROM outbox o JOIN events e ON e.key = o.event_key WHERE o.state = 'pending' "
            f"AND o.kind IN ({marks}) AND o.next_attempt_at <= ? ORDER BY o.id",
            (*kinds, to_ts(now)),
        ).fetchall()
        return [
            OutboxItem(
                id=row[0],
                event=Event.model_validate_json(row[1]),
                action=ACTION_ADAPTER.validate_json(row[2]),
                notifier=row[3],
                attempts=row[4],
                created_at=datetime.fromtimestamp(row[5], tz=UTC),
                delivered=frozenset(json.loads(row[6])),
            )
            for row in rows
        ]

    def add_delivered(self, item_ids: Sequence[int], targets: Iterable[str]) -> None:
        """Remember targets that got a notification, so a retry skips them."""
        new = set(targets)
        with transaction(self._db) as db:
            for item_id in item_ids:
                row = db.execute("SELECT delivered FROM outbox WHERE id = ?", (item_id,)).fetchone()
                merged = sorted(set(json.loads(row[0])) | new)
                db.execute(
                    "UPDATE outbox SET delivered = ? WHERE id = ?", (json.dumps(merged), item_id)
                )

    def finish(
        self,
        item_ids: Sequence[int],
        *,
        state: str,
        now: datetime,
        outcome: str,
        target: str | None = None,
        detail: str | None = None,
        duration_ms: int | None = None,
    ) -> None:
        """Close outbox rows as done, failed or dropped, with one action-log row each."""
        with transaction(self._db) as db:
            for item_id in item_ids:
                db.execute(
                    "UPDATE outbox SET state = ?, attempts = attempts + 1, updated_at = ?, "
                    "last_error = ? WHERE id = ?",
                    (state, to_ts(now), detail if state != "done" else None, item_id),
                )
                self._log(item_id, now, outcome, target, detail, duration_ms)

    def retry_later(
        self,
        item_ids: Sequence[int],
        *,
        now: datetime,
        next_attempt_at: datetime,
        outcome: str,
        detail: str | None,
        target: str | None = None,
        count_attempt: bool = True,
    ) -> None:
        with transaction(self._db) as db:
            for item_id in item_ids:
                db.execute(
                    "UPDATE outbox SET attempts = attempts + ?, next_attempt_at = ?, "
                    "updated_at = ?, last_error = ? WHERE id = ?",
                    (int(count_attempt), to_ts(next_attempt_at), to_ts(now), detail, item_id),
                )
                self._log(item_id, now, outcome, target, detail, None)

    def _log(
        self,
        item_id: int,
        now: datetime,
        outcome: str,
        target: str | None,
        detail: str | None,
        duration_ms: int | None,
    ) -> None:
        self._db.execute(
            "INSERT INTO action_log (at, outbox_id, event_key, kind, target, outcome, detail, "
            "duration_ms) SELECT ?, id, event_key, kind, ?, ?, ?, ? FROM outbox WHERE id = ?",
            (to_ts(now), target, outcome, detail, duration_ms, item_id),
        )

    def last_sent(self, notifiers: Iterable[str]) -> dict[tuple[str, str], datetime]:
        """When each (notifier, sender acct) last got a notification delivered: for cooldowns."""
        names = list(notifiers)
        if not names:
            return {}
        marks = ",".join("?" * len(names))
        rows = self._db.execute(
            "SELECT o.notifier, e.payload, MAX(o.updated_at) FROM outbox o "  # noqa: S608
            "JOIN events e ON e.key = o.event_key WHERE o.kind = 'notify' AND o.state = 'done' "
            f"AND o.notifier IN ({marks}) GROUP BY o.notifier, e.key",
            names,
        ).fetchall()
        result: dict[tuple[str, str], datetime] = {}
        for notifier, payload, at in rows:
            acct = Event.model_validate_json(payload).sender.acct
            when = datetime.fromtimestamp(at, tz=UTC)
            if result.get((notifier, acct), when) <= when:
                result[(notifier, acct)] = when
        return result

    def pending_count(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()
        return int(row[0])

    def status(
        self,
        *,
        cursor: str | None,
        last_success_at: datetime | None,
        last_sweep_at: datetime | None,
        recent: int,
    ) -> Status:
        """The queue's counts and the latest log rows, around the meta values `Store` passes."""
        counts = dict(
            self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        )
        oldest = self._db.execute(
            "SELECT MIN(created_at) FROM outbox WHERE state = 'pending'"
        ).fetchone()[0]
        rows = self._db.execute(
            "SELECT at, event_key, kind, target, outcome, detail FROM action_log "
            "ORDER BY id DESC LIMIT ?",
            (recent,),
        ).fetchall()
        return Status(
            cursor=cursor,
            last_success_at=last_success_at,
            last_sweep_at=last_sweep_at,
            pending=int(counts.get("pending", 0)),
            failed=int(counts.get("failed", 0)),
            oldest_pending_at=from_ts(oldest),
            recent=tuple(
                LoggedAction(
                    at=datetime.fromtimestamp(at, tz=UTC),
                    event_key=key,
                    kind=kind,
                    target=target,
                    outcome=outcome,
                    detail=detail,
                )
                for at, key, kind, target, outcome, detail in rows
            ),
        )


def _outbox_rows(actions: Sequence[ActionT]) -> Iterator[tuple[ActionT, str | None]]:
    """One outbox row per action, and per notifier for a notify (each is delivered apart)."""
    for action in actions:
        if isinstance(action, Notify):
            for name in action.to:
                yield action, name
        else:
            yield action, None
