"""Issue #3 end to end: a rules file on disk, the real composition root, the simulator over
real HTTP, and real Apprise delivering to a local JSON receiver. Assertions read what the user
would see: the server's conversation list, the notifications that arrived."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from dmbot.app import App, open_app
from dmbot.clock import ManualClock
from dmbot.logging import Redactor
from dmbot.settings import Settings
from dmbot.sim import SimAccount, Simulator

from conftest import TOKEN
from receivers import JsonReceiver

RELATIONSHIPS = "/api/v1/accounts/relationships"

# Two notifiers on one receiver, told apart by path: a friend's alert and the catch-all.
RULES = """\
version: 1
notifiers:
  phone: "${HOOK}/phone"
  everything: "${HOOK}/everything"
lists:
  blocked_domains:
    entries:
      - spam.example
      - xn--bcher-kva.example          # punycode here; the sender's acct shows bücher.example
      - mañana.example                 # Unicode here; the simulator stores xn--maana-pta
      - server: domain_blocks
    allow: [support.spam.example]
  friends: [alice@friends.example]
rules:
  - name: blocked
    if: {sender.domain: {in: blocked_domains}}
    do: [delete]
    stop: true
  - name: bots
    if: {sender.bot: true}
    do: [mark_read]
    stop: true
  - name: friends
    if: {sender.acct: {in: friends}}
    do:
      - notify: {to: phone, title: "Friend: {sender.display_name}"}
    stop: true
  - name: catch-all
    do:
      - notify: {to: everything, title: "DM from @{sender.acct}"}
"""

FOLLOWS = """\
version: 1
notifiers:
  phone: "${HOOK}/phone"
rules:
  - name: followed
    if: {sender.following: true}
    do:
      - notify: {to: phone, title: "From someone you follow: @{sender.acct}"}
    stop: true
  - name: strangers
    do: [mark_read]
"""


@pytest.fixture
def hook() -> Iterator[JsonReceiver]:
    with JsonReceiver() as receiver:
        yield receiver


@contextlib.asynccontextmanager
async def app_for(
    rules: str, sim: Simulator, clock: ManualClock, tmp_path: Path, hook: JsonReceiver
) -> AsyncIterator[App]:
    path = tmp_path / "rules.yaml"
    path.write_text(rules, encoding="utf-8")
    settings = Settings(
        _env_file=None,
        instance_url=sim.base_url,
        access_token=SecretStr(TOKEN),
        rules_file=path,
        data_dir=tmp_path / "data",
    )
    env = {"HOOK": f"json://127.0.0.1:{hook.port}"}
    async with open_app(settings, clock=clock, redactor=Redactor(), env=env) as app:
        sim.clear_requests()  # count what the cycles cost, not the start-up checks
        yield app


def dm(sim: Simulator, sender: SimAccount, text: str = "hello") -> str:
    """Send a DM to the owner; the id of the owner's conversation it landed in."""
    status = sim.send_dm(sender, to=[sim.owner], text=text)
    [view] = [v for v in sim.conversations(sim.owner) if v.last_status_id == status.id]
    return view.id


def on_server(sim: Simulator, conversation_id: str) -> bool:
    return sim.conversation(sim.owner, conversation_id) is not None


def unread(sim: Simulator, conversation_id: str) -> bool:
    view = sim.conversation(sim.owner, conversation_id)
    assert view is not None, f"conversation {conversation_id} is gone"
    return view.unread


def titles(hook: JsonReceiver, path: str) -> list[str]:
    return sorted(r.json["title"] for r in hook.requests if r.path == path)


def relationship_requests(sim: Simulator) -> int:
    return sum(r.path == RELATIONSHIPS for r in sim.requests)


