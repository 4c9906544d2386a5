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
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import apprise
from pydantic import BaseModel, ConfigDict, Field

from dmbot.actions import EXECUTION_ORDER, Action, Delete, MarkRead, Notify
from dmbot.conditions import ALWAYS, Compiler, Condition
from dmbot.fields import Context
from dmbot.lists import SERVER_LISTS, NamedList, ServerData, parse_lists
from dmbot.models import Event
from dmbot.notifiers import NotifierConfig, QuietHours
from dmbot.render import check_template
from dmbot.yaml_source import (
    Key,
    Location,
    RulesError,
    SourceFiles,
    SourceMap,
    check_name,
    did_you_mean,
    expand_env,
    parse_yaml,
    validate,
)

__all__ = [
    "Action", "RuleMatch", "RuleSet", "RulesError", "ServerData", "check_scopes",
    "describe_change", "evaluate", "explain", "load_rules", "merge_actions", "scope_error",
]

_ACTIONS = ("notify", "mark_read", "delete")
_NO_SERVER = ServerData()
_SCHEME = re.compile(r"^\s*([A-Za-z0-9]{1,32})://")


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


class _NotifySpec(_Strict):
    to: Any = None
    title: str | None = None
    body: str | None = None
    show_spoilered_text: bool = False
    bypass_quiet_hours: bool = False
    quiet_hours: QuietHours | None = None


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
    notifiers = _notifier_configs(spec.notifiers, src, env)
    lists = parse_lists(spec.lists, src, path.parent, env, files)
    compiler = Compiler(src, lists, spec.conditions)
    compiler.compile_named()
    reasons: dict[str, tuple[Location, str]] = {
        "read:statuses": (Location(path), "reading direct messages")
    }
    rules: list[Rule] = []
    first: dict[str, Location] = {}
    for index, rule_spec in enumerate(spec.rules):
        rule = _rule(rule_spec, ("rules", index), src, compiler, notifiers)
        if rule.name in first:
            where = src.at(("rules", index, "name"))
            raise where.error(f"duplicate rule name {rule.name!r} (first on {first[rule.name]})")
        first[rule.name] = rule.where
        rules.append(rule)
        if not rule.enabled:
            continue
        for action in rule.actions:
            if action.kind != "notify":
                reasons.setdefault("write:conversations", (rule.where, f"rule {rule.name!r} uses"
                                                          f" {action.kind}"))
        if rule.condition.relationship:
            reasons.setdefault("read:follows", (rule.where, f"rule {rule.name!r} asks about"
                                                " follows"))
    servers = {server for name in compiler.used_lists for server in lists[name].servers}
    for server in sorted(servers):
        named = next(lists[n] for n in sorted(compiler.used_lists) if server in lists[n].servers)
        reasons.setdefault(SERVER_LISTS[server], (named.where, f"list {named.name!r} reads"
                                                  f" the server's {server}"))
    return RuleSet(
        path=path,
        rules=tuple(rules),
        notifiers=MappingProxyType(notifiers),
        lists=MappingProxyType(lists),
        needs_relationships="read:follows" in reasons,
        server_lists=frozenset(servers),
        required_scopes=frozenset(reasons),
        scope_reasons=MappingProxyType(reasons),
        watched_files=files.paths,
        source_digest=files.digest,
    )


