"""The rules, as the engine sees them: fetch what the rules need from the server, then decide.

`prepare` is the only part that does I/O (relationships for follow conditions, the account's
own domain blocks), and only when the current rules ask for it. `decide` is
`rules.evaluate`, pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from dmbot.actions import Action
from dmbot.clock import Clock
from dmbot.lists import ServerData
from dmbot.mastodon import MastodonClient
from dmbot.models import Event
from dmbot.relationships import RelationshipCache
from dmbot.rules import RuleSet, evaluate


class RulesDecider:
    def __init__(
        self,
        *,
        rules: Callable[[], RuleSet],
        client: MastodonClient,
        clock: Clock,
        relationships: RelationshipCache,
        refresh_server_lists: timedelta = timedelta(hours=1),
    ) -> None:
        self._rules = rules
        self._client = client
        self._clock = clock
        self._relationships = relationships
        self._refresh = refresh_server_lists
        self._server = ServerData()
        self._server_fetched_at: datetime | None = None

    async def prepare(self, events: Sequence[Event]) -> Sequence[Event]:
        rules = self._rules()
        if "domain_blocks" in rules.server_lists:
            await self._refresh_domain_blocks()
        if not rules.needs_relationships:
            return events
        found = await self._relationships.get_many(sorted({e.sender.id for e in events}))
        return [
            event.model_copy(update={"relationship": found.get(event.sender.id)})
            for event in events
        ]

    @property
    def server_data(self) -> ServerData:
        return self._server

    def decide(self, event: Event) -> list[Action]:
        return evaluate(self._rules(), event, self._clock.now(), self._server)

    async def _refresh_domain_blocks(self) -> None:
        now = self._clock.now()
        if self._server_fetched_at is not None and now - self._server_fetched_at < self._refresh:
            return
        domains = await self._client.domain_blocks()
        self._server = ServerData.from_domain_blocks(domains)
        self._server_fetched_at = now
