"""What the user reads: templates, privacy modes, content warnings, digests (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dmbot.actions import Notify
from dmbot.models import Account, Conversation, Event, MediaAttachment, Mention, Status
from dmbot.notifiers import NotifierConfig, Privacy
from dmbot.render import (
    DIGEST_LINES,
    TEMPLATE_FIELDS,
    Notification,
    check_template,
    render,
    render_digest,
    render_test,
)

HTML = (
    '<p><span class="h-card"><a href="https://home.example/@me" class="u-url mention">'
    "@<span>me</span></a></span> Lunch at 12? Bring the &quot;good&quot; coffee</p>"
    "<p>See https://example.com</p>"
)


def make_event(
    *,
    conversation: str = "c1",
    status: str = "100",
    acct: str = "alice@example.social",
    display_name: str = "Alice",
    content: str = HTML,
    spoiler: str = "",
    at: datetime | None = None,
    **status_fields: Any,
) -> Event:
    """An Event as the engine builds it from a Mastodon conversation (test factory)."""
    username = acct.partition("@")[0]
    domain = acct.partition("@")[2] or "home.example"
    sender = Account(
        id=f"id-{acct}", username=username, acct=acct, display_name=display_name,
        url=f"https://{domain}/@{username}",
    )
    last = Status(
        id=status,
        created_at=at or datetime(2026, 11, 2, 12, 0, tzinfo=UTC),
        account=sender,
        content=content,
        spoiler_text=spoiler,
        url=f"https://{domain}/@{username}/{status}",
        mentions=(Mention(id="1", username="me", acct="me", url="https://home.example/@me"),),
        **status_fields,
    )
    conv = Conversation(id=conversation, unread=True, accounts=(sender,), last_status=last)
    return Event.from_conversation(conv, local_domain="home.example", own_account_id="1")


def notifier(privacy: Privacy = Privacy.FULL, **fields: Any) -> NotifierConfig:
    return NotifierConfig(name="phone", urls=("json://127.0.0.1/x",), privacy=privacy, **fields)


def notify(**fields: Any) -> Notify:
    return Notify(rule="friends", to=("phone",), **fields)


def test_default_title_and_body() -> None:
    note = render(make_event(), notify(), notifier())
    assert note == Notification(
        title="DM from Alice (@alice@example.social)",
        body='@me Lunch at 12? Bring the "good" coffee\n\nSee https://example.com\n\n'
        "https://example.social/@alice/100",
    )


def test_default_title_without_display_name() -> None:
    note = render(make_event(display_name=""), notify(), notifier())
    assert note.title == "DM from @alice@example.social"


def test_every_template_field_renders() -> None:
    event = make_event(
        media_attachments=(MediaAttachment(id="m1", type="image"),), language="en"
    )
    rendered = {
        name: render(event, notify(body=f"<{{{name}}}>"), notifier()).body
        for name in TEMPLATE_FIELDS
    }
    assert rendered == {
        "sender": "<Alice (@alice@example.social)>",
        "sender.acct": "<alice@example.social>",
        "sender.handle": "<@alice@example.social>",
        "sender.username": "<alice>",
        "sender.display_name": "<Alice>",
        "sender.domain": "<example.social>",
        "sender.url": "<https://example.social/@alice>",
        "text": '<@me Lunch at 12? Bring the "good" coffee\n\nSee https://example.com\n\n'
        "[1 attachment]>",
        "spoiler_text": "<>",
        "visibility": "<direct>",
        "language": "<en>",
        "participants": "<@alice@example.social>",
        "participant_count": "<1>",
        "conversation.id": "<c1>",
        "status.id": "<100>",
        "status.url": "<https://example.social/@alice/100>",
        "status.created_at": "<2026-11-02T12:00:00+00:00>",
        "media_count": "<1>",
        "rule": "<friends>",
        "notifier": "<phone>",
    }
    assert all(check_template("{" + name + "}") is None for name in TEMPLATE_FIELDS)


def test_local_sender_handle_gets_the_instance_domain() -> None:
    note = render(make_event(acct="bob"), notify(title="{sender.handle} {sender.domain}"),
                  notifier())
    assert note.title == "@bob@home.example home.example"


def test_message_text_is_data_not_a_template() -> None:
    event = make_event(content="<p>{sender.acct} {text.__class__} {0} {{x}}</p>")
    note = render(event, notify(body="{text}"), notifier())
    assert note.body == "{sender.acct} {text.__class__} {0} {{x}}"


def test_display_name_cannot_break_the_title() -> None:
    event = make_event(display_name="Ev\u202eil\nName\x1b[31m")
    title = render(event, notify(), notifier()).title
    assert title == "DM from Evil Name[31m (@alice@example.social)"


def test_literal_braces() -> None:
    note = render(make_event(), notify(title="{{rule}} {rule}"), notifier())
    assert note.title == "{rule} friends"


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{text.__class__}", "unknown field {text.__class__}"),
        ("{text[0]}", "unknown field {text[0]}"),
        ("{0}", "positional placeholder {0}"),
        ("{}", "positional placeholder {}"),
        ("{sender.acct!r}", "conversions such as !r are not supported"),
        ("{text:>10}", "format specs are not supported: {text:>10}"),
        ("{text:{rule}}", "format specs are not supported"),
        ("{sender.acc}", "did you mean {sender.acct}?"),
        ("{__import__}", "unknown field {__import__}"),
        ("{text", "invalid template"),
        ("text}", "invalid template"),
    ],
)
def test_check_template_refuses(template: str, error: str) -> None:
    message = check_template(template)
    assert message is not None
    assert error in message


def test_an_unchecked_bad_template_falls_back_to_the_default() -> None:
    note = render(make_event(), notify(title="{text.__class__.__mro__}"), notifier())
    assert note.title == "DM from Alice (@alice@example.social)"


def test_content_warning_is_shown_instead_of_the_text() -> None:
    event = make_event(spoiler="politics", content="<p>the hidden part</p>")
    note = render(event, notify(), notifier())
    assert note.body == "CW: politics\n\nhttps://example.social/@alice/100"
    assert "hidden" not in note.body


def test_rule_can_show_the_text_behind_a_content_warning() -> None:
    event = make_event(spoiler="politics", content="<p>the hidden part</p>")
    note = render(event, notify(show_spoilered_text=True), notifier())
    assert note.body == "CW: politics\n\nthe hidden part\n\nhttps://example.social/@alice/100"


def test_truncated_caps_the_text_at_max_chars() -> None:
    event = make_event(content="<p>" + "word " * 200 + "</p>")
    note = render(event, notify(), notifier(Privacy.TRUNCATED, max_chars=50))
    text, url = note.body.split("\n\n")
    assert len(text) <= 50
    assert text.endswith("…")
    assert url == "https://example.social/@alice/100"  # the link survives the cut


def test_full_keeps_long_text() -> None:
    event = make_event(content="<p>" + "word " * 200 + "</p>")
    note = render(event, notify(body="{text}"), notifier(Privacy.FULL, max_chars=50))
    assert note.body == ("word " * 200).strip()


def test_sender_only_never_includes_the_text() -> None:
    event = make_event(spoiler="secret cw", content="<p>secret text</p>")
    note = render(
        event, notify(body="{text}\n{spoiler_text}\n{status.url}"), notifier(Privacy.SENDER_ONLY)
    )
    assert note == Notification(
        "DM from Alice (@alice@example.social)", "https://example.social/@alice/100"
    )


def test_link_only_sends_the_link_and_nothing_else() -> None:
    event = make_event(content="<p>secret text</p>")
    note = render(event, notify(title="{sender} {text}", body="{text}"),
                  notifier(Privacy.LINK_ONLY))
    assert note == Notification("New direct message", "https://example.social/@alice/100")


def test_merged_conversation_counts_earlier_messages() -> None:
    note = render(make_event(content="<p>third</p>"), notify(body="{text}"), notifier(),
                  earlier=2)
    assert note.body == "third\n\n(+2 earlier messages in this conversation)"
    link = render(make_event(), notify(), notifier(Privacy.LINK_ONLY), earlier=2)
    assert link.title == "3 new direct messages"


def test_markdown_body_escapes_fields_and_keeps_links() -> None:
    event = make_event(display_name="*Al_ice*", content='<p>hi <a href="https://x.example/">there</a></p>')
    note = render(event, notify(body="{sender}: {text}"), notifier(), body_format="markdown")
    assert note.body_format == "markdown"
    assert note.body == r"\*Al\_ice\* \(@alice@example\.social\): hi [there](https://x.example/)"
    assert note.title == "DM from *Al_ice* (@alice@example.social)"  # titles stay plain


def test_title_is_one_capped_line() -> None:
    note = render(make_event(), notify(title="a\nb " + "x" * 500), notifier())
    assert "\n" not in note.title
    assert len(note.title) <= 200


def test_digest_lists_each_message() -> None:
    items = [
        (make_event(conversation=f"c{i}", acct=f"u{i}@example.social", display_name=f"U{i}",
                    content=f"<p>message {i}</p>"), notify())
        for i in range(3)
    ]
    note = render_digest(items, notifier(), "Held during quiet hours.")
    assert note == Notification(
        "3 new direct messages",
        "- U0 (@u0@example.social): message 0\n"
        "- U1 (@u1@example.social): message 1\n"
        "- U2 (@u2@example.social): message 2\n\n"
        "Held during quiet hours.",
    )


def test_digest_respects_privacy_and_content_warnings() -> None:
    items = [(make_event(spoiler="cw!", content="<p>hidden</p>"), notify())]
    assert render_digest(items, notifier(), "").body == "- Alice (@alice@example.social): CW: cw!"
    sender_only = render_digest(items, notifier(Privacy.SENDER_ONLY), "")
    assert sender_only.body == "- Alice (@alice@example.social)"
    link_only = render_digest(items, notifier(Privacy.LINK_ONLY), "")
    assert link_only.body == "- https://example.social/@alice/100"
    assert link_only.title == "1 new direct message"


def test_digest_is_bounded() -> None:
    items = [(make_event(conversation=f"c{i}", content="<p>" + "x" * 300 + "</p>"), notify())
             for i in range(DIGEST_LINES + 5)]
    note = render_digest(items, notifier(), "")
    lines = note.body.split("\n")
    assert len(lines) == DIGEST_LINES + 1
    assert lines[-1] == "…and 5 more"
    assert all(len(line) < 150 for line in lines)


def test_render_test() -> None:
    note = render_test(notifier(Privacy.SENDER_ONLY))
    assert note.title == "dmbot test notification"
    assert "'phone'" in note.body
    assert "sender_only" in note.body