def _notifier_configs(
    raw: Mapping[str, object], src: SourceMap, env: Mapping[str, str]
) -> dict[str, NotifierConfig]:
    """The `notifiers:` section: name -> URL, list of URLs, or NotifierConfig's fields."""
    found = {}
    for name, value in raw.items():
        at: tuple[Key, ...] = ("notifiers", name)
        check_name("notifier", name, src.key_at(at))
        settings: dict[str, object] = {}
        urls, urls_at = value, at
        if isinstance(value, dict):
            if "name" in value:
                raise src.key_at((*at, "name")).error("unknown key 'name' (the key above is it)")
            settings = dict(value)
            urls, urls_at = settings.pop("urls", None), (*at, "urls")
            if urls is None:
                raise src.at(at).error(f"notifier {name!r} has no 'urls'")
        listed = urls if isinstance(urls, list) else [urls]
        if not listed:
            raise src.at(urls_at).error(f"notifier {name!r} has no URLs")
        expanded = []
        for index, url in enumerate(listed):
            where = src.at((*urls_at, index) if isinstance(urls, list) else urls_at)
            if not isinstance(url, str):
                raise where.error(f"notifier {name!r}: a URL is text, such as ntfys://ntfy.sh/x")
            label = f"notifier {name!r}" + (f" URL {index + 1}" if len(listed) > 1 else "")
            expanded.append(_apprise_url(expand_env(url, env, where), label, where))
        found[name] = validate(NotifierConfig, {**settings, "name": name, "urls": expanded},
                               src, at)
    return found


