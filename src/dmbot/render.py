"""What a notification says: the title and body a person sees, rendered from an Event (pure).

Templates are the rules file's `title:` and `body:`, written with `{field}` placeholders from
`TEMPLATE_FIELDS`. They are filled by a formatter of our own, not `str.format`: a placeholder
can only name one of those fields, which are plain strings computed up front, so a template
cannot reach into objects (`{text.__class__}`), index, convert or pad, and the message text,
which strangers write, is inserted once and never read as a template itself.

The notifier's privacy mode decides how much of the message leaves Mastodon:

    full         the text, capped only by the channel (see `notify.py`)
    truncated    the text cut to `max_chars`
    sender_only  who wrote, never what (`{text}` and `{spoiler_text}` are empty)
    link_only    "New direct message" and the link; templates are not used at all

A content warning is shown instead of the text unless the rule sets `show_spoilered_text`.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from dmbot.actions import Notify
from dmbot.models import Event
from dmbot.notifiers import NotifierConfig, Privacy
from dmbot.text import escape_markdown, markdown_text, plain_text, scrub, truncate

BodyFormat = Literal["text", "markdown"]

DEFAULT_TITLE = "DM from {sender}"
DEFAULT_BODY = "{text}\n\n{status.url}"
TITLE_LIMIT = 200
FULL_TEXT_LIMIT = 32768  # Apprise's default per-service body limit; channels cap further
DIGEST_LINES = 20
DIGEST_SNIPPET = 100
_TEMPLATE_OVERHEAD = 2000  # room for the rest of a body template around `{text}`

TEMPLATE_FIELDS: frozenset[str] = frozenset({
    "sender",  # "Alice (@alice@example.social)", or "@alice@example.social" without a name
    "sender.acct",  # as Mastodon gives it: "alice@example.social", or "bob" for a local one
    "sender.handle",  # always with a domain: "@bob@your.instance"
    "sender.username",
    "sender.display_name",  # falls back to the username
    "sender.domain",
    "sender.url",  # the profile page
    "text",  # the message as plain text (or Markdown), per privacy mode and content warning
    "spoiler_text",  # the content warning, "" when there is none
    "visibility",
    "language",
    "participants",  # "@alice@example.social, @bob"
    "participant_count",
    "conversation.id",
    "status.id",
    "status.url",
    "status.created_at",  # ISO 8601, UTC
    "media_count",
    "rule",
    "notifier",
})

# Fields that carry what the message says, withheld by `sender_only`.
_CONTENT_FIELDS = frozenset({"text", "spoiler_text", "language", "media_count"})


@dataclass(frozen=True)
class Notification:
    title: str
    body: str
    body_format: BodyFormat = "text"


def check_template(template: str) -> str | None:
    """Why `template` cannot be used, or None if it can. The rules loader reports this."""
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as e:
        return f"invalid template: {e} (write {{{{ or }}}} for a literal brace)"
    for _literal, name, spec, conversion in pieces:
        if name is None:
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (
            f":{spec}" if spec else ""
        ) + "}"
        if name == "" or name.isdigit():
            return f"positional placeholder {shown}: name a field, such as {{text}}"
        if name not in TEMPLATE_FIELDS:
            close = difflib.get_close_matches(name, sorted(TEMPLATE_FIELDS), n=1)
            hint = f" (did you mean {{{close[0]}}}?)" if close else ""
            return f"unknown field {shown}{hint}; known fields: " + ", ".join(
                sorted(TEMPLATE_FIELDS)
            )
        if conversion:
            return f"conversions such as !{conversion} are not supported: {shown}"
        if spec:
            return f"format specs are not supported: {shown}"
    return None


def render(
    event: Event,
    action: Notify,
    notifier: NotifierConfig,
    *,
    body_format: BodyFormat = "text",
    earlier: int = 0,
) -> Notification:
    """The notification for one message. `earlier`: how many older messages of the same
    conversation it stands for (merged in one delivery cycle)."""
    if notifier.privacy == Privacy.LINK_ONLY:
        return _link_only(event, earlier + 1, body_format)
    plain = _fields(event, action, notifier, "text")
    values = plain if body_format == "text" else _fields(event, action, notifier, body_format)
    title = _fill(action.title, DEFAULT_TITLE, plain)
    body = _fill(action.body, DEFAULT_BODY, values)
    if earlier:
        more = f"(+{earlier} earlier message{_s(earlier)} in this conversation)"
        body = f"{body}\n\n{_escape(more, body_format)}" if body.strip() else more
    return Notification(_title(title), _tidy(body, _body_cap(notifier)), body_format)


def render_digest(
    items: Sequence[tuple[Event, Notify]],
    notifier: NotifierConfig,
    reason: str,
    *,
    body_format: BodyFormat = "text",
) -> Notification:
    """One notification listing several messages: "5 new direct messages", a line each."""
    count = len(items)
    lines = [_digest_line(e, a, notifier, body_format) for e, a in items[:DIGEST_LINES]]
    if count > DIGEST_LINES:
        lines.append(_escape(f"…and {count - DIGEST_LINES} more", body_format))
    body = "\n".join(lines)
    if reason:
        body += "\n\n" + _escape(reason, body_format)
    title = f"{count} new direct message{_s(count)}"
    return Notification(title, _tidy(body, _body_cap(notifier)), body_format)


def render_test(notifier: NotifierConfig) -> Notification:
    return Notification(
        "dmbot test notification",
        f"This is a test from dmbot for the notifier '{scrub(notifier.name)}'. "
        "If you can read it, delivery works.\n\n"
        f"Privacy mode: {notifier.privacy.value}.",
    )


# -- fields ------------------------------------------------------------------------------


def _fields(
    event: Event, action: Notify, notifier: NotifierConfig, body_format: BodyFormat
) -> dict[str, str]:
    sender, status = event.sender, event.status
    name = _line(sender.display_name)
    acct = _line(sender.acct)
    handle = acct if "@" in acct else f"{acct}@{event.local_domain}"
    values = {
        "sender": f"{name} (@{acct})" if name else f"@{acct}",
        "sender.acct": acct,
        "sender.handle": "@" + handle,
        "sender.username": _line(sender.username),
        "sender.display_name": name or _line(sender.username),
        "sender.domain": sender.domain(event.local_domain),
        "sender.url": _line(sender.url or ""),
        "spoiler_text": _line(status.spoiler_text),
        "visibility": status.visibility,
        "language": status.language or "",
        "participants": ", ".join("@" + _line(a.acct) for a in event.participants),
        "participant_count": str(len(event.participants)),
        "conversation.id": event.conversation.id,
        "status.id": status.id,
        "status.url": _status_url(event),
        "status.created_at": status.created_at.isoformat(),
        "media_count": str(len(status.media_attachments)),
        "rule": action.rule,
        "notifier": notifier.name,
    }
    if body_format == "markdown":
        values = {k: escape_markdown(v) for k, v in values.items()}
    values["text"] = _text(event, action, notifier, body_format)
    if notifier.privacy == Privacy.SENDER_ONLY:
        values.update(dict.fromkeys(_CONTENT_FIELDS, ""))
    return values


def _text(event: Event, action: Notify, notifier: NotifierConfig, fmt: BodyFormat) -> str:
    """The message as the privacy mode allows: content warning first, attachments counted."""
    if notifier.privacy in (Privacy.SENDER_ONLY, Privacy.LINK_ONLY):
        return ""
    limit = notifier.max_chars if notifier.privacy == Privacy.TRUNCATED else FULL_TEXT_LIMIT
    status = event.status
    warning = _line(status.spoiler_text)
    parts = []
    if warning:
        parts.append(_escape(f"CW: {warning}", fmt))
    if not warning or action.show_spoilered_text:
        mentions = {m.url: m.acct for m in status.mentions if m.url}
        convert = markdown_text if fmt == "markdown" else plain_text
        parts.append(convert(status.content, limit, mentions=mentions))
        media = len(status.media_attachments)
        if media:
            parts.append(_escape(f"[{media} attachment{_s(media)}]", fmt))
    return truncate("\n\n".join(p for p in parts if p), limit)


def _status_url(event: Event) -> str:
    return _line(event.status.url or event.status.uri or "")


def _digest_line(
    event: Event, action: Notify, notifier: NotifierConfig, fmt: BodyFormat
) -> str:
    if notifier.privacy == Privacy.LINK_ONLY:
        return "- " + (_escape(_status_url(event), fmt) or "(no link)")
    values = _fields(event, action, notifier, "text")
    line = values["sender"]
    if notifier.privacy != Privacy.SENDER_ONLY:
        snippet = " ".join(_text(event, action, notifier, "text").split())
        if snippet:
            line += ": " + truncate(snippet, min(DIGEST_SNIPPET, notifier.max_chars))
    return "- " + _escape(line, fmt)


def _link_only(event: Event, count: int, fmt: BodyFormat) -> Notification:
    title = "New direct message" if count == 1 else f"{count} new direct messages"
    url = _status_url(event)
    body = _escape(url, fmt) if url else "Open Mastodon to read it."
    return Notification(title, body, fmt)


# -- formatting --------------------------------------------------------------------------


def _fill(template: str | None, default: str, values: Mapping[str, str]) -> str:
    """`template` with its placeholders replaced; the default if it doesn't check out.

    The rules loader rejects bad templates, so the fallback only covers a rules file that
    skipped validation; a notification is better than an exception here.
    """
    if template is None or check_template(template) is not None:
        template = default
    out = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is not None:
            out.append(values.get(name, ""))
    return "".join(out)


def _body_cap(notifier: NotifierConfig) -> int:
    if notifier.privacy == Privacy.FULL:
        return FULL_TEXT_LIMIT
    return notifier.max_chars + _TEMPLATE_OVERHEAD


def _tidy(body: str, cap: int) -> str:
    """Trailing spaces and runs of blank lines (left by empty fields) removed, then capped."""
    lines = [line.rstrip() for line in body.replace("\r\n", "\n").split("\n")]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return truncate(text.strip("\n"), cap)


def _title(title: str) -> str:
    return truncate(" ".join(title.split()), TITLE_LIMIT)


def _line(value: str) -> str:
    """A field value on one line, with control and bidi-override characters removed."""
    return " ".join(scrub(value).split())


def _escape(text: str, fmt: BodyFormat) -> str:
    return escape_markdown(text) if fmt == "markdown" else text


def _s(count: int) -> str:
    return "" if count == 1 else "s"
