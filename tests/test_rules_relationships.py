"""RelationshipCache: one request per 40 missing ids, answers kept for the TTL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from dmbot.clock import ManualClock
from dmbot.models import Relationship
from dmbot.relationships import RelationshipCache


class FakeServer:
    """`GET /api/v1/accounts/relationships`: answers for every id but `ghost`."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def fetch(self, ids: Sequence[str]) -> list[Relationship]:
        self.calls.append(list(ids))
        await asyncio.sleep(0)
        return [Relationship(id=i, following=i.startswith("f")) for i in ids if i != "ghost"]


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def cache(server: FakeServer) -> RelationshipCache:
    return RelationshipCache(server.fetch, ManualClock(), ttl_seconds=600)


async def test_misses_are_fetched_together_and_hits_cost_nothing(
    server: FakeServer, cache: RelationshipCache
) -> None:
    first = await cache.get_many(["f1", "2", "f1"])
    assert {k: v.following for k, v in first.items()} == {"f1": True, "2": False}
    assert server.calls == [["f1", "2"]]
    again = await cache.get_many(["2", "f1", "3"])
    assert list(again) == ["2", "f1", "3"]
    assert server.calls == [["f1", "2"], ["3"]]
    await cache.get_many(["3", "2"])
    assert len(server.calls) == 2


async def test_many_ids_go_in_chunks_of_40(server: FakeServer, cache: RelationshipCache) -> None:
    ids = [str(n) for n in range(85)]
    found = await cache.get_many(ids)
    assert len(found) == 85
    assert [len(call) for call in server.calls] == [40, 40, 5]


async def test_entries_expire_after_the_ttl(server: FakeServer) -> None:
    clock = ManualClock()
    cache = RelationshipCache(server.fetch, clock, ttl_seconds=600)
    await cache.get_many(["1"])
    clock.advance(599)
    await cache.get_many(["1"])
    assert len(server.calls) == 1
    clock.advance(1)
    await cache.get_many(["1"])
    assert server.calls == [["1"], ["1"]]


async def test_an_unanswered_id_is_absent_and_not_cached(
    server: FakeServer, cache: RelationshipCache
) -> None:
    assert await cache.get_many(["ghost", "1"]) == {"1": Relationship(id="1")}
    await cache.get_many(["ghost"])
    assert server.calls == [["ghost", "1"], ["ghost"]]


async def test_concurrent_callers_fetch_once(server: FakeServer, cache: RelationshipCache) -> None:
    await asyncio.gather(cache.get_many(["1", "2"]), cache.get_many(["2", "1"]))
    assert server.calls == [["1", "2"]]


async def test_invalidate(server: FakeServer, cache: RelationshipCache) -> None:
    await cache.get_many(["1", "2"])
    cache.invalidate("1")
    await cache.get_many(["1", "2"])
    cache.invalidate()
    await cache.get_many(["2"])
    assert server.calls == [["1", "2"], ["1"], ["2"]]


async def test_nothing_asked_nothing_fetched(server: FakeServer, cache: RelationshipCache) -> None:
    assert await cache.get_many([]) == {}
    assert server.calls == []
