"""Prometheus metrics and the optional HTTP endpoint that serves them (`DMBOT_HTTP_PORT`).

`Metrics` owns its `CollectorRegistry`: nothing is registered at import, so tests and two
daemons in one process never share counters. The daemon calls its methods; `render()` is the
Prometheus text format. `MetricsServer` is a tiny asyncio HTTP/1.1 server with two routes:

- `GET /metrics`: the registry in the text format 0.0.4.
- `GET /healthz`: 200 `healthy: <reason>` or 503 `unhealthy: <reason>`, from a callable the
  daemon passes in (the same verdict as `dmbot healthcheck`).

It answers one request per connection and closes it; a scraper needs nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

ACTION_KINDS = ("notify", "mark_read", "delete")
ACTION_OUTCOMES = (
    "ok", "delivered", "already_done", "retry", "failed", "given_up", "dropped", "held", "dry_run",
)

HealthFn = Callable[[], tuple[bool, str]]

_REQUEST_TIMEOUT_S = 5.0
_MAX_HEADER_BYTES = 8192
_TEXT = "text/plain; charset=utf-8"
# What `generate_latest` writes; every Prometheus (2.x and 3.x) parses it.
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._polls = Counter(
            "dmbot_polls", "Poll cycles, by outcome.", ["outcome"], registry=r
        )
        self._events = Counter(
            "dmbot_events", "New (conversation, last status) events evaluated.", registry=r
        )
        self._requests = Counter(
            "dmbot_api_requests", "Requests made to the Mastodon API.", registry=r
        )
        self._actions = Counter(
            "dmbot_actions", "Action attempts, by kind and outcome.", ["kind", "outcome"],
            registry=r,
        )
        self._outbox = Gauge(
            "dmbot_outbox_pending", "Actions waiting in the outbox.", registry=r
        )
        self._last_success = Gauge(
            "dmbot_last_success_timestamp_seconds",
            "Unix time of the last successful poll (0: none yet).", registry=r,
        )
        self._rate = Gauge(
            "dmbot_rate_limit_remaining",
            "API requests left in Mastodon's rate-limit window (NaN: not known yet).",
            registry=r,
        )
        self._reloads = Counter(
            "dmbot_rules_reloads", "Rules file reloads, by outcome.", ["outcome"], registry=r
        )
        # Every known series exists from the start, at zero, so rate() and alerts see them.
        for outcome in ("ok", "failed"):
            self._polls.labels(outcome=outcome)
        for kind in ACTION_KINDS:
            for action_outcome in ACTION_OUTCOMES:
                self._actions.labels(kind=kind, outcome=action_outcome)
        for outcome in ("ok", "error"):
            self._reloads.labels(outcome=outcome)
        self._rate.set(math.nan)

    def poll_done(self, *, ok: bool, new_events: int, requests: int, when: datetime) -> None:
        self._polls.labels(outcome="ok" if ok else "failed").inc()
        self._events.inc(new_events)
        self._requests.inc(requests)
        if ok:
            self._last_success.set(when.timestamp())

    def action(self, kind: str, outcome: str) -> None:
        self._actions.labels(kind=kind, outcome=outcome).inc()

    def outbox_depth(self, pending: int) -> None:
        self._outbox.set(pending)

    def rate_remaining(self, remaining: int | None) -> None:
        self._rate.set(math.nan if remaining is None else remaining)

    def rules_reload(self, ok: bool) -> None:
        self._reloads.labels(outcome="ok" if ok else "error").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """Serves `/metrics` and `/healthz` on `host:port` (port 0: the OS picks; see `port`)."""

    def __init__(self, metrics: Metrics, health: HealthFn, host: str, port: int) -> None:
        self._metrics = metrics
        self._health = health
        self._host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self._host, self.port, limit=_MAX_HEADER_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _REQUEST_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            head = b""
        except ConnectionError:
            writer.close()
            return
        method, status, content_type, body = self._respond(head)
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("ascii")
        )
        if method != b"HEAD":
            writer.write(body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    def _respond(self, head: bytes) -> tuple[bytes, str, str, bytes]:
        """(method, status line, content type, body) for one request head."""
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return b"", "400 Bad Request", _TEXT, b"bad request\n"
        method, target, _ = parts
        if method not in (b"GET", b"HEAD"):
            return method, "405 Method Not Allowed", _TEXT, b"GET or HEAD only\n"
        path = target.split(b"?", 1)[0]
        if path == b"/metrics":
            return method, "200 OK", PROMETHEUS_TEXT, self._metrics.render()
        if path == b"/healthz":
            try:
                healthy, reason = self._health()
            except Exception as error:  # a broken check is an unhealthy daemon, not a crash
                healthy, reason = False, f"health check failed: {error}"
            text = ("healthy: " if healthy else "unhealthy: ") + reason + "\n"
            status = "200 OK" if healthy else "503 Service Unavailable"
            return method, status, _TEXT, text.encode()
        return method, "404 Not Found", _TEXT, b"not found: try /metrics or /healthz\n"
