"""The client: real recorded responses through a mock transport (corner cases), and the
simulator over real HTTP for errors as Mastodon sends them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from dmbot.clock import ManualClock
from dmbot.mastodon import (
    AuthError,
    MastodonClient,
    NotFound,
    RateLimited,
    TransientError,
    parse_reset,
)
from dmbot.sim import Simulator

from conftest import TOKEN

FIXTURE = Path(__file__).parent / "fixtures" / "conversations_mastodon_social.json"


def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def client_for(handler: Any, clock: ManualClock) -> tuple[MastodonClient, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return MastodonClient(http, "https://mastodon.social", "secret", clock), http


async def test_a_real_mastodon_page_parses_with_its_cursors_and_rate_headers(
    clock: ManualClock,
) -> None:
    data = recorded()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=data["body"], headers=data["headers"])

    client, http = client_for(handler, clock)
    async with http:
        page = await client.conversations(limit=40)
    assert len(page.conversations) == 6
    assert sum(c.last_status is None for c in page.conversations) == sum(
        item["last_status"] is None for item in data["body"]
    ) > 0
    assert page.next_max_id == "116262403687873880"
    assert page.prev_min_id == "116368390488686134"
    assert client.rate.remaining == 281
    assert client.rate.reset_at == datetime(2026, 4, 11, 23, 15, 0, 7376, tzinfo=UTC)
    assert seen[0].headers["authorization"] == "Bearer secret"
    assert seen[0].url.params["limit"] == "40"


async def test_only_the_id_is_taken_from_a_link_and_requests_go_to_the_base_url(
    clock: ManualClock,
) -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        link = '<https://evil.example/api/v1/conversations?min_id=42&x=1>; rel="prev"'
        return httpx.Response(200, json=[], headers={"link": link})

    client, http = client_for(handler, clock)
    async with http:
        page = await client.conversations(min_id="1")
        await client.conversations(min_id=page.prev_min_id)
    assert page.prev_min_id == "42"
    assert hosts == ["mastodon.social", "mastodon.social"]


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(502, text="<html>Bad Gateway</html>"), TransientError),
        (httpx.Response(200, text='[{"id": "1", "unre'), TransientError),
        (httpx.Response(200, json={"not": "a list"}), TransientError),
        (httpx.Response(401, json={"error": "The access token is invalid"}), AuthError),
        (httpx.Response(404, json={"error": "Record not found"}), NotFound),
    ],
)
async def test_errors_map_to_the_short_tree(
    clock: ManualClock, response: httpx.Response, error: type[Exception]
) -> None:
    client, http = client_for(lambda request: response, clock)
    async with http:
        with pytest.raises(error):
            await client.conversations()


async def test_a_second_429_in_a_row_is_raised_with_its_reset(clock: ManualClock) -> None:
    reset = "2026-11-02T12:05:00.000000Z"

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"x-ratelimit-remaining": "0", "x-ratelimit-limit": "300",
                   "x-ratelimit-reset": reset}
        return httpx.Response(429, json={"error": "Too many requests"}, headers=headers)

    client, http = client_for(handler, clock)
    async with http:
        with pytest.raises(RateLimited) as caught:
            await client.conversations()
    assert caught.value.reset_at == parse_reset(reset)
    assert clock.slept == [300.0]


def test_reset_times_parse_as_iso_or_epoch() -> None:
    assert parse_reset("2026-08-01T14:00:00.568782Z") == datetime(
        2026, 8, 1, 14, 0, 0, 568782, tzinfo=UTC
    )
    assert parse_reset("1785592800") == datetime(2026, 8, 1, 14, 0, tzinfo=UTC)
    assert parse_reset("soon") is None


async def test_mastodon_errors_over_http(sim: Simulator, http: httpx.AsyncClient,
                                         clock: ManualClock) -> None:
    bad = MastodonClient(http, sim.base_url, "wrong-token", clock)
    with pytest.raises(AuthError, match="The access token is invalid"):
        await bad.verify_credentials()

    sim.add_token("read-only", scopes=("read:statuses",))
    read_only = MastodonClient(http, sim.base_url, "read-only", clock)
    with pytest.raises(AuthError, match="outside the authorized scopes") as caught:
        await read_only.mark_read("1")
    assert caught.value.status == 403

    good = MastodonClient(http, sim.base_url, TOKEN, clock)
    with pytest.raises(NotFound):
        await good.delete("999999")
    me = await good.verify_credentials()
    assert me.id == sim.owner.id
    instance = await good.instance()
    assert instance.domain == sim.domain
