"""The `direct` stream: who listens to which account, and the SSE they are written.

Each open stream is a `Subscriber` with a queue of Conversation JSON strings; `None` in the
queue ends the stream (its token was revoked, or the simulator stopped).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler


@dataclass(frozen=True, eq=False)
class Subscriber:
    owner_id: str
    token: str
    events: queue.SimpleQueue[str | None] = field(default_factory=queue.SimpleQueue)


class Streams:
    """The open streams. Thread-safe; a stream opened while closed ends at once."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._closed = False
        self._lock = threading.Lock()

    def subscribe(self, owner_id: str, token: str) -> Subscriber:
        sub = Subscriber(owner_id, token)
        with self._lock:
            if self._closed:
                sub.events.put(None)
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._subscribers.remove(sub)

    def publish(self, owner_id: str, payload: Callable[[], str]) -> None:
        """Push `payload()` to the owner's open streams (none open: not even rendered)."""
        with self._lock:
            listeners = [s for s in self._subscribers if s.owner_id == owner_id]
        if listeners:
            data = payload()
            for sub in listeners:
                sub.events.put(data)

    def end(self, token: str) -> None:
        """End the streams opened with `token`, as Mastodon's `kill` does on revocation."""
        with self._lock:
            for sub in self._subscribers:
                if sub.token == token:
                    sub.events.put(None)

    def open(self) -> None:
        with self._lock:
            self._closed = False

    def close(self) -> None:
        """End every stream, and every one opened until `open()`."""
        with self._lock:
            self._closed = True
            for sub in self._subscribers:
                sub.events.put(None)


def write_events(
    handler: BaseHTTPRequestHandler,
    events: queue.SimpleQueue[str | None],
    heartbeat: float,
    closing: threading.Event,
) -> None:
    """SSE: `:)`, then an event per row create/update, `:thump` when idle; until the end."""
    handler.close_connection = True
    try:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "private, no-store")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("X-Request-Id", str(uuid.uuid4()))
        handler.end_headers()
        _chunk(handler, ":)\n")
        while not closing.is_set():
            try:
                payload = events.get(timeout=heartbeat)
            except queue.Empty:
                _chunk(handler, ":thump\n")
                continue
            if payload is None:
                break
            _chunk(handler, f"event: conversation\ndata: {payload}\n\n")
        _chunk(handler, "")
    except OSError:
        pass  # the client went away


def _chunk(handler: BaseHTTPRequestHandler, text: str) -> None:
    data = text.encode()
    handler.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()
