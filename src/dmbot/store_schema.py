"""The state file's format: its tables, their versions, and what every query assumes.

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[n]` takes version n to n+1,
in one transaction with the version bump, so a file is always at some whole version. A file
newer than this dmbot is refused rather than guessed at.

Every query in `store` and `outbox` follows two conventions:
- times are stored as REAL seconds since the epoch (`to_ts`, `from_ts`);
- writes that belong together run in one `transaction` (`BEGIN IMMEDIATE`), and nothing awaits
  inside it, so cancelling a cycle cannot tear one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

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


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection) -> None:
    """Bring the file up to the latest version, one migration per transaction."""
    version = schema_version(db)
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the state file has schema version {version}, newer than this dmbot knows"
        )
    for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with transaction(db):
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def to_ts(when: datetime) -> float:
    return when.timestamp()


def from_ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)
