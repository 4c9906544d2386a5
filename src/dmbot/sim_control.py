"""`/_sim/`: the JSON control API, for tests that run the simulator in another process.

Each route calls one `Simulator` method. It needs no token and is never throttled, faulted or
recorded; a bad request answers 400 with the reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dmbot.sim_json import account_json
from dmbot.sim_model import SimAccount, SimStatus
from dmbot.sim_wire import Query, Response, error, json_response, last

if TYPE_CHECKING:
    from dmbot.sim import Simulator

Json = dict[str, Any]


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


def _send_dm(sim: Simulator, data: Json) -> SimStatus:
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
