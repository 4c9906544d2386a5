"""Status HTML as plain text: the walk that turns a parsed tree into lines a person reads.

Blocks become paragraphs, `<br>` a line break, list items `- ` or `1. `, block quotes `> `
lines, and a link what `text_links` makes of it: its URL (the visible text of a link can
lie, a URL can't), `@user@domain` or `#tag`. The walk is iterative, so no nesting depth can
overflow the stack, and it stops once it has more text than the caller wants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bs4 import Tag
from bs4.element import NavigableString, PreformattedString

from dmbot.text_links import is_mention, mention_acct, safe_href, same_link, tag_classes, tag_href

_PARAGRAPH = frozenset({"p", "div", "blockquote", "pre", "ul", "ol", "table", "section",
                        "article", "header", "footer", "h1", "h2", "h3", "h4", "h5", "h6",
                        "dl", "figure", "hr"})
_LINE = frozenset({"li", "tr", "dt", "dd", "figcaption"})
_SPACES = re.compile(r"[^\S\n]+")


def flatten(root: Tag, limit: int, mentions: Mapping[str, str]) -> tuple[str, bool]:
    """The text of the tree under `root`, and whether it ran past `limit` (the walk stopped).

    `mentions` maps a mention's profile URL to its acct.
    """
    writer = _Writer(limit)
    _walk(root, writer, mentions)
    return writer.text(), writer.full


def _link_text(tag: Tag, mentions: Mapping[str, str]) -> str:
    href = tag_href(tag)
    text = " ".join(tag.get_text().split())
    if is_mention(tag, text):
        return "@" + (mentions.get(href) or mention_acct(href, text))
    if "hashtag" in tag_classes(tag) or text.startswith("#"):
        return text
    if not href or not safe_href(href):
        return text
    if same_link(text, href):
        return href
    return f"{text} ({href})"


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
    """Depth-first, iterative: a `_Close` marker on the stack closes the tag beneath it."""
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
