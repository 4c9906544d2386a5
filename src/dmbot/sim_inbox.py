"""Conversation rows and one account's inbox of them, ordered as Mastodon pages them.

A row is the server's `account_conversations` row: one per (owner, thread, exact set of other
participants), ordered and paged by its `last_status_id` (then its own id).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from dmbot.sim_model import SimAccount


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
