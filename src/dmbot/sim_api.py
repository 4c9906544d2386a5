"""Mastodon's REST routes that dmbot calls, as their controllers answer them.

Each route checks the token the way Doorkeeper does (401 unknown or revoked, 403 scopes, 422
an app-only token where a user is required), then answers from the simulator. Errors are
raised as `ApiError`; throttles, faults and the stream are the HTTP layer's (`dmbot.sim_http`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from dmbot.sim_json import credential_account_json
from dmbot.sim_model import SimAccount
from dmbot.sim_wire import ApiError, Query, Response, bound, json_response, limit_param

if TYPE_CHECKING:
    from dmbot.sim import Simulator

Json = dict[str, Any]

CONVERSATION_LIMIT = 20  # Mastodon's LIMIT; the maximum is twice the default
DOMAIN_BLOCK_LIMIT = 100
BAD_BEARER = "The access token is invalid"


@dataclass(frozen=True)
class ApiRequest:
    method: str
    parts: list[str]  # the path's segments
    query: Query
    token: str | None  # from `Authorization: Bearer`, else `access_token`
    base: str  # the origin the client addressed, for Link headers and the streaming URL


def route(sim: Simulator, request: ApiRequest) -> Response:
    """The answer to an API request that passed the throttles; raises `ApiError`."""
    match (request.method, request.parts):
        case ("GET", ["api", "v1", "accounts", "verify_credentials"]):
            me = authorize(sim, request, "profile", "read", "read:accounts")
            return json_response(200, credential_account_json(me, sim.domain))
        case ("GET", ["api", "v1", "accounts", "relationships"]):
            me = authorize(sim, request, "read", "read:follows")
            ids = request.query.get("id[]", []) + request.query.get("id", [])
            return json_response(200, sim.relationships_json(me, ids))
        case ("GET", ["api", version, "instance"]) if version in ("v1", "v2"):
            return _instance(sim, request, version)
        case ("GET", ["api", "v1", "conversations"]):
            return _conversations(sim, request)
        case ("POST", ["api", "v1", "conversations", conv_id, ("read" | "unread") as verb]):
            me = authorize(sim, request, "write", "write:conversations")
            return _set_unread(sim, me, conv_id, verb == "unread")
        case ("DELETE", ["api", "v1", "conversations", conv_id]):
            me = authorize(sim, request, "write", "write:conversations")
            if not sim.delete_conversation(me, conv_id):
                raise ApiError(404, "Record not found")
            return json_response(200, {})
        case ("GET", ["api", "v1", "domain_blocks"]):
            return _domain_blocks(sim, request)
        case _:
            raise ApiError(404, "Record not found")


def authorize(sim: Simulator, request: ApiRequest, *scopes: str) -> SimAccount:
    """Doorkeeper's `doorkeeper_authorize!` then `require_user!`."""
    found = sim.lookup_token(request.token) if request.token else None
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


def _instance(sim: Simulator, request: ApiRequest, version: str) -> Response:
    streaming = "ws://" + request.base.split("//", 1)[1]
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


def _conversations(sim: Simulator, request: ApiRequest) -> Response:
    me = authorize(sim, request, "read", "read:statuses")
    query = request.query
    limit = limit_param(query, CONVERSATION_LIMIT)
    if limit == 0:
        raise ApiError(400, "limit=0 is not a page size (Mastodon answers 500 here)")
    if "min_id" in query:  # present, even blank, wins over since_id
        page = sim.conversations_above(me, limit, bound(query, "min_id"), bound(query, "max_id"))
    else:
        page = sim.conversations_below(me, limit, bound(query, "max_id"), bound(query, "since_id"))
    links = _links(
        request,
        "/api/v1/conversations",
        ("max_id", page[-1][0]) if page and len(page) == limit else None,
        ("min_id", page[0][0]) if page else None,
    )
    return json_response(200, [item for _, item in page], links)


def _set_unread(sim: Simulator, me: SimAccount, conv_id: str, unread: bool) -> Response:
    if sim.set_unread(me, conv_id, unread) is None:
        raise ApiError(404, "Record not found")
    data = sim.conversation_json(me, conv_id)
    if data is None:  # deleted in between
        raise ApiError(404, "Record not found")
    return json_response(200, data)


def _domain_blocks(sim: Simulator, request: ApiRequest) -> Response:
    me = authorize(sim, request, "follow", "read", "read:blocks")
    query = request.query
    limit = limit_param(query, DOMAIN_BLOCK_LIMIT)
    page = sim.domain_blocks_page(me, limit, bound(query, "max_id"), bound(query, "since_id"))
    links = _links(
        request,
        "/api/v1/domain_blocks",
        ("max_id", page[-1][0]) if page and len(page) == limit else None,
        ("since_id", page[0][0]) if page else None,
    )
    return json_response(200, [domain for _, domain in page], links)


def _links(
    request: ApiRequest,
    path: str,
    next_cursor: tuple[str, int] | None,
    prev_cursor: tuple[str, int] | None,
) -> dict[str, str]:
    """Mastodon's Link header: `limit` kept only if sent, every other parameter dropped."""
    query = request.query
    kept = {"limit": query["limit"][-1]} if "limit" in query else {}
    links = []
    for rel, cursor in (("next", next_cursor), ("prev", prev_cursor)):
        if cursor is not None:
            params = sorted((kept | {cursor[0]: str(cursor[1])}).items())
            links.append(f'<{request.base}{path}?{urlencode(params)}>; rel="{rel}"')
    return {"Link": ", ".join(links)} if links else {}
