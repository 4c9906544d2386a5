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

`Store` is the one object the engine, executor, daemon and commands hold. The schema and its
migrations are in `store_schema`, the outbox and action-log queries in `outbox`; `Store`
offers those queries under their old names, so callers need not know about the split.
All methods are synchronous and short: SQLite on a local disk answers in microseconds, and
no `await` ever happens inside a transaction, so cancelling a cycle cannot tear one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dmbot.actions import Action as ActionT
from dmbot.models import Event
from dmbot.outbox import LoggedAction, Outbox, OutboxItem, Status
from dmbot.snowflake import id_key, is_snowflake, to_time
from dmbot.store_schema import MIGRATIONS, migrate, schema_version, to_ts, transaction

__all__ = ["DB_NAME", "MIGRATIONS", "LoggedAction", "OutboxItem", "Status", "Store"]

DB_NAME = "dmbot.sqlite3"


class Store:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self.outbox = Outbox(connection)
        # The outbox's queries, under the names every caller has always used.
        self.due = self.outbox.due
        self.add_delivered = self.outbox.add_delivered
        self.finish = self.outbox.finish
        self.retry_later = self.outbox.retry_later
        self.last_sent = self.outbox.last_sent
        self.pending_count = self.outbox.pending_count

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
        migrate(connection)
        return cls(connection)

    def copy_in_memory(self) -> Store:
        """An in-memory copy, for `--dry-run`: it behaves like the real state, changes nothing."""
        memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._db.backup(memory)
        return Store(memory)

    def close(self) -> None:
        self._db.close()

    @property
    def schema_version(self) -> int:
        return schema_version(self._db)

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
        with transaction(self._db) as db:
            for conversation_id, status_id in seen:
                status_at = to_time(status_id).timestamp() if is_snowflake(status_id) else None
                db.execute(
                    "INSERT INTO seen (conversation_id, last_status_id, status_at, seen_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (conversation_id) DO UPDATE SET "
                    "last_status_id = excluded.last_status_id, status_at = excluded.status_at, "
                    "seen_at = excluded.seen_at",
                    (conversation_id, status_id, status_at, to_ts(now)),
                )
            for event, actions in events:
                db.execute(
                    "INSERT OR IGNORE INTO events (key, conversation_id, status_id, payload, "
                    "created_at) VALUES (?, ?, ?, ?, ?)",
                    (event.key, event.conversation.id, event.status.id,
                     event.model_dump_json(), to_ts(now)),
                )
                added += self.outbox.add(event, actions, now)
            if cursor is not None:
                current = self.cursor
                if current is None or id_key(cursor) > id_key(current):
                    self.set_meta("cursor", cursor)
        return added

    # housekeeping and status

    def prune(self, now: datetime, keep: timedelta) -> int:
        """Forget what no poll or sweep can reach any more, and closed outbox rows."""
        horizon = to_ts(now - keep)
        with transaction(self._db) as db:
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

    def status(self, recent: int = 10) -> Status:
        return self.outbox.status(
            cursor=self.cursor,
            last_success_at=self.get_time("last_success_at"),
            last_sweep_at=self.get_time("last_sweep_at"),
            recent=recent,
        )
