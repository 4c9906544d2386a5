"""What a reload changed: one line for the log, comparing two rule sets.

Rules compare by name and fingerprint (condition, actions, stop, enabled), notifiers by
their settings, lists by their entries. Only names and counts are shown: notifier URLs hold
secrets and lists can be long.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dmbot.rules import RuleSet


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
