"""A Mastodon simulator on 127.0.0.1, faithful to the parts dmbot talks to.

State is the server's own model (`../shared/mastodon-api.md` §2): a conversation *row* per
(owner, thread, exact set of other participants), ordered and paged by its `last_status_id`;
status ids are Snowflakes from the simulator's clock. The HTTP layer (`dmbot.sim_http`) adds
Mastodon's auth, scopes, throttles, Link headers, errors and the `direct` SSE stream, plus a
JSON control API under `/_sim/` for tests that run the simulator in another process.

Simplified on purpose:
- Notification policies, blocks and mutes never filter or drop a DM; hold one back with
  `send_dm(..., deliver=False)` and release it with `deliver()`. Relationships are data only.
- Only the per-token (API) and per-user paging throttles exist; unauthenticated requests are
  counted per client IP. `limit=0` answers 400 (Mastodon answers 500).
- Non-numeric cursors count as 0, like Ruby's `to_i`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import queue
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Protocol, get_args

from dmbot import snowflake
from dmbot.sim_http import SimServer, conversation_json, relationship_json, status_content

Json = dict[str, Any]
FaultKind = Literal[
    "status_500", "status_503", "status_502_html", "rate_limit", "latency", "drop", "malformed"
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
OutageMode = Literal["hang", "drop"]
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


@dataclass(frozen=True)
class ConversationView:
    """The server's view of one row: what tests assert on, without parsing JSON."""

    id: str
    unread: bool
    last_status_id: str
    status_ids: tuple[str, ...]
    participants: tuple[str, ...]  # accts, ascending account id; (owner,) for a DM to self
    last_status_visible: bool


@dataclass(kw_only=True)
class Fault:
    kind: FaultKind
    remaining: int
    path: str | None  # prefix of the request path; None: every API path
    method: str | None
    seconds: float

    def matches(self, method: str, path: str) -> bool:
        path = path.rstrip("/")
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or path == self.path or path.startswith(self.path + "/")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]  # last value per key, as Rails reads scalar params
    status: int | None  # None: dropped without an answer
    ts: datetime


@dataclass(kw_only=True)
class _Relationship:
    following: bool = False
    followed_by: bool = False
    blocking: bool = False
    muting: bool = False
    requested: bool = False


@dataclass(eq=False, kw_only=True)
class _Row:
    """An `account_conversations` row. `status_ids` stay sorted; the last one is the cursor."""

    id: int
    owner: SimAccount
    thread: int
    others: tuple[str, ...]
    status_ids: list[int]
    unread: bool
    alive: bool = True

    @property
    def key(self) -> tuple[int, int]:
        return (self.status_ids[-1], self.id)


class _Inbox:
    """One account's rows, sorted by (last_status_id, row id): a page is a bisect and a slice."""

    def __init__(self) -> None:
        self.order: list[tuple[int, int]] = []
        self.rows: dict[int, _Row] = {}
        self.by_identity: dict[tuple[int, tuple[str, ...]], _Row] = {}

    def insert(self, row: _Row) -> None:
        self.rows[row.id] = row
        self.by_identity[(row.thread, row.others)] = row
        bisect.insort(self.order, row.key)

    def remove(self, row: _Row) -> None:
        self._drop_key(row.key)
        del self.rows[row.id]
        del self.by_identity[(row.thread, row.others)]
        row.alive = False

    def rekey(self, row: _Row, old: tuple[int, int]) -> None:
        if old != row.key:
            self._drop_key(old)
            bisect.insort(self.order, row.key)

    def _drop_key(self, key: tuple[int, int]) -> None:
        del self.order[bisect.bisect_left(self.order, key)]

    def above(self, limit: int, min_id: int | None, max_id: int | None) -> list[_Row]:
        """The `limit` rows just above `min_id` (and below `max_id`), newest first."""
        lo = self._first_above(min_id)
        hi = self._first_at(max_id)
        return [self.rows[rid] for _, rid in reversed(self.order[lo : min(hi, lo + limit)])]

    def below(self, limit: int, max_id: int | None, since_id: int | None) -> list[_Row]:
        """The newest `limit` rows below `max_id` and above `since_id`, newest first."""
        lo = self._first_above(since_id)
        hi = self._first_at(max_id)
        return [self.rows[rid] for _, rid in reversed(self.order[max(lo, hi - limit) : hi])]

    def _first_above(self, bound: int | None) -> int:
        return 0 if bound is None else bisect.bisect_left(self.order, (bound + 1, -1))

    def _first_at(self, bound: int | None) -> int:
        return len(self.order) if bound is None else bisect.bisect_left(self.order, (bound, -1))


