"""What a condition can look at: the fields of an Event, by the names the rules file uses.

Each field has a kind (which decides its operators and how values compare) and a reader.
A `Context` is made once per evaluation and remembers every value it has computed (the plain
text of the message, its casefolded form, normalised domains), so fifty rules that look at
`text` parse the HTML once. It holds nothing between evaluations.

Unknown values: a missing `created_at` or `language` is None, and every operator but
`equals: null` is false for None. A relationship the engine did not fetch
(`Event.relationship is None`) reads as "not following" for `sender.following`,
`sender.followed_by` and `sender.mutual`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from types import MappingProxyType

from dmbot.domains import acct_keys, normalise_domain
from dmbot.lists import ServerData
from dmbot.models import Account, Event
from dmbot.text import plain_text

MAX_TEXT = 64 * 1024  # characters of any string a condition sees (re2 is linear; this bounds it)
MAX_HTML = 2 * MAX_TEXT  # characters of status HTML handed to the HTML parser


class Kind(Enum):
    TEXT = "text"
    DOMAIN = "a domain"
    ACCOUNT = "an account"
    BOOL = "true or false"
    NUMBER = "a number"
    TIME = "a date"


class View(Enum):
    """The form of a value an operator compares against."""

    RAW = "raw"
    FOLD = "fold"  # casefolded, capped: equals / in / contains / starts_with / ends_with
    BYTES = "bytes"  # UTF-8, capped: regex
    DOMAIN = "domain"  # normalise_domain
    ACCOUNT = "account"  # acct_keys


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    read: Callable[[Context], object]  # for `many` fields: a tuple, one value per item
    doc: str
    many: bool = False  # "any participant / mention matches"
    optional: bool = False  # may be None
    relationship: bool = False  # needs Event.relationship


class Context:
    """One evaluation's view of one event."""

    __slots__ = ("_domains", "event", "local_key", "memo", "now", "server")

    def __init__(self, event: Event, now: datetime, server: ServerData) -> None:
        self.event = event
        self.now = now if now.tzinfo else now.replace(tzinfo=UTC)
        self.server = server
        self.local_key = normalise_domain(event.local_domain)
        self.memo: dict[str, object] = {}
        self._domains: dict[str, str] = {}

    def domain_key(self, domain: str) -> str:
        """`normalise_domain`, once per distinct domain in this event (IDNA is not cheap)."""
        key = self._domains.get(domain)
        if key is None:
            key = self._domains[domain] = normalise_domain(domain)
        return key

    def get(self, field: Field, view: View, key: str) -> object:
        """The value of `field` in `view`; `key` is `memo_key(field, view)`, made at load."""
        memo = self.memo
        value = memo.get(key, _MISSING)
        if value is not _MISSING:
            return value
        if view is View.RAW:
            value = field.read(self)
        else:
            raw = self.get(field, View.RAW, field.name)
            convert = _CONVERT[view]
            if field.many:
                assert isinstance(raw, tuple)
                value = tuple(convert(self, item) for item in raw)
            else:
                value = convert(self, raw)
        memo[key] = value
        return value


def memo_key(field: Field, view: View) -> str:
    return field.name if view is View.RAW else f"{field.name}|{view.value}"


_MISSING = object()


def _fold(ctx: Context, value: object) -> object:
    return value[:MAX_TEXT].casefold() if isinstance(value, str) else value


def _bytes(ctx: Context, value: object) -> object:
    return value[:MAX_TEXT].encode("utf-8", "replace") if isinstance(value, str) else value


def _domain(ctx: Context, value: object) -> object:
    return ctx.domain_key(value) if isinstance(value, str) else value


def _account(ctx: Context, value: object) -> object:
    return acct_keys(value, ctx.local_key, ctx.domain_key) if isinstance(value, str) else value


_CONVERT: Mapping[View, Callable[[Context, object], object]] = MappingProxyType({
    View.FOLD: _fold,
    View.BYTES: _bytes,
    View.DOMAIN: _domain,
    View.ACCOUNT: _account,
})


def message_text(event: Event) -> str:
    """The plain text of the message, capped (HTML parsing is the costly part of a rule)."""
    return plain_text(event.status.content[:MAX_HTML])[:MAX_TEXT]


