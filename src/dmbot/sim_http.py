"""The simulator's HTTP layer: Mastodon's API as its controllers answer it, plus `/_sim/`.

A request to `/api` goes through the same stages as on Mastodon: an outage or injected fault
(the proxy in front), Rack::Attack's fixed-window throttles, the route, Doorkeeper's token and
scope checks (401, 403), `require_user!` (422), then the controller. `/_sim/` is the JSON
control API for tests that run the simulator in another process; it needs no token and is
never throttled, faulted or recorded.

This module reads the simulator only through its methods, and imports it only for types, so
that `python -m dmbot.sim` (which runs the simulator as `__main__`) has one copy of it.
"""

from __future__ import annotations

import contextlib
import html
import json
import queue
import socket
import sys
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

if TYPE_CHECKING:
    from dmbot.sim import Fault, SimAccount, SimStatus, Simulator

Json = dict[str, Any]
Query = dict[str, list[str]]

CONVERSATION_LIMIT = 20  # Mastodon's LIMIT; the maximum is twice the default
DOMAIN_BLOCK_LIMIT = 100
API_PERIOD = 5 * 60
PAGING_PERIOD = 15 * 60
PAGING_PARAMS = ("page", "min_id", "max_id", "since_id")
BAD_BEARER = "The access token is invalid"
BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def json_response(status: int, data: object, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(
        status,
        body,
        {
            "Content-Type": "application/json; charset=utf-8",
            "Cache-Control": "private, no-store",
            "Vary": "Authorization, Origin",
            "X-Request-Id": str(uuid.uuid4()),
            **(headers or {}),
        },
    )


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": message}, headers)


def to_i(text: str) -> int:
    """Ruby's `String#to_i`: the leading integer, or 0."""
    digits = text.strip()
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    end = next((i for i, c in enumerate(digits) if not c.isdigit()), len(digits))
    return sign * int(digits[:end] or "0")


def last(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def bound(query: Query, name: str) -> int | None:
    """A cursor parameter as a SQL bound: absent or blank means no bound."""
    value = last(query, name)
    return to_i(value) if value else None


def limit_param(query: Query, default: int) -> int:
    value = last(query, "limit")
    return default if value is None else min(abs(to_i(value)), 2 * default)


def reset_at(now: datetime, period: int) -> str:
    """`X-RateLimit-Reset`: the next epoch-aligned window, keeping the request's fraction."""
    when = now + timedelta(seconds=period - int(now.timestamp()) % period)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Verdict:
    limited: bool
    limit: int
    remaining: int
    period: int

    def headers(self, now: datetime) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": reset_at(now, self.period),
        }


class Throttles:
    """Rack::Attack fixed windows on the simulator's clock; a request counts in every match."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (window, count)
        self._lock = threading.Lock()

    def hit(self, now: datetime, matches: list[tuple[str, int, int]]) -> Verdict:
        """`matches`: (key, limit, period) of each throttle this request falls under."""
        seen: list[tuple[int, int, int]] = []  # (limit, count, period)
        with self._lock:
            for key, limit, period in matches:
                window = int(now.timestamp()) // period
                held_window, held = self._counts.get(key, (window, 0))
                count = (held if held_window == window else 0) + 1
                self._counts[key] = (window, count)
                seen.append((limit, count, period))
        over = [s for s in seen if s[1] > s[0]]
        if over:
            return Verdict(True, over[0][0], 0, over[0][2])
        limit, count, period = min(seen, key=lambda s: (s[0] - s[1], s[0]))
        return Verdict(False, limit, limit - count, period)


# -- JSON, as Mastodon's serializers render it ------------------------------------------------


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


def relationship_json(other: SimAccount, flags: Any, domain_blocking: bool) -> Json:
    """`REST::RelationshipSerializer`; `flags` has following, followed_by, blocking, ..."""
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


class SimServer(ThreadingHTTPServer):
    """A threading server whose `stop()` leaves no connection or handler thread behind."""

    daemon_threads = False  # server_close() joins the handler threads
    block_on_close = True

    def __init__(self, sim: Simulator, address: tuple[str, int]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sim = sim
        self.throttles = Throttles()
        self.closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is not an error worth a traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def stop(self) -> None:
        self.closing.set()
        self.shutdown()
        with self._connections_lock:
            open_now = list(self._connections)
        for conn in open_now:  # wakes handlers blocked reading a keep-alive connection
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: SimServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests assert on `Simulator.requests`, not on stderr."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    # -- plumbing ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        parts = [p for p in url.path.split("/") if p]
        body = self._read_body()
        try:
            if parts[:1] == ["_sim"]:
                response: Response | None = control(
                    self.server.sim, self.command, parts, query, body
                )
            else:
                response = self._api(url.path, parts, query)
        except Exception as exc:  # a simulator bug: say so in the answer, not only on stderr
            response = error(500, f"simulator error: {type(exc).__name__}: {exc}")
        if response is not None:
            self._send(response)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: Response) -> None:
        if response.drop:
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def _base(self) -> str:
        return f"http://{self.headers.get('Host') or self.server.base_url.split('//', 1)[1]}"

    def _token(self, query: Query) -> str | None:
        header = self.headers.get("Authorization") or ""
        if header[:7].lower() == "bearer ":
            return header[7:].strip() or None
        return last(query, "access_token") or None

    # -- the API pipeline ---------------------------------------------------------------------

    def _api(self, path: str, parts: list[str], query: Query) -> Response | None:
        sim = self.server.sim
        if sim.wait_while_hanging() == "drop" or self.server.closing.is_set():
            return self._recorded(path, query, Response(0, drop=True))
        fault = sim.take_fault(self.command, path)
        if fault is not None and fault.kind not in ("latency", "malformed"):
            return self._recorded(path, query, self._fault_response(fault))
        if fault is not None and fault.kind == "latency":
            self.server.closing.wait(fault.seconds)
        if parts[:3] == ["api", "v1", "streaming"]:  # Node, not behind Rack::Attack
            return self._streaming(path, parts, query)
        now = sim.clock.now()
        verdict = self.server.throttles.hit(now, self._throttles(query))
        if verdict.limited:
            response = error(429, "Too many requests", verdict.headers(now))
            return self._recorded(path, query, response)
        try:
            response = self._route(parts, query)
        except ApiError as exc:
            response = error(exc.status, exc.message, exc.headers)
        response.headers |= verdict.headers(now)
        if fault is not None and fault.kind == "malformed":
            response.body = response.body[: max(1, len(response.body) // 2)]
        return self._recorded(path, query, response)

    def _recorded(self, path: str, query: Query, response: Response) -> Response:
        status = None if response.drop else response.status
        scalar = {name: values[-1] for name, values in query.items()}
        self.server.sim.record_request(self.command, path, scalar, status)
        return response

    def _fault_response(self, fault: Fault) -> Response:
        sim = self.server.sim
        match fault.kind:
            case "drop":
                return Response(0, drop=True)
            case "status_500":
                return json_response(500, {"status": 500, "error": "Internal Server Error"})
            case "status_503":
                message = "There was a temporary problem serving your request, please try again"
                return error(503, message)
            case "status_502_html":
                return Response(502, BAD_GATEWAY_HTML.encode(), {"Content-Type": "text/html"})
            case _:  # rate_limit
                limited = Verdict(True, sim.api_limit, 0, API_PERIOD)
                return error(429, "Too many requests", limited.headers(sim.clock.now()))

    def _throttles(self, query: Query) -> list[tuple[str, int, int]]:
        sim = self.server.sim
        token = self._token(query)
        found = sim.lookup_token(token) if token else None
        valid = found is not None and not found.revoked
        who = f"token:{token}" if valid else f"ip:{self.client_address[0]}"
        matches = [(f"api/{who}", sim.api_limit, API_PERIOD)]
        if any(last(query, name) for name in PAGING_PARAMS):
            user = found.account if valid and found is not None else None
            paging_key = f"user:{user.id}" if user is not None else who
            matches.append((f"paging/{paging_key}", sim.paging_limit, PAGING_PERIOD))
        return matches

    def _authorize(self, query: Query, *scopes: str) -> SimAccount:
        """Doorkeeper's `doorkeeper_authorize!` then `require_user!`."""
        token = self._token(query)
        found = self.server.sim.lookup_token(token) if token else None
        if found is None or found.revoked:
            message = "The access token was revoked" if found else BAD_BEARER
            challenge = (
                f'Bearer realm="Doorkeeper", error="invalid_token", error_description="{message}"'
            )
            raise ApiError(401, message, {"WWW-Authenticate": challenge})
        if not found.scopes.intersection(scopes):
            raise ApiError(403, "This action is outside the authorized scopes")
        if found.account is None:
            raise ApiError(422, "This method requires an authenticated user")
        return found.account

    def _route(self, parts: list[str], query: Query) -> Response:
        match (self.command, parts):
            case ("GET", ["api", "v1", "accounts", "verify_credentials"]):
                me = self._authorize(query, "profile", "read", "read:accounts")
                return json_response(200, credential_account_json(me, self.server.sim.domain))
            case ("GET", ["api", "v1", "accounts", "relationships"]):
                me = self._authorize(query, "read", "read:follows")
                ids = query.get("id[]", []) + query.get("id", [])
                return json_response(200, self.server.sim.relationships_json(me, ids))
            case ("GET", ["api", version, "instance"]) if version in ("v1", "v2"):
                return self._instance(version)
            case ("GET", ["api", "v1", "conversations"]):
                return self._conversations(query)
            case ("POST", ["api", "v1", "conversations", conv_id, ("read" | "unread") as verb]):
                me = self._authorize(query, "write", "write:conversations")
                return self._set_unread(me, conv_id, verb == "unread")
            case ("DELETE", ["api", "v1", "conversations", conv_id]):
                me = self._authorize(query, "write", "write:conversations")
                if not self.server.sim.delete_conversation(me, conv_id):
                    raise ApiError(404, "Record not found")
                return json_response(200, {})
            case ("GET", ["api", "v1", "domain_blocks"]):
                return self._domain_blocks(query)
            case _:
                raise ApiError(404, "Record not found")

    # -- endpoints ------------------------------------------------------------------------------

    def _instance(self, version: str) -> Response:
        sim = self.server.sim
        streaming = "ws://" + self._base().split("//", 1)[1]
        statuses = {
            "max_characters": 500,
            "max_media_attachments": 4,
            "characters_reserved_per_url": 23,
        }
        common: Json = {
            "title": "dmbot simulator",
            "description": "",
            "version": "4.5.0",
            "languages": ["en"],
        }
        if version == "v2":
            urls = {"streaming": streaming, "status": None}
            return json_response(
                200,
                common
                | {
                    "domain": sim.domain,
                    "source_url": "https://github.com/mastodon/mastodon",
                    "configuration": {"urls": urls, "statuses": statuses},
                    "registrations": {
                        "enabled": False,
                        "approval_required": False,
                        "message": None,
                    },
                    "contact": {"email": "", "account": None},
                    "rules": [],
                },
            )
        return json_response(
            200,
            common
            | {
                "uri": sim.domain,
                "short_description": "",
                "email": "",
                "urls": {"streaming_api": streaming},
                "registrations": False,
                "approval_required": False,
                "configuration": {"statuses": statuses},
                "contact_account": None,
                "rules": [],
            },
            {"Deprecation": "@1668384000"},
        )

    def _conversations(self, query: Query) -> Response:
        me = self._authorize(query, "read", "read:statuses")
        limit = limit_param(query, CONVERSATION_LIMIT)
        if limit == 0:
            raise ApiError(400, "limit=0 is not a page size (Mastodon answers 500 here)")
        sim = self.server.sim
        if "min_id" in query:  # present, even blank, wins over since_id
            page = sim.conversations_above(
                me, limit, bound(query, "min_id"), bound(query, "max_id")
            )
        else:
            page = sim.conversations_below(
                me, limit, bound(query, "max_id"), bound(query, "since_id")
            )
        links = self._links(
            "/api/v1/conversations",
            query,
            ("max_id", page[-1][0]) if page and len(page) == limit else None,
            ("min_id", page[0][0]) if page else None,
        )
        return json_response(200, [item for _, item in page], links)

    def _set_unread(self, me: SimAccount, conv_id: str, unread: bool) -> Response:
        sim = self.server.sim
        if sim.set_unread(me, conv_id, unread) is None:
            raise ApiError(404, "Record not found")
        data = sim.conversation_json(me, conv_id)
        if data is None:  # deleted in between
            raise ApiError(404, "Record not found")
        return json_response(200, data)

    def _domain_blocks(self, query: Query) -> Response:
        me = self._authorize(query, "follow", "read", "read:blocks")
        limit = limit_param(query, DOMAIN_BLOCK_LIMIT)
        page = self.server.sim.domain_blocks_page(
            me, limit, bound(query, "max_id"), bound(query, "since_id")
        )
        links = self._links(
            "/api/v1/domain_blocks",
            query,
            ("max_id", page[-1][0]) if page and len(page) == limit else None,
            ("since_id", page[0][0]) if page else None,
        )
        return json_response(200, [domain for _, domain in page], links)

    def _links(
        self,
        path: str,
        query: Query,
        next_cursor: tuple[str, int] | None,
        prev_cursor: tuple[str, int] | None,
    ) -> dict[str, str]:
        """Mastodon's Link header: `limit` kept only if sent, every other parameter dropped."""
        kept = {"limit": query["limit"][-1]} if "limit" in query else {}
        links = []
        for rel, cursor in (("next", next_cursor), ("prev", prev_cursor)):
            if cursor is not None:
                params = sorted((kept | {cursor[0]: str(cursor[1])}).items())
                links.append(f'<{self._base()}{path}?{urlencode(params)}>; rel="{rel}"')
        return {"Link": ", ".join(links)} if links else {}

    # -- streaming ------------------------------------------------------------------------------

    def _streaming(self, path: str, parts: list[str], query: Query) -> Response | None:
        if self.command == "GET" and parts == ["api", "v1", "streaming", "health"]:
            return self._recorded(path, query, Response(200, b"OK", {"Content-Type": "text/plain"}))
        if self.command != "GET" or parts != ["api", "v1", "streaming", "direct"]:
            return self._recorded(path, query, error(400, "Unknown channel requested"))
        token = self._token(query)
        found = self.server.sim.lookup_token(token) if token else None
        if token is None or found is None or found.revoked or found.account is None:
            message = "Missing access token" if token is None else "Invalid access token"
            return self._recorded(path, query, error(401, message))
        if not found.scopes.intersection(("read", "read:statuses")):
            message = "Access token does not have the required scopes"
            return self._recorded(path, query, error(401, message))
        self._recorded(path, query, Response(200))
        self._stream_direct(found.account, found.token)
        return None

    def _stream_direct(self, owner: SimAccount, token: str) -> None:
        """SSE: `:)`, then an event per row create/update, `:thump` when idle; until stop."""
        sim = self.server.sim
        sub = sim.subscribe(owner, token)
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "private, no-store")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Request-Id", str(uuid.uuid4()))
            self.end_headers()
            self._chunk(":)\n")
            while not self.server.closing.is_set():
                try:
                    payload = sub.events.get(timeout=sim.heartbeat)
                except queue.Empty:
                    self._chunk(":thump\n")
                    continue
                if payload is None:
                    break
                self._chunk(f"event: conversation\ndata: {payload}\n\n")
            self._chunk("")
        except OSError:
            pass  # the client went away
        finally:
            sim.unsubscribe(sub)

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


