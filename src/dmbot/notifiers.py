"""How one named notifier of the rules file delivers: its Apprise URLs and its manners.

The rules file's `notifiers:` section maps a name to either a URL (or a list of URLs), the
short form, or to a mapping with these fields. Everything but `urls` has a default a user
would expect, so `phone: "ntfys://ntfy.sh/${NTFY_TOPIC}"` is a complete notifier.
"""

from __future__ import annotations

from datetime import time
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Privacy(StrEnum):
    FULL = "full"  # the whole message text (capped per channel)
    TRUNCATED = "truncated"  # the first `max_chars` characters
    SENDER_ONLY = "sender_only"  # who wrote, never what
    LINK_ONLY = "link_only"  # a link to the conversation, nothing else


class QuietHours(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start: time
    end: time
    timezone: str = "UTC"
    then: str = Field(default="digest", pattern="^(digest|drop)$")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)"
            ) from None
        return value


class NotifierConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    urls: tuple[str, ...]
    privacy: Privacy = Privacy.TRUNCATED
    max_chars: int = Field(default=500, ge=20, le=100_000)
    digest_threshold: int = Field(default=5, ge=1)
    cooldown_seconds: int = Field(default=0, ge=0)
    quiet_hours: QuietHours | None = None
    body_format: Literal["text", "markdown"] = "text"
