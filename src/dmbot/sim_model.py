"""The simulator's records: accounts, statuses, tokens and what tests read back, plus its clock.

Domains are stored as Mastodon stores them (lowercase punycode) and shown in Unicode; ids are
Snowflakes taken from the simulator's clock.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from dmbot import snowflake

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NowSource(Protocol):
    def now(self) -> datetime: ...


class OffsetClock:
    """System time plus an offset: the default clock, so `/_sim/clock/advance` can move it."""

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the simulator's clock never goes back")
        with self._lock:
            self._offset += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass(eq=False, kw_only=True)
class SimAccount:
    id: str
    username: str
    domain: str | None  # lowercase punycode, None for a local account
    created_at: datetime
    display_name: str = ""
    locked: bool = False
    bot: bool = False
    group: bool = False
    discoverable: bool | None = None
    note: str = ""
    followers_count: int = 0
    following_count: int = 0
    statuses_count: int = 0
    last_status_at: date | None = None

    @property
    def is_local(self) -> bool:
        return self.domain is None

    @property
    def acct(self) -> str:
        """`username` for locals, `username@domain` with the domain in Unicode for remotes."""
        return (
            self.username
            if self.domain is None
            else f"{self.username}@{unicode_domain(self.domain)}"
        )


@dataclass(eq=False, kw_only=True)
class SimStatus:
    id: str
    author: SimAccount
    recipients: tuple[SimAccount, ...]
    thread: int
    created_at: datetime
    text: str
    content: str
    spoiler_text: str
    language: str | None
    media: int
    sensitive: bool
    in_reply_to_id: str | None
    in_reply_to_account_id: str | None
    delivered: bool = False
    soft_deleted: bool = False


@dataclass(kw_only=True)
class SimToken:
    token: str
    account: SimAccount | None  # None: an app-only (client credentials) token
    scopes: frozenset[str]
    revoked: bool = False


@dataclass(kw_only=True)
class Relationship:
    """How one account relates to another: the flags of `REST::RelationshipSerializer`."""

    following: bool = False
    followed_by: bool = False
    blocking: bool = False
    muting: bool = False
    requested: bool = False


@dataclass(frozen=True)
class ConversationView:
    """The server's view of one row: what tests assert on, without parsing JSON."""

    id: str
    unread: bool
    last_status_id: str
    status_ids: tuple[str, ...]
    participants: tuple[str, ...]  # accts, ascending account id; (owner,) for a DM to self
    last_status_visible: bool


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]  # last value per key, as Rails reads scalar params
    status: int | None  # None: dropped without an answer
    ts: datetime


class SnowflakeIds:
    """Snowflake ids that never repeat; ids taken for "now" also never go backwards."""

    def __init__(self) -> None:
        self._used: set[int] = set()
        self._last_now = 0

    def at(self, when: datetime) -> int:
        return self._claim(int(snowflake.from_time(when)))

    def now(self, when: datetime) -> int:
        self._last_now = self._claim(max(int(snowflake.from_time(when)), self._last_now + 1))
        return self._last_now

    def _claim(self, candidate: int) -> int:
        while candidate in self._used:
            candidate += 1
        self._used.add(candidate)
        return candidate


def time_of(status_id: int) -> datetime:
    """A Snowflake's millisecond, exactly (no float rounding)."""
    return _EPOCH + timedelta(milliseconds=status_id >> 16)


def require_aware(when: datetime | None) -> None:
    if when is not None and when.utcoffset() is None:
        raise ValueError(f"{when!r} has no time zone: the simulator's times are aware")


def ascii_domain(domain: str) -> str:
    """A domain as Mastodon stores it: stripped, lowercase punycode, no trailing dot."""
    cleaned = domain.strip().rstrip(".").lower()
    try:
        return cleaned.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"not a domain name: {domain!r}") from exc


def unicode_domain(domain: str) -> str:
    try:
        return domain.encode("ascii").decode("idna")
    except UnicodeError:
        return domain
