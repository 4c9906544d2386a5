"""When and how pending notifications go out: merging, digests, quiet hours, cooldown,
retries (pure policy; the engine owns the outbox and the clock and does what `plan` says).

For each notifier, `plan` takes the pending rows that are due and decides, in this order:

1. Rows for a notifier no longer configured, rows already delivered to every target, and
   rows that failed for longer than `give_up_after` are dropped.
2. Quiet hours (the rule's, else the notifier's; a rule may bypass them): during the window
   rows are held until it ends, or dropped if it says `then: drop`. Rows written during a
   window that has since ended are sent as one digest ("while you were away").
3. Several messages of one conversation make one notification: the newest, with a count.
4. Cooldown: a sender who had a notification less than `cooldown_seconds` ago waits until
   the period ends; then everything they sent meanwhile goes out as one notification.
5. More than `digest_threshold` notifications left: one digest lists them instead.

Rows of one notifier that still owe different targets (after a partial failure) are planned
separately, so a retry never re-sends to a target that already accepted it.

Every datetime here is timezone-aware.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dmbot.actions import Notify
from dmbot.models import Event
from dmbot.notifiers import NotifierConfig, QuietHours
from dmbot.notify import target_key
from dmbot.render import BodyFormat, Notification, render, render_digest

QUIET_REASON = "Held during quiet hours."
BURST_REASON = "Many messages arrived at once, so they come as one digest."
COOLDOWN_REASON = "Sent together: this sender's notifications are limited by a cooldown."


@dataclass(frozen=True)
class Pending:
    """One outbox row: one message for one notifier, not yet delivered everywhere."""

    id: int
    event: Event
    action: Notify
    notifier: str
    created_at: datetime
    attempts: int = 0
    delivered: frozenset[str] = frozenset()  # `target_key`s of the URLs that accepted it


@dataclass(frozen=True)
class Send:
    """One delivery covering one or more rows (merged or digest)."""

    notification: Notification
    pending_ids: tuple[int, ...]
    notifier: str
    urls: tuple[str, ...]  # the notifier's URLs these rows still owe
    senders: tuple[str, ...]  # the senders' accts: the ones the cooldown now applies to
    reason: str = ""  # why it is a digest, "" for a single notification


@dataclass(frozen=True)
class Hold:
    pending_ids: tuple[int, ...]
    until: datetime
    reason: str = ""


@dataclass(frozen=True)
class Drop:
    pending_ids: tuple[int, ...]
    reason: str


Decision = Send | Hold | Drop


def plan(
    pending: Sequence[Pending],
    now: datetime,
    notifiers: Mapping[str, NotifierConfig],
    last_sent_by_sender: Mapping[tuple[str, str], datetime],
    *,
    give_up_after: timedelta | None = None,
) -> list[Decision]:
    """What to do with the due `pending` rows now. `last_sent_by_sender` maps
    (notifier name, sender acct) to the last time that sender was notified there."""
    decisions: list[Decision] = []
    by_notifier: dict[str, list[Pending]] = defaultdict(list)
    for row in pending:
        by_notifier[row.notifier].append(row)
    for name in sorted(by_notifier):
        rows = by_notifier[name]
        config = notifiers.get(name)
        if config is None:
            decisions.append(Drop(_ids(rows), f"notifier '{name}' is no longer configured"))
            continue
        keys = {target_key(url): url for url in config.urls}
        owed: dict[tuple[str, ...], list[Pending]] = defaultdict(list)
        done, stale = [], []
        for row in rows:
            urls = tuple(url for key, url in keys.items() if key not in row.delivered)
            if not urls:
                done.append(row)
            elif give_up_after and row.attempts and expired(row.created_at, now, give_up_after):
                stale.append(row)
            else:
                owed[urls].append(row)
        if done:
            decisions.append(Drop(_ids(done), "already delivered"))
        if stale:
            hours = give_up_after.total_seconds() / 3600 if give_up_after else 0
            decisions.append(Drop(_ids(stale), f"given up after {hours:g} h"))
        for urls, group in owed.items():
            decisions.extend(_plan_notifier(group, config, urls, now, last_sent_by_sender))
    return decisions


def next_attempt(
    attempts: int, now: datetime, rng: random.Random, base: float = 30, cap: float = 3600
) -> datetime:
    """When to try again after `attempts` failed attempts: exponential backoff with full
    jitter (uniform between 0 and min(cap, base * 2**(attempts-1))), at least a second."""
    ceiling = min(cap, base * 2 ** min(max(attempts - 1, 0), 32))
    return now + timedelta(seconds=max(1.0, rng.uniform(0, ceiling)))


def expired(created_at: datetime, now: datetime, give_up_after: timedelta) -> bool:
    return now - created_at >= give_up_after


def in_quiet_hours(quiet: QuietHours, at: datetime) -> bool:
    """Whether `at` falls in the window (start inclusive, end exclusive; may span midnight;
    start == end is an empty window)."""
    t = at.astimezone(_zone(quiet.timezone)).time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        return quiet.start <= t < quiet.end
    if quiet.start > quiet.end:
        return t >= quiet.start or t < quiet.end
    return False


def quiet_hours_end(quiet: QuietHours, at: datetime) -> datetime:
    """The end (UTC) of the window `at` is in; `at` must be in one."""
    zone = _zone(quiet.timezone)
    local = at.astimezone(zone)
    day: date = local.date()
    if quiet.start > quiet.end and local.time().replace(tzinfo=None) >= quiet.start:
        day += timedelta(days=1)
    end = datetime.combine(day, quiet.end, tzinfo=zone).astimezone(UTC)
    # A wall-clock time skipped by a DST change can land the end before `at`.
    return end if end > at else at + timedelta(minutes=1)


# -- one notifier ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    """One notification's worth of rows: a conversation's new messages, newest first."""

    rows: tuple[Pending, ...]

    @property
    def newest(self) -> Pending:
        return self.rows[0]

    @property
    def sender(self) -> str:
        return self.newest.event.sender.acct

    @property
    def earlier(self) -> int:
        return len({row.event.status.id for row in self.rows}) - 1


def _plan_notifier(
    rows: list[Pending],
    config: NotifierConfig,
    urls: tuple[str, ...],
    now: datetime,
    last_sent: Mapping[tuple[str, str], datetime],
) -> list[Decision]:
    decisions: list[Decision] = []
    ready: list[Pending] = []
    after_quiet: list[Pending] = []
    held: dict[datetime, list[Pending]] = defaultdict(list)
    dropped: list[Pending] = []
    for row in rows:
        quiet = _quiet_hours(row, config)
        if quiet is None or row.action.bypass_quiet_hours:
            ready.append(row)
        elif in_quiet_hours(quiet, now):
            if quiet.then == "drop":
                dropped.append(row)
            else:
                held[quiet_hours_end(quiet, now)].append(row)
        elif in_quiet_hours(quiet, row.created_at):
            (dropped if quiet.then == "drop" else after_quiet).append(row)
        else:
            ready.append(row)
    if dropped:
        decisions.append(Drop(_ids(dropped), "quiet hours"))
    decisions.extend(Hold(_ids(group), until, "quiet hours") for until, group in held.items())
    fmt = config.body_format
    if after_quiet:
        decisions.append(_send(_units(after_quiet), config, urls, QUIET_REASON, fmt))

    units = _units(ready)
    outgoing: list[list[_Unit]] = []  # each entry becomes one notification
    if config.cooldown_seconds:
        period = timedelta(seconds=config.cooldown_seconds)
        by_sender: dict[str, list[_Unit]] = defaultdict(list)
        for unit in units:
            by_sender[unit.sender].append(unit)
        for sender, group in by_sender.items():
            last = last_sent.get((config.name, sender))
            if last is not None and now < last + period:
                rows_held = [row for unit in group for row in unit.rows]
                decisions.append(Hold(_ids(rows_held), last + period, "cooldown"))
            else:
                outgoing.append(group)
    else:
        outgoing = [[unit] for unit in units]

    if len(outgoing) > config.digest_threshold:
        everything = sorted((u for group in outgoing for u in group), key=_unit_order)
        decisions.append(_send(everything, config, urls, BURST_REASON, fmt))
    else:
        decisions.extend(_send(group, config, urls, COOLDOWN_REASON, fmt) for group in outgoing)
    return decisions


def _send(
    units: list[_Unit], config: NotifierConfig, urls: tuple[str, ...], reason: str,
    fmt: BodyFormat,
) -> Send:
    """A single (possibly merged) notification for one unit, else a digest of them all."""
    rows = [row for unit in units for row in unit.rows]
    senders = tuple(sorted({unit.sender for unit in units}))
    if len(units) == 1:
        unit = units[0]
        note = render(
            unit.newest.event, unit.newest.action, config, body_format=fmt, earlier=unit.earlier
        )
        reason = ""
    else:
        items = [(u.newest.event, u.newest.action) for u in units]
        note = render_digest(items, config, reason, body_format=fmt)
    return Send(note, _ids(rows), config.name, urls, senders, reason)


def _units(rows: Iterable[Pending]) -> list[_Unit]:
    """Rows grouped by conversation, newest message first in each; oldest group first."""
    by_conversation: dict[str, list[Pending]] = defaultdict(list)
    for row in rows:
        by_conversation[row.event.conversation.id].append(row)
    units = [
        _Unit(tuple(sorted(group, key=_row_order, reverse=True)))
        for group in by_conversation.values()
    ]
    return sorted(units, key=_unit_order)


def _row_order(row: Pending) -> tuple[datetime, int, int]:
    # Newest by the message's time; on a tie, a later status id, then a later row.
    status_id = row.event.status.id
    return (row.event.status.created_at, int(status_id) if status_id.isdigit() else 0, -row.id)


def _unit_order(unit: _Unit) -> tuple[datetime, int]:
    return unit.newest.event.status.created_at, unit.newest.id


def _ids(rows: Iterable[Pending]) -> tuple[int, ...]:
    return tuple(sorted({row.id for row in rows}))


def _quiet_hours(row: Pending, config: NotifierConfig) -> QuietHours | None:
    """The rule's quiet hours if it has them, else the notifier's."""
    return row.action.quiet_hours or config.quiet_hours


def _zone(name: str) -> tzinfo:
    """The time zone; UTC if the name is unknown (the rules loader rejects such names)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC
