"""Mastodon ids: Snowflakes, `(unix milliseconds << 16) | sequence`, as decimal strings.

Ids are compared by (length, text), which orders decimal Snowflakes numerically and also
orders the fixed-length ULIDs other servers use, without turning either into numbers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def id_key(status_id: str) -> tuple[int, str]:
    return (len(status_id), status_id)


def newer(a: str, b: str) -> bool:
    """True when id `a` sorts after id `b`."""
    return id_key(a) > id_key(b)


def is_snowflake(status_id: str) -> bool:
    return status_id.isdigit() and int(status_id) >= 1 << 16


def from_time(when: datetime, sequence: int = 0) -> str:
    return str((int(when.timestamp() * 1000) << 16) | (sequence & 0xFFFF))


def to_time(status_id: str) -> datetime:
    return datetime.fromtimestamp((int(status_id) >> 16) / 1000, tz=UTC)


def shift(status_id: str, delta: timedelta) -> str:
    """The id `delta` earlier or later in Snowflake time; non-Snowflake ids come back unchanged."""
    if not is_snowflake(status_id):
        return status_id
    moved = int(status_id) + (int(delta.total_seconds() * 1000) << 16)
    return str(max(moved, 0))
