"""What Mastodon sends us, and the Event the rules see.

The models follow Mastodon's serializers (`REST::ConversationSerializer`, `AccountSerializer`,
`StatusSerializer`) but keep only what dmbot reads: unknown fields are ignored, because every
Mastodon release adds some, and `last_status` may be null on real servers (a reported status
that its author deleted keeps its conversation row).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Entity(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Account(_Entity):
    id: str
    username: str
    acct: str
    display_name: str = ""
    locked: bool = False
    bot: bool = False
    group: bool = False
    created_at: datetime | None = None
    followers_count: int = 0
    following_count: int = 0
    statuses_count: int = 0
    url: str | None = None
    note: str = ""

    @property
    def is_local(self) -> bool:
        return "@" not in self.acct

    def domain(self, local_domain: str) -> str:
        """The account's server as Mastodon shows it (Unicode); the instance's own for locals."""
        return self.acct.rpartition("@")[2] if "@" in self.acct else local_domain


class Mention(_Entity):
    id: str
    username: str
    acct: str
    url: str | None = None


class MediaAttachment(_Entity):
    id: str
    type: str = "unknown"
    url: str | None = None
    description: str | None = None


class Status(_Entity):
    id: str
    created_at: datetime
    account: Account
    content: str = ""
    spoiler_text: str = ""
    visibility: str = "direct"
    language: str | None = None
    url: str | None = None
    uri: str | None = None
    in_reply_to_id: str | None = None
    in_reply_to_account_id: str | None = None
    sensitive: bool = False
    media_attachments: tuple[MediaAttachment, ...] = ()
    mentions: tuple[Mention, ...] = ()


class Conversation(_Entity):
    id: str
    unread: bool = False
    accounts: tuple[Account, ...] = ()
    last_status: Status | None = None


class Relationship(_Entity):
    """`GET /api/v1/accounts/relationships`: how the owner and one account relate."""

    id: str
    following: bool = False
    followed_by: bool = False
    blocking: bool = False
    muting: bool = False
    requested: bool = False


class InstanceInfo(_Entity):
    """The part of `GET /api/v2/instance` (or v1) dmbot uses."""

    domain: str
    version: str = ""
    streaming_url: str | None = None


class Event(_Entity):
    """One new message: a conversation whose last status dmbot has not evaluated yet.

    `local_domain` is the instance's own domain, so that a local sender (`acct` without a
    domain) still has one for domain rules. `relationship` is filled in by the engine only
    when some rule asks about follows.
    """

    conversation: Conversation
    status: Status
    local_domain: str
    own_account_id: str | None = None
    relationship: Relationship | None = None
    participants: tuple[Account, ...] = Field(default=())

    @property
    def key(self) -> str:
        return f"{self.conversation.id}:{self.status.id}"

    @property
    def sender(self) -> Account:
        return self.status.account

    @property
    def from_me(self) -> bool:
        return self.own_account_id is not None and self.sender.id == self.own_account_id

    @classmethod
    def from_conversation(
        cls,
        conversation: Conversation,
        *,
        local_domain: str,
        own_account_id: str | None,
    ) -> Event:
        if conversation.last_status is None:
            raise ValueError("a conversation without a last status makes no event")
        return cls(
            conversation=conversation,
            status=conversation.last_status,
            local_domain=local_domain,
            own_account_id=own_account_id,
            participants=conversation.accounts,
        )