class _SnowflakeIds:
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


@dataclass(frozen=True, eq=False)
class _Subscriber:
    owner_id: str
    token: str
    events: queue.SimpleQueue[str | None] = field(default_factory=queue.SimpleQueue)


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


def _require_aware(when: datetime | None) -> None:
    if when is not None and when.utcoffset() is None:
        raise ValueError(f"{when!r} has no time zone: the simulator's times are aware")


def _time_of(status_id: int) -> datetime:
    """A Snowflake's millisecond, exactly (no float rounding)."""
    return _EPOCH + timedelta(milliseconds=status_id >> 16)


class Simulator:
    """The simulated instance. Every public method is thread-safe; see the module docstring."""

    def __init__(
        self,
        clock: NowSource | None = None,
        *,
        domain: str = "sim.example",
        api_limit: int = 300,
        paging_limit: int = 300,
        heartbeat: float = 15.0,
    ) -> None:
        self.clock: NowSource = clock or OffsetClock()
        self.domain = ascii_domain(domain)
        self.api_limit = api_limit
        self.paging_limit = paging_limit
        self.heartbeat = heartbeat
        self._lock = threading.RLock()
        self._answering = threading.Condition(self._lock)
        self._accounts: dict[str, SimAccount] = {}
        self._handles: dict[tuple[str, str | None], SimAccount] = {}  # (lower username, domain)
        self._account_ids = _SnowflakeIds()
        self._status_ids = _SnowflakeIds()
        self._statuses: dict[int, SimStatus] = {}
        self._thread_tip: dict[int, SimStatus] = {}
        self._thread_of: dict[frozenset[str], int] = {}
        self._thread_numbers = itertools.count(1)
        self._row_numbers = itertools.count(1)
        self._block_numbers = itertools.count(1)
        self._inboxes: dict[str, _Inbox] = {}
        self._rows_of_status: dict[int, list[_Row]] = {}
        self._tokens: dict[str, SimToken] = {}
        self._relationships: dict[tuple[str, str], _Relationship] = {}
        self._domain_blocks: dict[str, list[tuple[int, str]]] = {}
        self._faults: list[Fault] = []
        self._requests: list[RecordedRequest] = []
        self._subscribers: list[_Subscriber] = []
        self._outage: OutageMode | None = None
        self._closing = threading.Event()
        self._server: SimServer | None = None
        self._serve_thread: threading.Thread | None = None
        self.owner = self.add_account("me", display_name="Me")

    # -- accounts and tokens ------------------------------------------------------------

    def add_account(
        self,
        username: str,
        domain: str | None = None,
        *,
        display_name: str = "",
        bot: bool = False,
        locked: bool = False,
        group: bool = False,
        discoverable: bool | None = None,
        note: str = "",
        created_at: datetime | None = None,
        followers_count: int = 0,
        following_count: int = 0,
    ) -> SimAccount:
        """A local account (no domain, or this instance's) or a remote one (Unicode or punycode)."""
        if not username or "@" in username:
            raise ValueError(f"not a username: {username!r}")
        _require_aware(created_at)
        stored = self._stored_domain(domain)
        with self._lock:
            if (username.lower(), stored) in self._handles:
                raise ValueError(f"account {username}@{stored or self.domain} exists already")
            now = self.clock.now()
            ids = self._account_ids
            account = SimAccount(
                id=str(ids.at(created_at) if created_at else ids.now(now)),
                username=username,
                domain=stored,
                created_at=created_at or now,
                display_name=display_name,
                bot=bot,
                locked=locked,
                group=group,
                discoverable=discoverable,
                note=note,
                followers_count=followers_count,
                following_count=following_count,
            )
            self._accounts[account.id] = account
            self._handles[(username.lower(), stored)] = account
            return account

    def account(self, ref: str) -> SimAccount:
        """An account by id, by acct (`alice@example.social`, `bob`) or by `@acct`."""
        with self._lock:
            if ref in self._accounts:
                return self._accounts[ref]
            username, _, domain = ref.lstrip("@").partition("@")
            found = self._handles.get((username.lower(), self._stored_domain(domain)))
            if found is None:
                raise KeyError(f"no account {ref!r}")
            return found

    def _stored_domain(self, domain: str | None) -> str | None:
        """None for a local account (no domain, or this instance's), else lowercase punycode."""
        stored = ascii_domain(domain) if domain else None
        return None if stored == self.domain else stored

    def add_token(
        self,
        token: str,
        account: SimAccount | Literal["owner"] | None = "owner",
        scopes: Iterable[str] = ("read", "write", "follow"),
    ) -> SimToken:
        """A bearer token for `account` (default: the owner); `account=None` is app-only."""
        with self._lock:
            holder = self.owner if isinstance(account, str) else account
            self._tokens[token] = SimToken(token=token, account=holder, scopes=frozenset(scopes))
            return self._tokens[token]

    def revoke_token(self, token: str) -> None:
        """Revoke a token; its open streams end, as Mastodon's `kill` does."""
        with self._lock:
            self._tokens[token].revoked = True
            for sub in self._subscribers:
                if sub.token == token:
                    sub.events.put(None)

    def lookup_token(self, token: str) -> SimToken | None:
        with self._lock:
            return self._tokens.get(token)

    # -- direct messages -----------------------------------------------------------------

    def send_dm(
        self,
        author: SimAccount,
        *,
        to: Sequence[SimAccount],
        text: str = "",
        spoiler_text: str = "",
        html: str | None = None,
        thread: int | Literal["new"] | None = None,
        status_time: datetime | None = None,
        deliver: bool = True,
        media: int = 0,
        language: str | None = "en",
        sensitive: bool = False,
    ) -> SimStatus:
        """A direct status from `author` mentioning `to`.

        `thread`: a thread number to continue, "new", or None to continue the thread of the
        same participant set. `status_time`: the id and `created_at` come from that earlier
        time, but rows are written now (a late row, as Sidekiq and federation produce).
        `deliver=False`: only the author's row is written; recipients' rows wait for
        `deliver()` (a DM held back as a message request). `html` replaces the rendered content.
        """
        _require_aware(status_time)
        with self._lock:
            recipients = tuple(dict.fromkeys(to))
            thread_no = self._pick_thread(author, recipients, thread)
            parent = self._thread_tip.get(thread_no)
            now = self.clock.now()
            sid = self._status_ids.at(status_time) if status_time else self._status_ids.now(now)
            created = _time_of(sid)
            if not author.is_local:  # remote `published` has whole seconds
                created = created.replace(microsecond=0)
            status = SimStatus(
                id=str(sid),
                author=author,
                recipients=recipients,
                thread=thread_no,
                created_at=created,
                text=text,
                content=html if html is not None else status_content(recipients, text, self.domain),
                spoiler_text=spoiler_text,
                language=language,
                media=media,
                sensitive=sensitive or bool(spoiler_text),
                in_reply_to_id=parent.id if parent else None,
                in_reply_to_account_id=parent.author.id if parent else None,
            )
            self._statuses[sid] = status
            self._thread_tip[thread_no] = status
            author.statuses_count += 1
            author.last_status_at = created.date()
            if author.is_local:
                self._add_to_row(author, status)
            if deliver:
                self._deliver(status)
            return status

    def _pick_thread(
        self,
        author: SimAccount,
        recipients: tuple[SimAccount, ...],
        thread: int | Literal["new"] | None,
    ) -> int:
        people = frozenset(a.id for a in (author, *recipients))
        if thread is None:
            thread = self._thread_of.get(people, "new")
        if isinstance(thread, int) and thread not in self._thread_tip:
            raise ValueError(f"no thread {thread}: continue a status's `.thread`, or use 'new'")
        number = thread if isinstance(thread, int) else next(self._thread_numbers)
        self._thread_of[people] = number
        return number

    def deliver(self, status: SimStatus) -> None:
        """Write the recipients' rows of a status sent with `deliver=False` (idempotent)."""
        with self._lock:
            self._deliver(status)

    def _deliver(self, status: SimStatus) -> None:
        for recipient in status.recipients:
            if recipient.is_local and recipient is not status.author:
                self._add_to_row(recipient, status)
        status.delivered = True

    def _add_to_row(self, owner: SimAccount, status: SimStatus) -> None:
        """`AccountConversation.add_status`: find or create the row, append, set unread."""
        people = {a.id for a in (status.author, *status.recipients)} - {owner.id}
        others = tuple(sorted(people, key=int))
        inbox = self._inboxes.setdefault(owner.id, _Inbox())
        sid = int(status.id)
        unread = status.author is not owner
        row = inbox.by_identity.get((status.thread, others))
        if row is None:
            row = _Row(
                id=next(self._row_numbers),
                owner=owner,
                thread=status.thread,
                others=others,
                status_ids=[sid],
                unread=unread,
            )
            inbox.insert(row)
        else:
            at = bisect.bisect_left(row.status_ids, sid)
            if at < len(row.status_ids) and row.status_ids[at] == sid:
                return
            old = row.key
            row.status_ids.insert(at, sid)
            row.unread = unread
            inbox.rekey(row, old)
        self._rows_of_status.setdefault(sid, []).append(row)
        self._publish(row)

    def soft_delete(self, status: SimStatus) -> None:
        """Hide a status but keep its rows in place: `last_status` becomes null (a reported
        status its author deleted). No stream event, as in Mastodon."""
        with self._lock:
            status.soft_deleted = True

    def delete_status(self, status: SimStatus) -> None:
        """Delete a status for good: rows drop it, move down, or vanish when left empty."""
        with self._lock:
            sid = int(status.id)
            if self._statuses.pop(sid, None) is None:
                return
            status.author.statuses_count = max(0, status.author.statuses_count - 1)
            for row in self._rows_of_status.pop(sid, []):
                if not row.alive:
                    continue
                inbox = self._inboxes[row.owner.id]
                if row.status_ids == [sid]:
                    inbox.remove(row)
                    continue
                old = row.key
                row.status_ids.remove(sid)
                inbox.rekey(row, old)

    def status(self, status_id: str) -> SimStatus:
        """A status by id (soft-deleted ones too); KeyError once deleted for good."""
        with self._lock:
            if not status_id.isdigit() or int(status_id) not in self._statuses:
                raise KeyError(f"no status {status_id!r}")
            return self._statuses[int(status_id)]

    # -- conversations ------------------------------------------------------------------

    def conversations(self, owner: SimAccount) -> list[ConversationView]:
        """All of `owner`'s rows, newest `last_status_id` first."""
        with self._lock:
            inbox = self._inboxes.get(owner.id, _Inbox())
            return [self._view(inbox.rows[rid]) for _, rid in reversed(inbox.order)]

    def conversation(self, owner: SimAccount, conv_id: str | int) -> ConversationView | None:
        with self._lock:
            row = self._row(owner, conv_id)
            return None if row is None else self._view(row)

    def set_unread(
        self, owner: SimAccount, conv_id: str | int, unread: bool
    ) -> ConversationView | None:
        """Mark a row read or unread (as another app would); None if there is no such row."""
        with self._lock:
            row = self._row(owner, conv_id)
            if row is None:
                return None
            if row.unread != unread:
                row.unread = unread
                self._publish(row)
            return self._view(row)

    def delete_conversation(self, owner: SimAccount, conv_id: str | int) -> bool:
        """Destroy a row (statuses stay); False if there is no such row."""
        with self._lock:
            row = self._row(owner, conv_id)
            if row is not None:
                self._inboxes[owner.id].remove(row)
            return row is not None

    def _row(self, owner: SimAccount, conv_id: str | int) -> _Row | None:
        inbox = self._inboxes.get(owner.id)
        if inbox is None or not str(conv_id).isdigit():
            return None
        return inbox.rows.get(int(conv_id))

    def _view(self, row: _Row) -> ConversationView:
        last = self._statuses.get(row.status_ids[-1])
        return ConversationView(
            id=str(row.id),
            unread=row.unread,
            last_status_id=str(row.status_ids[-1]),
            status_ids=tuple(str(s) for s in row.status_ids),
            participants=tuple(a.acct for a in self._participants(row)),
            last_status_visible=last is not None and not last.soft_deleted,
        )

    def _conversation_json(self, row: _Row) -> Json:
        last = self._statuses.get(row.status_ids[-1])
        visible = None if last is None or last.soft_deleted else last
        return conversation_json(row.id, row.unread, self._participants(row), visible, self.domain)

    def _participants(self, row: _Row) -> list[SimAccount]:
        found = [self._accounts[i] for i in row.others if i in self._accounts]
        return found or [row.owner]

    def conversations_above(
        self, owner: SimAccount, limit: int, min_id: int | None, max_id: int | None
    ) -> list[tuple[int, Json]]:
        """`paginate_by_min_id(...).reverse`: (last_status_id, JSON) newest first."""
        with self._lock:
            rows = self._inboxes.get(owner.id, _Inbox()).above(limit, min_id, max_id)
            return [(row.key[0], self._conversation_json(row)) for row in rows]

    def conversations_below(
        self, owner: SimAccount, limit: int, max_id: int | None, since_id: int | None
    ) -> list[tuple[int, Json]]:
        """`paginate_by_max_id`: (last_status_id, JSON) newest first."""
        with self._lock:
            rows = self._inboxes.get(owner.id, _Inbox()).below(limit, max_id, since_id)
            return [(row.key[0], self._conversation_json(row)) for row in rows]

    def conversation_json(self, owner: SimAccount, conv_id: str | int) -> Json | None:
        with self._lock:
            row = self._row(owner, conv_id)
            return None if row is None else self._conversation_json(row)

    # -- relationships and domain blocks --------------------------------------------------

    def set_relationship(
        self,
        owner: SimAccount,
        other: SimAccount,
        *,
        following: bool | None = None,
        followed_by: bool | None = None,
        blocking: bool | None = None,
        muting: bool | None = None,
        requested: bool | None = None,
    ) -> None:
        """Set how `owner` relates to `other`; flags left as None keep their value."""
        changes = {
            "following": following,
            "followed_by": followed_by,
            "blocking": blocking,
            "muting": muting,
            "requested": requested,
        }
        with self._lock:
            rel = self._relationships.setdefault((owner.id, other.id), _Relationship())
            for name, value in changes.items():
                if value is not None:
                    setattr(rel, name, value)

    def relationships_json(self, owner: SimAccount, ids: Sequence[str]) -> list[Json]:
        """`GET /api/v1/accounts/relationships`: one entry per known id, unknown ids dropped."""
        with self._lock:
            blocked = {d for _, d in self._domain_blocks.get(owner.id, [])}
            found = [self._accounts[i] for i in dict.fromkeys(ids) if i in self._accounts]
            return [
                relationship_json(
                    other,
                    self._relationships.get((owner.id, other.id), _Relationship()),
                    other.domain in blocked,
                )
                for other in found
            ]

    def block_domain(self, owner: SimAccount, domain: str) -> None:
        """A user-level domain block (idempotent), stored as lowercase punycode."""
        stored = ascii_domain(domain)
        with self._lock:
            blocks = self._domain_blocks.setdefault(owner.id, [])
            if all(d != stored for _, d in blocks):
                blocks.append((next(self._block_numbers), stored))

    def unblock_domain(self, owner: SimAccount, domain: str) -> None:
        stored = ascii_domain(domain)
        with self._lock:
            blocks = self._domain_blocks.get(owner.id, [])
            blocks[:] = [(n, d) for n, d in blocks if d != stored]

    def domain_blocks_page(
        self, owner: SimAccount, limit: int, max_id: int | None, since_id: int | None
    ) -> list[tuple[int, str]]:
        """(block row id, domain), newest block first, ids below `max_id`, above `since_id`."""
        with self._lock:
            blocks = self._domain_blocks.get(owner.id, [])
            hi = len(blocks) if max_id is None else bisect.bisect_left(blocks, (max_id, ""))
            lo = 0 if since_id is None else bisect.bisect_left(blocks, (since_id + 1, ""))
            return list(reversed(blocks[max(lo, hi - limit) : hi]))

    # -- faults, outages, recorded requests -------------------------------------------------

    def inject_fault(
        self,
        kind: FaultKind,
        *,
        count: int = 1,
        path: str | None = "/api/v1/conversations",
        method: str | None = None,
        seconds: float = 0.5,
    ) -> None:
        """Spoil the next `count` API requests whose path starts with `path` (None: any).

        "drop" closes the connection unanswered, "malformed" answers 200 with half the body,
        "latency" waits `seconds` of real time then answers, "rate_limit" answers 429.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        fault = Fault(kind=kind, remaining=count, path=path, method=method, seconds=seconds)
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first pending fault matching a request, used up by one."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
            return None

    def stop_answering(self, mode: OutageMode = "hang") -> None:
        """Make every API request hang (until `resume()` or `stop()`) or drop its connection."""
        if mode not in get_args(OutageMode):
            raise ValueError(f"unknown mode {mode!r}: 'hang' or 'drop'")
        with self._lock:
            self._outage = mode

    def resume(self) -> None:
        with self._answering:
            self._outage = None
            self._answering.notify_all()

    def wait_while_hanging(self) -> OutageMode | None:
        """Block while the outage is "hang"; then the outage still in force ("drop") or None."""
        with self._answering:
            while self._outage == "hang" and not self._closing.is_set():
                self._answering.wait()
            return self._outage

    @property
    def requests(self) -> list[RecordedRequest]:
        """API requests answered so far (not `/_sim/`), oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def record_request(
        self, method: str, path: str, query: dict[str, str], status: int | None
    ) -> None:
        entry = RecordedRequest(method, path, query, status, self.clock.now())
        with self._lock:
            self._requests.append(entry)

    # -- streaming ------------------------------------------------------------------------

    def subscribe(self, owner: SimAccount, token: str) -> _Subscriber:
        """A queue of Conversation JSON strings for `owner`'s `direct` stream; None ends it."""
        sub = _Subscriber(owner.id, token)
        with self._lock:
            if self._closing.is_set():
                sub.events.put(None)
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._subscribers.remove(sub)

    def _publish(self, row: _Row) -> None:
        """Push a created or updated row to the owner's open streams (none open: no work)."""
        listeners = [s for s in self._subscribers if s.owner_id == row.owner.id]
        if listeners:
            payload = json.dumps(self._conversation_json(row), separators=(",", ":"))
            for sub in listeners:
                sub.events.put(payload)

    # -- serving --------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a daemon thread; returns the base URL (the OS picks the port for 0)."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the simulator is already serving")
            self._closing.clear()
            self._server = SimServer(self, (host, port))
            self._serve_thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.02},  # how soon stop() is noticed
                name="dmbot.sim",
                daemon=True,
            )
            self._serve_thread.start()
            return self._server.base_url

    def stop(self) -> None:
        """Stop serving: end streams, release hung requests, close every connection."""
        with self._answering:
            server, thread = self._server, self._serve_thread
            self._server = self._serve_thread = None
            self._closing.set()
            self._answering.notify_all()
            for sub in self._subscribers:
                sub.events.put(None)
        if server is not None:
            server.stop()
        if thread is not None:
            thread.join()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not serving")
        return self._server.base_url

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        url = self.start(host, port)
        try:
            yield url
        finally:
            self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m dmbot.sim`: serve until SIGTERM or SIGINT, then exit 0."""
    parser = argparse.ArgumentParser(
        prog="python -m dmbot.sim", description="A Mastodon simulator on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: the OS picks one")
    parser.add_argument("--token", help="a bearer token for the owner account (@me)")
    parser.add_argument("--scopes", default="read write follow", help="the token's scopes")
    parser.add_argument("--domain", default="sim.example")
    parser.add_argument("--heartbeat", type=float, default=15.0, help="SSE heartbeat, seconds")
    parser.add_argument("--api-limit", type=int, default=300, help="requests per 5 min per token")
    parser.add_argument("--paging-limit", type=int, default=300, help="paging requests per 15 min")
    args = parser.parse_args(argv)
    sim = Simulator(
        domain=args.domain,
        heartbeat=args.heartbeat,
        api_limit=args.api_limit,
        paging_limit=args.paging_limit,
    )
    if args.token:
        sim.add_token(args.token, scopes=args.scopes.split())
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked before any thread starts, so every thread inherits the mask and sigwait gets them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        url = sim.start(args.host, args.port)
    except OSError as exc:
        sys.stderr.write(f"dmbot.sim: error: cannot listen on {args.host}:{args.port}: {exc}\n")
        return 1
    sys.stdout.write(f"dmbot.sim listening on {url}\n")
    sys.stdout.flush()
    try:
        signal.sigwait(stop_signals)
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
