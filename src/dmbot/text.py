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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import unescape
from typing import Any
from urllib.parse import quote, urlsplit

from bs4 import BeautifulSoup, Tag
from bs4.element import NavigableString, PageElement, PreformattedString
from markdownify import MarkdownConverter

DEFAULT_LIMIT = 65536
_HTML_PER_TEXT_CHAR = 4  # markup overhead we tolerate before the input cap cuts
_DROP = frozenset({"script", "style", "template", "iframe", "object", "embed", "noscript",
                   "head", "title", "svg", "math", "img", "video", "audio", "select"})
_PARAGRAPH = frozenset({"p", "div", "blockquote", "pre", "ul", "ol", "table", "section",
                        "article", "header", "footer", "h1", "h2", "h3", "h4", "h5", "h6",
                        "dl", "figure", "hr"})
_LINE = frozenset({"li", "tr", "dt", "dd", "figcaption"})
_SAFE_SCHEMES = frozenset({"http", "https", "mailto", "xmpp", "gemini", "matrix"})
_MARKDOWN_MAX_DEPTH = 40
_MARKDOWN_MAX_TAGS = 3000
_MAX_TAGS = 10000
_ELLIPSIS = "…"

# C0/C1 controls (but tab and newline) and the bidi overrides/isolates that can make a
# display name or a URL read differently from what it is.
_UNSAFE_CHARS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
_TAG = re.compile(r"<[^<>]*(?:>|$)")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~=&])")


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


def escape_markdown(text: str) -> str:
    """Backslash-escape every character Markdown could read as markup."""
    return _MD_SPECIAL.sub(r"\\\1", text)


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
        if not _small_enough(soup):
            return escape_markdown(_plain(soup, cut, limit, mentions or {}))
        text = str(_MarkdownConverter(mentions or {}).convert_soup(soup))
        return _finish(text, limit, cut)
    except Exception:  # never let a hostile status break a notification
        return escape_markdown(_fallback(html, limit))


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


# -- parsing -----------------------------------------------------------------------------


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


def _small_enough(soup: BeautifulSoup) -> bool:
    """Whether markdownify (recursive, some steps quadratic in depth) may walk this tree."""
    count = 0
    stack: list[tuple[Tag, int]] = [(soup, 0)]
    while stack:
        tag, depth = stack.pop()
        count += 1
        if depth > _MARKDOWN_MAX_DEPTH or count > _MARKDOWN_MAX_TAGS:
            return False
        stack.extend((child, depth + 1) for child in tag.children if isinstance(child, Tag))
    return True


def _plain(soup: BeautifulSoup, cut: bool, limit: int, mentions: Mapping[str, str]) -> str:
    writer = _Writer(limit)
    _walk(soup, writer, mentions)
    return _finish(writer.text(), limit, cut or writer.full)


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


def _href(tag: Tag) -> str:
    value = tag.get("href")
    return value.strip() if isinstance(value, str) else ""


def _safe_href(href: str) -> bool:
    scheme, sep, _ = href.partition(":")
    return bool(sep) and scheme.lower() in _SAFE_SCHEMES


def _classes(tag: Tag) -> set[str]:
    value = tag.get("class")
    if isinstance(value, str):
        return set(value.split())
    return set(value or ())


def _is_mention(tag: Tag, text: str) -> bool:
    classes = _classes(tag)
    if "hashtag" in classes:
        return False
    return "mention" in classes or (text.startswith("@") and " " not in text)


def _same_link(text: str, href: str) -> bool:
    """Whether a link's visible text is just its URL (possibly shortened, as Mastodon does)."""
    if not text:
        return True

    def bare(s: str) -> str:
        return re.sub(r"^[a-z]+://(www\.)?", "", s.strip(), flags=re.I).rstrip("/")

    t, h = bare(text), bare(href)
    return t == h or (t.endswith(_ELLIPSIS) and h.startswith(t[:-1]))


def _link_text(tag: Tag, mentions: Mapping[str, str]) -> str:
    href = _href(tag)
    text = " ".join(tag.get_text().split())
    if _is_mention(tag, text):
        return "@" + (mentions.get(href) or mention_acct(href, text))
    if "hashtag" in _classes(tag) or text.startswith("#"):
        return text
    if not href or not _safe_href(href):
        return text
    if _same_link(text, href):
        return href
    return f"{text} ({href})"


# -- plain text --------------------------------------------------------------------------


