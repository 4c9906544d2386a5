"""Which OAuth scopes a token has, learnt by asking harmless questions.

Mastodon has no endpoint that lists a personal token's scopes, but it checks the scope
before it looks anything up: a scope-protected request about a conversation that cannot exist
answers 403 without the scope and 404 with it. Read scopes are probed with tiny reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from dmbot.mastodon import AuthError, MastodonClient, NotFound

_IMPOSSIBLE_ID = "0"
# Every scope a rules file can need. The daemon probes them all at start, so that a reload
# that needs one the token lacks is refused as invalid instead of failing every poll.
PROBED_SCOPES = frozenset({"read:statuses", "write:conversations", "read:follows", "read:blocks"})


def _probes(client: MastodonClient) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "read:statuses": lambda: client.conversations(limit=1),
        "write:conversations": lambda: client.mark_read(_IMPOSSIBLE_ID),
        "read:follows": lambda: client.relationships([_IMPOSSIBLE_ID]),
        "read:blocks": lambda: client.domain_blocks(max_pages=1),
    }


async def probe_scopes(client: MastodonClient, needed: Iterable[str]) -> set[str]:
    """The scopes among `needed` that the token lacks (403 from Mastodon)."""
    probes = _probes(client)
    missing: set[str] = set()
    for scope in sorted(needed):
        probe = probes.get(scope)
        if probe is None:
            continue
        try:
            await probe()
        except NotFound:
            continue
        except AuthError as error:
            if error.status == 403:
                missing.add(scope)
            else:
                raise
    return missing
