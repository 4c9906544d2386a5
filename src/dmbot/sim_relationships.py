"""What the owner knows of other accounts: relationship flags and user-level domain blocks.

Data only: neither filters or drops a DM (see `dmbot.sim`). `Simulator` hands the book its
lock and the `AccountBook` whose accounts `relationships_json` answers for.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Sequence
from typing import Any

from dmbot.sim_accounts import AccountBook
from dmbot.sim_json import relationship_json
from dmbot.sim_model import Relationship, SimAccount, ascii_domain

Json = dict[str, Any]


class RelationshipBook:
    """Flags per (owner, other) and domain blocks per owner, oldest block first. Thread-safe."""

    def __init__(self, lock: threading.RLock, accounts: AccountBook) -> None:
        self._lock = lock
        self._accounts = accounts
        self._relationships: dict[tuple[str, str], Relationship] = {}
        self._domain_blocks: dict[str, list[tuple[int, str]]] = {}
        self._block_numbers = itertools.count(1)

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
            rel = self._relationships.setdefault((owner.id, other.id), Relationship())
            for name, value in changes.items():
                if value is not None:
                    setattr(rel, name, value)

    def relationships_json(self, owner: SimAccount, ids: Sequence[str]) -> list[Json]:
        """`GET /api/v1/accounts/relationships`: one entry per known id, unknown ids dropped."""
        with self._lock:
            blocked = {d for _, d in self._domain_blocks.get(owner.id, [])}
            return [
                relationship_json(
                    other,
                    self._relationships.get((owner.id, other.id), Relationship()),
                    other.domain in blocked,
                )
                for other in self._accounts.known(dict.fromkeys(ids))
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