@dataclass
class _Writer:
    """Collects text, turning block boundaries into (at most two) newlines."""

    limit: int
    parts: list[str] = field(default_factory=list)
    size: int = 0
    pending: int = 0
    at_line_start: bool = True
    quote: int = 0
    pre: int = 0

    @property
    def full(self) -> bool:
        return self.size > self.limit

    def block(self, newlines: int) -> None:
        if self.parts:
            self.pending = max(self.pending, newlines)

    def hard_break(self) -> None:
        """A `<br>`: a line break, unless a paragraph break is already due."""
        if not self.pending:
            self.newline()

    def newline(self) -> None:
        self._emit("\n")
        self.at_line_start = True

    def write(self, text: str, *, verbatim: bool = False) -> None:
        if not self.pre and not verbatim:
            text = _SPACES.sub(" ", text.replace("\n", " "))
            if self.at_line_start or self.pending:
                text = text.lstrip()
        if not text:
            return
        if self.pending:
            for _ in range(self.pending):
                self.newline()
            self.pending = 0
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if i:
                self.newline()
            if line:
                if self.at_line_start and self.quote:
                    self._emit("> " * self.quote)
                self._emit(line)
                self.at_line_start = False

    def _emit(self, s: str) -> None:
        self.parts.append(s)
        self.size += len(s)

    def text(self) -> str:
        return "".join(self.parts)


def _walk(root: Tag, writer: _Writer, mentions: Mapping[str, str]) -> None:
    """Depth-first, iterative: a `None` marker on the stack closes the tag beneath it."""
    stack: list[Any] = [root]
    lists: list[list[int]] = []  # per open list: [ordered (0/1), next number]
    while stack and not writer.full:
        node = stack.pop()
        if isinstance(node, _Close):
            _close(node.tag, writer, lists)
        elif isinstance(node, Tag):
            if _open(node, writer, lists, mentions):
                stack.append(_Close(node))
                stack.extend(reversed(node.contents))
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            writer.write(str(node))


@dataclass(frozen=True)
class _Close:
    tag: Tag


def _open(
    tag: Tag, writer: _Writer, lists: list[list[int]], mentions: Mapping[str, str]
) -> bool:
    """Start `tag`; return whether its children should be walked."""
    name = tag.name
    if name == "br":
        writer.hard_break()
        return False
    if name == "a":
        writer.write(_link_text(tag, mentions))
        return False
    _break_around(name, writer, lists)
    if name == "blockquote":
        writer.quote += 1
    elif name == "pre":
        writer.pre += 1
    elif name in {"ul", "ol"}:
        lists.append([1 if name == "ol" else 0, 1])
    elif name == "li":
        indent = "  " * max(0, len(lists) - 1)
        if lists and lists[-1][0]:
            writer.write(f"{indent}{lists[-1][1]}. ", verbatim=True)
            lists[-1][1] += 1
        else:
            writer.write(f"{indent}- ", verbatim=True)
    elif name == "hr":
        writer.write("———")
    return True


def _close(tag: Tag, writer: _Writer, lists: list[list[int]]) -> None:
    name = tag.name
    if name == "blockquote":
        writer.quote = max(0, writer.quote - 1)
    elif name == "pre":
        writer.pre = max(0, writer.pre - 1)
    elif name in {"ul", "ol"} and lists:
        lists.pop()
    elif name in {"td", "th"}:
        writer.write(" ", verbatim=True)
    _break_around(name, writer, lists)


def _break_around(name: str, writer: _Writer, lists: list[list[int]]) -> None:
    """Paragraph break around blocks; line break around list items and nested lists (`lists`
    holds the lists around this tag, not counting itself)."""
    if name in _LINE or (name in {"ul", "ol"} and lists):
        writer.block(1)
    elif name in _PARAGRAPH:
        writer.block(2)


# -- markdown ----------------------------------------------------------------------------


def _markdown_url(href: str) -> str:
    """An href that cannot end the `(...)` of a Markdown link early."""
    return quote(href, safe=":/?#[]@!$&'*+,;=%~-._")


class _MarkdownConverter(MarkdownConverter):
    """markdownify with Mastodon's mentions and hashtags, and every text character escaped."""

    def __init__(self, mentions: Mapping[str, str]) -> None:
        super().__init__(
            escape_misc=True, bullets="-", heading_style="atx", autolinks=True
        )
        self._mentions = mentions

    def convert_a(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        href = _href(el)
        plain = " ".join(el.get_text().split())
        if _is_mention(el, plain):
            acct = self._mentions.get(href) or mention_acct(href, plain)
            label = escape_markdown("@" + acct)
            return f"[{label}]({_markdown_url(href)})" if _safe_href(href) else label
        if not href or not _safe_href(href):
            return text
        if "hashtag" in _classes(el) or plain.startswith("#"):
            return f"[{text}]({_markdown_url(href)})"
        if _same_link(plain, href):
            return f"<{_markdown_url(href)}>"
        return f"[{text}]({_markdown_url(href)})"

    def convert_img(self, el: PageElement, text: str, parent_tags: set[str]) -> str:
        return ""