# -- /_sim/: the control API -------------------------------------------------------------------


def control(sim: Simulator, method: str, parts: list[str], query: Query, body: bytes) -> Response:
    """JSON in, JSON out; a bad request answers 400 with the reason."""
    try:
        return _control(sim, method, parts[1:], query, _json_object(body))
    except (KeyError, ValueError, TypeError) as exc:
        return error(400, f"{type(exc).__name__}: {exc}")


def _json_object(body: bytes) -> Json:
    data = json.loads(body) if body else {}
    if not isinstance(data, dict):
        raise TypeError("the body must be a JSON object")
    return data


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    when = datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _owner(sim: Simulator, data: Json, query: Query) -> SimAccount:
    ref = data.get("owner") or last(query, "owner")
    return sim.owner if ref is None else sim.account(str(ref))


def _control(sim: Simulator, method: str, route: list[str], query: Query, data: Json) -> Response:
    done = json_response(200, {})
    match (method, route):
        case ("GET", ["health"]):
            return json_response(200, {"ok": True})
        case ("POST", ["accounts"]):
            return json_response(200, account_json(_add_account(sim, data), sim.domain))
        case ("POST", ["tokens"]):
            _add_token(sim, data)
            return done
        case ("DELETE", ["tokens", token]):
            sim.revoke_token(token)
            return done
        case ("POST", ["dms"]):
            status = _send_dm(sim, data)
            return json_response(200, {"id": status.id, "thread": status.thread})
        case ("POST", ["deliver"]):
            sim.deliver(sim.status(str(data["status_id"])))
            return done
        case ("POST", ["statuses", status_id, "soft_delete"]):
            sim.soft_delete(sim.status(status_id))
            return done
        case ("DELETE", ["statuses", status_id]):
            sim.delete_status(sim.status(status_id))
            return done
        case ("GET", ["conversations"]):
            views = sim.conversations(_owner(sim, data, query))
            return json_response(200, [vars(v) for v in views])
        case ("POST", ["faults"]):
            sim.inject_fault(
                data["kind"],
                count=int(data.get("count", 1)),
                path=data.get("path", "/api/v1/conversations"),
                method=data.get("method"),
                seconds=float(data.get("seconds", 0.5)),
            )
            return done
        case ("DELETE", ["faults"]):
            sim.clear_faults()
            return done
        case ("GET", ["clock"]):
            return json_response(200, {"now": sim.clock.now().isoformat()})
        case ("POST", ["clock", "advance"]):
            advance = getattr(sim.clock, "advance", None)
            if not callable(advance):
                return error(409, "this simulator's clock cannot be moved from outside")
            advance(float(data["seconds"]))
            return json_response(200, {"now": sim.clock.now().isoformat()})
        case ("GET", ["requests"]):
            return json_response(200, [vars(r) | {"ts": r.ts.isoformat()} for r in sim.requests])
        case ("DELETE", ["requests"]):
            sim.clear_requests()
            return done
        case ("POST", ["relationships"]):
            flags = ("following", "followed_by", "blocking", "muting", "requested")
            sim.set_relationship(
                _owner(sim, data, query),
                sim.account(str(data["account"])),
                **{name: bool(data[name]) for name in flags if name in data},
            )
            return done
        case ("POST" | "DELETE", ["domain_blocks"]):
            change = sim.block_domain if method == "POST" else sim.unblock_domain
            change(_owner(sim, data, query), str(data["domain"]))
            return done
        case ("POST", ["stop_answering"]):
            sim.stop_answering(data.get("mode", "hang"))
            return done
        case ("POST", ["resume"]):
            sim.resume()
            return done
        case _:
            return error(404, "Record not found")


