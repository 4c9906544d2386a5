"""`dmbot test RULES SAMPLES`: rules checked against saved conversations, for users' own CI.

A samples file is JSON: a list of samples, or an object with the samples and shared context.

```json
{
  "own_account_id": "1",
  "domain_blocks": ["spam.example"],
  "samples": [
    {
      "name": "spam is deleted",
      "conversation": { "id": "7", "unread": true, "accounts": [...], "last_status": {...} },
      "expect": ["delete"]
    },
    {
      "name": "a friend's urgent message",
      "conversation": { ... },
      "relationship": {"following": true, "followed_by": true},
      "now": "2026-05-01T12:00:00Z",
      "expect": ["notify:phone", "mark_read"],
      "matched": ["friends", "urgent"]
    }
  ]
}
```

`conversation` is what `GET /api/v1/conversations` returns for one conversation. `expect`
lists the merged actions (`notify:<notifier>` once per notifier, `mark_read`, `delete`) in
any order; `[]` means "nothing happens". `matched`, when given, lists the rules that must
match. `now` defaults to the time passed in (for `sender.age_days`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dmbot.explain import action_labels
from dmbot.models import Conversation, Event, Relationship
from dmbot.rules import RulesError, RuleSet, ServerData, evaluate, explain


class SamplesError(RulesError):
    """The samples file is unreadable, not JSON, or not in the samples format."""


@dataclass(frozen=True, slots=True)
class SamplesReport:
    ok: bool
    text: str
    total: int
    failed: int


class _Follows(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    following: bool = False
    followed_by: bool = False


class _Sample(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = ""
    conversation: dict[str, Any]
    expect: list[str]
    matched: list[str] | None = None
    relationship: _Follows | None = None
    now: datetime | None = None


class _SamplesFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    own_account_id: str | None = None
    domain_blocks: list[str] = Field(default_factory=list)
    samples: list[_Sample]


def run_samples(
    rules: RuleSet, samples_path: Path, now: datetime, local_domain: str
) -> SamplesReport:
    spec = _read(samples_path)
    server = ServerData.from_domain_blocks(spec.domain_blocks)
    lines, failed = [], 0
    for index, sample in enumerate(spec.samples, 1):
        label = sample.name or f"sample {index}"
        event = _event(sample, samples_path, label, local_domain, spec.own_account_id)
        when = sample.now or now
        got = sorted(action_labels(evaluate(rules, event, when, server)))
        hits = [m.name for m in explain(rules, event, when, server) if m.matched]
        problems = _unknown_names(rules, sample)
        if sorted(sample.expect) != got:
            problems.append(f"expected {_show(sorted(sample.expect))}, got {_show(got)}")
        if sample.matched is not None and sorted(sample.matched) != sorted(hits):
            problems.append(f"expected rules {_show(sample.matched)} to match, got {_show(hits)}")
        if problems:
            failed += 1
            lines.append(f"FAIL {label}: " + "; ".join(problems) + f" (matched: {_show(hits)})")
        else:
            lines.append(f"ok   {label}: {_show(got)}")
    total = len(spec.samples)
    lines.append(f"{total} sample{'' if total == 1 else 's'}, {failed} failed")
    return SamplesReport(ok=failed == 0, text="\n".join(lines), total=total, failed=failed)


def _read(path: Path) -> _SamplesFile:
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise SamplesError(path, None, None, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SamplesError(path, None, None, "not UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise SamplesError(path, exc.lineno, exc.colno, f"invalid JSON: {exc.msg}") from None
    if isinstance(data, list):
        data = {"samples": data}
    try:
        return _SamplesFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = _where(error["loc"], data)
        raise SamplesError(path, None, None, f"{where}: {error['msg']}") from None


def _event(
    sample: _Sample, path: Path, label: str, local_domain: str, own_id: str | None
) -> Event:
    try:
        conversation = Conversation.model_validate(sample.conversation)
        event = Event.from_conversation(
            conversation, local_domain=local_domain, own_account_id=own_id
        )
    except (ValidationError, ValueError) as exc:
        detail = str(exc)
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            detail = ".".join(str(part) for part in first["loc"]) + ": " + first["msg"]
        raise SamplesError(path, None, None, f"{label}: not a Mastodon conversation: {detail}") \
            from None
    if sample.relationship is not None:
        relationship = Relationship(id=event.sender.id, **sample.relationship.model_dump())
        event = event.model_copy(update={"relationship": relationship})
    return event


def _unknown_names(rules: RuleSet, sample: _Sample) -> list[str]:
    names = {rule.name for rule in rules.rules}
    problems = [f"no rule is named {name!r}" for name in sample.matched or () if name not in names]
    for label in sample.expect:
        kind, _, target = label.partition(":")
        if kind not in ("notify", "mark_read", "delete") or (kind == "notify") != bool(target):
            problems.append(f"{label!r} is not an action (notify:<name>, mark_read, delete)")
        elif target and target not in rules.notifiers:
            problems.append(f"no notifier is named {target!r}")
    return problems


def _where(loc: tuple[int | str, ...], data: object) -> str:
    if len(loc) >= 2 and loc[0] == "samples" and isinstance(loc[1], int):
        rest = ".".join(str(part) for part in loc[2:])
        name = ""
        samples = data.get("samples") if isinstance(data, dict) else None
        if isinstance(samples, list) and loc[1] < len(samples) and isinstance(samples[loc[1]],
                                                                              dict):
            name = f" ({samples[loc[1]].get('name')})" if samples[loc[1]].get("name") else ""
        return f"sample {loc[1] + 1}{name}" + (f", {rest}" if rest else "")
    return ".".join(str(part) for part in loc) or "the file"


def _show(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"
