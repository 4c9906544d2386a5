"""Which OAuth scopes a rule set needs, and why: each scope points at what needs it.

Reading direct messages needs `read:statuses`; a rule that marks read or deletes needs
`write:conversations`; one that asks about follows needs `read:follows`; a list that reads
the server's domain blocks needs `read:blocks`. A missing scope is reported as an error at the
rule or list that needs it, so the fix is plain before any poll fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dmbot.lists import SERVER_LISTS, NamedList
from dmbot.yaml_source import Location, RulesError

if TYPE_CHECKING:
    from dmbot.rules import Rule, RuleSet


def scope_reasons(
    path: Path, rules: Sequence[Rule], used_lists: Sequence[NamedList]
) -> dict[str, tuple[Location, str]]:
    """Each scope the rules need, with the first place that needs it and why."""
    reasons: dict[str, tuple[Location, str]] = {
        "read:statuses": (Location(path), "reading direct messages")
    }
    for rule in rules:
        if not rule.enabled:
            continue
        for action in rule.actions:
            if action.kind != "notify":
                reasons.setdefault("write:conversations", (rule.where, f"rule {rule.name!r} uses"
                                                          f" {action.kind}"))
        if rule.condition.relationship:
            reasons.setdefault("read:follows", (rule.where, f"rule {rule.name!r} asks about"
                                                " follows"))
    servers = {server for named in used_lists for server in named.servers}
    for server in sorted(servers):
        named = next(named for named in used_lists if server in named.servers)
        reasons.setdefault(SERVER_LISTS[server], (named.where, f"list {named.name!r} reads"
                                                  f" the server's {server}"))
    return reasons


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
