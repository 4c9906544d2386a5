"""Domains and account addresses, compared the way a person means them.

Mastodon shows remote domains in Unicode (`acct` is `user@bücher.example`) and stores them
in punycode (`xn--bcher-kva.example`); users paste either, in any case, sometimes with a
trailing dot or a leading `@`. Everything is reduced to one key:

- a domain: lowercase ASCII (IDNA 2008 with UTS 46 mapping), no trailing dot;
- an account: `username@domain` with the username casefolded; a local account (no domain in
  `acct`) also answers to `username@` so that a list entry `bob` means "local bob".

Two entry points per kind: `*_entry` reads what a user wrote (strict, returns an error
sentence), `normalise_domain` / `acct_keys` read what a server sent (tolerant, never raises:
hostile input falls back to plain lowercase).

Domain matching is by suffix, as Mastodon's *instance* domain blocks do: `spam.example`
matches `spam.example` and `a.b.spam.example`. (Mastodon's per-user blocks match exactly;
suffix matching is the stricter choice and what a block list author expects.)
"""

from __future__ import annotations

from collections.abc import Callable, Set

import idna

_MAX_DOMAIN = 1024  # longer than any real domain (253); hostile input stops here
_NOT_IN_DOMAIN = frozenset(" \t/\\:@?#,;\"'<>")


def normalise_domain(domain: str) -> str:
    """A domain as one comparable key. Never raises."""
    text = domain.strip().rstrip(".")[:_MAX_DOMAIN]
    if text.isascii():
        return text.lower()
    try:
        return idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return text.casefold()


def suffixes(domain: str) -> list[str]:
    """`a.b.c` -> [`a.b.c`, `b.c`, `c`]: what a suffix rule for `domain` may be listed as."""
    found = [domain]
    start = domain.find(".")
    while start >= 0:
        found.append(domain[start + 1 :])
        start = domain.find(".", start + 1)
    return found


def suffix_in(domain: str, entries: Set[str]) -> bool:
    if not entries:
        return False
    return any(candidate in entries for candidate in suffixes(domain))


def domain_entry(raw: str) -> tuple[str | None, str]:
    """(key, "") for a usable domain entry, or (None, why not)."""
    text = raw.strip()
    if "://" in text:
        host = text.split("://", 1)[1].split("/", 1)[0].split("@")[-1].split(":")[0]
        return None, f"{raw!r} is a URL; write just the domain {host!r}"
    if text.startswith("*."):  # Mastodon's admin export obfuscates nothing this way, others do
        text = text[2:]
    text = text.lstrip(".")
    if "@" in text:
        return None, f"{raw!r} is an account, not a domain; write {text.rsplit('@', 1)[1]!r}"
    if not text or any(char in _NOT_IN_DOMAIN for char in text) or "*" in text:
        return None, f"{raw!r} is not a domain"
    return normalise_domain(text), ""


def acct_keys(
    acct: str, local_domain_key: str, normalise: Callable[[str], str] = normalise_domain
) -> tuple[str, ...]:
    """The keys an account address from a server answers to. Never raises."""
    user, sep, domain = acct.strip().lstrip("@").partition("@")
    name = user.casefold()
    if not sep:
        return (f"{name}@", f"{name}@{local_domain_key}")
    return (f"{name}@{normalise(domain)}",)


def acct_entry(raw: str) -> tuple[str | None, str]:
    """(key, "") for a usable account entry (`alice@example.social`, `@bob`), or (None, why)."""
    text = raw.strip()
    if "://" in text:
        return None, f"{raw!r} is a URL; write the account as user@domain"
    user, sep, domain = text.lstrip("@").partition("@")
    if not user or any(char in _NOT_IN_DOMAIN for char in user) or (sep and "@" in domain):
        return None, f"{raw!r} is not an account address (user@domain, or user for a local one)"
    if not sep:
        return f"{user.casefold()}@", ""
    key, why = domain_entry(domain)
    if key is None:
        return None, f"{raw!r} has a bad domain: {why}"
    return f"{user.casefold()}@{key}", ""
