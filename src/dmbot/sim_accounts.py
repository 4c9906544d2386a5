"""The simulator's accounts and the bearer tokens that act for them.

`Simulator` hands the book its lock (shared with the components that read accounts), its
clock and domain, and the streams that a revoked token ends. The owner, @me, exists from the
start: a token acts for it unless told otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from dmbot.sim_model import (
    NowSource,
    SimAccount,
    SimToken,
    SnowflakeIds,
    ascii_domain,
    require_aware,
)
from dmbot.sim_stream import Streams


class AccountBook:
    """Accounts by id and by handle, and tokens by their string. Thread-safe."""

    def __init__(
        self, lock: threading.RLock, clock: NowSource, domain: str, streams: Streams
    ) -> None:
        self._lock = lock
        self._clock = clock
        self._domain = domain
        self._streams = streams
        self._accounts: dict[str, SimAccount] = {}
        self._handles: dict[tuple[str, str | None], SimAccount] = {}  # (lower username, domain)
        self._account_ids = SnowflakeIds()
        self._tokens: dict[str, SimToken] = {}
        self.owner = self.add_account("me", display_name="Me")

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
        require_aware(created_at)
        stored = self._stored_domain(domain)
        with self._lock:
            if (username.lower(), stored) in self._handles:
                raise ValueError(f"account {username}@{stored or self._domain} exists already")
            now = self._clock.now()
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

    def known(self, ids: Iterable[str]) -> list[SimAccount]:
        """The accounts with these ids, in their order; unknown ids are skipped."""
        with self._lock:
            return [self._accounts[i] for i in ids if i in self._accounts]

    def _stored_domain(self, domain: str | None) -> str | None:
        """None for a local account (no domain, or this instance's), else lowercase punycode."""
        stored = ascii_domain(domain) if domain else None
        return None if stored == self._domain else stored

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
            self._streams.end(token)

    def lookup_token(self, token: str) -> SimToken | None:
        with self._lock:
            return self._tokens.get(token)
