"""`dmbot explain`: what the rules would do with each message, as a table a person reads.

```
sender                 unread  message                                  rules           actions
---------------------  ------  ---------------------------------------  --------------  ------------
@x@nsfw.social         yes     Buy now at https://spam.example/offer …  blocked (stop)  delete
@alice@example.social  no      [CW: plans] URGENT: are we still on fo…  friends         notify:phone
                                                                        urgent          mark_read
@bob                   yes     hi                                       -               -
```

Message text comes from strangers: control and bidi-override characters are removed before
anything reaches the terminal.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Sequence

from dmbot.actions import Notify
from dmbot.fields import message_text
from dmbot.models import Event
from dmbot.rules import Action, RuleMatch, merge_actions

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_GAP = "  "


def action_labels(actions: Iterable[Action]) -> list[str]:
    """`notify:phone`, `mark_read`, `delete`: one label per notifier and per action."""
    labels: list[str] = []
    for action in actions:
        if isinstance(action, Notify):
            labels.extend(f"notify:{name}" for name in action.to)
        else:
            labels.append(action.kind)
    return labels


def excerpt(event: Event) -> str:
    """The message on one line: content warning first, whitespace collapsed, safe to print."""
    text = message_text(event)
    spoiler = event.status.spoiler_text
    if spoiler:
        text = f"[CW: {spoiler}] {text}"
    return _clean(text)


def explain_table(rows: Sequence[tuple[Event, list[RuleMatch]]], width: int = 100) -> str:
    """One row per event (more lines when several rules matched); the message fills the rest."""
    table = []
    for event, matches in rows:
        matched = [m for m in matches if m.matched]
        rules = [m.name + (" (stop)" if m.stopped else "") for m in matched] or ["-"]
        labels = action_labels(merge_actions(a for m in matched for a in m.actions)) or ["-"]
        sender = _clean("@" + event.sender.acct)
        table.append((sender, "yes" if event.conversation.unread else "no", excerpt(event),
                      [_clean(r) for r in rules], labels))
    header = ("sender", "unread", "message", ["rules"], ["actions"])
    widths = [
        min(28, max(len(row[0]) for row in [header, *table])),
        6,
        0,
        min(28, max(len(item) for row in [header, *table] for item in row[3])),
        min(24, max(len(item) for row in [header, *table] for item in row[4])),
    ]
    widths[2] = max(16, width - sum(widths) - len(_GAP) * (len(widths) - 1))
    lines = [_row(["sender", "unread", "message", "rules", "actions"], widths),
             _row(["-" * w for w in widths], widths)]
    for sender, unread, message, rules, labels in table:
        cells = [[_fit(sender, widths[0])], [unread], [_fit(message, widths[2])],
                 _wrap(rules, widths[3]), _wrap(labels, widths[4])]
        for index in range(max(len(cell) for cell in cells)):
            lines.append(_row([cell[index] if index < len(cell) else "" for cell in cells],
                              widths))
    return "\n".join(lines)


def _row(cells: list[str], widths: list[int]) -> str:
    return _GAP.join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def _wrap(items: list[str], width: int) -> list[str]:
    lines = []
    for item in items:
        lines.extend(textwrap.wrap(item, width, break_on_hyphens=False) or [""])
    return lines


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _clean(text: str) -> str:
    return " ".join(_UNSAFE.sub(" ", text).split())
