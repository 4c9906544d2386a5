"""Direct statuses, their threads, and the conversation rows they make in each inbox.

Mastodon's model (`../shared/mastodon-api.md` §2): a status lands in one row per local
participant, the row for (owner, thread, exact set of other participants); rows are ordered
and paged by their `last_status_id` (`dmbot.sim_inbox`). `Simulator` hands this component its
lock (shared with the `AccountBook` that rows name participants from), its clock and domain,
and the streams that each created or updated row is pushed to.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from dmbot.sim_accounts import AccountBook
from dmbot.sim_inbox import Inboxes, Row
from dmbot.sim_json import conversation_json, status_content
from dmbot.sim_model import (
    ConversationView,
    NowSource,
    SimAccount,
    SimStatus,
    SnowflakeIds,
    require_aware,
    time_of,
)
from dmbot.sim_stream import Streams

Json = dict[str, Any]


class DirectMessages:
    """Statuses by id, threads by participants, rows by owner. Thread-safe."""

    def __init__(
        self,
        lock: threading.RLock,
        clock: NowSource,
        domain: str,
        accounts: AccountBook,
        streams: Streams,
    ) -> None:
        self._lock = lock
        self._clock = clock
        self._domain = domain
        self._accounts = accounts
        self._streams = streams
        self._status_ids = SnowflakeIds()
        self._statuses: dict[int, SimStatus] = {}
        self._thread_tip: dict[int, SimStatus] = {}
        self._thread_of: dict[frozenset[str], int] = {}
        self._thread_numbers = itertools.count(1)
        self._inboxes = Inboxes()

    # -- statuses and threads ---------------------------------------------------------

    def send_dm(
        self,
        author: SimAccount,
        *,
        to: Sequence[SimAccount],
        text: str = "",
        spoiler_text: str = "",
        html: str | None = None,
        thread: int | Literal["new"] | None = None,
        status_time: datetime | None = None,
        deliver: bool = True,
        media: int = 0,
        language: str | None = "en",
        sensitive: bool = False,
    ) -> SimStatus:
        """A direct status from `author` mentioning `to`.

        `thread`: a thread number to continue, "new", or None to continue the thread of the
        same participant set. `status_time`: the id and `created_at` come from that earlier
        time, but rows are written now (a late row, as Sidekiq and federation produce).
        `deliver=False`: only the author's row is written; recipients' rows wait for
        `deliver()` (a DM held back as a message request). `html` replaces the rendered content.
        """
        require_aware(status_time)
        with self._lock:
            recipients = tuple(dict.fromkeys(to))
            thread_no = self._pick_thread(author, recipients, thread)
            parent = self._thread_tip.get(thread_no)
            now = self._clock.now()
            sid = self._status_ids.at(status_time) if status_time else self._status_ids.now(now)
            created = time_of(sid)
            if not author.is_local:  # remote `published` has whole seconds
                created = created.replace(microsecond=0)
            if html is None:
                html = status_content(recipients, text, self._domain)
            status = SimStatus(
                id=str(sid),
                author=author,
                recipients=recipients,
                thread=thread_no,
                created_at=created,
                text=text,
                content=html,
                spoiler_text=spoiler_text,
                language=language,
                media=media,
                sensitive=sensitive or bool(spoiler_text),
                in_reply_to_id=parent.id if parent else None,
                in_reply_to_account_id=parent.author.id if parent else None,
            )
            self._statuses[sid] = status
            self._thread_tip[thread_no] = status
            author.statuses_count += 1
            author.last_status_at = created.date()
            if author.is_local:
                self._add_to_row(author, status)
            if deliver:
                self._deliver(status)
            return status

    def _pick_thread(
        self,
        author: SimAccount,
        recipients: tuple[SimAccount, ...],
        thread: int | Literal["new"] | None,
    ) -> int:
        people = frozenset(a.id for a in (author, *recipients))
        if thread is None:
            thread = self._thread_of.get(people, "new")
        if isinstance(thread, int) and thread not in self._thread_tip:
            raise ValueError(f"no thread {thread}: continue a status's `.thread`, or use 'new'")
        number = thread if isinstance(thread, int) else next(self._thread_numbers)
        self._thread_of[people] = number
        return number

    def deliver(self, status: SimStatus) -> None:
        """Write the recipients' rows of a status sent with `deliver=False` (idempotent)."""
        with self._lock:
            self._deliver(status)

    def _deliver(self, status: SimStatus) -> None:
        for recipient in status.recipients:
            if recipient.is_local and recipient is not status.author:
                self._add_to_row(recipient, status)
        status.delivered = True

    def _add_to_row(self, owner: SimAccount, status: SimStatus) -> None:
        """Add `status` to `owner`'s row, and push the row to the owner's streams."""
        row = self._inboxes.add(owner, status)
        if row is not None:
            self._publish(row)

    def soft_delete(self, status: SimStatus) -> None:
        """Hide a status but keep its rows in place: `last_status` becomes null (a reported
        status its author deleted). No stream event, as in Mastodon."""
        with self._lock:
            status.soft_deleted = True

    def delete_status(self, status: SimStatus) -> None:
        """Delete a status for good: rows drop it, move down, or vanish when left empty."""
        with self._lock:
            sid = int(status.id)
            if self._statuses.pop(sid, None) is None:
                return
            status.author.statuses_count = max(0, status.author.statuses_count - 1)
            self._inboxes.drop_status(sid)

    def status(self, status_id: str) -> SimStatus:
        """A status by id (soft-deleted ones too); KeyError once deleted for good."""
        with self._lock:
            if not status_id.isdigit() or int(status_id) not in self._statuses:
                raise KeyError(f"no status {status_id!r}")
            return self._statuses[int(status_id)]

    # -- conversation rows ------------------------------------------------------------

    def conversations(self, owner: SimAccount) -> list[ConversationView]:
        """All of `owner`'s rows, newest `last_status_id` first."""
        with self._lock:
            return [self._view(row) for row in self._inboxes.of(owner).newest_first()]

    def conversation(self, owner: SimAccount, conv_id: str | int) -> ConversationView | None:
        with self._lock:
            row = self._inboxes.row(owner, conv_id)
            return None if row is None else self._view(row)

    def set_unread(
        self, owner: SimAccount, conv_id: str | int, unread: bool
    ) -> ConversationView | None:
        """Mark a row read or unread (as another app would); None if there is no such row."""
        with self._lock:
            row = self._inboxes.row(owner, conv_id)
            if row is None:
                return None
            if row.unread != unread:
                row.unread = unread
                self._publish(row)
            return self._view(row)

    def delete_conversation(self, owner: SimAccount, conv_id: str | int) -> bool:
        """Destroy a row (statuses stay); False if there is no such row."""
        with self._lock:
            row = self._inboxes.row(owner, conv_id)
            if row is not None:
                self._inboxes.remove(row)
            return row is not None

    def _view(self, row: Row) -> ConversationView:
        last = self._statuses.get(row.status_ids[-1])
        return ConversationView(
            id=str(row.id),
            unread=row.unread,
            last_status_id=str(row.status_ids[-1]),
            status_ids=tuple(str(s) for s in row.status_ids),
            participants=tuple(a.acct for a in self._participants(row)),
            last_status_visible=last is not None and not last.soft_deleted,
        )

    def _conversation_json(self, row: Row) -> Json:
        last = self._statuses.get(row.status_ids[-1])
        visible = None if last is None or last.soft_deleted else last
        return conversation_json(row.id, row.unread, self._participants(row), visible, self._domain)

    def _participants(self, row: Row) -> list[SimAccount]:
        return self._accounts.known(row.others) or [row.owner]

    def conversations_above(
        self, owner: SimAccount, limit: int, min_id: int | None, max_id: int | None
    ) -> list[tuple[int, Json]]:
        """`paginate_by_min_id(...).reverse`: (last_status_id, JSON) newest first."""
        with self._lock:
            rows = self._inboxes.of(owner).above(limit, min_id, max_id)
            return [(row.key[0], self._conversation_json(row)) for row in rows]

    def conversations_below(
        self, owner: SimAccount, limit: int, max_id: int | None, since_id: int | None
    ) -> list[tuple[int, Json]]:
        """`paginate_by_max_id`: (last_status_id, JSON) newest first."""
        with self._lock:
            rows = self._inboxes.of(owner).below(limit, max_id, since_id)
            return [(row.key[0], self._conversation_json(row)) for row in rows]

    def conversation_json(self, owner: SimAccount, conv_id: str | int) -> Json | None:
        with self._lock:
            row = self._inboxes.row(owner, conv_id)
            return None if row is None else self._conversation_json(row)

    def _publish(self, row: Row) -> None:
        """Push a created or updated row to the owner's open streams."""
        self._streams.publish(
            row.owner.id, lambda: json.dumps(self._conversation_json(row), separators=(",", ":"))
        )
