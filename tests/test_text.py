"""Status HTML to plain text and Markdown: what Mastodon sends, and what a stranger could."""

from __future__ import annotations

import time

import pytest

from dmbot.text import markdown_text, mention_acct, plain_text, scrub, truncate

MENTION = (
    '<span class="h-card" translate="no"><a href="https://example.social/@alice" '
    'class="u-url mention">@<span>alice</span></a></span>'
)
SHORTENED_LINK = (
    '<a href="https://example.com/some/long/path?x=1" target="_blank" '
    'rel="nofollow noopener"><span class="invisible">https://</span>'
    '<span class="ellipsis">example.com/some/long</span><span class="invisible">'
    "/path?x=1</span></a>"
)
HASHTAG = (
    '<a href="https://example.social/tags/cats" class="mention hashtag" rel="tag">'
    "#<span>cats</span></a>"
)


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>Hello</p><p>World</p>", "Hello\n\nWorld"),
        ("<p>one<br>two<br />three</p>", "one\ntwo\nthree"),
        ("<p>a<br><br>b</p>", "a\n\nb"),
        (f"<p>{MENTION} hi</p>", "@alice@example.social hi"),
        (f"<p>see {SHORTENED_LINK}</p>", "see https://example.com/some/long/path?x=1"),
        (f"<p>{HASHTAG}</p>", "#cats"),
        ("<p>Tom &amp; Jerry &lt;3 &quot;x&quot; &#x1F600; caf&eacute;</p>",
         'Tom & Jerry <3 "x" 😀 café'),
        ('<p><a href="https://evil.example/">https://bank.example/</a></p>',
         "https://bank.example/ (https://evil.example/)"),
        ('<p><a href="https://example.com/doc">the doc</a></p>', "the doc (https://example.com/doc)"),
        ('<p><a href="javascript:alert(1)">click</a></p>', "click"),
        ("<p>  lots   of\n  space  </p>", "lots of space"),
        ("<blockquote><p>quoted</p></blockquote><p>reply</p>", "> quoted\n\nreply"),
        ("<ul><li>a</li><li>b</li></ul>", "- a\n- b"),
        ("<ol><li>a</li><li>b</li></ol>", "1. a\n2. b"),
        ("<pre>x  y\n  z</pre>", "x  y\n  z"),
        ("<p>x<script>alert(1)</script><style>p{}</style>y</p>", "xy"),
        ("<p>a\u202eb\u0007c</p>", "abc"),
        ("plain text, no tags", "plain text, no tags"),
        ("https://example.com/", "https://example.com/"),
        ("", ""),
    ],
)
def test_plain_text(html: str, expected: str) -> None:
    assert plain_text(html) == expected


def test_mentions_use_the_status_mentions_when_given() -> None:
    html = (
        '<p><a href="https://example.social/@bob" class="u-url mention">@<span>bob</span></a></p>'
    )
    assert plain_text(html, mentions={"https://example.social/@bob": "bob"}) == "@bob"
    assert plain_text(html) == "@bob@example.social"


@pytest.mark.parametrize(
    ("href", "text", "acct"),
    [
        ("https://example.social/@alice", "@alice", "alice@example.social"),
        ("https://local.example/@carol@remote.example", "@carol", "carol@remote.example"),
        ("https://pleroma.example/users/dave", "@dave", "dave@pleroma.example"),
        ("https://odd.example/profile.php?id=7", "@erin", "erin@odd.example"),
        ("not a url", "@frank", "frank"),
    ],
)
def test_mention_acct(href: str, text: str, acct: str) -> None:
    assert mention_acct(href, text) == acct


def test_limit_cuts_with_an_ellipsis() -> None:
    text = plain_text("<p>" + "word " * 100 + "</p>", limit=50)
    assert len(text) <= 50
    assert text.endswith("…")
    assert "wor…" not in text  # cut at a word boundary


def test_truncate_keeps_short_text() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("exactly10!", 10) == "exactly10!"
    assert truncate("a" * 20, 10) == "a" * 9 + "…"
    assert truncate("abc", 0) == ""


def test_scrub_keeps_newlines_and_emoji_joiners() -> None:
    family = "👨\u200d👩\u200d👧"
    assert scrub(f"a\n\tb {family}\u202e\x1b") == f"a\n\tb {family}"


@pytest.mark.parametrize(
    "hostile",
    [
        "<div>" * 200_000,
        "<p><b>" * 100_000 + "x",
        "<a href='https://x.example/'>" * 100_000,
        "<" * 1_000_000,
        "&amp;" * 200_000,
        "<p>" + "a" * 1_000_000,
        "<span>" * 5_000 + "deep" + "</span>" * 5_000,
    ],
)
def test_hostile_input_is_handled_quickly(hostile: str) -> None:
    started = time.perf_counter()
    text = plain_text(hostile)
    markdown = markdown_text(hostile)
    assert time.perf_counter() - started < 2.0
    assert len(text) <= 65536
    assert len(markdown) <= 2 * 65536  # escaping may double the plain text


def test_deep_but_parseable_nesting_keeps_its_text() -> None:
    html = "<span>" * 2_000 + "deep" + "</span>" * 2_000
    assert plain_text(html) == "deep"
    assert markdown_text(html) == "deep"


def test_input_is_capped_before_parsing() -> None:
    text = plain_text("<p>" + "a" * 10_000 + "</p><p>never seen</p>", limit=100)
    assert len(text) <= 100
    assert "never seen" not in text


def test_markdown() -> None:
    html = (
        f"<p>Hi {MENTION}, *not bold* _nor this_ [x](y)</p>"
        f"<p>{SHORTENED_LINK}<br>{HASHTAG} "
        '<a href="https://example.com/a_(b)">a link</a></p>'
    )
    assert markdown_text(html) == (
        r"Hi [@alice@example\.social](https://example.social/@alice), \*not bold\* \_nor this\_"
        r" \[x\](y)"
        "\n\n<https://example.com/some/long/path?x=1>\n"
        r"[\#cats](https://example.social/tags/cats) [a link](https://example.com/a_%28b%29)"
    )


def test_markdown_drops_unsafe_links() -> None:
    assert markdown_text('<p><a href="javascript:alert(1)">click</a></p>') == "click"


def test_markdown_of_too_deep_markup_is_escaped_plain_text() -> None:
    html = "<span>" * 100 + "*x*" + "</span>" * 100
    assert markdown_text(html) == r"\*x\*"
