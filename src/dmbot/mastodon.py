"""Async client for the few Mastodon endpoints dmbot uses.

Every request goes through `MastodonClient._request`, the one place that catches httpx's
exceptions. It raises from this tree and from nothing else:

    MastodonError
    ├── PermanentError          retrying the same request will not help
    │   ├── AuthError           401 bad/revoked token, 403 missing scope, 422 app-only token
    │   ├── NotFound            404: unknown (or already deleted) conversation
    │   └── RequestRejected     any other 4xx
    └── TransientError          try again later: 5xx, timeouts, resets, a body that is not JSON
        └── RateLimited         429 (again) after waiting once for `X-RateLimit-Reset`

The client paces itself: when `X-RateLimit-Remaining` reaches the reserve it sleeps until the
reset instead of spending the last requests, and on a 429 it waits for the reset and tries
once more. Retrying everything else is the engine's decision, not the client's.

Pagination follows Mastodon: only the `Link` header carries cursors, and they are the
conversations' *last status ids*. Only the id is taken from a Link URL; the request is always
rebuilt against the configured base URL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import ValidationError

from dmbot.clock import Clock
from dmbot.models import Account, Conversation, InstanceInfo, Relationship

MAX_PAGE = 40
Params = tuple[tuple[str, str], ...]
_MAX_RATE_WAIT = timedelta(minutes=16)  # the longest Mastodon throttle window is 15 minutes


class MastodonError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PermanentError(MastodonError):
    pass


class AuthError(PermanentError):
    pass


class NotFound(PermanentError):
    pass


class RequestRejected(PermanentError):
    pass


class TransientError(MastodonError):
    pass


class RateLimited(TransientError):
    def __init__(self, message: str, reset_at: datetime | None) -> None:
        super().__init__(message, status=429)
        self.reset_at = reset_at


@dataclass(frozen=True)
class Page:
    """One page of conversations, newest first, with the cursors from its Link header."""

    conversations: tuple[Conversation, ...]
    next_max_id: str | None
    prev_min_id: str | None
    size: int  # entries in the response, including any that failed to parse


@dataclass
class RateLimit:
    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None


def parse_reset(value: str | None) -> datetime | None:
    """`X-RateLimit-Reset`: an ISO 8601 timestamp on Mastodon; some servers send epoch seconds."""
    if not value:
        return None
    try:
        if value.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value)).astimezone()
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None


def _link_param(response: httpx.Response, rel: str, name: str) -> str | None:
    link = response.links.get(rel)
    if not link or "url" not in link:
        return None
    values = parse_qs(urlsplit(link["url"]).query).get(name)
    return values[0] if values else None


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])[:200]
    return f"HTTP {response.status_code}"


class MastodonClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        token: str,
        clock: Clock,
        *,
        rate_reserve: int = 1,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._clock = clock
        self._reserve = rate_reserve
        self.rate = RateLimit()
        self.requests_made = 0

    async def verify_credentials(self) -> Account:
        data = await self._json("GET", "/api/v1/accounts/verify_credentials")
        return Account.model_validate(data)

    async def instance(self) -> InstanceInfo:
        try:
            data = await self._json("GET", "/api/v2/instance")
            urls = data.get("configuration", {}).get("urls", {}) if isinstance(data, dict) else {}
            return InstanceInfo(
                domain=str(data["domain"]),
                version=str(data.get("version", "")),
                streaming_url=urls.get("streaming"),
            )
        except (NotFound, KeyError, TypeError, AttributeError):
            data = await self._json("GET", "/api/v1/instance")
            return InstanceInfo(
                domain=str(data["uri"]),
                version=str(data.get("version", "")),
                streaming_url=data.get("urls", {}).get("streaming_api"),
            )

    async def conversations(
        self,
        *,
        limit: int = MAX_PAGE,
        min_id: str | None = None,
        max_id: str | None = None,
    ) -> Page:
        params: Params = (("limit", str(max(1, min(limit, MAX_PAGE)))),)
        if min_id is not None:
            params += (("min_id", min_id),)
        if max_id is not None:
            params += (("max_id", max_id),)
        response = await self._request("GET", "/api/v1/conversations", params=params)
        body = self._decode(response)
        if not isinstance(body, list):
            raise TransientError("the conversations response is not a list")
        parsed = []
        for item in body:
            try:
                parsed.append(Conversation.model_validate(item))
            except ValidationError as error:
                raise TransientError(
                    f"a conversation did not parse ({error.error_count()} errors)"
                ) from None
        return Page(
            conversations=tuple(parsed),
            next_max_id=_link_param(response, "next", "max_id"),
            prev_min_id=_link_param(response, "prev", "min_id"),
            size=len(body),
        )

    async def mark_read(self, conversation_id: str) -> None:
        await self._request("POST", f"/api/v1/conversations/{conversation_id}/read")

    async def delete(self, conversation_id: str) -> None:
        await self._request("DELETE", f"/api/v1/conversations/{conversation_id}")

    async def relationships(self, account_ids: Sequence[str]) -> list[Relationship]:
        params = tuple(("id[]", account_id) for account_id in account_ids)
        body = await self._json("GET", "/api/v1/accounts/relationships", params=params)
        if not isinstance(body, list):
            raise TransientError("the relationships response is not a list")
        return [Relationship.model_validate(item) for item in body]

    async def domain_blocks(self, *, max_pages: int = 50) -> list[str]:
        """The account's own domain blocks, every page (`next` carries max_id)."""
        domains: list[str] = []
        max_id: str | None = None
        for _ in range(max_pages):
            params: Params = (("limit", "200"),) + ((("max_id", max_id),) if max_id else ())
            response = await self._request("GET", "/api/v1/domain_blocks", params=params)
            body = self._decode(response)
            if not isinstance(body, list):
                raise TransientError("the domain blocks response is not a list")
            domains.extend(str(item) for item in body)
            max_id = _link_param(response, "next", "max_id")
            if not max_id or not body:
                break
        return domains

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._decode(await self._request(method, path, **kwargs))

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        try:
            return response.json()
        except (ValueError, json.JSONDecodeError):
            raise TransientError(
                f"{response.request.url.path}: the response is not valid JSON"
            ) from None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
    ) -> httpx.Response:
        await self._pace()
        response = await self._send(method, path, params)
        if response.status_code == 429:
            await self._wait_for_reset(path)
            response = await self._send(method, path, params)
            if response.status_code == 429:
                raise RateLimited(f"{path}: rate limited", self.rate.reset_at)
        self._raise_for_status(path, response)
        return response

    async def _send(
        self,
        method: str,
        path: str,
        params: Params | None,
    ) -> httpx.Response:
        self.requests_made += 1
        try:
            response = await self._http.request(
                method,
                self._base + path,
                params=params,
                headers=self._headers,
            )
        except httpx.TimeoutException:
            raise TransientError(f"{method} {path}: timed out") from None
        except httpx.HTTPError as error:
            raise TransientError(f"{method} {path}: {type(error).__name__}") from None
        self._note_rate_limit(response)
        return response

    def _note_rate_limit(self, response: httpx.Response) -> None:
        headers = response.headers
        if "x-ratelimit-remaining" not in headers:
            return
        try:
            self.rate.remaining = int(headers["x-ratelimit-remaining"])
            self.rate.limit = int(headers.get("x-ratelimit-limit", "0")) or None
        except ValueError:
            return
        self.rate.reset_at = parse_reset(headers.get("x-ratelimit-reset"))

    async def _pace(self) -> None:
        remaining, reset_at = self.rate.remaining, self.rate.reset_at
        if remaining is None or reset_at is None or remaining > self._reserve:
            return
        wait = (reset_at - self._clock.now()).total_seconds()
        if 0 < wait <= _MAX_RATE_WAIT.total_seconds():
            await self._clock.sleep(wait)
        self.rate.remaining = None

    async def _wait_for_reset(self, path: str) -> None:
        reset_at = self.rate.reset_at
        if reset_at is None:
            raise RateLimited(f"{path}: rate limited, no reset time given", None)
        wait = (reset_at - self._clock.now()).total_seconds()
        if wait > _MAX_RATE_WAIT.total_seconds():
            raise RateLimited(f"{path}: rate limited until {reset_at.isoformat()}", reset_at)
        await self._clock.sleep(max(wait, 0.0))
        self.rate.remaining = None

    @staticmethod
    def _raise_for_status(path: str, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        message = _error_message(response)
        if status in (401, 403, 422):
            raise AuthError(f"{path}: {message}", status)
        if status == 404:
            raise NotFound(f"{path}: {message}", status)
        if status >= 500 or status == 408:
            raise TransientError(f"{path}: server error {status}", status)
        raise RequestRejected(f"{path}: {message}", status)
