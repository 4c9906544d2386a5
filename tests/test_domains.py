"""Domains and accounts: IDNA, case, trailing dots, subdomains, local accounts, list files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmbot.domains import (
    acct_entry,
    acct_keys,
    domain_entry,
    normalise_domain,
    suffix_in,
    suffixes,
)
from dmbot.lists import DomainMatcher, ServerData, read_list_file


@pytest.mark.parametrize(("raw", "key"), [
    ("Example.COM", "example.com"),
    ("example.com.", "example.com"),
    (" example.com ", "example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("BÜCHER.example", "xn--bcher-kva.example"),
    ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
    ("ｅｘａｍｐｌｅ.com", "example.com"),  # fullwidth letters map (UTS 46)
    ("bücher。example", "xn--bcher-kva.example"),  # ideographic full stop
])
def test_normalise_domain(raw: str, key: str) -> None:
    assert normalise_domain(raw) == key


@pytest.mark.parametrize("hostile", [
    "", ".", "..", "a..b", "ü" * 100, "ü." * 600, "\u0000bad", "-ü-.example", "xn--zz.example",
    "\U0001f4a9.example", "a" * 100_000, "über\u200d.example",
])
def test_normalise_domain_never_raises_on_hostile_input(hostile: str) -> None:
    key = normalise_domain(hostile)
    assert isinstance(key, str)
    assert len(key) <= 4 * 1024


def test_suffixes() -> None:
    assert suffixes("a.b.example") == ["a.b.example", "b.example", "example"]
    assert suffixes("localhost") == ["localhost"]


@pytest.mark.parametrize(("domain", "entries", "expected"), [
    ("spam.example", {"spam.example"}, True),
    ("a.b.spam.example", {"spam.example"}, True),
    ("notspam.example", {"spam.example"}, False),
    ("spam.example", {"a.spam.example"}, False),
    ("example", {"spam.example"}, False),
    ("anything.at.all", set(), False),
])
def test_suffix_matching(domain: str, entries: set[str], expected: bool) -> None:
    assert suffix_in(domain, entries) is expected


def test_allow_wins_over_entries_and_server_lists() -> None:
    matcher = DomainMatcher(frozenset({"spam.example"}), frozenset({"ok.spam.example"}),
                            ("domain_blocks",))
    server = ServerData.from_domain_blocks(["OK.spam.example", "Blocked.Example."])
    assert server.domain_blocks == {"ok.spam.example", "blocked.example"}
    assert matcher("x.spam.example", server)
    assert not matcher("ok.spam.example", server)
    assert not matcher("deep.ok.spam.example", server)
    assert matcher("a.blocked.example", server)
    assert not matcher("a.blocked.example", ServerData())


@pytest.mark.parametrize(("raw", "key", "why"), [
    ("spam.example", "spam.example", ""),
    ("*.spam.example", "spam.example", ""),
    (".spam.example", "spam.example", ""),
    ("Bücher.example", "xn--bcher-kva.example", ""),
    ("https://spam.example/about", None, "'https://spam.example/about' is a URL; write just the"
     " domain 'spam.example'"),
    ("alice@spam.example", None, "'alice@spam.example' is an account, not a domain; write"
     " 'spam.example'"),
    ("spam example", None, "'spam example' is not a domain"),
    ("sp*m.example", None, "'sp*m.example' is not a domain"),
    ("", None, "'' is not a domain"),
])
def test_domain_entries(raw: str, key: str | None, why: str) -> None:
    assert domain_entry(raw) == (key, why)


@pytest.mark.parametrize(("raw", "key"), [
    ("alice@example.social", "alice@example.social"),
    ("@Alice@Example.Social", "alice@example.social"),
    ("bob", "bob@"),
    ("@bob", "bob@"),
    ("carol@bücher.example", "carol@xn--bcher-kva.example"),
    ("a@b@c", None),
    ("@", None),
    ("alice@", None),
    ("https://example.social/@alice", None),
])
def test_acct_entries(raw: str, key: str | None) -> None:
    assert acct_entry(raw)[0] == key


@pytest.mark.parametrize(("acct", "keys"), [
    ("bob", ("bob@", "bob@mastodon.social")),  # a local account is on the instance's domain
    ("Alice@Example.Social", ("alice@example.social",)),
    ("carol@bücher.example", ("carol@xn--bcher-kva.example",)),
    ("x@y@z", ("x@y@z",)),  # nonsense from a server: compared as is, never raises
])
def test_acct_keys(acct: str, keys: tuple[str, ...]) -> None:
    assert acct_keys(acct, "mastodon.social") == keys


@pytest.mark.parametrize(("content", "entries"), [
    # Mastodon's export: one column, no header
    (b"nsfw.social\nartalley.social\n", ["nsfw.social", "artalley.social"]),
    # the import form: a #domain header
    (b"#domain\nnsfw.social\n", ["nsfw.social"]),
    # an admin export: more columns; the first is the domain
    (b"#domain,#severity,#reject_media\nspam.example,suspend,false\n", ["spam.example"]),
    # one a line, comments, blank lines, CRLF, a byte-order mark
    (b"\xef\xbb\xbf# my list\r\n\r\nspam.example  # since 2024\r\n  other.example\r\n",
     ["spam.example", "other.example"]),
    # a quoted CSV cell; the accounts export header
    (b'Account address\n"alice@example.social"\n', ["alice@example.social"]),
])
def test_list_files(tmp_path: Path, content: bytes, entries: list[str]) -> None:
    path = tmp_path / "list.csv"
    found = read_list_file(path, content)
    assert [entry.text for entry in found] == entries
    assert all(entry.where.path == path for entry in found)


def test_list_file_entries_know_their_lines(tmp_path: Path) -> None:
    found = read_list_file(tmp_path / "l.txt", b"#domain\n\na.example\n# x\nb.example\n")
    assert [(e.text, e.where.line) for e in found] == [("a.example", 3), ("b.example", 5)]