def _age_days(account: Account, now: datetime) -> float | None:
    if account.created_at is None:
        return None
    created = account.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return (now - created).total_seconds() / 86400


def _created_at(ctx: Context) -> datetime | None:
    created = ctx.event.sender.created_at
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created


def _following(ctx: Context) -> bool:
    return ctx.event.relationship is not None and ctx.event.relationship.following


def _followed_by(ctx: Context) -> bool:
    return ctx.event.relationship is not None and ctx.event.relationship.followed_by


def _fields() -> Mapping[str, Field]:
    t, d, a, b, n = Kind.TEXT, Kind.DOMAIN, Kind.ACCOUNT, Kind.BOOL, Kind.NUMBER

    def sender(name: str, kind: Kind, read: Callable[[Account], object], doc: str) -> Field:
        return Field(f"sender.{name}", kind, lambda ctx: read(ctx.event.sender), doc)

    def each(name: str, kind: Kind, read: Callable[[Account], object], doc: str) -> Field:
        return Field(
            f"participants.{name}", kind,
            lambda ctx: tuple(read(account) for account in ctx.event.participants), doc, many=True,
        )

    fields = [
        sender("id", t, lambda s: s.id, "the sender's account id"),
        sender("acct", a, lambda s: s.acct, "user@domain; a local account is just user"),
        sender("username", t, lambda s: s.username, "the part before the @"),
        sender("display_name", t, lambda s: s.display_name, "the name shown"),
        sender("bot", b, lambda s: s.bot, "the account says it is automated"),
        sender("locked", b, lambda s: s.locked, "the account approves followers"),
        sender("group", b, lambda s: s.group, "a group actor"),
        sender("local", b, lambda s: s.is_local, "an account on your own server"),
        sender("followers_count", n, lambda s: s.followers_count, "followers"),
        sender("following_count", n, lambda s: s.following_count, "accounts it follows"),
        sender("statuses_count", n, lambda s: s.statuses_count, "posts"),
        Field("sender.domain", d, lambda c: c.event.sender.domain(c.event.local_domain),
              "the sender's server (yours for a local account)"),
        Field("sender.created_at", Kind.TIME, _created_at, "when the account was made (midnight"
              " UTC)", optional=True),
        Field("sender.age_days", n, lambda c: _age_days(c.event.sender, c.now),
              "days since the account was made", optional=True),
        Field("sender.following", b, _following, "you follow the sender", relationship=True),
        Field("sender.followed_by", b, _followed_by, "the sender follows you", relationship=True),
        Field("sender.mutual", b, lambda c: _following(c) and _followed_by(c),
              "you follow each other", relationship=True),
        each("acct", a, lambda p: p.acct, "any participant's address"),
        each("username", t, lambda p: p.username, "any participant's username"),
        Field("participants.domain", d,
              lambda c: tuple(p.domain(c.event.local_domain) for p in c.event.participants),
              "any participant's server", many=True),
        each("display_name", t, lambda p: p.display_name, "any participant's name"),
        each("bot", b, lambda p: p.bot, "any participant is a bot"),
        Field("participants.count", n, lambda c: len(c.event.participants),
              "how many other people are in the conversation"),
        Field("unread", b, lambda c: c.event.conversation.unread, "the conversation is unread"),
        Field("from_me", b, lambda c: c.event.from_me, "you wrote the last message"),
        Field("text", t, lambda c: message_text(c.event), "the message as plain text"),
        Field("spoiler_text", t, lambda c: c.event.status.spoiler_text, "the content warning"),
        Field("sensitive", b, lambda c: c.event.status.sensitive, "marked sensitive"),
        Field("is_reply", b, lambda c: c.event.status.in_reply_to_id is not None,
              "the message replies to another"),
        Field("visibility", t, lambda c: c.event.status.visibility, "direct, private, ..."),
        Field("language", t, lambda c: c.event.status.language, "a code such as en",
              optional=True),
        Field("media.count", n, lambda c: len(c.event.status.media_attachments), "attachments"),
        Field("mentions", a, lambda c: tuple(m.acct for m in c.event.status.mentions),
              "any mentioned address", many=True),
        Field("mentions.count", n, lambda c: len(c.event.status.mentions), "mentioned accounts"),
    ]
    return MappingProxyType({field.name: field for field in fields})


FIELDS: Mapping[str, Field] = _fields()
