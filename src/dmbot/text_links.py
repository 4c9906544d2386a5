"""How a link in a status reads: a mention, a hashtag, or a URL, and whether it is safe.

Plain text and Markdown both ask these questions of an `<a>` tag. A mention is told by its
class (Mastodon's `mention`, never `hashtag`) or by text like `@user`; its acct comes from
the profile URL, whose shape differs between server software. A URL is only shown or linked
when its scheme is one a reader can safely follow (no `javascript:`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from bs4 import Tag

_SAFE_SCHEMES = frozenset({"http", "https", "mailto", "xmpp", "gemini", "matrix"})
_ELLIPSIS = "…"  # how Mastodon shortens the visible text of a long link


def mention_acct(href: str, text: str = "") -> str:
    """The `user@domain` a mention link points at, from its profile URL.

    Understands Mastodon/GoToSocial/Misskey (`/@user`, `/@user@other.domain`) and
    Pleroma/Akkoma (`/users/user`); otherwise uses the link text and the URL's host.
    """
    try:
        parts = urlsplit(href)
        host = parts.hostname or ""
    except ValueError:
        parts, host = None, ""
    segments = [s for s in (parts.path.split("/") if parts else []) if s]
    name = ""
    if segments and segments[0].startswith("@"):
        name = segments[0][1:]
    elif len(segments) >= 2 and segments[0] in {"users", "u", "user", "profile"}:
        name = segments[1]
    if not name:
        name = text.strip().lstrip("@")
    if not name:
        return host
    if "@" in name or not host:
        return name
    return f"{name}@{host}"


def tag_href(tag: Tag) -> str:
    value = tag.get("href")
    return value.strip() if isinstance(value, str) else ""


def safe_href(href: str) -> bool:
    scheme, sep, _ = href.partition(":")
    return bool(sep) and scheme.lower() in _SAFE_SCHEMES


def tag_classes(tag: Tag) -> set[str]:
    value = tag.get("class")
    if isinstance(value, str):
        return set(value.split())
    return set(value or ())


def is_mention(tag: Tag, text: str) -> bool:
    classes = tag_classes(tag)
    if "hashtag" in classes:
        return False
    return "mention" in classes or (text.startswith("@") and " " not in text)


def same_link(text: str, href: str) -> bool:
    """Whether a link's visible text is just its URL (possibly shortened, as Mastodon does)."""
    if not text:
        return True

    def bare(s: str) -> str:
        return re.sub(r"^[a-z]+://(www\.)?", "", s.strip(), flags=re.I).rstrip("/")

    t, h = bare(text), bare(href)
    return t == h or (t.endswith(_ELLIPSIS) and h.startswith(t[:-1]))