def _apprise_url(url: str, label: str, where: Location) -> str:
    """Check that Apprise can use `url` (no network); errors never show the URL itself."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        raise where.error(f"{label} is not a URL (it needs a scheme, as in ntfys://...)")
    with warnings.catch_warnings():  # Apprise's e-mail plugin imports the deprecated imghdr
        warnings.simplefilter("ignore", DeprecationWarning)
        service = apprise.Apprise.instantiate(url)
        known = set(apprise.plugins.N_MGR.schemas())  # type: ignore[no-untyped-call]  # untyped
    if service is not None:
        return url
    name = scheme.group(1).lower()
    if name in ("http", "https"):
        raise where.error(
            f"{label}: Apprise does not recognise this {name}:// URL as a service"
            " (for a plain webhook write json:// or jsons://)"
        )
    if name not in known:
        raise where.error(
            f"{label}: Apprise does not know the scheme '{name}://'{did_you_mean(name, known)}"
        )
    raise where.error(
        f"{label}: Apprise cannot use this {name}:// URL (check it against Apprise's documentation)"
    )


def _rule(
    spec: _RuleSpec, at: tuple[Key, ...], src: SourceMap, compiler: Compiler,
    notifiers: Mapping[str, NotifierConfig],
) -> Rule:
    where = src.at(at)
    given = "if_" in spec.model_fields_set  # no `if`: every message; `if:` left empty: an error
    condition = compiler.compile(spec.if_, (*at, "if")) if given else ALWAYS
    actions = _actions(spec.name, spec.do, (*at, "do"), src, notifiers)
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


def _actions(
    rule: str, raw: object, at: tuple[Key, ...], src: SourceMap,
    notifiers: Mapping[str, NotifierConfig],
) -> tuple[Action, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    found: list[Action] = []
    for index, item in enumerate(items):
        here = (*at, index) if isinstance(raw, list) else at
        if isinstance(item, str):
            name, options, where = item, None, src.at(here)
        elif isinstance(item, dict) and len(item) == 1:
            name, options = next(iter(item.items()))
            where = src.key_at((*here, name))
            here = (*here, name)
        else:
            raise src.at(here).error("an action is notify, mark_read or delete, or {notify: ...}")
        if name not in _ACTIONS:
            raise where.error(f"unknown action {name!r}{did_you_mean(name, _ACTIONS)}")
        if name == "notify":
            found.append(_notify(rule, options, here, src, notifiers))
        elif options is not None:
            raise src.at(here).error(f"{name} takes no options")
        else:
            found.append(MarkRead(rule=rule) if name == "mark_read" else Delete(rule=rule))
    return tuple(found)


def _notify(
    rule: str, options: object, at: tuple[Key, ...], src: SourceMap,
    notifiers: Mapping[str, NotifierConfig],
) -> Notify:
    if not notifiers:
        raise src.at(at).error("notify needs a 'notifiers:' section naming where to send")
    spec = (
        validate(_NotifySpec, options, src, at) if isinstance(options, dict)
        else _NotifySpec(to=options)
    )
    to_at = (*at, "to") if isinstance(options, dict) else at
    targets = spec.to if spec.to is not None else list(notifiers)
    names = targets if isinstance(targets, list) else [targets]
    if not names or not all(isinstance(name, str) for name in names):
        raise src.at(to_at).error("notify 'to' is a notifier name or a list of names")
    for index, name in enumerate(names):
        if name not in notifiers:
            where = src.at((*to_at, index) if isinstance(targets, list) else to_at)
            raise where.error(f"unknown notifier {name!r}{did_you_mean(name, notifiers)}")
    for field in ("title", "body"):
        template = getattr(spec, field)
        problem = None if template is None else check_template(template)
        if problem is not None:
            raise src.at((*at, field)).error(f"notify {field}: {problem}")
    return Notify(
        rule=rule, to=tuple(dict.fromkeys(names)), title=spec.title, body=spec.body,
        show_spoilered_text=spec.show_spoilered_text, bypass_quiet_hours=spec.bypass_quiet_hours,
        quiet_hours=spec.quiet_hours,
    )


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


def check_scopes(rules: RuleSet, granted: Iterable[str]) -> None:
    """Raise RulesError, at the rule that needs it, for a scope the access token lacks."""
    have = set(granted)
    missing = [
        scope for scope in rules.required_scopes
        if scope not in have and scope.split(":", 1)[0] not in have  # `read` covers read:*
        and not (scope in ("read:follows", "read:blocks") and "follow" in have)  # legacy scope
    ]
    error = scope_error(rules, missing)
    if error is not None:
        error.message += f" (the token has: {', '.join(sorted(have)) or 'none'})"
        raise error


def scope_error(rules: RuleSet, missing: Iterable[str]) -> RulesError | None:
    """For scopes found missing (by `check_scopes`, or by probing the server): the first,
    as an error at the rule or list that needs it. None when nothing the rules need is missing.
    """
    needed = sorted(set(missing) & rules.required_scopes)
    if not needed:
        return None
    where, why = rules.scope_reasons[needed[0]]
    return where.error(f"{why}, which needs the token scope {needed[0]!r}; the token lacks it")


def describe_change(old: RuleSet, new: RuleSet) -> str:
    """One line for the reload log: what differs between two rule sets (never a secret)."""
    parts = []
    before = {rule.name: rule.fingerprint for rule in old.rules}
    after = {rule.name: rule.fingerprint for rule in new.rules}
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    changed = [name for name in after if name in before and after[name] != before[name]]
    kept_order = [name for name in before if name in after]
    reordered = kept_order != [name for name in after if name in before]
    if added or removed or changed or reordered:
        parts.append(
            f"rules: +{_names(added)}, -{_names(removed)}, {len(changed)} changed"
            + (f" ({', '.join(changed)})" if changed else "")
            + (", reordered" if reordered else "")
        )
    notifiers = _diff_names(old.notifiers, new.notifiers)
    if notifiers:
        parts.append(f"notifiers: {notifiers}")
    lists = []
    for name in sorted(old.lists.keys() | new.lists.keys()):
        if name not in old.lists:
            lists.append(f"{name} new")
        elif name not in new.lists:
            lists.append(f"{name} removed")
        else:
            was, now = old.lists[name].fingerprint(), new.lists[name].fingerprint()
            if was != now:
                lists.append(f"{name} +{len(now - was)} -{len(was - now)}")
    if lists:
        parts.append(f"lists: {', '.join(lists)}")
    return "; ".join(parts) or "no changes"


def _diff_names(old: Mapping[str, object], new: Mapping[str, object]) -> str:
    marks = [f"+{name}" for name in new if name not in old]
    marks += [f"-{name}" for name in old if name not in new]
    marks += [f"~{name}" for name in new if name in old and new[name] != old[name]]
    return ", ".join(marks)


def _names(names: Sequence[str]) -> str:
    return f"{len(names)} ({', '.join(names)})" if names else "0"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
