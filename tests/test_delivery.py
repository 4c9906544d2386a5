"""Delivery policy: merging, digests, quiet hours, cooldown, partial deliveries, backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dmbot.actions import Notify
from dmbot.delivery import (
    BURST_REASON,
    COOLDOWN_REASON,
    QUIET_REASON,
    Decision,
    Drop,
    Hold,
    Pending,
    Send,
    expired,
    in_quiet_hours,
    next_attempt,
    plan,
    quiet_hours_end,
)
from dmbot.notifiers import NotifierConfig, QuietHours
from dmbot.notify import target_key
from test_render import make_event

PARIS = ZoneInfo("Europe/Paris")
URL_A = "json://127.0.0.1:1/a"
URL_B = "json://127.0.0.1:1/b"
NOON = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
NIGHT = QuietHours(start=time(22), end=time(7), timezone="Europe/Paris")


def paris(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=PARIS)


def config(**fields: Any) -> NotifierConfig:
    fields.setdefault("urls", (URL_A,))
    return NotifierConfig(name="phone", **fields)


def row(
    id: int,
    *,
    conversation: str | None = None,
    status: str | None = None,
    acct: str = "alice@example.social",
    at: datetime = NOON,
    action: Notify | None = None,
    **fields: Any,
) -> Pending:
    event = make_event(
        conversation=conversation or f"c{id}", status=status or str(1000 + id), acct=acct,
        display_name=acct.partition("@")[0].title(), content=f"<p>message {id}</p>", at=at,
    )
    return Pending(
        id=id, event=event, action=action or Notify(rule="r", to=("phone",)),
        notifier="phone", created_at=at, **fields,
    )


def run(
    rows: list[Pending],
    now: datetime = NOON,
    last_sent: dict[tuple[str, str], datetime] | None = None,
    give_up_after: timedelta | None = None,
    **fields: Any,
) -> list[Decision]:
    return plan(rows, now, {"phone": config(**fields)}, last_sent or {},
                give_up_after=give_up_after)


def sends(decisions: list[Decision]) -> list[Send]:
    return [d for d in decisions if isinstance(d, Send)]


# -- grouping ----------------------------------------------------------------------------


def test_one_message_one_notification() -> None:
    [send] = run([row(1)])
    assert isinstance(send, Send)
    assert send.pending_ids == (1,)
    assert send.notification.title == "DM from Alice (@alice@example.social)"
    assert send.notification.body.startswith("message 1")
    assert send.urls == (URL_A,)
    assert send.senders == ("alice@example.social",)
    assert send.reason == ""


def test_same_conversation_makes_one_notification_with_the_newest_message() -> None:
    rows = [
        row(1, conversation="c", at=NOON),
        row(3, conversation="c", at=NOON + timedelta(minutes=2)),
        row(2, conversation="c", at=NOON + timedelta(minutes=1)),
    ]
    [send] = run(rows)
    assert isinstance(send, Send)
    assert send.pending_ids == (1, 2, 3)
    assert send.notification.body.startswith("message 3")
    assert "(+2 earlier messages in this conversation)" in send.notification.body


def test_two_rules_notifying_about_one_message_send_it_once() -> None:
    rows = [row(1, conversation="c", status="9"),
            row(2, conversation="c", status="9", action=Notify(rule="other", to=("phone",)))]
    [send] = run(rows)
    assert isinstance(send, Send)
    assert send.pending_ids == (1, 2)
    assert "earlier" not in send.notification.body


@pytest.mark.parametrize(("count", "threshold", "notifications"),
                         [(5, 5, 5), (6, 5, 1), (2, 1, 1), (1, 1, 1)])
def test_digest_threshold(count: int, threshold: int, notifications: int) -> None:
    rows = [row(i, acct=f"u{i}@example.social") for i in range(count)]
    decisions = run(rows, digest_threshold=threshold)
    assert len(decisions) == notifications
    assert sorted(i for d in decisions for i in d.pending_ids) == list(range(count))
    if notifications == 1 and count > 1:
        [digest] = sends(decisions)
        assert digest.notification.title == f"{count} new direct messages"
        assert digest.reason == BURST_REASON
        assert digest.notification.body.count("\n- ") == count - 1


def test_threshold_counts_notifications_not_messages() -> None:
    rows = [row(i, conversation="same") for i in range(10)]
    [send] = run(rows, digest_threshold=2)
    assert isinstance(send, Send)
    assert send.reason == ""
    assert "(+9 earlier messages" in send.notification.body


# -- quiet hours -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected_until"),
    [
        (paris(2, 23, 30), paris(3, 7)),  # before midnight: until tomorrow morning
        (paris(3, 1, 0), paris(3, 7)),  # after midnight: until this morning
        (paris(2, 22, 0), paris(3, 7)),  # start is inclusive
    ],
)
def test_quiet_hours_hold_until_the_window_ends(now: datetime, expected_until: datetime) -> None:
    [hold] = run([row(1, at=now)], now=now, quiet_hours=NIGHT)
    assert hold == Hold((1,), expected_until.astimezone(UTC), "quiet hours")


@pytest.mark.parametrize(
    "now", [paris(2, 21, 59), paris(3, 7, 0), paris(2, 12, 0)]
)
def test_outside_quiet_hours_sends(now: datetime) -> None:
    [send] = run([row(1, at=now)], now=now, quiet_hours=NIGHT)
    assert isinstance(send, Send)


def test_quiet_hours_use_their_time_zone() -> None:
    new_york = QuietHours(start=time(22), end=time(7), timezone="America/New_York")
    now = datetime(2026, 11, 2, 23, 30, tzinfo=UTC)  # 18:30 in New York
    assert isinstance(run([row(1, at=now)], now=now, quiet_hours=new_york)[0], Send)
    late = datetime(2026, 11, 3, 4, 30, tzinfo=UTC)  # 23:30 in New York
    [hold] = run([row(1, at=late)], now=late, quiet_hours=new_york)
    assert hold == Hold((1,), datetime(2026, 11, 3, 12, 0, tzinfo=UTC), "quiet hours")


def test_quiet_hours_drop_when_configured() -> None:
    drop_night = NIGHT.model_copy(update={"then": "drop"})
    [drop] = run([row(1, at=paris(2, 23))], now=paris(2, 23), quiet_hours=drop_night)
    assert drop == Drop((1,), "quiet hours")


def test_rule_can_bypass_quiet_hours() -> None:
    urgent = Notify(rule="urgent", to=("phone",), bypass_quiet_hours=True)
    decisions = run([row(1, at=paris(2, 23), action=urgent), row(2, at=paris(2, 23))],
                    now=paris(2, 23), quiet_hours=NIGHT)
    assert [type(d) for d in decisions] == [Hold, Send]
    assert decisions[1].pending_ids == (1,)


def test_held_messages_become_one_digest_when_the_window_ends() -> None:
    rows = [
        row(1, at=paris(2, 23, 30), acct="a@x.example"),
        row(2, at=paris(3, 2, 0), acct="b@x.example"),
        row(3, at=paris(3, 7, 1), acct="c@x.example"),  # after the window: on its own
    ]
    decisions = run(rows, now=paris(3, 7, 2), quiet_hours=NIGHT)
    digest, single = sends(decisions)
    assert digest.pending_ids == (1, 2)
    assert digest.reason == QUIET_REASON
    assert digest.notification.title == "2 new direct messages"
    assert digest.notification.body.endswith(QUIET_REASON)
    assert single.pending_ids == (3,)
    assert single.reason == ""


def test_one_held_message_is_sent_as_itself() -> None:
    [send] = run([row(1, at=paris(2, 23))], now=paris(3, 7, 5), quiet_hours=NIGHT)
    assert isinstance(send, Send)
    assert send.notification.title == "DM from Alice (@alice@example.social)"


def test_per_rule_quiet_hours() -> None:
    nightly = Notify(rule="r", to=("phone",), quiet_hours=NIGHT)
    decisions = run([row(1, at=paris(2, 23), action=nightly), row(2, at=paris(2, 23))],
                    now=paris(2, 23))
    assert [type(d) for d in decisions] == [Hold, Send]


@pytest.mark.parametrize(
    ("quiet", "at", "inside"),
    [
        (NIGHT, paris(2, 22), True),
        (NIGHT, paris(3, 6, 59), True),
        (NIGHT, paris(3, 7), False),
        (QuietHours(start=time(13), end=time(14)), datetime(2026, 1, 1, 13, 30, tzinfo=UTC), True),
        (QuietHours(start=time(13), end=time(14)), datetime(2026, 1, 1, 14, 0, tzinfo=UTC), False),
        (QuietHours(start=time(13), end=time(13)), datetime(2026, 1, 1, 13, 0, tzinfo=UTC), False),
        (QuietHours.model_construct(start=time(1), end=time(2), timezone="No/Such_Zone",
                                    then="digest"),
         datetime(2026, 1, 1, 1, 30, tzinfo=UTC), True),  # unknown zone (not via load): UTC
    ],
)
def test_in_quiet_hours(quiet: QuietHours, at: datetime, inside: bool) -> None:
    assert in_quiet_hours(quiet, at) is inside


def test_quiet_hours_end_across_a_dst_change() -> None:
    # Europe/Paris skips 02:00-03:00 on 2026-03-29: a window ending at 02:30 ends "at 03:30".
    quiet = QuietHours(start=time(1), end=time(2, 30), timezone="Europe/Paris")
    at = datetime(2026, 3, 29, 1, 15, tzinfo=PARIS)
    end = quiet_hours_end(quiet, at)
    assert end > at
    assert end - at <= timedelta(hours=2)


# -- cooldown ----------------------------------------------------------------------------


def test_cooldown_holds_a_sender_until_the_period_ends() -> None:
    last = {("phone", "alice@example.social"): NOON - timedelta(seconds=60)}
    decisions = run([row(1), row(2, acct="bob@example.social")], last_sent=last,
                    cooldown_seconds=600)
    assert decisions[0] == Hold((1,), NOON + timedelta(seconds=540), "cooldown")
    assert isinstance(decisions[1], Send)
    assert decisions[1].pending_ids == (2,)


def test_after_the_cooldown_the_senders_messages_come_as_one() -> None:
    last = {("phone", "alice@example.social"): NOON - timedelta(seconds=600)}
    [send] = run([row(1), row(2), row(3)], last_sent=last, cooldown_seconds=600)
    assert isinstance(send, Send)
    assert send.pending_ids == (1, 2, 3)
    assert send.reason == COOLDOWN_REASON
    assert send.senders == ("alice@example.social",)
    assert send.notification.title == "3 new direct messages"


def test_without_cooldown_each_conversation_is_its_own_notification() -> None:
    assert len(run([row(1), row(2)])) == 2


# -- targets, give up, removed notifiers -------------------------------------------------


def test_partial_delivery_only_retries_the_missing_target() -> None:
    rows = [
        row(1, delivered=frozenset({target_key(URL_A)}), attempts=1),
        row(2),
        row(3, delivered=frozenset({target_key(URL_A), target_key(URL_B)}), attempts=1),
    ]
    decisions = run(rows, urls=(URL_A, URL_B))
    assert Drop((3,), "already delivered") in decisions
    by_ids = {d.pending_ids: d for d in sends(decisions)}
    assert by_ids[(1,)].urls == (URL_B,)
    assert by_ids[(2,)].urls == (URL_A, URL_B)


def test_give_up_after_failed_attempts() -> None:
    old = NOON - timedelta(hours=25)
    decisions = run([row(1, at=old, attempts=4), row(2, at=old)], give_up_after=timedelta(hours=24))
    assert decisions[0] == Drop((1,), "given up after 24 h")
    assert isinstance(decisions[1], Send)  # never tried: not given up


def test_removed_notifier_drops_its_rows() -> None:
    [drop] = plan([row(1)], NOON, {}, {})
    assert isinstance(drop, Drop)
    assert drop.pending_ids == (1,)


def test_no_pending_no_plan() -> None:
    assert run([]) == []


# -- backoff -----------------------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "ceiling"),
                         [(0, 30), (1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (10**6, 3600)])
def test_next_attempt_is_bounded(attempts: int, ceiling: float) -> None:
    rng = random.Random(7)
    delays = [(next_attempt(attempts, NOON, rng) - NOON).total_seconds() for _ in range(200)]
    assert all(1 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling * 0.8  # full jitter spreads over the whole range


def test_next_attempt_is_reproducible_with_a_seed() -> None:
    first = next_attempt(3, NOON, random.Random(1))
    assert first == next_attempt(3, NOON, random.Random(1))


def test_expired() -> None:
    day = timedelta(days=1)
    assert expired(NOON - day, NOON, day)
    assert not expired(NOON - day + timedelta(seconds=1), NOON, day)
