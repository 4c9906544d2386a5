"""Named lists: entries written inline, read from files, or kept by the server.

```yaml
lists:
  friends: [alice@example.social, bob]
  blocked_domains:
    entries:
      - spam.example
      - file: blocked_domains.csv      # relative to the rules file
      - server: domain_blocks          # the account's own domain blocks
    allow: [good.spam.example]         # always wins over an entry
```

A list holds text; what the text means (a domain, an account, a plain word) depends on the
field it is compared with, so a list is checked and compiled once per use at load time
(`domain_matcher`, `key_matcher`), and a bad entry is reported at its own file and line.

List files take Mastodon's domain-block CSV export (one column; an optional `#domain` header;
other CSV exports: the first column) or one entry a line; `#` starts a comment.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from dmbot.domains import acct_entry, domain_entry, normalise_domain, suffix_in
from dmbot.yaml_source import (
    Location,
    RulesError,
    SourceFiles,
    SourceMap,
    check_name,
    did_you_mean,
    expand_env,
)

SERVER_LISTS: Mapping[str, str] = MappingProxyType({"domain_blocks": "read:blocks"})  # -> scope
_HEADERS = frozenset({"domain", "account address"})


@dataclass(frozen=True, slots=True)
class ServerData:
    """What the engine fetched from the server for the rules; domains already normalised."""

    domain_blocks: frozenset[str] = frozenset()

    @classmethod
    def from_domain_blocks(cls, domains: Iterable[str]) -> ServerData:
        return cls(domain_blocks=frozenset(normalise_domain(domain) for domain in domains))

    def server_list(self, name: str) -> frozenset[str]:
        return self.domain_blocks if name == "domain_blocks" else frozenset()


@dataclass(frozen=True, slots=True)
class Entry:
    text: str
    where: Location


@dataclass(frozen=True, slots=True)
class DomainMatcher:
    """Suffix matching of normalised domains; `allow` wins over entries and server lists."""

    entries: frozenset[str]
    allow: frozenset[str] = frozenset()
    servers: tuple[str, ...] = ()

    def __call__(self, domain: str, server: ServerData) -> bool:
        if self.allow and suffix_in(domain, self.allow):
            return False
        if suffix_in(domain, self.entries):
            return True
        return any(suffix_in(domain, server.server_list(name)) for name in self.servers)


@dataclass(frozen=True, slots=True)
class KeyMatcher:
    """Exact keys (casefolded text, or account keys); `allow` wins."""

    entries: frozenset[str]
    allow: frozenset[str] = frozenset()

    def __call__(self, keys: Iterable[str]) -> bool:
        keys = tuple(keys)
        if self.allow and any(key in self.allow for key in keys):
            return False
        return any(key in self.entries for key in keys)


@dataclass(frozen=True, slots=True)
class NamedList:
    name: str
    where: Location
    entries: tuple[Entry, ...]
    allow: tuple[Entry, ...] = ()
    servers: tuple[str, ...] = ()

    def domain_matcher(self, used_with: str) -> DomainMatcher:
        read = _checked(domain_entry, self.name, used_with)
        return DomainMatcher(read(self.entries), read(self.allow), self.servers)

    def key_matcher(self, used_with: str, *, accounts: bool) -> KeyMatcher:
        if self.servers:
            raise self.where.error(
                f"list {self.name!r} includes 'server: {self.servers[0]}', which holds domains;"
                f" it cannot be compared with {used_with}"
            )
        if accounts:
            read = _checked(acct_entry, self.name, used_with)
            return KeyMatcher(read(self.entries), read(self.allow))
        return KeyMatcher(
            frozenset(entry.text.casefold() for entry in self.entries),
            frozenset(entry.text.casefold() for entry in self.allow),
        )

    def fingerprint(self) -> frozenset[str]:
        """What `describe_change` compares: entries, exceptions, server lists."""
        return frozenset(
            [e.text for e in self.entries]
            + [f"allow:{e.text}" for e in self.allow]
            + [f"server:{name}" for name in self.servers]
        )


def _checked(
    parse: Callable[[str], tuple[str | None, str]], name: str, used_with: str
) -> Callable[[tuple[Entry, ...]], frozenset[str]]:
    def read(entries: tuple[Entry, ...]) -> frozenset[str]:
        keys = set()
        for entry in entries:
            key, why = parse(entry.text)
            if key is None:
                raise entry.where.error(f"{why} (list {name!r} is compared with {used_with})")
            keys.add(key)
        return frozenset(keys)

    return read


def parse_lists(
    raw: Mapping[str, object], src: SourceMap, base: Path, env: Mapping[str, str],
    files: SourceFiles,
) -> dict[str, NamedList]:
    found = {}
    for name, value in raw.items():
        at = ("lists", name)
        check_name("list", name, src.key_at(at))
        if isinstance(value, list):
            entries, allow = value, []
        elif isinstance(value, dict):
            for key in value:
                if key not in ("entries", "allow"):
                    hint = did_you_mean(key, ["entries", "allow"])
                    raise src.key_at((*at, key)).error(f"unknown key {key!r} in a list{hint}")
            entries, allow = value.get("entries", []), value.get("allow", [])
            at_entries = (*at, "entries")
            if not isinstance(entries, list) or not isinstance(allow, list):
                raise src.at(at_entries).error("'entries' and 'allow' must be lists")
        else:
            raise src.at(at).error(
                f"list {name!r} must be a list of entries, or a mapping with 'entries' and 'allow'"
            )
        loaded, servers = _items(entries, (*at, "entries") if isinstance(value, dict) else at,
                                 src, base, env, files)
        exceptions, more = _items(allow, (*at, "allow"), src, base, env, files)
        found[name] = NamedList(name, src.at(at), loaded, exceptions, servers + more)
    return found


def _items(
    items: list[object], at: tuple[str | int, ...], src: SourceMap, base: Path,
    env: Mapping[str, str], files: SourceFiles,
) -> tuple[tuple[Entry, ...], tuple[str, ...]]:
    entries: list[Entry] = []
    servers: list[str] = []
    for index, item in enumerate(items):
        where = src.at((*at, index))
        if isinstance(item, str):
            entries.append(Entry(item, where))
        elif isinstance(item, dict) and len(item) == 1 and "file" in item:
            path = item["file"]
            if not isinstance(path, str) or not path:
                raise where.error("'file' must be a path, relative to the rules file")
            full = base / expand_env(path, env, src.at((*at, index, "file")))
            content = files.load(full, where, "list file")
            entries.extend(read_list_file(full, content))
        elif isinstance(item, dict) and len(item) == 1 and "server" in item:
            name = item["server"]
            if name not in SERVER_LISTS:
                hint = did_you_mean(str(name), SERVER_LISTS)
                known = ", ".join(SERVER_LISTS)
                raise where.error(f"unknown server list {name!r}{hint}; known: {known}")
            servers.append(str(name))
        elif isinstance(item, dict) and len(item) == 1:
            key = next(iter(item))
            hint = did_you_mean(key, ["file", "server"])
            raise src.key_at((*at, index, key)).error(f"unknown key {key!r} in a list entry{hint}")
        else:
            raise where.error(
                "a list entry is text (quote numbers), {file: path} or {server: domain_blocks}"
            )
    return tuple(entries), tuple(servers)


def read_list_file(path: Path, content: bytes) -> tuple[Entry, ...]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RulesError(path, None, None, f"not UTF-8 text (bad byte at offset {exc.start})") \
            from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        cell = _first_cell(line)
        if cell is None or (number == 1 and cell.casefold() in _HEADERS):
            continue
        entries.append(Entry(cell, Location(path, number, 1)))
    return tuple(entries)


def _first_cell(line: str) -> str | None:
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    comment = text.find(" #")
    if comment >= 0:
        text = text[:comment].rstrip()
    if "," in text or text.startswith('"'):
        text = next(csv.reader([text]), [""])[0].strip()
    return text or None
