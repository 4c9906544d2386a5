"""The core loop against the simulator over real HTTP, with a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from dmbot.actions import Delete, MarkRead
from dmbot.clock import ManualClock
from dmbot.mastodon import TransientError
from dmbot.models import Event
from dmbot.sim import SimAccount, Simulator
from dmbot.snowflake import id_key

from conftest import Harness, build_harness


def strangers(sim: Simulator, count: int, prefix: str = "user") -> list[SimAccount]:
    return [sim.add_account(f"{prefix}{i}", "remote.example") for i in range(count)]


def send_from_each(sim: Simulator, senders: list[SimAccount], text: str = "hello") -> None:
    for sender in senders:
        sim.send_dm(sender, to=[sim.owner], text=text)


def keys(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.conversation.id, e.status.id) for e in events]


async def test_first_start_acts_only_on_unread_and_replays_no_history(harness: Harness) -> None:
    sim = harness.sim
    old = strangers(sim, 3, "old")
    send_from_each(sim, old)
    read_one = sim.conversations(sim.owner)[0]
    sim.set_unread(sim.owner, read_one.id, unread=False)

    result = await harness.engine.poll_once()

    assert result.bootstrapped
    assert len(harness.decider.seen) == 2
    assert all(e.conversation.unread for e in harness.decider.seen)
    assert harness.store.cursor == sim.conversations(sim.owner)[0].last_status_id


async def test_first_start_on_an_empty_account_then_everything_new_is_caught(
    harness: Harness,
) -> None:
    await harness.engine.poll_once()
    send_from_each(harness.sim, strangers(harness.sim, 2))
    await harness.engine.poll_once()
    assert len(harness.decider.seen) == 2


async def test_95_new_conversations_cost_3_requests_oldest_first_and_idle_costs_1(
    harness: Harness,
) -> None:
    sim, clock = harness.sim, harness.clock
    send_from_each(sim, strangers(sim, 1, "early"))
    await harness.engine.poll_once()
    clock.advance(600)  # the first conversation leaves the overlap window
    send_from_each(sim, strangers(sim, 95))
    clock.advance(1)
    harness.decider.seen.clear()

    before = harness.requests
    result = await harness.engine.poll_once()

    assert harness.requests - before == 3  # floor(95 / 40) + 1
    assert result.new_events == 95
    ids = [e.status.id for e in harness.decider.seen]
    assert ids == sorted(ids, key=id_key)  # oldest first
    assert len(set(ids)) == 95

    clock.advance(600)  # past the overlap window: nothing new, nothing to re-read
    before = harness.requests
    result = await harness.engine.poll_once()
    assert harness.requests - before == 1
    assert result.new_events == 0


async def test_a_new_message_in_a_seen_conversation_is_one_new_event(harness: Harness) -> None:
    sim = harness.sim
    alice = sim.add_account("alice", "example.social")
    sim.send_dm(alice, to=[sim.owner], text="first")
    await harness.engine.poll_once()
    first = list(harness.decider.seen)

    harness.clock.advance(5)
    second_status = sim.send_dm(alice, to=[sim.owner], text="second")
    await harness.engine.poll_once()
    await harness.engine.poll_once()

    assert len(harness.decider.seen) == 2
    assert harness.decider.seen[1].conversation.id == first[0].conversation.id
    assert harness.decider.seen[1].status.id == second_status.id


async def test_a_restart_repeats_nothing_and_catches_what_arrived_while_down(
    harness: Harness, http: httpx.AsyncClient
) -> None:
    sim, clock = harness.sim, harness.clock
    await harness.engine.poll_once()
    send_from_each(sim, strangers(sim, 5, "before"))
    await harness.engine.poll_once()
    assert len(harness.decider.seen) == 5
    harness.store.close()

    clock.advance(30)
    send_from_each(sim, strangers(sim, 45, "during"))
    restarted = build_harness(sim, clock, http, harness.data_dir)
    try:
        await restarted.engine.poll_once()
        await restarted.engine.poll_once()
        senders = [e.sender.username for e in restarted.decider.seen]
        assert sorted(senders) == sorted(f"during{i}" for i in range(45))
    finally:
        restarted.store.close()


async def test_a_late_row_inside_the_overlap_window_is_caught_once(harness: Harness) -> None:
    sim, clock = harness.sim, harness.clock
    await harness.engine.poll_once()
    sim.send_dm(sim.add_account("first", "a.example"), to=[sim.owner])
    clock.advance(10)
    sent_at = clock.now()
    clock.advance(50)
    sim.send_dm(sim.add_account("second", "a.example"), to=[sim.owner])
    await harness.engine.poll_once()
    assert len(harness.decider.seen) == 2

    late = sim.send_dm(sim.add_account("late", "b.example"), to=[sim.owner], status_time=sent_at)
    clock.advance(10)
    await harness.engine.poll_once()
    await harness.engine.poll_once()

    assert [e.status.id for e in harness.decider.seen[2:]] == [late.id]


async def test_a_dm_released_days_later_is_caught_once_by_the_sweep(harness: Harness) -> None:
    sim, clock = harness.sim, harness.clock
    await harness.engine.poll_once()
    held = sim.send_dm(sim.add_account("stranger", "far.example"), to=[sim.owner], deliver=False)
    clock.advance(3 * 86400)
    sim.send_dm(sim.add_account("friend", "near.example"), to=[sim.owner])
    await harness.engine.poll_once()
    assert [e.sender.username for e in harness.decider.seen] == ["friend"]

    sim.deliver(held)  # accepted from message requests: old id, below the cursor
    clock.advance(60)
    await harness.engine.poll_once()  # inside the hour: the overlap cannot see it
    assert len(harness.decider.seen) == 1

    clock.advance(3600)
    result = await harness.engine.poll_once()
    assert result.swept
    await harness.engine.poll_once()
    assert [e.sender.username for e in harness.decider.seen] == ["friend", "stranger"]


async def test_the_sweep_replays_nothing_older_than_the_first_start(harness: Harness) -> None:
    sim, clock = harness.sim, harness.clock
    olds = strangers(sim, 60, "old")
    for sender in olds:
        sim.send_dm(sender, to=[sim.owner])
        clock.advance(60)
    for view in sim.conversations(sim.owner):
        sim.set_unread(sim.owner, view.id, unread=False)
    await harness.engine.poll_once()
    clock.advance(7200)
    result = await harness.engine.poll_once()
    assert result.swept
    assert harness.decider.seen == []


@pytest.mark.parametrize(
    "fault",
    ["status_500", "status_502_html", "drop", "malformed", "rate_limit", "latency"],
)
async def test_a_fault_in_the_middle_of_a_catch_up_loses_and_doubles_nothing(
    harness: Harness, fault: str
) -> None:
    sim, clock = harness.sim, harness.clock
    await harness.engine.poll_once()
    send_from_each(sim, strangers(sim, 100))
    sim.clear_requests()
    # Let the first page through, then spoil the second.
    sim.inject_fault("latency", count=1, seconds=0.0)
    sim.inject_fault(fault, count=1, seconds=0.05)  # type: ignore[arg-type]

    for _ in range(4):
        try:
            await harness.engine.poll_once()
        except TransientError:
            clock.advance(30)
    ids = [e.status.id for e in harness.decider.seen]
    assert len(ids) == 100
    assert len(set(ids)) == 100


async def test_a_429_waits_until_the_reset_it_announces(harness: Harness) -> None:
    sim, clock = harness.sim, harness.clock
    await harness.engine.poll_once()
    send_from_each(sim, strangers(sim, 3))
    sim.inject_fault("rate_limit", count=1)
    clock.slept.clear()

    await harness.engine.poll_once()

    assert len(harness.decider.seen) == 3
    assert len(clock.slept) == 1
    limited = [r for r in sim.requests if r.status == 429][-1]
    window = 300
    expected = window - (limited.ts.timestamp() % window)
    assert clock.slept[0] == pytest.approx(expected, abs=0.01)


async def test_the_client_waits_for_the_reset_instead_of_spending_the_last_request(
    sim: Simulator, clock: ManualClock, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    limited = Simulator(clock, api_limit=3)
    limited.add_token("tok-3", scopes=("read", "write"))
    with limited.serve():
        from dmbot.mastodon import MastodonClient

        client = MastodonClient(http, limited.base_url, "tok-3", clock)
        for _ in range(5):
            await client.conversations(limit=1)
    assert all(r.status == 200 for r in limited.requests)
    assert len(clock.slept) >= 1


async def test_outbox_actions_run_once_and_404_counts_as_done(harness: Harness) -> None:
    sim = harness.sim
    await harness.engine.poll_once()
    bot = sim.add_account("bot", "bots.example", bot=True)
    spam = sim.add_account("spammer", "spam.example")
    sim.send_dm(bot, to=[sim.owner], text="beep")
    sim.send_dm(spam, to=[sim.owner], text="buy")

    def decide(event: Event) -> list[MarkRead | Delete]:
        if event.sender.bot:
            return [MarkRead(rule="bots")]
        return [Delete(rule="blocked")]

    harness.decider.decide_fn = decide
    views = sim.conversations(sim.owner)
    spam_conv = next(v for v in views if "spammer@spam.example" in v.participants)
    sim.delete_conversation(sim.owner, spam_conv.id)  # someone else deleted it first
    sim.send_dm(spam, to=[sim.owner], text="buy again")
    result = await harness.engine.poll_once()

    assert result.executed.done == 2
    bot_view = next(v for v in sim.conversations(sim.owner) if "bot@bots.example" in v.participants)
    assert not bot_view.unread
    assert all("spammer@spam.example" not in v.participants for v in sim.conversations(sim.owner))
    await harness.engine.poll_once()
    posts = [r for r in sim.requests if r.method in ("POST", "DELETE")]
    assert len(posts) == 2


async def test_own_messages_are_skipped_unless_asked(harness: Harness) -> None:
    sim = harness.sim
    await harness.engine.poll_once()
    friend = sim.add_account("friend")
    sim.send_dm(sim.owner, to=[friend], text="my own message")
    await harness.engine.poll_once()
    assert harness.decider.seen == []


async def test_a_message_that_breaks_the_rules_does_not_block_the_others(
    harness: Harness,
) -> None:
    sim = harness.sim
    await harness.engine.poll_once()
    send_from_each(sim, strangers(sim, 3))

    def decide(event: Event) -> list[MarkRead]:
        if event.sender.username == "user1":
            raise RuntimeError("a bug meets a hostile message")
        return [MarkRead(rule="read")]

    harness.decider.decide_fn = decide
    result = await harness.engine.poll_once()

    assert result.new_events == 3
    unread = {v.participants[0] for v in sim.conversations(sim.owner) if v.unread}
    assert unread == {"user1@remote.example"}
