"""dmbot's state: one SQLite file in the data directory.

What is kept, and why:
- `meta`: the cursor (a last-status id), the owner's account id, the last sweep and the last
  successful poll (the heartbeat `dmbot healthcheck` reads).
- `seen`: per conversation, the newest last-status id already evaluated. A conversation
  is "new" when its last status sorts after that. Rows are pruned once their status is
  older than anything a poll or a sweep can still look at.
- `events` and `outbox`: every new message and the actions the rules asked for, written in
  the same transaction that moves the cursor, so a crash can lose or repeat nothing.
- `action_log`: one row per attempt's outcome, for `dmbot status` and for people.

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[n]` takes version n to n+1.
All methods are synchronous and short: SQLite on a local disk answers in microseconds, and
no `await` ever happens inside a transaction, so cancelling a cycle cannot tear one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dmbot.actions import ACTION_ADAPTER, Notify
from dmbot.actions import Action as ActionT
from dmbot.models import Event
from dmbot.snowflake import id_key, is_snowflake, to_time

DB_NAME = "dmbot.sqlite3"

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE seen (
        conversation_id TEXT PRIMARY KEY,
        last_status_id TEXT NOT NULL,
        status_at REAL,
        seen_at REAL NOT NULL
    );
    CREATE TABLE events (
        key TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        status_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        event_key TEXT NOT NULL REFERENCES events(key),
        kind TEXT NOT NULL,
        notifier TEXT,
        action TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'done', 'failed', 'dropped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        last_error TEXT,
        delivered TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    CREATE TABLE action_log (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        outbox_id INTEGER,
        event_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT,
        outcome TEXT NOT NULL,
        detail TEXT,
        duration_ms INTEGER
    );
    CREATE INDEX action_log_at ON action_log (at);
    """,
)


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


def _ts(when: datetime) -> float:
    return when.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


