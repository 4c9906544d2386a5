"""`dmbot healthcheck`: is the daemon alive? Read from the state file's heartbeat alone.

Docker runs this every few seconds, so it imports nothing heavy and needs no token: it reads
`DMBOT_DATA_DIR` and `DMBOT_POLL_INTERVAL` and looks at two things in SQLite: when the last
poll succeeded, and whether an action has been due for long without being run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

DB_NAME = "dmbot.sqlite3"


@dataclass(frozen=True)
class Health:
    healthy: bool
    reason: str


def check_health(env: Mapping[str, str], now: datetime | None = None) -> Health:
    now = now or datetime.now(UTC)
    data_dir = Path(env.get("DMBOT_DATA_DIR", "data"))
    try:
        interval = max(10, int(env.get("DMBOT_POLL_INTERVAL", "60")))
    except ValueError:
        interval = 60
    db_path = data_dir / DB_NAME
    if not db_path.exists():
        return Health(False, f"no state file at {db_path} yet")
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'last_success_at'").fetchone()
            overdue = db.execute(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'"
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error as error:
        return Health(False, f"cannot read {db_path}: {error}")
    if row is None:
        return Health(False, "no successful poll yet")
    age = (now - datetime.fromisoformat(row[0])).total_seconds()
    if age > 3 * interval:
        return Health(False, f"last successful poll {age:.0f} s ago (limit {3 * interval} s)")
    if overdue[0] is not None and now.timestamp() - overdue[0] > 3 * interval:
        return Health(False, "the outbox is stuck: an action is overdue by more than 3 intervals")
    return Health(True, f"last successful poll {age:.0f} s ago")
