"""How the owner and message senders relate (follows), fetched in batches and kept a while.

`GET /api/v1/accounts/relationships?id[]=...` (scope `read:follows`) answers for many ids at
once; Mastodon takes up to 40 a request. The engine asks for the senders of a whole page of
new conversations in one `get_many` call, only when some rule uses `sender.following`,
`sender.followed_by` or `sender.mutual`; ids seen within `ttl_seconds` cost nothing.

An id the server does not answer for is not cached and is absent from the result: the rules
then read it as "not following".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from dmbot.clock import Clock
from dmbot.models import Relationship

BATCH = 40  # ids per request; Mastodon's own limit for this endpoint

Fetch = Callable[[Sequence[str]], Awaitable[list[Relationship]]]


class RelationshipCache:
    def __init__(self, fetch: Fetch, clock: Clock, ttl_seconds: float = 600) -> None:
        self._fetch = fetch
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_seconds)
        self._entries: dict[str, tuple[datetime, Relationship]] = {}
        self._lock = asyncio.Lock()  # two callers asking for the same ids fetch them once

    async def get_many(self, account_ids: Sequence[str]) -> dict[str, Relationship]:
        wanted = list(dict.fromkeys(account_ids))
        async with self._lock:
            now = self._clock.now()
            self._forget_expired(now)
            missing = [account_id for account_id in wanted if account_id not in self._entries]
            for start in range(0, len(missing), BATCH):
                for relationship in await self._fetch(missing[start : start + BATCH]):
                    self._entries[relationship.id] = (now + self._ttl, relationship)
            return {
                account_id: self._entries[account_id][1]
                for account_id in wanted
                if account_id in self._entries
            }

    def invalidate(self, account_id: str | None = None) -> None:
        """Forget one account (after following or unfollowing it), or everything."""
        if account_id is None:
            self._entries.clear()
        else:
            self._entries.pop(account_id, None)

    def _forget_expired(self, now: datetime) -> None:
        expired = [key for key, (until, _) in self._entries.items() if until <= now]
        for key in expired:
            del self._entries[key]