async def test_blocked_domains_are_deleted_allow_wins_bots_are_read_friends_notified(
    sim: Simulator, clock: ManualClock, tmp_path: Path, hook: JsonReceiver
) -> None:
    def account(username: str, domain: str, *, bot: bool = False, name: str = "") -> SimAccount:
        return sim.add_account(username, domain, bot=bot, display_name=name)

    sim.block_domain(sim.owner, "blocked-by-me.example")
    deleted = {
        "listed domain": dm(sim, account("a", "spam.example")),
        "subdomain of a listed domain": dm(sim, account("b", "mail.spam.example")),
        "listed in punycode, shown in Unicode": dm(sim, account("c", "bücher.example")),
        "listed in Unicode, created in punycode": dm(sim, account("d", "xn--maana-pta.example")),
        "the account's own domain block": dm(sim, account("e", "blocked-by-me.example")),
        "subdomain of an own domain block": dm(sim, account("f", "a.blocked-by-me.example")),
    }
    allowed = dm(sim, account("help", "support.spam.example"))
    bot = dm(sim, account("beep", "bots.example", bot=True))
    friend = dm(sim, account("alice", "friends.example", name="Alice"))
    stranger = dm(sim, account("zed", "elsewhere.example"))

    async with app_for(RULES, sim, clock, tmp_path, hook) as app:
        result = await app.engine.poll_once()

    assert result.executed.failed == 0
    assert result.executed.retried == 0
    still_there = [why for why, conv in deleted.items() if on_server(sim, conv)]
    assert still_there == [], "not deleted on the server"
    assert unread(sim, allowed)  # still there, untouched
    assert not unread(sim, bot)
    assert unread(sim, friend)
    assert unread(sim, stranger)
    assert titles(hook, "/phone") == ["Friend: Alice"]
    # `stop: true` on blocked, bots and friends: the catch-all saw only the other two.
    assert titles(hook, "/everything") == [
        "DM from @help@support.spam.example",
        "DM from @zed@elsewhere.example",
    ]
    assert relationship_requests(sim) == 0  # no rule asks about follows


async def test_a_domain_blocked_later_on_the_server_is_picked_up_at_the_next_refresh(
    sim: Simulator, clock: ManualClock, tmp_path: Path, hook: JsonReceiver
) -> None:
    async with app_for(RULES, sim, clock, tmp_path, hook) as app:
        await app.engine.poll_once()
        sim.block_domain(sim.owner, "späm.example")
        clock.advance(3601)  # the server's lists are refreshed hourly
        late = dm(sim, sim.add_account("late", "xn--spm-rla.example"))
        await app.engine.poll_once()
    assert not on_server(sim, late)
    assert hook.requests == []


async def test_follows_take_their_branch_and_cost_one_batched_request(
    sim: Simulator, clock: ManualClock, tmp_path: Path, hook: JsonReceiver
) -> None:
    followed = [sim.add_account(name, "friends.example") for name in ("ann", "ben")]
    strangers = [sim.add_account(name, "elsewhere.example") for name in ("cat", "dan")]
    for account in followed:
        sim.set_relationship(sim.owner, account, following=True)
    conversations = {account.username: dm(sim, account) for account in followed + strangers}

    async with app_for(FOLLOWS, sim, clock, tmp_path, hook) as app:
        await app.engine.poll_once()
        assert relationship_requests(sim) == 1  # four senders, one request
        assert titles(hook, "/phone") == [
            "From someone you follow: @ann@friends.example",
            "From someone you follow: @ben@friends.example",
        ]
        read = {name: not unread(sim, conv) for name, conv in conversations.items()}
        assert read == {"ann": False, "ben": False, "cat": True, "dan": True}

        sim.set_relationship(sim.owner, strangers[0], following=True)
        clock.advance(601)  # past the relationship cache's ten minutes
        again = dm(sim, strangers[0], "now you follow me")
        await app.engine.poll_once()

    assert relationship_requests(sim) == 2
    assert unread(sim, again)
    assert titles(hook, "/phone") == [
        "From someone you follow: @ann@friends.example",
        "From someone you follow: @ben@friends.example",
        "From someone you follow: @cat@elsewhere.example",
    ]
