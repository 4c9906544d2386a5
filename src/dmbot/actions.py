"""What a rule can ask for. Rules produce these; the outbox stores them; the executor runs them.

Actions are plain frozen data so they can be compared (duplicates merge), stored as JSON in
the outbox and shown by `dmbot explain`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from dmbot.notifiers import QuietHours


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str = Field(description="name of the rule that asked for it")


class Notify(_Action):
    kind: Literal["notify"] = "notify"
    to: tuple[str, ...]
    title: str | None = None
    body: str | None = None
    show_spoilered_text: bool = False
    bypass_quiet_hours: bool = False
    quiet_hours: QuietHours | None = None  # this rule's own window, instead of the notifier's


class MarkRead(_Action):
    kind: Literal["mark_read"] = "mark_read"


class Delete(_Action):
    kind: Literal["delete"] = "delete"


Action = Annotated[Notify | MarkRead | Delete, Field(discriminator="kind")]

ACTION_ADAPTER: TypeAdapter[Notify | MarkRead | Delete] = TypeAdapter(Action)

EXECUTION_ORDER = {"notify": 0, "mark_read": 1, "delete": 2}
