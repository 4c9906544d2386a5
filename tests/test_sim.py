"""The simulator, over real HTTP on 127.0.0.1, against what mastodon-api.md says Mastodon does."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dmbot import snowflake
from dmbot.clock import ManualClock, SystemClock
from dmbot.models import Conversation
from dmbot.sim import SimAccount, Simulator

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # trimmed from Mastodon.py's cassettes
START = datetime(2026, 8, 1, 13, 46, 10, 250000, tzinfo=UTC)
TOKEN = "tok"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sim(clock: ManualClock) -> Iterator[Simulator]:
    simulator = Simulator(clock, heartbeat=5.0)
    simulator.add_token(TOKEN, scopes={"read", "write", "follow"})
    yield simulator
    simulator.stop()


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with sim.serve() as url, httpx.Client(base_url=url, headers=AUTH, timeout=5) as http:
        yield http


@pytest.fixture
def alice(sim: Simulator) -> SimAccount:
    return sim.add_account("alice", "example.social", display_name="Alice")


def cursor(response: httpx.Response, rel: str, name: str) -> str:
    return httpx.URL(response.links[rel]["url"]).params[name]


def last_status_ids(response: httpx.Response) -> list[str]:
    return [c["last_status"]["id"] for c in response.json()]


def fill(sim: Simulator, author: SimAccount, n: int, clock: ManualClock) -> list[str]:
    """n conversations, one new thread each, 1 ms apart; their status ids, oldest first."""
    ids = []
    for i in range(n):
        ids.append(sim.send_dm(author, to=[sim.owner], text=f"m{i}", thread="new").id)
        clock.advance(0.001)
    return ids


# -- paging and Link headers ----------------------------------------------------------------------


def test_min_id_catch_up_takes_three_requests_for_95_rows(
    sim: Simulator, client: httpx.Client, alice: SimAccount, clock: ManualClock
) -> None:
    ids = fill(sim, alice, 95, clock)
    seen: list[str] = []
    params = {"limit": "40", "min_id": "0"}
    for expected in (ids[:40], ids[40:80], ids[80:]):
        page = client.get("/api/v1/conversations", params=params)
        assert last_status_ids(page) == expected[::-1]  # the rows just above, newest first
        seen += reversed(last_status_ids(page))
        assert ("next" in page.links) == (len(expected) == 40)
        params = {"limit": "40", "min_id": cursor(page, "prev", "min_id")}
    assert seen == ids
    idle = client.get("/api/v1/conversations", params=params)
    assert idle.json() == []
    assert "link" not in idle.headers
    assert len(sim.requests) == 4


def test_max_id_walk_and_exact_link_header(
    sim: Simulator, client: httpx.Client, alice: SimAccount, clock: ManualClock
) -> None:
    ids = fill(sim, alice, 95, clock)
    first = client.get("/api/v1/conversations", params={"limit": 40, "foo": "bar", "since_id": ""})
    base = str(client.base_url).rstrip("/")
    assert first.headers["link"] == (
        f'<{base}/api/v1/conversations?limit=40&max_id={ids[55]}>; rel="next", '
        f'<{base}/api/v1/conversations?limit=40&min_id={ids[94]}>; rel="prev"'
    )
    walked = last_status_ids(first)
    page = first
    while "next" in page.links:
        page = client.get(
            "/api/v1/conversations", params={"limit": 40, "max_id": cursor(page, "next", "max_id")}
        )
        walked += last_status_ids(page)
    assert walked == ids[::-1]
    assert len(page.json()) == 15
    assert set(page.links) == {"prev"}


def test_default_limit_has_no_limit_in_links_and_trailing_slash_is_accepted(
    sim: Simulator, client: httpx.Client, alice: SimAccount, clock: ManualClock
) -> None:
    fill(sim, alice, 25, clock)
    page = client.get("/api/v1/conversations/")
    assert len(page.json()) == 20
    assert "limit=" not in page.headers["link"]
    assert "/api/v1/conversations?max_id=" in page.links["next"]["url"]


@pytest.mark.parametrize(("limit", "size"), [("5", 5), ("-5", 5), ("99", 40), ("7abc", 7)])
def test_limit_is_abs_to_i_capped_at_40(
    sim: Simulator,
    client: httpx.Client,
    alice: SimAccount,
    clock: ManualClock,
    limit: str,
    size: int,
) -> None:
    fill(sim, alice, 45, clock)
    page = client.get("/api/v1/conversations", params={"limit": limit})
    assert len(page.json()) == size
    assert f"limit={limit}" in page.links["prev"]["url"]  # echoed as sent


def test_limit_zero_is_refused(client: httpx.Client) -> None:
    response = client.get("/api/v1/conversations", params={"limit": 0})
    assert response.status_code == 400
    assert "error" in response.json()


def test_since_id_min_id_and_windows(
    sim: Simulator, client: httpx.Client, alice: SimAccount, clock: ManualClock
) -> None:
    ids = fill(sim, alice, 10, clock)

    def get(**params: Any) -> list[str]:
        return last_status_ids(client.get("/api/v1/conversations", params={"limit": 3} | params))

    assert get(since_id=ids[2]) == ids[:6:-1]  # the newest above since_id: a gap
    assert get(min_id=ids[2], since_id=ids[8]) == ids[5:2:-1]  # min_id wins
    assert get(min_id=ids[2], max_id=ids[5]) == [ids[4], ids[3]]  # a window
    assert get(max_id=ids[5], since_id=ids[3]) == [ids[4]]
    assert get(min_id="") == ids[2::-1]  # blank min_id: the oldest


def test_rows_are_ordered_by_last_status_not_by_id(
    sim: Simulator, client: httpx.Client, alice: SimAccount, clock: ManualClock
) -> None:
    old = sim.send_dm(alice, to=[sim.owner], text="first", thread="new")
    clock.advance(1)
    sim.send_dm(alice, to=[sim.owner], text="second", thread="new")
    clock.advance(1)
    reply = sim.send_dm(alice, to=[sim.owner], text="again", thread=old.thread)
    rows = client.get("/api/v1/conversations").json()
    assert [r["id"] for r in rows] == ["1", "2"]
    assert rows[0]["last_status"]["id"] == reply.id
    assert rows[0]["last_status"]["in_reply_to_id"] == old.id
    assert sim.conversations(sim.owner)[0].status_ids == (old.id, reply.id)


def test_ten_thousand_rows_are_quick(
    sim: Simulator, client: httpx.Client, alice: SimAccount
) -> None:
    started = time.perf_counter()
    for i in range(10_000):
        sim.send_dm(alice, to=[sim.owner], text=str(i), thread="new")
    assert time.perf_counter() - started < 2.0
    ids = [int(v.last_status_id) for v in sim.conversations(sim.owner)]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 10_000  # one clock millisecond, still distinct and increasing
    page = client.get("/api/v1/conversations", params={"limit": 40, "min_id": ids[5000]})
    assert [int(i) for i in last_status_ids(page)] == ids[4960:5000]


# -- what rows hold -------------------------------------------------------------------------------


def test_unread_for_the_recipient_not_for_the_sender(sim: Simulator, client: httpx.Client) -> None:
    bob = sim.add_account("bob")
    sim.send_dm(sim.owner, to=[bob], text="hello bob")
    (mine,) = sim.conversations(sim.owner)
    (theirs,) = sim.conversations(bob)
    assert (mine.unread, theirs.unread) == (False, True)
    assert mine.participants == ("bob",)
    assert theirs.participants == ("me",)
    sim.send_dm(bob, to=[sim.owner], text="hi back")
    assert [(v.id, v.unread) for v in sim.conversations(sim.owner)] == [(mine.id, True)]
    assert [(v.id, v.unread) for v in sim.conversations(bob)] == [(theirs.id, False)]
    (row,) = client.get("/api/v1/conversations").json()
    assert row["id"] == mine.id
    assert row["unread"] is True


def test_a_dm_to_yourself_lists_yourself(sim: Simulator, client: httpx.Client) -> None:
    sim.send_dm(sim.owner, to=[sim.owner], text="note to self")
    (row,) = client.get("/api/v1/conversations").json()
    assert [a["acct"] for a in row["accounts"]] == ["me"]
    assert row["unread"] is False


def test_a_new_participant_set_makes_a_new_row(sim: Simulator, alice: SimAccount) -> None:
    bob = sim.add_account("bob", "other.example")
    first = sim.send_dm(alice, to=[sim.owner], text="one")
    sim.send_dm(alice, to=[sim.owner, bob], text="two", thread=first.thread)
    sim.send_dm(alice, to=[sim.owner], text="three")
    views = sim.conversations(sim.owner)
    assert [v.participants for v in views] == [
        ("alice@example.social",),
        ("alice@example.social", "bob@other.example"),
    ]
    assert len(views[0].status_ids) == 2


def test_late_row_lands_below_a_cursor_already_passed(
    sim: Simulator, client: httpx.Client, alice: SimAccount, clock: ManualClock
) -> None:
    clock.advance(60)
    sim.send_dm(alice, to=[sim.owner], text="on time")
    head = client.get("/api/v1/conversations", params={"limit": 40})
    min_id = cursor(head, "prev", "min_id")
    late = sim.send_dm(alice, to=[sim.owner], text="late", thread="new", status_time=START)
    assert client.get("/api/v1/conversations", params={"min_id": min_id}).json() == []
    overlap = snowflake.shift(min_id, timedelta(minutes=-5))
    caught_up = client.get("/api/v1/conversations", params={"min_id": overlap})
    assert last_status_ids(caught_up) == [min_id, late.id]
    assert snowflake.to_time(late.id) == START.replace(microsecond=250000)


def test_deliver_later_writes_the_row_then(
    sim: Simulator, client: httpx.Client, alice: SimAccount, clock: ManualClock
) -> None:
    held = sim.send_dm(alice, to=[sim.owner], text="request", deliver=False)
    assert client.get("/api/v1/conversations").json() == []
    clock.advance(3 * 86400)
    sim.deliver(held)
    sim.deliver(held)  # idempotent
    (row,) = client.get("/api/v1/conversations").json()
    assert row["last_status"]["id"] == held.id
    assert row["unread"] is True


def test_delete_then_a_new_message_makes_a_new_row(
    sim: Simulator, client: httpx.Client, alice: SimAccount
) -> None:
    first = sim.send_dm(alice, to=[sim.owner], text="one")
    conv_id = client.get("/api/v1/conversations").json()[0]["id"]
    client.post(f"/api/v1/conversations/{conv_id}/read").raise_for_status()
    deleted = client.delete(f"/api/v1/conversations/{conv_id}")
    assert (deleted.status_code, deleted.json()) == (200, {})
    again = client.delete(f"/api/v1/conversations/{conv_id}")
    assert (again.status_code, again.json()) == (404, {"error": "Record not found"})
    assert sim.conversation(sim.owner, conv_id) is None
    second = sim.send_dm(alice, to=[sim.owner], text="two", thread=first.thread)
    (row,) = client.get("/api/v1/conversations").json()
    assert row["id"] != conv_id
    assert row["unread"] is True
    assert sim.conversation(sim.owner, row["id"]).status_ids == (second.id,)  # type: ignore[union-attr]


def test_read_and_unread_answer_the_conversation(
    sim: Simulator, client: httpx.Client, alice: SimAccount
) -> None:
    sim.send_dm(alice, to=[sim.owner], text="hi")
    conv_id = sim.conversations(sim.owner)[0].id
    read = client.post(f"/api/v1/conversations/{conv_id}/read")
    assert Conversation.model_validate(read.json()).unread is False
    unread = client.post(f"/api/v1/conversations/{conv_id}/unread")
    assert unread.json()["unread"] is True
    assert client.post("/api/v1/conversations/999/read").status_code == 404


def test_other_users_rows_are_not_found(
    sim: Simulator, client: httpx.Client, alice: SimAccount
) -> None:
    bob = sim.add_account("bob")
    sim.send_dm(alice, to=[bob], text="for bob only")
    bobs_row = sim.conversations(bob)[0].id
    assert client.delete(f"/api/v1/conversations/{bobs_row}").status_code == 404
    assert sim.conversations(sim.owner) == []


def test_soft_deleted_last_status_is_null_and_keeps_its_place(
    sim: Simulator, client: httpx.Client, alice: SimAccount, clock: ManualClock
) -> None:
    ids = fill(sim, alice, 3, clock)
    sim.soft_delete(sim.status(ids[1]))
    rows = client.get("/api/v1/conversations").json()
    assert [r["last_status"] and r["last_status"]["id"] for r in rows] == [ids[2], None, ids[0]]
    assert Conversation.model_validate(rows[1]).last_status is None
    assert (
        cursor(client.get("/api/v1/conversations", params={"limit": 2}), "next", "max_id") == ids[1]
    )


def test_deleting_statuses_moves_rows_down_then_removes_them(
    sim: Simulator, alice: SimAccount, clock: ManualClock
) -> None:
    first = sim.send_dm(alice, to=[sim.owner], text="a")
    clock.advance(1)
    other = sim.send_dm(alice, to=[sim.owner], text="b", thread="new")
    clock.advance(1)
    last = sim.send_dm(alice, to=[sim.owner], text="c", thread=first.thread)
    assert [v.last_status_id for v in sim.conversations(sim.owner)] == [last.id, other.id]
    sim.delete_status(last)
    assert [v.last_status_id for v in sim.conversations(sim.owner)] == [other.id, first.id]
    sim.delete_status(first)
    assert [v.last_status_id for v in sim.conversations(sim.owner)] == [other.id]


def test_status_json_is_mastodons(sim: Simulator, client: httpx.Client, alice: SimAccount) -> None:
    other_alice = sim.add_account("alice", "elsewhere.example")
    status = sim.send_dm(
        alice,
        to=[sim.owner, other_alice],
        text="<hi> it's\nme\n\nbye",
        spoiler_text="cw",
        media=2,
        language="de",
    )
    row = client.get("/api/v1/conversations").json()[0]
    last = row["last_status"]
    assert last["content"] == (
        '<p><span class="h-card" translate="no"><a href="https://sim.example/@me" '
        'class="u-url mention">@<span>me</span></a></span> '
        '<span class="h-card" translate="no"><a href="https://elsewhere.example/@alice" '
        'class="u-url mention">@<span>alice</span></a></span> '
        "&lt;hi&gt; it&#39;s<br />me</p><p>bye</p>"
    )
    assert last["created_at"] == "2026-08-01T13:46:10.000Z"  # remote: whole seconds
    assert snowflake.to_time(status.id) == START.replace(microsecond=250000)
    assert (last["visibility"], last["language"], last["spoiler_text"]) == ("direct", "de", "cw")
    assert last["sensitive"] is True
    assert len(last["media_attachments"]) == 2
    assert [m["acct"] for m in last["mentions"]] == ["me", "alice@elsewhere.example"]
    assert "application" not in last
    assert last["url"] == f"https://example.social/@alice/{status.id}"
    parsed = Conversation.model_validate(row)
    assert parsed.last_status is not None
    assert parsed.last_status.account.acct == "alice@example.social"
    assert [a.acct for a in parsed.accounts] == ["alice@example.social", "alice@elsewhere.example"]


def test_mentions_sharing_a_username_show_the_domain(sim: Simulator, alice: SimAccount) -> None:
    other_alice = sim.add_account("alice", "elsewhere.example")
    status = sim.send_dm(sim.owner, to=[alice, other_alice], text="")
    assert "@<span>alice@example.social</span>" in status.content
    assert "@<span>alice@elsewhere.example</span>" in status.content


def test_local_status_times_have_milliseconds_and_ids_increase(
    sim: Simulator, client: httpx.Client
) -> None:
    bob = sim.add_account("bob")
    ids = [int(sim.send_dm(bob, to=[sim.owner], text=str(i)).id) for i in range(3)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    last = client.get("/api/v1/conversations").json()[0]["last_status"]
    assert last["created_at"] == "2026-08-01T13:46:10.250Z"
    assert last["application"] == {"name": "Web", "website": None}


def test_remote_domains_show_in_unicode_and_accounts_are_complete(
    sim: Simulator, client: httpx.Client
) -> None:
    carol = sim.add_account(
        "carol",
        "XN--CAF-DMA.example",
        bot=True,
        locked=True,
        created_at=datetime(2020, 5, 6, 7, 8, 9, tzinfo=UTC),
        followers_count=12,
    )
    assert carol.domain == "xn--caf-dma.example"
    assert sim.account("carol@café.example") is carol
    sim.send_dm(carol, to=[sim.owner], text="bonjour")
    account = client.get("/api/v1/conversations").json()[0]["accounts"][0]
    assert account["acct"] == "carol@café.example"
    assert (account["bot"], account["locked"], account["followers_count"]) == (True, True, 12)
    assert account["created_at"] == "2020-05-06T00:00:00.000Z"
    with pytest.raises(ValueError, match="exists already"):
        sim.add_account("Carol", "café.example")


def test_bad_input_is_refused(sim: Simulator, alice: SimAccount) -> None:
    with pytest.raises(ValueError, match="no thread"):
        sim.send_dm(alice, to=[sim.owner], text="x", thread=42)
    with pytest.raises(ValueError, match="time zone"):
        sim.send_dm(alice, to=[sim.owner], text="x", status_time=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="not a username"):
        sim.add_account("a@b")
    with pytest.raises(KeyError):
        sim.account("nobody@example.social")
    assert sim.account("@alice@EXAMPLE.social") is alice
    assert sim.account(alice.id) is alice
    assert sim.account("me@sim.example") is sim.owner


# -- recorded responses keep the JSON honest ------------------------------------------------------


def recorded(name: str) -> list[Any]:
    body: list[Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))["body"]
    return body


def test_json_keys_match_the_recorded_responses(
    sim: Simulator, client: httpx.Client, alice: SimAccount
) -> None:
    local_row = recorded("conversations_local_dev.json")[0]  # a Mastodon 4.6 dev server
    remote_rows = recorded("conversations_mastodon_social.json")
    remote_with_status = next(
        r for r in remote_rows if r["last_status"] and "@" in r["last_status"]["account"]["acct"]
    )
    bob = sim.add_account("bob")
    sim.send_dm(bob, to=[sim.owner], text="local")
    sim.send_dm(alice, to=[sim.owner], text="remote")
    mine_remote, mine_local = client.get("/api/v1/conversations").json()
    assert set(mine_local) == set(local_row) == {"id", "unread", "accounts", "last_status"}
    assert set(mine_local["accounts"][0]) == set(local_row["accounts"][0])
    assert set(mine_local["last_status"]) == set(local_row["last_status"])
    assert set(mine_remote["accounts"][0]) == set(remote_rows[0]["accounts"][0])
    assert set(mine_remote["last_status"]) == set(remote_with_status["last_status"])


def test_recorded_bodies_parse_like_ours(
    sim: Simulator, client: httpx.Client, alice: SimAccount
) -> None:
    rows = recorded("conversations_mastodon_social.json")
    parsed = [Conversation.model_validate(row) for row in rows]
    assert sum(c.last_status is None for c in parsed) == sum(r["last_status"] is None for r in rows)
    sim.send_dm(alice, to=[sim.owner], text="hi")
    ours = Conversation.model_validate(client.get("/api/v1/conversations").json()[0])
    assert type(ours) is type(parsed[0])
    assert set(ours.model_dump()) == set(parsed[0].model_dump())


# -- auth, scopes, errors, rate limits ------------------------------------------------------------


INVALID = (
    'Bearer realm="Doorkeeper", error="invalid_token", '
    'error_description="The access token is invalid"'
)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}]
)
def test_missing_or_unknown_token_is_401(client: httpx.Client, headers: dict[str, str]) -> None:
    client.headers.pop("Authorization")
    response = client.get("/api/v1/conversations", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "The access token is invalid"}
    assert response.headers["www-authenticate"] == INVALID
    assert response.headers["content-type"] == "application/json; charset=utf-8"


def test_revoked_token_is_401_revoked(sim: Simulator, client: httpx.Client) -> None:
    sim.revoke_token(TOKEN)
    response = client.get("/api/v1/accounts/verify_credentials")
    assert response.status_code == 401
    assert response.json() == {"error": "The access token was revoked"}
    assert (
        'error_description="The access token was revoked"' in response.headers["www-authenticate"]
    )


@pytest.mark.parametrize(
    ("scopes", "method", "path", "status"),
    [
        ({"read:accounts"}, "GET", "/api/v1/conversations", 403),
        ({"read:statuses"}, "GET", "/api/v1/conversations", 200),
        ({"read:statuses"}, "GET", "/api/v1/accounts/verify_credentials", 403),
        ({"profile"}, "GET", "/api/v1/accounts/verify_credentials", 200),
        ({"read"}, "POST", "/api/v1/conversations/1/read", 403),
        ({"write:conversations"}, "DELETE", "/api/v1/conversations/1", 404),
        ({"follow"}, "GET", "/api/v1/domain_blocks", 200),
        ({"read:blocks"}, "GET", "/api/v1/accounts/relationships", 403),
        ({"read:follows"}, "GET", "/api/v1/accounts/relationships", 200),
    ],
)
def test_scopes(
    sim: Simulator, client: httpx.Client, scopes: set[str], method: str, path: str, status: int
) -> None:
    sim.add_token("narrow", scopes=scopes)
    response = client.request(method, path, headers={"Authorization": "Bearer narrow"})
    assert response.status_code == status
    if status == 403:
        assert response.json() == {"error": "This action is outside the authorized scopes"}
        assert "www-authenticate" not in response.headers


def test_app_only_token_is_422(sim: Simulator, client: httpx.Client) -> None:
    sim.add_token("app", account=None, scopes={"read"})
    response = client.get("/api/v1/conversations", headers={"Authorization": "Bearer app"})
    assert response.status_code == 422
    assert response.json() == {"error": "This method requires an authenticated user"}


def test_unknown_path_is_a_json_404(client: httpx.Client) -> None:
    response = client.get("/api/v1/nothing/here")
    assert (response.status_code, response.json()) == (404, {"error": "Record not found"})


def test_headers_on_every_api_answer(client: httpx.Client) -> None:
    response = client.get("/api/v1/conversations")
    assert response.headers["cache-control"] == "private, no-store"
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["x-request-id"]
    assert response.headers["x-ratelimit-limit"] == "300"
    assert response.headers["x-ratelimit-remaining"] == "299"
    assert response.headers["x-ratelimit-reset"] == "2026-08-01T13:50:00.250000Z"
    assert client.get("/api/v1/conversations").headers["x-ratelimit-remaining"] == "298"


def test_api_throttle_429_and_reset(clock: ManualClock) -> None:
    sim = Simulator(clock, api_limit=2)
    sim.add_token(TOKEN)
    with sim.serve() as url, httpx.Client(base_url=url, headers=AUTH, timeout=5) as client:
        assert [client.get("/api/v1/conversations").status_code for _ in range(2)] == [200, 200]
        limited = client.get("/api/v1/conversations")
        assert limited.status_code == 429
        assert limited.json() == {"error": "Too many requests"}
        assert limited.headers["x-ratelimit-remaining"] == "0"
        assert limited.headers["x-ratelimit-reset"] == "2026-08-01T13:50:00.250000Z"
        assert "retry-after" not in limited.headers
        clock.advance(230)  # 13:50:00.25: a new window
        assert client.get("/api/v1/conversations").status_code == 200


def test_paging_throttle_is_per_user_and_most_constrained_wins(clock: ManualClock) -> None:
    sim = Simulator(clock, paging_limit=3)
    sim.add_token(TOKEN)
    sim.add_token("second")
    with sim.serve() as url, httpx.Client(base_url=url, timeout=5) as client:
        plain = client.get("/api/v1/conversations", headers=AUTH)
        assert plain.headers["x-ratelimit-limit"] == "300"
        paging = client.get("/api/v1/conversations", params={"min_id": "1"}, headers=AUTH)
        assert paging.headers["x-ratelimit-limit"] == "3"
        assert paging.headers["x-ratelimit-remaining"] == "2"
        assert paging.headers["x-ratelimit-reset"] == "2026-08-01T14:00:00.250000Z"  # 15 min
        other = {"Authorization": "Bearer second"}  # same user, other token
        for _ in range(2):
            client.get("/api/v1/conversations", params={"max_id": "9"}, headers=other)
        limited = client.get("/api/v1/conversations", params={"since_id": "1"}, headers=AUTH)
        assert (limited.status_code, limited.headers["x-ratelimit-limit"]) == (429, "3")


# -- faults and outages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "content_type"),
    [
        ("status_500", 500, "application/json; charset=utf-8"),
        ("status_503", 503, "application/json; charset=utf-8"),
        ("status_502_html", 502, "text/html"),
        ("rate_limit", 429, "application/json; charset=utf-8"),
    ],
)
def test_status_faults(
    sim: Simulator, client: httpx.Client, kind: Any, status: int, content_type: str
) -> None:
    sim.inject_fault(kind, count=2)
    for _ in range(2):
        response = client.get("/api/v1/conversations")
        assert response.status_code == status
        assert response.headers["content-type"] == content_type
    assert client.get("/api/v1/conversations").status_code == 200
    assert [r.status for r in sim.requests] == [status, status, 200]
    if kind == "rate_limit":
        assert response.headers["x-ratelimit-remaining"] == "0"
        assert response.headers["x-ratelimit-reset"] == "2026-08-01T13:50:00.250000Z"
    if kind == "status_502_html":
        assert "<h1>502 Bad Gateway</h1>" in response.text


def test_drop_fault_closes_without_answering(sim: Simulator, client: httpx.Client) -> None:
    sim.inject_fault("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/api/v1/conversations")
    assert client.get("/api/v1/conversations").status_code == 200
    assert sim.requests[0].status is None


def test_malformed_fault_answers_half_a_body(
    sim: Simulator, client: httpx.Client, alice: SimAccount
) -> None:
    sim.send_dm(alice, to=[sim.owner], text="hi")
    sim.inject_fault("malformed")
    response = client.get("/api/v1/conversations")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_latency_fault_waits_then_answers(sim: Simulator, client: httpx.Client) -> None:
    sim.inject_fault("latency", seconds=0.2)
    started = time.perf_counter()
    assert client.get("/api/v1/conversations").status_code == 200
    assert time.perf_counter() - started >= 0.2


def test_faults_match_path_prefix_and_method(sim: Simulator, client: httpx.Client) -> None:
    sim.inject_fault("status_503", method="DELETE")
    assert client.get("/api/v1/conversations").status_code == 200
    assert client.delete("/api/v1/conversations/1").status_code == 503
    sim.inject_fault("status_503", path=None)
    assert client.get("/api/v1/accounts/verify_credentials").status_code == 503
    with pytest.raises(ValueError, match="unknown fault"):
        sim.inject_fault("explode")  # type: ignore[arg-type]


def test_stop_answering_hangs_or_drops_until_resumed(sim: Simulator, client: httpx.Client) -> None:
    sim.stop_answering("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/api/v1/instance")
    sim.stop_answering("hang")
    with pytest.raises(httpx.ReadTimeout):
        client.get("/api/v1/instance", timeout=0.3)
    sim.resume()
    assert client.get("/api/v1/instance").status_code == 200


def test_stop_releases_a_hanging_request(sim: Simulator, client: httpx.Client) -> None:
    sim.stop_answering("hang")
    with pytest.raises(httpx.ReadTimeout):
        client.get("/api/v1/instance", timeout=0.2)
    sim.stop()  # returns although a handler is still waiting for resume()


# -- other endpoints ------------------------------------------------------------------------------


def test_verify_credentials_and_instance(sim: Simulator, client: httpx.Client) -> None:
    me = client.get("/api/v1/accounts/verify_credentials").json()
    assert (me["id"], me["acct"], me["username"]) == (sim.owner.id, "me", "me")
    assert "source" in me
    ws = "ws://" + client.base_url.netloc.decode()
    for headers in ({}, {"Authorization": "Bearer nope"}):  # no token needed
        v2 = client.get("/api/v2/instance", headers=headers)
        assert v2.status_code == 200
    assert v2.json()["domain"] == "sim.example"
    assert v2.json()["version"] == "4.5.0"
    assert v2.json()["configuration"]["urls"]["streaming"] == ws
    v1 = client.get("/api/v1/instance")
    assert (v1.json()["uri"], v1.json()["urls"]["streaming_api"]) == ("sim.example", ws)
    assert v1.headers["deprecation"] == "@1668384000"


def test_relationships(sim: Simulator, client: httpx.Client, alice: SimAccount) -> None:
    bob = sim.add_account("bob")
    sim.set_relationship(sim.owner, alice, following=True)
    sim.set_relationship(sim.owner, alice, followed_by=True)
    sim.block_domain(sim.owner, "Example.Social")
    response = client.get(
        "/api/v1/accounts/relationships",
        params=[("id[]", alice.id), ("id[]", bob.id), ("id[]", "404")],
    )
    first, second = response.json()
    assert (first["id"], first["following"], first["followed_by"], first["domain_blocking"]) == (
        alice.id,
        True,
        True,
        True,
    )
    assert (second["id"], second["following"], second["blocking"]) == (bob.id, False, False)
    assert {"muting", "requested", "showing_reblogs", "note"} <= set(first)


def test_domain_blocks_page_newest_first(sim: Simulator, client: httpx.Client) -> None:
    for domain in ("a.example", "B.example", "café.example", "a.example"):
        sim.block_domain(sim.owner, domain)
    page = client.get("/api/v1/domain_blocks", params={"limit": 2})
    assert page.json() == ["xn--caf-dma.example", "b.example"]
    assert cursor(page, "next", "max_id") == "2"
    assert cursor(page, "prev", "since_id") == "3"
    rest = client.get("/api/v1/domain_blocks", params={"limit": 2, "max_id": 2})
    assert rest.json() == ["a.example"]
    assert set(rest.links) == {"prev"}
    sim.unblock_domain(sim.owner, "a.example")
    everything = client.get("/api/v1/domain_blocks")
    assert everything.json() == ["xn--caf-dma.example", "b.example"]
    assert set(everything.links) == {"prev"}


def test_requests_are_recorded(sim: Simulator, client: httpx.Client, clock: ManualClock) -> None:
    client.get("/api/v1/conversations", params={"min_id": "5", "limit": "40"})
    client.get("/_sim/conversations")
    (recorded,) = sim.requests
    assert (recorded.method, recorded.path, recorded.status) == (
        "GET",
        "/api/v1/conversations",
        200,
    )
    assert recorded.query == {"min_id": "5", "limit": "40"}
    assert recorded.ts == clock.now()
    sim.clear_requests()
    assert sim.requests == []


# -- the direct stream ----------------------------------------------------------------------------


async def test_stream_pushes_conversation_events_and_heartbeats(clock: ManualClock) -> None:
    sim = Simulator(clock, heartbeat=0.05)
    sim.add_token(TOKEN)
    alice = sim.add_account("alice", "example.social")
    events: list[Conversation] = []
    with sim.serve() as url:
        async with (
            httpx.AsyncClient(base_url=url, headers=AUTH, timeout=5) as client,
            client.stream("GET", "/api/v1/streaming/direct") as stream,
        ):
            assert stream.headers["content-type"] == "text/event-stream"
            lines = stream.aiter_lines()
            assert await anext(lines) == ":)"
            assert await anext(lines) == ":thump"
            sim.send_dm(alice, to=[sim.owner], text="pushed")
            sim.set_unread(sim.owner, sim.conversations(sim.owner)[0].id, False)
            async for line in lines:
                if line.startswith("data: "):
                    events.append(Conversation.model_validate_json(line.removeprefix("data: ")))
                if len(events) == 2:
                    break
    assert [e.unread for e in events] == [True, False]
    assert events[0].last_status is not None
    assert "pushed" in events[0].last_status.content
    assert sim.requests[0].path == "/api/v1/streaming/direct"


def test_stopping_ends_an_open_stream(sim: Simulator, client: httpx.Client) -> None:
    with client.stream("GET", "/api/v1/streaming/direct") as stream:
        lines = stream.iter_lines()
        assert next(lines) == ":)"
        started = time.perf_counter()
        sim.stop()
        assert list(lines) == []
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    ("token", "scopes", "error"),
    [
        (None, None, "Missing access token"),
        ("nope", None, "Invalid access token"),
        ("narrow", {"read:accounts"}, "Access token does not have the required scopes"),
    ],
)
def test_stream_refusals(
    sim: Simulator, client: httpx.Client, token: str | None, scopes: set[str] | None, error: str
) -> None:
    if scopes:
        sim.add_token("narrow", scopes=scopes)
    client.headers.pop("Authorization")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get("/api/v1/streaming/direct", headers=headers)
    assert (response.status_code, response.json()) == (401, {"error": error})


def test_revoking_a_token_ends_its_stream(sim: Simulator, client: httpx.Client) -> None:
    with client.stream("GET", "/api/v1/streaming/direct") as stream:
        lines = stream.iter_lines()
        assert next(lines) == ":)"
        sim.revoke_token(TOKEN)
        assert list(lines) == []


# -- the /_sim/ control API -----------------------------------------------------------------------


def test_control_api_over_http(sim: Simulator, client: httpx.Client) -> None:
    def control(method: str, path: str, body: Any = None, **params: str) -> Any:
        response = client.request(method, f"/_sim/{path}", json=body, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    dave = control("POST", "accounts", {"username": "dave", "domain": "dave.example", "bot": True})
    assert (dave["acct"], dave["bot"]) == ("dave@dave.example", True)
    control("POST", "tokens", {"token": "app", "account": None, "scopes": "read"})
    held = control(
        "POST", "dms", {"author": "dave@dave.example", "to": ["me"], "text": "hi", "deliver": False}
    )
    assert control("GET", "conversations") == []
    control("POST", "deliver", {"status_id": held["id"]})
    (view,) = control("GET", "conversations", owner="me")
    assert (view["last_status_id"], view["unread"], view["participants"]) == (
        held["id"],
        True,
        ["dave@dave.example"],
    )
    late = control(
        "POST",
        "dms",
        {
            "author": dave["id"],
            "to": ["me"],
            "thread": "new",
            "status_time": "2026-08-01T12:00:00Z",
        },
    )
    assert snowflake.to_time(late["id"]) == datetime(2026, 8, 1, 12, tzinfo=UTC)
    control("POST", f"statuses/{held['id']}/soft_delete")
    assert control("GET", "conversations")[0]["last_status_visible"] is False
    control("POST", "relationships", {"account": "dave@dave.example", "following": True})
    control("POST", "domain_blocks", {"domain": "dave.example"})
    (rel,) = client.get("/api/v1/accounts/relationships", params={"id[]": dave["id"]}).json()
    assert (rel["following"], rel["domain_blocking"]) == (True, True)
    control("POST", "faults", {"kind": "status_503", "count": 1})
    assert client.get("/api/v1/conversations").status_code == 503
    assert [r["status"] for r in control("GET", "requests")][-1] == 503
    control("DELETE", "requests")
    assert control("GET", "requests") == []
    control("POST", "stop_answering", {"mode": "drop"})
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/api/v1/conversations")
    control("POST", "resume")
    control("DELETE", f"statuses/{late['id']}")
    control("DELETE", "tokens/app")
    assert sim.lookup_token("app").revoked  # type: ignore[union-attr]
    moved = control("POST", "clock/advance", {"seconds": 1.5})  # a ManualClock moves too
    assert datetime.fromisoformat(moved["now"]) == START + timedelta(seconds=1.5)
    bad = client.post("/_sim/dms", json={"author": "nobody", "to": []})
    assert bad.status_code == 400
    assert "nobody" in bad.json()["error"]
    assert client.post("/_sim/faults", json={"kind": "explode"}).status_code == 400
    assert client.get("/_sim/nothing").status_code == 404


def test_control_clock_advance_moves_the_default_clock() -> None:
    sim = Simulator()
    with sim.serve() as url, httpx.Client(base_url=url, timeout=5) as client:
        before = datetime.fromisoformat(client.get("/_sim/clock").json()["now"])
        advanced = client.post("/_sim/clock/advance", json={"seconds": 3600})
        assert datetime.fromisoformat(advanced.json()["now"]) - before >= timedelta(hours=1)
    fixed = Simulator(SystemClock())
    with fixed.serve() as url, httpx.Client(base_url=url, timeout=5) as client:
        assert client.post("/_sim/clock/advance", json={"seconds": 1}).status_code == 409


def test_serving_twice_is_refused_and_stop_is_idempotent(sim: Simulator) -> None:
    url = sim.start()
    assert sim.base_url == url
    with pytest.raises(RuntimeError):
        sim.start()
    sim.stop()
    sim.stop()
    with pytest.raises(RuntimeError):
        _ = sim.base_url


# -- python -m dmbot.sim --------------------------------------------------------------------------


def test_module_serves_until_sigterm() -> None:
    command = [sys.executable, "-m", "dmbot.sim", "--port", "0", "--token", "T", "--scopes", "read"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            assert ready, "no listening line within 20 s"
            line = proc.stdout.readline()
            assert line.startswith("dmbot.sim listening on http://127.0.0.1:")
            url = line.rsplit(" ", 1)[1].strip()
            with httpx.Client(base_url=url, timeout=5) as client:
                me = client.get(
                    "/api/v1/accounts/verify_credentials", headers={"Authorization": "Bearer T"}
                )
                assert me.json()["acct"] == "me"
                denied = client.post(
                    "/api/v1/conversations/1/read", headers={"Authorization": "Bearer T"}
                )
                assert denied.status_code == 403
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
