"""Status HTML to what a person reads: plain text for lock screens and mail, Markdown for
targets that render it.

Mastodon sanitizes status HTML down to a few tags (`p`, `br`, `a`, `span` and, for remote
posts, some inline and list tags), but it still comes from strangers and from other servers.
So: the input is capped before parsing, script-like elements are dropped with their content,
the plain-text walk is iterative (no recursion to overflow), and markdownify, which recurses,
only sees trees of bounded depth and size; anything bigger gets escaped plain text instead.
Nothing here raises on bad input.

Links become their URL (the visible text of a link can lie, a URL can't); mentions become
`@user@domain`; hashtags stay `#tag`; entities are decoded by the parser.

This module holds the entry points and the guards around the input; the plain-text walk is
in `text_plain`, the Markdown conversion in `text_markdown`, and what a link is in `text_links`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import unescape

from bs4 import BeautifulSoup

from dmbot.text_links import mention_acct
from dmbot.text_markdown import escape_markdown, small_enough, to_markdown
from dmbot.text_plain import flatten

__all__ = [
    "DEFAULT_LIMIT", "escape_markdown", "markdown_text", "mention_acct", "plain_text", "scrub",
    "truncate",
]

DEFAULT_LIMIT = 65536
_HTML_PER_TEXT_CHAR = 4  # markup overhead we tolerate before the input cap cuts
_DROP = frozenset({"script", "style", "template", "iframe", "object", "embed", "noscript",
                   "head", "title", "svg", "math", "img", "video", "audio", "select"})
_MAX_TAGS = 10000
_ELLIPSIS = "…"

# C0/C1 controls (but tab and newline) and the bidi overrides/isolates that can make a
# display name or a URL read differently from what it is.
_UNSAFE_CHARS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
_TAG = re.compile(r"<[^<>]*(?:>|$)")
_BLANK_LINES = re.compile(r"\n{3,}")


def scrub(text: str) -> str:
    """Remove control and bidi-override characters; keep newlines, tabs and emoji joiners."""
    return _UNSAFE_CHARS.sub("", text)


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in `…` when something was cut.

    Cuts at a word boundary when one is near, so a lock screen doesn't show half a word.
    """
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + _ELLIPSIS


def plain_text(
    html: str, limit: int = DEFAULT_LIMIT, *, mentions: Mapping[str, str] | None = None
) -> str:
    """Readable plain text of a status's HTML, at most `limit` characters.

    `mentions` maps a mention's profile URL to its acct (from the status's `mentions`), which
    is more exact than guessing the acct from the URL.
    """
    try:
        parsed = _parse(html, limit)
        if parsed is None:
            return _fallback(html, limit)
        return _plain(*parsed, limit, mentions or {})
    except Exception:  # never let a hostile status break a notification
        return _fallback(html, limit)


def markdown_text(
    html: str, limit: int = DEFAULT_LIMIT, *, mentions: Mapping[str, str] | None = None
) -> str:
    """Markdown of a status's HTML: every character of the message escaped, links kept.

    `limit` counts the Markdown source; a cut may fall inside a link.
    """
    try:
        parsed = _parse(html, limit)
        if parsed is None:
            return escape_markdown(_fallback(html, limit))
        soup, cut = parsed
        if not small_enough(soup):
            return escape_markdown(_plain(soup, cut, limit, mentions or {}))
        return _finish(to_markdown(soup, mentions or {}), limit, cut)
    except Exception:  # never let a hostile status break a notification
        return escape_markdown(_fallback(html, limit))


def _input_cap(limit: int) -> int:
    return max(limit, 256) * _HTML_PER_TEXT_CHAR


def _parse(html: str, limit: int) -> tuple[BeautifulSoup, bool] | None:
    """Parse a bounded prefix of `html`; say whether it was cut. None: too many tags to parse.

    html.parser is linear but not fast (about 10 µs a tag), so markup with more tags than any
    real status has is not parsed at all.
    """
    cap = _input_cap(limit)
    if html.count("<", 0, cap) > _MAX_TAGS:
        return None
    # Wrapped in a div: BeautifulSoup warns when markup looks like a URL or a file name.
    soup = BeautifulSoup(f"<div>{html[:cap]}</div>", "html.parser")
    for tag in soup.find_all(_DROP):
        tag.extract()
    return soup, len(html) > cap


def _plain(soup: BeautifulSoup, cut: bool, limit: int, mentions: Mapping[str, str]) -> str:
    text, full = flatten(soup, limit, mentions)
    return _finish(text, limit, cut or full)


def _finish(text: str, limit: int, cut: bool) -> str:
    lines = [line.rstrip() for line in scrub(text).split("\n")]
    text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n").rstrip()
    if cut and len(text) < limit and not text.endswith(_ELLIPSIS):
        return text + _ELLIPSIS
    return truncate(text, limit)


def _fallback(html: str, limit: int) -> str:
    """Tags stripped by a (linear) regex, entities decoded: for markup too big to parse."""
    head = html[: _input_cap(limit)]
    text = " ".join(scrub(unescape(_TAG.sub(" ", head))).split())
    if len(html) > len(head) and len(text) < limit:
        return text + _ELLIPSIS
    return truncate(text, limit)
