"""Conversation rows and each account's inbox of them, ordered as Mastodon pages them.

A row is the server's `account_conversations` row: one per (owner, thread, exact set of other
participants), ordered and paged by its `last_status_id` (then its own id).
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

from dmbot.sim_model import SimAccount, SimStatus


@dataclass(eq=False, kw_only=True)
class Row:
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


class Inbox:
    """One account's rows, sorted by (last_status_id, row id): a page is a bisect and a slice."""

    def __init__(self) -> None:
        self.order: list[tuple[int, int]] = []
        self.rows: dict[int, Row] = {}
        self.by_identity: dict[tuple[int, tuple[str, ...]], Row] = {}

    def insert(self, row: Row) -> None:
        self.rows[row.id] = row
        self.by_identity[(row.thread, row.others)] = row
        bisect.insort(self.order, row.key)

    def remove(self, row: Row) -> None:
        self._drop_key(row.key)
        del self.rows[row.id]
        del self.by_identity[(row.thread, row.others)]
        row.alive = False

    def rekey(self, row: Row, old: tuple[int, int]) -> None:
        if old != row.key:
            self._drop_key(old)
            bisect.insort(self.order, row.key)

    def _drop_key(self, key: tuple[int, int]) -> None:
        del self.order[bisect.bisect_left(self.order, key)]

    def newest_first(self) -> list[Row]:
        return [self.rows[rid] for _, rid in reversed(self.order)]

    def above(self, limit: int, min_id: int | None, max_id: int | None) -> list[Row]:
        """The `limit` rows just above `min_id` (and below `max_id`), newest first."""
        lo = self._first_above(min_id)
        hi = self._first_at(max_id)
        return [self.rows[rid] for _, rid in reversed(self.order[lo : min(hi, lo + limit)])]

    def below(self, limit: int, max_id: int | None, since_id: int | None) -> list[Row]:
        """The newest `limit` rows below `max_id` and above `since_id`, newest first."""
        lo = self._first_above(since_id)
        hi = self._first_at(max_id)
        return [self.rows[rid] for _, rid in reversed(self.order[max(lo, hi - limit) : hi])]

    def _first_above(self, bound: int | None) -> int:
        return 0 if bound is None else bisect.bisect_left(self.order, (bound + 1, -1))

    def _first_at(self, bound: int | None) -> int:
        return len(self.order) if bound is None else bisect.bisect_left(self.order, (bound, -1))


class Inboxes:
    """Every account's inbox, and the rows each status is in.

    Not locked: `DirectMessages`, which owns it, calls it under the simulator's lock.
    """

    def __init__(self) -> None:
        self._inboxes: dict[str, Inbox] = {}
        self._row_numbers = itertools.count(1)
        self._rows_of_status: dict[int, list[Row]] = {}

    def of(self, owner: SimAccount) -> Inbox:
        """`owner`'s inbox; an empty one, not kept, before its first row."""
        return self._inboxes.get(owner.id, Inbox())

    def row(self, owner: SimAccount, conv_id: str | int) -> Row | None:
        inbox = self._inboxes.get(owner.id)
        if inbox is None or not str(conv_id).isdigit():
            return None
        return inbox.rows.get(int(conv_id))

    def add(self, owner: SimAccount, status: SimStatus) -> Row | None:
        """`AccountConversation.add_status`: find or create the row, append, set unread.

        The row created or changed; None if it holds the status already.
        """
        people = {a.id for a in (status.author, *status.recipients)} - {owner.id}
        others = tuple(sorted(people, key=int))
        inbox = self._inboxes.setdefault(owner.id, Inbox())
        sid = int(status.id)
        unread = status.author is not owner
        row = inbox.by_identity.get((status.thread, others))
        if row is None:
            row = Row(
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
                return None
            old = row.key
            row.status_ids.insert(at, sid)
            row.unread = unread
            inbox.rekey(row, old)
        self._rows_of_status.setdefault(sid, []).append(row)
        return row

    def remove(self, row: Row) -> None:
        """Destroy a row; its statuses stay."""
        self._inboxes[row.owner.id].remove(row)

    def drop_status(self, sid: int) -> None:
        """A status deleted for good: its rows drop it, move down, or vanish when left empty."""
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
