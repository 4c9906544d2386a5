"""The state file: schema versions, atomic records, pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dmbot.actions import MarkRead, Notify
from dmbot.models import Conversation, Event
from dmbot.snowflake import from_time
from dmbot.store import MIGRATIONS, Store

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def event(conv: str, when: datetime) -> Event:
    status_id = from_time(when)
    conversation = Conversation.model_validate({
        "id": conv, "unread": True, "accounts": [],
        "last_status": {
            "id": status_id, "created_at": when.isoformat(),
            "account": {"id": "9", "username": "a", "acct": "a@x.example"},
        },
    })
    return Event.from_conversation(conversation, local_domain="sim.example", own_account_id="1")


def test_a_new_file_is_at_the_latest_schema_and_reopens(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    assert store.schema_version == len(MIGRATIONS)
    store.close()
    again = Store.open(tmp_path)
    assert again.schema_version == len(MIGRATIONS)
    again.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store._db.execute("PRAGMA user_version = 99")
    store.close()
    with pytest.raises(RuntimeError, match="newer than this dmbot knows"):
        Store.open(tmp_path)


def test_record_is_all_or_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    e = event("5", NOW)
    with pytest.raises(AttributeError):
        store.record(
            seen=[("5", e.status.id)],
            events=[(e, [MarkRead(rule="r"), "boom"])],  # type: ignore[list-item]
            cursor=e.status.id,
            now=NOW,
        )
    assert store.cursor is None
    assert store.seen_ids(["5"]) == {}
    store.close()


def test_cursor_never_moves_back_and_notify_gets_a_row_per_notifier(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    e = event("5", NOW)
    added = store.record(
        seen=[("5", e.status.id)],
        events=[(e, [Notify(rule="r", to=("phone", "mail")), MarkRead(rule="r")])],
        cursor=e.status.id,
        now=NOW,
    )
    assert added == 3
    store.record(seen=[], events=[], cursor=from_time(NOW - timedelta(days=1)), now=NOW)
    assert store.cursor == e.status.id
    due = store.due(NOW, ["notify"])
    assert sorted(item.notifier or "" for item in due) == ["mail", "phone"]
    store.close()


def test_prune_forgets_old_seen_rows_and_closed_actions(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    old, new = event("1", NOW - timedelta(days=30)), event("2", NOW)
    store.record(
        seen=[("1", old.status.id), ("2", new.status.id)],
        events=[(old, [MarkRead(rule="r")])],
        cursor=None,
        now=NOW - timedelta(days=30),
    )
    item = store.due(NOW, ["mark_read"])[0]
    store.finish([item.id], state="done", now=NOW - timedelta(days=30), outcome="ok")
    assert store.prune(NOW, timedelta(days=8)) == 1
    assert store.seen_ids(["1", "2"]) == {"2": new.status.id}
    assert store.status().recent == ()
    store.close()


def test_dry_run_copy_leaves_the_file_alone(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.set_meta("cursor", "100")
    copy = store.copy_in_memory()
    copy.set_meta("cursor", "200")
    assert store.cursor == "100"
    assert copy.cursor == "200"
    copy.close()
    store.close()
