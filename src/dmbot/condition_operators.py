"""The operators of a field test (`equals`, `in`, `contains`, `regex`, `gt`...): which kinds
of field take which, what each means on each kind, and the checks on their arguments.

The meaning, as the rules file sees it, is told in `conditions`. Here each operator becomes
one `FieldTest` whose check is a closure over its argument, parsed and normalised (case-folded,
IDNA-normalised, RE2-compiled) once when the rules load, so that testing a message only
compares. Argument errors point at the argument: a number where text belongs, an empty
`contains` (it would match every message), a regex RE2 cannot compile.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeAlias

import re2

from dmbot.condition_tree import FieldTest, field_test
from dmbot.domains import acct_entry, domain_entry
from dmbot.fields import Field, Kind, View
from dmbot.lists import DomainMatcher, KeyMatcher
from dmbot.yaml_source import Key, Location, SourceMap, did_you_mean

# The rules file's list `name`, as a matcher for `field` (`where` is where it was named).
ListLookup: TypeAlias = Callable[[Field, str, Location], DomainMatcher | KeyMatcher]

_TEXTUAL = ("equals", "in", "contains", "starts_with", "ends_with", "regex")
OPERATORS: Mapping[Kind, tuple[str, ...]] = MappingProxyType({
    Kind.TEXT: _TEXTUAL,
    Kind.DOMAIN: _TEXTUAL,
    Kind.ACCOUNT: _TEXTUAL,
    Kind.BOOL: ("equals",),
    Kind.NUMBER: ("equals", "in", "gt", "gte", "lt", "lte"),
    Kind.TIME: ("gt", "gte", "lt", "lte"),
})
_ALIASES = MappingProxyType({
    ">": "gt", ">=": "gte", "<": "lt", "<=": "lte", "=": "equals", "==": "equals",
    "eq": "equals", "is": "equals", "matches": "regex", "re": "regex", "one_of": "in",
    "startswith": "starts_with", "endswith": "ends_with", "and": "all", "or": "any",
    "allof": "all", "anyof": "any", "all_of": "all", "any_of": "any",
})
_COMPARE: Mapping[str, Callable[[Any, Any], bool]] = MappingProxyType(
    {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
)
_TEXT_TESTS: Mapping[str, Callable[[str, str], bool]] = MappingProxyType({
    "contains": lambda value, needle: needle in value,
    "starts_with": str.startswith,
    "ends_with": str.endswith,
})
_PROBES = (b"", b"x", b"\n", "\u00e9\u4e00".encode())


def operator_test(
    field: Field, op: str, value: object, at: tuple[Key, ...], src: SourceMap,
    named_list: ListLookup,
) -> FieldTest:
    """`field: {op: value}`, found at `at`, as a test; lists are resolved by `named_list`."""
    allowed = OPERATORS[field.kind]
    if op not in allowed:
        where = src.key_at(at)
        if op in ("equals", "in", "gt", "gte", "lt", "lte", *_TEXTUAL):
            raise where.error(
                f"{field.name} is {field.kind.value}: it takes {', '.join(allowed)}, not {op!r}"
            )
        raise where.error(f"unknown operator {op!r}{spelling_hint(op, allowed)}")
    where = src.at(at)
    name = field.name
    if op == "equals":
        return _equals(field, value, where)
    if op == "in":
        return _member(field, value, at, src, named_list)
    if op == "regex":
        return _regex(field, value, at, src)
    if op in _COMPARE:
        bound = _bound(field, value, where)
        compare = _COMPARE[op]
        return field_test(field, View.RAW, lambda v, _c: v is not None and compare(v, bound),
                          f"{name} {op} {bound}")
    needles = _strings(name, op, value, at, src)
    folded = tuple(needle.casefold() for needle in needles)
    test = _TEXT_TESTS[op]
    return field_test(
        field, View.FOLD,
        lambda v, _c: isinstance(v, str) and any(test(v, n) for n in folded),
        f"{name} {op} {sorted(folded)}",
    )


def spelling_hint(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """` (did you mean ...?)` for a misspelt or foreign word (`>=`, `and`), else ``."""
    alias = _ALIASES.get(word.lower())
    if alias is not None and alias in choices:
        return f" (did you mean {alias!r}?)"
    return did_you_mean(word, choices)


def _equals(field: Field, value: object, where: Location) -> FieldTest:
    name, kind = field.name, field.kind
    if value is None:
        if not field.optional:
            raise where.error(f"{name} is never empty; null cannot match it")
        return field_test(field, View.RAW, lambda v, _c: v is None, f"{name} = null")
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise where.error(f"{name} is true or false, not {_show(value)}")
        return field_test(field, View.RAW, lambda v, _c: v is value, f"{name} = {value}")
    if kind is Kind.NUMBER:
        number = _number(name, value, where)
        return field_test(field, View.RAW, lambda v, _c: v is not None and v == number,
                          f"{name} = {number}")
    text = _text(name, value, where)
    if kind is Kind.DOMAIN:
        key = _entry(domain_entry, text, where)
        return field_test(field, View.DOMAIN, lambda v, _c: v == key, f"{name} = {key}")
    if kind is Kind.ACCOUNT:
        key = _entry(acct_entry, text, where)
        return field_test(field, View.ACCOUNT,
                          lambda v, _c: isinstance(v, tuple) and key in v, f"{name} = {key}")
    folded = text.casefold()
    return field_test(field, View.FOLD, lambda v, _c: v == folded, f"{name} = {folded!r}")


def _member(
    field: Field, value: object, at: tuple[Key, ...], src: SourceMap, named_list: ListLookup
) -> FieldTest:
    name, kind = field.name, field.kind
    where = src.at(at)
    if isinstance(value, str):
        matcher = named_list(field, value, where)
        label = f"{name} in {value}"
    elif isinstance(value, list) and value:
        if kind is Kind.NUMBER:
            numbers = frozenset(
                _number(name, v, src.at((*at, i))) for i, v in enumerate(value)
            )
            return field_test(field, View.RAW, lambda v, _c: v in numbers,
                              f"{name} in {sorted(numbers)}")
        texts = [_text(name, v, src.at((*at, i))) for i, v in enumerate(value)]
        if kind is Kind.DOMAIN:
            keys = [_entry(domain_entry, t, src.at((*at, i))) for i, t in enumerate(texts)]
            matcher = DomainMatcher(frozenset(keys))
        elif kind is Kind.ACCOUNT:
            keys = [_entry(acct_entry, t, src.at((*at, i))) for i, t in enumerate(texts)]
            matcher = KeyMatcher(frozenset(keys))
        else:
            matcher = KeyMatcher(frozenset(t.casefold() for t in texts))
        label = f"{name} in {sorted(matcher.entries)}"
    else:
        raise where.error(f"{name}: 'in' takes a list name or a non-empty list")
    # An empty list (say, an emptied list file) matches nothing: `not in` it matches all.
    servers = matcher.servers if isinstance(matcher, DomainMatcher) else ()
    known = False if not matcher.entries and not servers else None
    if isinstance(matcher, DomainMatcher):
        domains = matcher
        return field_test(field, View.DOMAIN,
                          lambda v, c: isinstance(v, str) and domains(v, c.server), label, known)
    keys_matcher = matcher
    if kind is Kind.ACCOUNT:
        return field_test(field, View.ACCOUNT,
                          lambda v, _c: isinstance(v, tuple) and keys_matcher(v), label, known)
    return field_test(field, View.FOLD,
                      lambda v, _c: isinstance(v, str) and keys_matcher((v,)), label, known)


def _regex(field: Field, value: object, at: tuple[Key, ...], src: SourceMap) -> FieldTest:
    patterns = _strings(field.name, "regex", value, at, src)
    options = re2.Options()
    options.log_errors = False
    compiled = []
    for index, pattern in enumerate(patterns):
        where = src.at((*at, index)) if isinstance(value, list) else src.at(at)
        try:
            compiled.append(re2.compile(pattern, options))
        except re2.error as exc:
            reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise where.error(f"bad regex {pattern!r}: {reason}") from None
    everything = any(all(r.search(probe) for probe in _PROBES) for r in compiled)
    known = True if everything and not field.many and not field.optional else None
    search = tuple(r.search for r in compiled)
    return field_test(
        field, View.BYTES,
        lambda v, _c: isinstance(v, bytes) and any(s(v) is not None for s in search),
        f"{field.name} regex {patterns}", known,
    )


def _strings(
    name: str, op: str, value: object, at: tuple[Key, ...], src: SourceMap
) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise src.at(at).error(f"{name}: {op} needs text or a non-empty list of text")
    found = []
    for index, item in enumerate(items):
        where = src.at((*at, index)) if isinstance(value, list) else src.at(at)
        text = _text(name, item, where)
        if not text:
            raise where.error(f"{name}: an empty {op} matches every message")
        found.append(text)
    return found


def _text(name: str, value: object, where: Location) -> str:
    if not isinstance(value, str):
        raise where.error(f"{name} compares text, not {_show(value)} (put it in quotes)")
    return value


def _number(name: str, value: object, where: Location) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise where.error(f"{name} is a number, not {_show(value)}")
    return value


def _bound(field: Field, value: object, where: Location) -> int | float | datetime:
    if field.kind is Kind.NUMBER:
        return _number(field.name, value, where)
    problem = where.error(
        f"{field.name} needs a date such as 2024-01-31 or 2024-01-31T12:00:00Z, not {_show(value)}"
    )
    if not isinstance(value, str):
        raise problem
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise problem from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _entry(parse: Callable[[str], tuple[str | None, str]], text: str, where: Location) -> str:
    key, why = parse(text)
    if key is None:
        raise where.error(why)
    return key


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)