class Store:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls.connect(str(data_dir / DB_NAME))

    @classmethod
    def connect(cls, target: str) -> Store:
        connection = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=5000")
        store = cls(connection)
        store._migrate()
        return store

    def copy_in_memory(self) -> Store:
        """An in-memory copy, for `--dry-run`: it behaves like the real state, changes nothing."""
        memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._db.backup(memory)
        return Store(memory)

    def close(self) -> None:
        self._db.close()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"the state file has schema version {version}, newer than this dmbot knows"
            )
        for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._transaction():
                for statement in script.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {target}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # meta

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @property
    def cursor(self) -> str | None:
        return self.get_meta("cursor")

    def get_time(self, key: str) -> datetime | None:
        value = self.get_meta(key)
        return None if value is None else datetime.fromisoformat(value)

    def set_time(self, key: str, when: datetime) -> None:
        self.set_meta(key, when.astimezone(UTC).isoformat())

    # seen conversations

    def seen_ids(self, conversation_ids: Iterable[str]) -> dict[str, str]:
        ids = list(conversation_ids)
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT conversation_id, last_status_id FROM seen "  # noqa: S608 (placeholders only)
                f"WHERE conversation_id IN ({marks})"
            )
            found.update(self._db.execute(query, chunk).fetchall())
        return found

    def record(
        self,
        *,
        seen: Sequence[tuple[str, str]],
        events: Sequence[tuple[Event, Sequence[ActionT]]],
        cursor: str | None,
        now: datetime,
    ) -> int:
        """Mark conversations seen, store events and their actions, move the cursor: atomically.

        Returns how many outbox rows were added.
        """
        added = 0
        with self._transaction() as db:
            for conversation_id, status_id in seen:
                status_at = to_time(status_id).timestamp() if is_snowflake(status_id) else None
                db.execute(
                    "INSERT INTO seen (conversation_id, last_status_id, status_at, seen_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (conversation_id) DO UPDATE SET "
                    "last_status_id = excluded.last_status_id, status_at = excluded.status_at, "
                    "seen_at = excluded.seen_at",
                    (conversation_id, status_id, status_at, _ts(now)),
                )
            for event, actions in events:
                db.execute(
                    "INSERT OR IGNORE INTO events (key, conversation_id, status_id, payload, "
                    "created_at) VALUES (?, ?, ?, ?, ?)",
                    (event.key, event.conversation.id, event.status.id,
                     event.model_dump_json(), _ts(now)),
                )
                for action, notifier in _outbox_rows(actions):
                    db.execute(
                        "INSERT INTO outbox (event_key, kind, notifier, action, next_attempt_at, "
                        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (event.key, action.kind, notifier, action.model_dump_json(),
                         _ts(now), _ts(now), _ts(now)),
                    )
                    added += 1
            if cursor is not None:
                current = self.cursor
                if current is None or id_key(cursor) > id_key(current):
                    self.set_meta("cursor", cursor)
        return added

    # outbox

    def due(self, now: datetime, kinds: Sequence[str]) -> list[OutboxItem]:
        marks = ",".join("?" * len(kinds))
        rows = self._db.execute(
            "SELECT o.id, e.payload, o.action, o.notifier, o.attempts, o.created_at, "  # noqa: S608
            "o.delivered "
            f"FROM outbox o JOIN events e ON e.key = o.event_key WHERE o.state = 'pending' "
            f"AND o.kind IN ({marks}) AND o.next_attempt_at <= ? ORDER BY o.id",
            (*kinds, _ts(now)),
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
        with self._transaction() as db:
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
        with self._transaction() as db:
            for item_id in item_ids:
                db.execute(
                    "UPDATE outbox SET state = ?, attempts = attempts + 1, updated_at = ?, "
                    "last_error = ? WHERE id = ?",
                    (state, _ts(now), detail if state != "done" else None, item_id),
                )
                self._log(db, item_id, now, outcome, target, detail, duration_ms)

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
        with self._transaction() as db:
            for item_id in item_ids:
                db.execute(
                    "UPDATE outbox SET attempts = attempts + ?, next_attempt_at = ?, "
                    "updated_at = ?, last_error = ? WHERE id = ?",
                    (int(count_attempt), _ts(next_attempt_at), _ts(now), detail, item_id),
                )
                self._log(db, item_id, now, outcome, target, detail, None)

    @staticmethod
    def _log(
        db: sqlite3.Connection,
        item_id: int,
        now: datetime,
        outcome: str,
        target: str | None,
        detail: str | None,
        duration_ms: int | None,
    ) -> None:
        db.execute(
            "INSERT INTO action_log (at, outbox_id, event_key, kind, target, outcome, detail, "
            "duration_ms) SELECT ?, id, event_key, kind, ?, ?, ?, ? FROM outbox WHERE id = ?",
            (_ts(now), target, outcome, detail, duration_ms, item_id),
        )

    def log_event(self, event_key: str, kind: str, outcome: str, now: datetime) -> None:
        """An action-log row with no outbox row behind it (e.g. a message no rule acted on)."""
        self._db.execute(
            "INSERT INTO action_log (at, event_key, kind, outcome) VALUES (?, ?, ?, ?)",
            (_ts(now), event_key, kind, outcome),
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

    # housekeeping and status

    def prune(self, now: datetime, keep: timedelta) -> int:
        """Forget what no poll or sweep can reach any more, and closed outbox rows."""
        horizon = _ts(now - keep)
        with self._transaction() as db:
            removed = db.execute(
                "DELETE FROM seen WHERE COALESCE(status_at, seen_at) < ?", (horizon,)
            ).rowcount
            db.execute("DELETE FROM action_log WHERE at < ?", (horizon,))
            db.execute(
                "DELETE FROM outbox WHERE state != 'pending' AND updated_at < ?", (horizon,)
            )
            db.execute(
                "DELETE FROM events WHERE created_at < ? AND key NOT IN "
                "(SELECT event_key FROM outbox)",
                (horizon,),
            )
        return int(removed)

    def pending_count(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()
        return int(row[0])

    def status(self, recent: int = 10) -> Status:
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
            cursor=self.cursor,
            last_success_at=self.get_time("last_success_at"),
            last_sweep_at=self.get_time("last_sweep_at"),
            pending=int(counts.get("pending", 0)),
            failed=int(counts.get("failed", 0)),
            oldest_pending_at=_dt(oldest),
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
