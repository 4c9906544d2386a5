"""Builders the rules tests share: Events from a real Mastodon conversation, rules from text.

(No tests here; the name only keeps it beside the tests that import it.)
"""

from __future__ import annotations

import copy
import json
import textwrap
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dmbot.models import Conversation, Event, Relationship
from dmbot.rules import RuleSet, load_rules

DATA = Path(__file__).parent / "data" / "rules"
REAL = json.loads((DATA / "conversation.json").read_text(encoding="utf-8"))
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
LOCAL = "mastodon.social"
OWN_ID = "1"


def account(
    acct: str = "alice@example.social", account_id: str = "100", **fields: Any
) -> dict[str, Any]:
    """A Mastodon Account JSON: the real one's shape, with these values."""
    data: dict[str, Any] = copy.deepcopy(REAL["last_status"]["account"])
    data.update(id=account_id, acct=acct, username=acct.split("@")[0], display_name="Alice",
                bot=False, locked=False, created_at="2020-01-01T00:00:00.000Z",
                followers_count=50)
    data.update(fields)
    return data


def conversation(
    *,
    sender: Mapping[str, Any] | None = None,
    content: str = "<p>hello there</p>",
    unread: bool = True,
    others: Sequence[Mapping[str, Any]] = (),
    **status: Any,
) -> dict[str, Any]:
    """A Mastodon Conversation JSON whose last status is from `sender` (default: alice)."""
    author = dict(sender or account())
    data: dict[str, Any] = copy.deepcopy(REAL)
    data["unread"] = unread
    data["accounts"] = [author, *others] if author["id"] != OWN_ID else list(others)
    last = data["last_status"]
    last.update(account=author, content=content, spoiler_text="", language="en",
                media_attachments=[], mentions=[], in_reply_to_id=None, sensitive=False)
    last.update(status)
    return data


def event(
    relationship: tuple[bool, bool] | None = None, local_domain: str = LOCAL, **kwargs: Any
) -> Event:
    """An Event the way the engine makes one; `relationship` is (following, followed_by)."""
    built = Event.from_conversation(
        Conversation.model_validate(conversation(**kwargs)),
        local_domain=local_domain,
        own_account_id=OWN_ID,
    )
    if relationship is not None:
        following, followed_by = relationship
        rel = Relationship(id=built.sender.id, following=following, followed_by=followed_by)
        built = built.model_copy(update={"relationship": rel})
    return built


def write(directory: Path, text: str, name: str = "rules.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(directory: Path, text: str, env: Mapping[str, str] | None = None) -> RuleSet:
    return load_rules(write(directory, text), env or {})


def rules_with(condition: str, *, lists: str = "", conditions: str = "") -> str:
    """A rules file with one notifier and one rule `hit` whose `if:` is `condition`."""
    return textwrap.dedent("""\
        version: 1
        notifiers:
          phone: "json://localhost:8080/hook"
        {lists}
        {conditions}
        rules:
          - name: hit
            if: {condition}
            do: [mark_read]
        """).format(lists=lists, conditions=conditions, condition=condition)
