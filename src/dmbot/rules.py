"""The rules file: its schema, its loader, and the pure evaluation of an Event against it.

Rules run top to bottom; every matching rule adds its actions; a matching rule with
`stop: true` ends the run. Actions merge: `mark_read` and `delete` happen once, and each
notifier gets at most one notification per message (the first matching rule's wording).
They run notify, then mark_read, then delete.

A rule whose condition is always true (none, `{}`, a regex that matches the empty string...)
cannot delete unless it says `allow_delete_all: true`: a typo never empties the inbox.

`load_rules` is the only constructor of a `RuleSet` and raises `RulesError`
(`rules.yaml:14:9: unknown field 'sender.domian' (did you mean 'sender.domain'?)`).
`evaluate` and `explain` do no I/O, no logging and read no clock: `now` is passed in.

The file's sections are read beside this module: `notifiers:` by `rules_notifiers`, `lists:`
by `lists`, conditions by `conditions`, each rule's `do:` by `rules_actions`. `rules_scopes`
says which token scopes a rule set needs, `rules_diff` what a reload changed; their public
names are importable from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dmbot.actions import EXECUTION_ORDER, Action, Notify
from dmbot.conditions import ALWAYS, Compiler, Condition
from dmbot.fields import Context
from dmbot.lists import NamedList, ServerData, parse_lists
from dmbot.models import Event
from dmbot.notifiers import NotifierConfig
from dmbot.rules_actions import rule_actions
from dmbot.rules_diff import describe_change
from dmbot.rules_notifiers import notifier_configs
from dmbot.rules_scopes import check_scopes, scope_error, scope_reasons
from dmbot.yaml_source import (
    Key,
    Location,
    RulesError,
    SourceFiles,
    SourceMap,
    parse_yaml,
    validate,
)

__all__ = [
    "Action", "RuleMatch", "RuleSet", "RulesError", "ServerData", "check_scopes",
    "describe_change", "evaluate", "explain", "load_rules", "merge_actions", "scope_error",
]

_NO_SERVER = ServerData()


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class _RuleSpec(_Strict):
    name: str = Field(min_length=1)
    if_: Any = Field(default=None, alias="if")
    do: Any = None
    stop: bool = False
    enabled: bool = True
    allow_delete_all: bool = False
    description: str = ""


class _DocumentSpec(_Strict):
    version: int
    notifiers: dict[str, Any] = Field(default_factory=dict)
    lists: dict[str, Any] = Field(default_factory=dict)
    conditions: dict[str, Any] = Field(default_factory=dict)
    rules: list[_RuleSpec]


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    name: str
    condition: Condition
    actions: tuple[Action, ...]
    stop: bool
    enabled: bool
    where: Location

    @property
    def fingerprint(self) -> str:
        actions = ", ".join(repr(action) for action in self.actions)
        return f"{self.condition.describe()} -> [{actions}] stop={self.stop} on={self.enabled}"


@dataclass(frozen=True, eq=False)
class RuleSet:
    """A loaded, valid rules file. Frozen; made only by `load_rules`."""

    path: Path
    rules: tuple[Rule, ...]
    notifiers: Mapping[str, NotifierConfig]
    lists: Mapping[str, NamedList]
    needs_relationships: bool
    server_lists: frozenset[str]
    required_scopes: frozenset[str]
    scope_reasons: Mapping[str, tuple[Location, str]]
    watched_files: tuple[Path, ...]
    source_digest: str

    def summary(self) -> str:
        off = sum(not rule.enabled for rule in self.rules)
        return ", ".join([
            _count(len(self.rules), "rule") + (f" ({off} disabled)" if off else ""),
            _count(len(self.notifiers), "notifier"),
            _count(len(self.lists), "list"),
        ])


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """What one rule did for one event, for `dmbot explain`."""

    name: str
    matched: bool
    actions: tuple[Action, ...]  # what this rule asked for (empty unless matched)
    stopped: bool  # it matched and has `stop: true`: later rules were not run
    skipped: str = ""  # "disabled", or "after stop" for rules the run never reached


def load_rules(path: Path, env: Mapping[str, str]) -> RuleSet:
    files = SourceFiles()
    try:
        return _load(path, env, files)
    except RulesError as error:
        error.files, error.source_digest = files.paths or (path,), files.digest
        raise


def _load(path: Path, env: Mapping[str, str], files: SourceFiles) -> RuleSet:
    content = files.load(path, Location(path), "the rules file")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RulesError(path, None, None, f"not UTF-8 text (bad byte at {exc.start})") from None
    raw, src = parse_yaml(text, path)
    if not isinstance(raw, dict):
        raise src.at(()).error("the rules file must be a mapping with 'version' and 'rules'")
    spec = validate(_DocumentSpec, raw, src)
    if spec.version != 1:
        raise src.at(("version",)).error(f"unknown version {spec.version} (this dmbot reads 1)")
    notifiers = notifier_configs(spec.notifiers, src, env)
    lists = parse_lists(spec.lists, src, path.parent, env, files)
    compiler = Compiler(src, lists, spec.conditions)
    compiler.compile_named()
    rules: list[Rule] = []
    first: dict[str, Location] = {}
    for index, rule_spec in enumerate(spec.rules):
        rule = _rule(rule_spec, ("rules", index), src, compiler, notifiers)
        if rule.name in first:
            where = src.at(("rules", index, "name"))
            raise where.error(f"duplicate rule name {rule.name!r} (first on {first[rule.name]})")
        first[rule.name] = rule.where
        rules.append(rule)
    used_lists = [lists[name] for name in sorted(compiler.used_lists)]
    reasons = scope_reasons(path, rules, used_lists)
    return RuleSet(
        path=path,
        rules=tuple(rules),
        notifiers=MappingProxyType(notifiers),
        lists=MappingProxyType(lists),
        needs_relationships="read:follows" in reasons,
        server_lists=frozenset(server for named in used_lists for server in named.servers),
        required_scopes=frozenset(reasons),
        scope_reasons=MappingProxyType(reasons),
        watched_files=files.paths,
        source_digest=files.digest,
    )


def _rule(
    spec: _RuleSpec, at: tuple[Key, ...], src: SourceMap, compiler: Compiler,
    notifiers: Mapping[str, NotifierConfig],
) -> Rule:
    where = src.at(at)
    given = "if_" in spec.model_fields_set  # no `if`: every message; `if:` left empty: an error
    condition = compiler.compile(spec.if_, (*at, "if")) if given else ALWAYS
    actions = rule_actions(spec.name, spec.do, (*at, "do"), src, notifiers)
    if not actions and not spec.stop:
        raise where.error(f"rule {spec.name!r} does nothing: give it 'do' or 'stop: true'")
    deletes = any(action.kind == "delete" for action in actions)
    if spec.allow_delete_all and not deletes:
        raise src.key_at((*at, "allow_delete_all")).error(
            f"rule {spec.name!r} says allow_delete_all but does not delete"
        )
    if deletes and condition.truth is True and not spec.allow_delete_all:
        raise src.at((*at, "if") if given else at).error(
            f"rule {spec.name!r} would delete every conversation: its condition is always true"
            " (if that is what you want, add 'allow_delete_all: true')"
        )
    return Rule(spec.name, condition, actions, spec.stop, spec.enabled, where)


def evaluate(
    rules: RuleSet, event: Event, now: datetime, server: ServerData | None = None
) -> list[Action]:
    """The actions the rules ask for, merged and in execution order."""
    ctx = Context(event, now, server or _NO_SERVER)
    asked: list[Action] = []
    for rule in rules.rules:
        if rule.enabled and rule.condition.test(ctx):
            asked.extend(rule.actions)
            if rule.stop:
                break
    return merge_actions(asked)


def explain(
    rules: RuleSet, event: Event, now: datetime, server: ServerData | None = None
) -> list[RuleMatch]:
    """Rule by rule, what `evaluate` did; `merge_actions` over the matches gives its result."""
    ctx = Context(event, now, server or _NO_SERVER)
    found: list[RuleMatch] = []
    stopped = False
    for rule in rules.rules:
        if stopped or not rule.enabled:
            skipped = "after stop" if stopped else "disabled"
            found.append(RuleMatch(rule.name, False, (), False, skipped))
            continue
        matched = rule.condition.test(ctx)
        stopped = matched and rule.stop
        found.append(RuleMatch(rule.name, matched, rule.actions if matched else (), stopped))
    return found


def merge_actions(actions: Iterable[Action]) -> list[Action]:
    """One mark_read, one delete, one notification per notifier; then execution order."""
    merged: list[Action] = []
    notified: set[str] = set()
    kinds: set[str] = set()
    for action in actions:
        if isinstance(action, Notify):
            to = tuple(name for name in action.to if name not in notified)
            if to:
                notified.update(to)
                merged.append(action if to == action.to else action.model_copy(update={"to": to}))
        elif action.kind not in kinds:
            kinds.add(action.kind)
            merged.append(action)
    merged.sort(key=lambda action: EXECUTION_ORDER[action.kind])
    return merged


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
