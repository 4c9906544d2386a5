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

This module is the compiler: the structure (`all`, `any`, `not`, names, fields) and the
named conditions and lists it resolves once. What it builds is in `condition_tree`; what each
operator means, in `condition_operators`.
"""

from __future__ import annotations

from collections.abc import Mapping

from dmbot.condition_operators import OPERATORS, operator_test, spelling_hint
from dmbot.condition_tree import ALWAYS, AllOf, AnyOf, Condition, FieldTest, Not
from dmbot.fields import FIELDS, Field, Kind
from dmbot.lists import DomainMatcher, KeyMatcher, NamedList
from dmbot.yaml_source import Key, Location, SourceMap, did_you_mean

__all__ = ["ALWAYS", "OPERATORS", "Compiler", "Condition"]


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
                hint = spelling_hint(key, [*FIELDS, "all", "any", "not"])
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
        return operator_test(field, op, value, at, self.src, self.named_list)

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
