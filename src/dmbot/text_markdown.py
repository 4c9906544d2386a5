"""Status HTML as Markdown, for notification targets that render it.

markdownify does the walking; this adds Mastodon's mentions and hashtags and escapes every
character of the message, so a stranger's text cannot become a link, a heading or an image
in the reader's app. markdownify recurses, and some of its steps are quadratic in depth, so
it only gets trees that `small_enough` lets through; `dmbot.text` escapes plain text instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

from bs4 import BeautifulSoup, Tag
from bs4.element import PageElement
from markdownify import MarkdownConverter

from dmbot.text_links import is_mention, mention_acct, safe_href, same_link, tag_classes, tag_href

_MARKDOWN_MAX_DEPTH = 40
_MARKDOWN_MAX_TAGS = 3000
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~=&])")


def escape_markdown(text: str) -> str:
    """Backslash-escape every character Markdown could read as markup."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def small_enough(soup: BeautifulSoup) -> bool:
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


def to_markdown(soup: BeautifulSoup, mentions: Mapping[str, str]) -> str:
    """The Markdown of a parsed status; only for trees `small_enough` accepts."""
    return str(_MarkdownConverter(mentions).convert_soup(soup))


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
        href = tag_href(el)
        plain = " ".join(el.get_text().split())
        if is_mention(el, plain):
            acct = self._mentions.get(href) or mention_acct(href, plain)
            label = escape_markdown("@" + acct)
            return f"[{label}]({_markdown_url(href)})" if safe_href(href) else label
        if not href or not safe_href(href):
            return text
        if "hashtag" in tag_classes(el) or plain.startswith("#"):
            return f"[{text}]({_markdown_url(href)})"
        if same_link(plain, href):
            return f"<{_markdown_url(href)}>"
        return f"[{text}]({_markdown_url(href)})"

    def convert_img(self, el: PageElement, text: str, parent_tags: set[str]) -> str:
        return ""