def _add_token(sim: Simulator, data: Json) -> None:
    """`account`: a ref, null (app-only) or absent (the owner); `scopes`: a list or a string."""
    ref = data.get("account", "owner")
    scopes = data.get("scopes", "read write follow")
    scopes = scopes.split() if isinstance(scopes, str) else [str(s) for s in scopes]
    if ref is None:
        sim.add_token(str(data["token"]), None, scopes)
    else:
        sim.add_token(
            str(data["token"]), sim.account(str(ref)) if ref != "owner" else sim.owner, scopes
        )


def _add_account(sim: Simulator, data: Json) -> SimAccount:
    return sim.add_account(
        str(data["username"]),
        data.get("domain"),
        display_name=str(data.get("display_name", "")),
        bot=bool(data.get("bot", False)),
        locked=bool(data.get("locked", False)),
        group=bool(data.get("group", False)),
        discoverable=data.get("discoverable"),
        note=str(data.get("note", "")),
        created_at=_time(data.get("created_at")),
        followers_count=int(data.get("followers_count", 0)),
        following_count=int(data.get("following_count", 0)),
    )


def _send_dm(sim: Simulator, data: Json) -> Any:
    thread = data.get("thread")
    return sim.send_dm(
        sim.account(str(data["author"])),
        to=[sim.account(str(ref)) for ref in data.get("to", [])],
        text=str(data.get("text", "")),
        spoiler_text=str(data.get("spoiler_text", "")),
        html=data.get("html"),
        thread=thread if thread in (None, "new") else int(thread),
        status_time=_time(data.get("status_time")),
        deliver=bool(data.get("deliver", True)),
        media=int(data.get("media", 0)),
        language=data.get("language", "en"),
        sensitive=bool(data.get("sensitive", False)),
    )
