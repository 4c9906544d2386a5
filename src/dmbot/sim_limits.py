"""Rack::Attack's throttles as Mastodon configures them, and the `X-RateLimit-*` headers.

Two fixed windows on the simulator's clock: every API request counts per token (per client IP
without a valid one), and paging requests also count per user.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dmbot.sim_wire import Query, last

if TYPE_CHECKING:
    from dmbot.sim import Simulator

API_PERIOD = 5 * 60
PAGING_PERIOD = 15 * 60
PAGING_PARAMS = ("page", "min_id", "max_id", "since_id")


def reset_at(now: datetime, period: int) -> str:
    """`X-RateLimit-Reset`: the next epoch-aligned window, keeping the request's fraction."""
    when = now + timedelta(seconds=period - int(now.timestamp()) % period)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Verdict:
    limited: bool
    limit: int
    remaining: int
    period: int

    def headers(self, now: datetime) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": reset_at(now, self.period),
        }


class Throttles:
    """Rack::Attack fixed windows on the simulator's clock; a request counts in every match."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (window, count)
        self._lock = threading.Lock()

    def hit(self, now: datetime, matches: list[tuple[str, int, int]]) -> Verdict:
        """`matches`: (key, limit, period) of each throttle this request falls under."""
        seen: list[tuple[int, int, int]] = []  # (limit, count, period)
        with self._lock:
            for key, limit, period in matches:
                window = int(now.timestamp()) // period
                held_window, held = self._counts.get(key, (window, 0))
                count = (held if held_window == window else 0) + 1
                self._counts[key] = (window, count)
                seen.append((limit, count, period))
        over = [s for s in seen if s[1] > s[0]]
        if over:
            return Verdict(True, over[0][0], 0, over[0][2])
        limit, count, period = min(seen, key=lambda s: (s[0] - s[1], s[0]))
        return Verdict(False, limit, limit - count, period)


def throttles_for(
    sim: Simulator, token: str | None, client_ip: str, query: Query
) -> list[tuple[str, int, int]]:
    """(key, limit, period) of each throttle a request falls under."""
    found = sim.lookup_token(token) if token else None
    valid = found is not None and not found.revoked
    who = f"token:{token}" if valid else f"ip:{client_ip}"
    matches = [(f"api/{who}", sim.api_limit, API_PERIOD)]
    if any(last(query, name) for name in PAGING_PARAMS):
        user = found.account if valid and found is not None else None
        paging_key = f"user:{user.id}" if user is not None else who
        matches.append((f"paging/{paging_key}", sim.paging_limit, PAGING_PERIOD))
    return matches
