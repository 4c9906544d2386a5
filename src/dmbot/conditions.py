"""Conditions: parsed once from the rules file into small objects that test a `Context`.

```yaml
if:
  all:                                   # also: any, not; to any depth
    - unread: true                       # scalar: equals
    - stranger                           # a name: a condition from `conditions:`
    - sender.domain: {in: blocked}       # a list name, or an inline list
    - text: {regex: "(?i)urgent", contains: [asap, now]}   # several operators: all hold
    - sender.age_days: {lt: 30}
```

A mapping with several keys means all of them. On fields with many values (`participants.*`,
`mentions`) a test holds when it holds for any one value. Text compares ignoring case
(`equals`, `in`, `contains`, `starts_with`, `ends_with`); `regex` is RE2 (linear time, no
backreferences or lookaround) and case-sensitive unless the pattern says `(?i)`. Domains
compare IDNA-normalised; `in` a list matches subdomains too, `equals` only the domain itself.

Every condition knows its `truth` when it can be decided without a message (`{}` is always
true, a regex that matches the empty string matches everything): the delete guard uses it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol, TypeAlias

import re2

from dmbot.domains import acct_entry, domain_entry
from dmbot.fields import FIELDS, Context, Field, Kind, View, memo_key
from dmbot.lists import DomainMatcher, KeyMatcher, NamedList
from dmbot.yaml_source import Key, Location, SourceMap, did_you_mean

Check: TypeAlias = Callable[[Any, Context], bool]

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


class Condition(Protocol):
    @property
    def truth(self) -> bool | None: ...  # known without a message: always true / false

    @property
    def relationship(self) -> bool: ...  # some part needs Event.relationship

    def test(self, ctx: Context) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]

    def test(self, ctx: Context) -> bool:
        for item in self.items:  # noqa: SIM110 -- the hot path: a loop beats a generator
            if not item.test(ctx):
                return False
        return True

    @property
    def truth(self) -> bool | None:
        known = [item.truth for item in self.items]
        if any(value is False for value in known):
            return False
        return True if all(value is True for value in known) else None

    @property
    def relationship(self) -> bool:
        return any(item.relationship for item in self.items)

    def describe(self) -> str:
        return "all(" + ", ".join(item.describe() for item in self.items) + ")"


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]

    def test(self, ctx: Context) -> bool:
        for item in self.items:  # noqa: SIM110 -- the hot path: a loop beats a generator
            if item.test(ctx):
                return True
        return False

    @property
    def truth(self) -> bool | None:
        known = [item.truth for item in self.items]
        if any(value is True for value in known):
            return True
        return False if all(value is False for value in known) else None

    @property
    def relationship(self) -> bool:
        return any(item.relationship for item in self.items)

    def describe(self) -> str:
        return "any(" + ", ".join(item.describe() for item in self.items) + ")"


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition

    def test(self, ctx: Context) -> bool:
        return not self.item.test(ctx)

    @property
    def truth(self) -> bool | None:
        known = self.item.truth
        return None if known is None else not known

    @property
    def relationship(self) -> bool:
        return self.item.relationship

    def describe(self) -> str:
        return f"not({self.item.describe()})"


@dataclass(frozen=True, slots=True)
class FieldTest:
    field: Field
    view: View
    key: str  # the memo key of this field in this view (a str: cheapest to hash)
    check: Check
    text: str
    truth: bool | None = None

    def test(self, ctx: Context) -> bool:
        value = ctx.get(self.field, self.view, self.key)
        if self.field.many:
            assert isinstance(value, tuple)
            check = self.check
            for item in value:  # noqa: SIM110 -- the hot path: a loop beats a generator
                if check(item, ctx):
                    return True
            return False
        return self.check(value, ctx)

    @property
    def relationship(self) -> bool:
        return self.field.relationship

    def describe(self) -> str:
        return self.text


def _test(
    field: Field, view: View, check: Check, text: str, truth: bool | None = None
) -> FieldTest:
    return FieldTest(field, view, memo_key(field, view), check, text, truth)


ALWAYS: Condition = AllOf(())


class Compiler:
    """Turns `if:` values into Conditions; resolves named conditions and lists once."""

    def __init__(
        self, src: SourceMap, lists: Mapping[str, NamedList], named: Mapping[str, object]
    ) -> None:
        self.src = src
        self.lists = lists
        self.named_raw = named
        self.named: dict[str, Condition] = {}
        self.resolving: list[str] = []
        self.matchers: dict[tuple[str, Kind], DomainMatcher | KeyMatcher] = {}
        self.used_lists: set[str] = set()

    def compile_named(self) -> None:
        for name in self.named_raw:
            self.reference(name, self.src.key_at(("conditions", name)))

    def reference(self, name: str, where: Location) -> Condition:
        if name in self.named:
            return self.named[name]
        if name not in self.named_raw:
            hint = did_you_mean(name, self.named_raw)
            if not hint and name in FIELDS:
                hint = f" ({name!r} is a field: write {{{name}: ...}})"
            raise where.error(f"unknown condition {name!r}{hint}")
        if name in self.resolving:
            loop = " -> ".join([*self.resolving[self.resolving.index(name) :], name])
            raise where.error(f"condition {name!r} refers to itself ({loop})")
        self.resolving.append(name)
        try:
            compiled = self.compile(self.named_raw[name], ("conditions", name))
        finally:
            self.resolving.pop()
        self.named[name] = compiled
        return compiled

    def compile(self, raw: object, at: tuple[Key, ...]) -> Condition:
        if isinstance(raw, str):
            return self.reference(raw, self.src.at(at))
        if not isinstance(raw, dict):
            raise self.src.at(at).error(
                "a condition is a mapping such as {sender.bot: true}, or a condition's name"
            )
        parts: list[Condition] = []
        for key, value in raw.items():
            here = (*at, key)
            if key in ("all", "any"):
                if not isinstance(value, list) or not value:
                    raise self.src.at(here).error(f"{key!r} needs a list of conditions")
                items = tuple(self.compile(item, (*here, i)) for i, item in enumerate(value))
                parts.append(AllOf(items) if key == "all" else AnyOf(items))
            elif key == "not":
                parts.append(Not(self.compile(value, here)))
            elif key in FIELDS:
                parts.append(self.field(FIELDS[key], value, here))
            else:
                hint = _hint(key, [*FIELDS, "all", "any", "not"])
                raise self.src.key_at(here).error(f"unknown field {key!r}{hint}")
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def field(self, field: Field, value: object, at: tuple[Key, ...]) -> Condition:
        if isinstance(value, list):
            raise self.src.at(at).error(
                f"{field.name}: a list here is ambiguous; write {{in: [...]}} to match any of them"
            )
        if not isinstance(value, dict):
            return self.operator(field, "equals", value, at)
        if not value:
            raise self.src.at(at).error(f"{field.name}: no operator given")
        tests = [self.operator(field, op, arg, (*at, op)) for op, arg in value.items()]
        return tests[0] if len(tests) == 1 else AllOf(tuple(tests))

    def operator(self, field: Field, op: str, value: object, at: tuple[Key, ...]) -> FieldTest:
        allowed = OPERATORS[field.kind]
        if op not in allowed:
            where = self.src.key_at(at)
            if op in ("equals", "in", "gt", "gte", "lt", "lte", *_TEXTUAL):
                raise where.error(
                    f"{field.name} is {field.kind.value}: it takes {', '.join(allowed)}, not {op!r}"
                )
            raise where.error(f"unknown operator {op!r}{_hint(op, allowed)}")
        where = self.src.at(at)
        name = field.name
        if op == "equals":
            return self.equals(field, value, where)
        if op == "in":
            return self.member(field, value, at)
        if op == "regex":
            return _regex(field, value, at, self.src)
        if op in _COMPARE:
            bound = _bound(field, value, where)
            compare = _COMPARE[op]
            return _test(field, View.RAW, lambda v, _c: v is not None and compare(v, bound),
                         f"{name} {op} {bound}")
        needles = _strings(name, op, value, at, self.src)
        folded = tuple(needle.casefold() for needle in needles)
        test = _TEXT_TESTS[op]
        return _test(
            field, View.FOLD,
            lambda v, _c: isinstance(v, str) and any(test(v, n) for n in folded),
            f"{name} {op} {sorted(folded)}",
        )

    def equals(self, field: Field, value: object, where: Location) -> FieldTest:
        name, kind = field.name, field.kind
        if value is None:
            if not field.optional:
                raise where.error(f"{name} is never empty; null cannot match it")
            return _test(field, View.RAW, lambda v, _c: v is None, f"{name} = null")
        if kind is Kind.BOOL:
            if not isinstance(value, bool):
                raise where.error(f"{name} is true or false, not {_show(value)}")
            return _test(field, View.RAW, lambda v, _c: v is value, f"{name} = {value}")
        if kind is Kind.NUMBER:
            number = _number(name, value, where)
            return _test(field, View.RAW, lambda v, _c: v is not None and v == number,
                         f"{name} = {number}")
        text = _text(name, value, where)
        if kind is Kind.DOMAIN:
            key = _entry(domain_entry, text, where)
            return _test(field, View.DOMAIN, lambda v, _c: v == key, f"{name} = {key}")
        if kind is Kind.ACCOUNT:
            key = _entry(acct_entry, text, where)
            return _test(field, View.ACCOUNT,
                         lambda v, _c: isinstance(v, tuple) and key in v, f"{name} = {key}")
        folded = text.casefold()
        return _test(field, View.FOLD, lambda v, _c: v == folded, f"{name} = {folded!r}")

    def member(self, field: Field, value: object, at: tuple[Key, ...]) -> FieldTest:
        name, kind = field.name, field.kind
        where = self.src.at(at)
        if isinstance(value, str):
            matcher = self.named_list(field, value, where)
            label = f"{name} in {value}"
        elif isinstance(value, list) and value:
            if kind is Kind.NUMBER:
                numbers = frozenset(
                    _number(name, v, self.src.at((*at, i))) for i, v in enumerate(value)
                )
                return _test(field, View.RAW, lambda v, _c: v in numbers,
                             f"{name} in {sorted(numbers)}")
            texts = [_text(name, v, self.src.at((*at, i))) for i, v in enumerate(value)]
            if kind is Kind.DOMAIN:
                keys = [_entry(domain_entry, t, self.src.at((*at, i))) for i, t in enumerate(texts)]
                matcher = DomainMatcher(frozenset(keys))
            elif kind is Kind.ACCOUNT:
                keys = [_entry(acct_entry, t, self.src.at((*at, i))) for i, t in enumerate(texts)]
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
            return _test(field, View.DOMAIN,
                         lambda v, c: isinstance(v, str) and domains(v, c.server), label, known)
        keys_matcher = matcher
        if kind is Kind.ACCOUNT:
            return _test(field, View.ACCOUNT,
                         lambda v, _c: isinstance(v, tuple) and keys_matcher(v), label, known)
        return _test(field, View.FOLD,
                     lambda v, _c: isinstance(v, str) and keys_matcher((v,)), label, known)

    def named_list(self, field: Field, name: str, where: Location) -> DomainMatcher | KeyMatcher:
        if name not in self.lists:
            raise where.error(f"unknown list {name!r}{did_you_mean(name, self.lists)}")
        if field.kind not in (Kind.TEXT, Kind.DOMAIN, Kind.ACCOUNT):
            raise where.error(
                f"lists hold text; {field.name} is {field.kind.value}: use an inline list"
            )
        self.used_lists.add(name)
        cached = self.matchers.get((name, field.kind))
        if cached is None:
            named = self.lists[name]
            if field.kind is Kind.DOMAIN:
                cached = named.domain_matcher(field.name)
            else:
                cached = named.key_matcher(field.name, accounts=field.kind is Kind.ACCOUNT)
            self.matchers[(name, field.kind)] = cached
        return cached


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
    return _test(
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


def _hint(word: str, choices: list[str] | tuple[str, ...]) -> str:
    alias = _ALIASES.get(word.lower())
    if alias is not None and alias in choices:
        return f" (did you mean {alias!r}?)"
    return did_you_mean(word, choices)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)
