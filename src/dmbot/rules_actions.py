"""A rule's `do:`: the actions it asks for, checked against the notifiers the file names.

`do` is one action or a list of them: `notify`, `mark_read`, `delete`, or `{notify: ...}`
with a notifier name, a list of names, or a mapping (`to`, `title`, `body`, `quiet_hours`...).
A bare `notify` goes to every notifier. Templates are checked here, so a typo in one fails
the load, not a delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from dmbot.actions import Action, Delete, MarkRead, Notify
from dmbot.notifiers import NotifierConfig, QuietHours
from dmbot.render import check_template
from dmbot.yaml_source import Key, SourceMap, did_you_mean, validate

_ACTIONS = ("notify", "mark_read", "delete")


class _NotifySpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    to: Any = None
    title: str | None = None
    body: str | None = None
    show_spoilered_text: bool = False
    bypass_quiet_hours: bool = False
    quiet_hours: QuietHours | None = None


def rule_actions(
    rule: str, raw: object, at: tuple[Key, ...], src: SourceMap,
    notifiers: Mapping[str, NotifierConfig],
) -> tuple[Action, ...]:
    """The actions of rule `rule`'s `do:` (`raw`, found at `at`), in the order written."""
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
