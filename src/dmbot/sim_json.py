"""Mastodon's JSON, as its serializers render the simulator's records.

Keys and nulls follow the recorded responses in tests/fixtures; the local domain is passed
in, since URLs differ for local and remote accounts.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from dmbot.sim_model import Relationship, SimAccount, SimStatus

Json = dict[str, Any]


def iso_ms(when: datetime) -> str:
    """Mastodon's datetimes: UTC, milliseconds, `Z`."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _origin(account: SimAccount, local_domain: str) -> str:
    return f"https://{account.domain or local_domain}"


def _actor_uri(account: SimAccount, local_domain: str) -> str:
    origin = _origin(account, local_domain)
    if account.is_local:
        return f"{origin}/ap/users/{account.id}"
    return f"{origin}/users/{account.username}"


def account_json(account: SimAccount, local_domain: str) -> Json:
    """`REST::AccountSerializer`, with the keys of the recorded responses (4.6)."""
    origin, files = _origin(account, local_domain), f"https://{local_domain}"
    midnight = account.created_at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    last_status_at = account.last_status_at
    data: Json = {
        "id": account.id,
        "username": account.username,
        "acct": account.acct,
        "display_name": account.display_name,
        "locked": account.locked,
        "bot": account.bot,
        "discoverable": account.discoverable,
        "indexable": False,
        "group": account.group,
        "created_at": iso_ms(midnight),
        "note": account.note,
        "url": f"{origin}/@{account.username}",
        "uri": _actor_uri(account, local_domain),
        "avatar": f"{files}/avatars/original/missing.png",
        "avatar_static": f"{files}/avatars/original/missing.png",
        "avatar_description": "",
        "header": f"{files}/headers/original/missing.png",
        "header_static": f"{files}/headers/original/missing.png",
        "header_description": "",
        "followers_count": account.followers_count,
        "following_count": account.following_count,
        "statuses_count": account.statuses_count,
        "last_status_at": last_status_at.isoformat() if last_status_at else None,
        "hide_collections": None,
        "show_media": True,
        "show_media_replies": True,
        "show_featured": True,
        "emojis": [],
        "fields": [],
    }
    if account.is_local:  # only local accounts carry these
        data["noindex"] = False
        data["feature_approval"] = {"automatic": [], "manual": [], "current_user": "denied"}
        data["roles"] = []
    return data


def credential_account_json(account: SimAccount, local_domain: str) -> Json:
    """`verify_credentials`: the account plus `source` and `role`."""
    source = {"privacy": "public", "sensitive": False, "language": None, "note": account.note}
    source |= {"fields": [], "follow_requests_count": 0, "hide_collections": None}
    source |= {"discoverable": account.discoverable, "indexable": False}
    role = {"id": "-99", "name": "", "permissions": "0", "color": "", "highlighted": False}
    return account_json(account, local_domain) | {"source": source, "role": role}


def status_json(status: SimStatus, local_domain: str) -> Json:
    author = status.author
    origin = _origin(author, local_domain)
    data: Json = {
        "id": status.id,
        "created_at": iso_ms(status.created_at),
        "in_reply_to_id": status.in_reply_to_id,
        "in_reply_to_account_id": status.in_reply_to_account_id,
        "sensitive": status.sensitive,
        "spoiler_text": status.spoiler_text,
        "visibility": "direct",
        "language": status.language,
        "uri": f"{_actor_uri(author, local_domain)}/statuses/{status.id}",
        "url": f"{origin}/@{author.username}/{status.id}",
        "replies_count": 0,
        "reblogs_count": 0,
        "favourites_count": 0,
        "quotes_count": 0,
        "edited_at": None,
        "favourited": False,
        "reblogged": False,
        "muted": False,
        "bookmarked": False,
        "content": status.content,
        "filtered": [],
        "reblog": None,
    }
    if author.is_local:  # absent for remote authors
        data["application"] = {"name": "Web", "website": None}
    return data | {
        "account": account_json(author, local_domain),
        "media_attachments": [_media_json(status, n, local_domain) for n in range(status.media)],
        "mentions": [_mention_json(a, local_domain) for a in status.recipients],
        "tags": [],
        "emojis": [],
        "tagged_collections": [],
        "quote": None,
        "card": None,
        "poll": None,
        "quote_approval": {"automatic": [], "manual": [], "current_user": "denied"},
    }


def _media_json(status: SimStatus, n: int, local_domain: str) -> Json:
    url = f"https://{local_domain}/system/media_attachments/files/{status.id}/original/{n}.png"
    size = {"width": 640, "height": 480, "size": "640x480", "aspect": 640 / 480}
    return {
        "id": str(int(status.id) + n + 1),
        "type": "image",
        "url": url,
        "preview_url": url.replace("/original/", "/small/"),
        "remote_url": None,
        "preview_remote_url": None,
        "text_url": None,
        "meta": {"original": size, "small": size},
        "description": None,
        "blurhash": "UFBWY:8_0Jxv4mx]t8t64.%M-:IUWGWAt6M}",
    }


def _mention_json(account: SimAccount, local_domain: str) -> Json:
    return {
        "id": account.id,
        "username": account.username,
        "url": f"{_origin(account, local_domain)}/@{account.username}",
        "acct": account.acct,
    }


def status_content(recipients: Sequence[SimAccount], text: str, local_domain: str) -> str:
    """`<p>` paragraphs, `<br />` lines, h-card mentions first, as Mastodon's TextFormatter.

    A mention shows the bare username unless another mentioned account shares it.
    """
    usernames = [a.username.lower() for a in recipients]
    mentions = [
        '<span class="h-card" translate="no">'
        f'<a href="{_origin(a, local_domain)}/@{a.username}" class="u-url mention">'
        f"@<span>{a.acct if usernames.count(a.username.lower()) > 1 else a.username}</span>"
        "</a></span>"
        for a in recipients
    ]
    paragraphs = [
        "<br />".join(html.escape(line).replace("&#x27;", "&#39;") for line in p.split("\n"))
        for p in text.split("\n\n")
    ]
    paragraphs[0] = " ".join([*mentions, paragraphs[0]] if paragraphs[0] else mentions)
    return "".join(f"<p>{p}</p>" for p in paragraphs)


def conversation_json(
    row_id: int,
    unread: bool,
    accounts: Sequence[SimAccount],
    last_status: SimStatus | None,
    local_domain: str,
) -> Json:
    """`REST::ConversationSerializer`; `last_status` is null when it was soft-deleted."""
    return {
        "id": str(row_id),
        "unread": unread,
        "accounts": [account_json(a, local_domain) for a in accounts],
        "last_status": None if last_status is None else status_json(last_status, local_domain),
    }


def relationship_json(other: SimAccount, flags: Relationship, domain_blocking: bool) -> Json:
    """`REST::RelationshipSerializer`: `owner`'s `flags` towards `other`."""
    return {
        "id": other.id,
        "following": flags.following,
        "showing_reblogs": flags.following,
        "notifying": False,
        "languages": None,
        "followed_by": flags.followed_by,
        "blocking": flags.blocking,
        "blocked_by": False,
        "muting": flags.muting,
        "muting_notifications": flags.muting,
        "muting_expires_at": None,
        "requested": flags.requested,
        "requested_by": False,
        "domain_blocking": domain_blocking,
        "endorsed": False,
        "note": "",
    }
