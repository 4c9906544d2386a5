"""Mastodon's `direct` stream as a wake-up call.

The stream pushes a `conversation` event the moment a DM arrives, so alerts need not wait
for the next poll. It is only a trigger: events are not buffered or replayed by Mastodon,
so the poll (with its cursor) stays the source of truth, and a broken stream costs nothing
but latency. Trouble is logged once when it starts and once when the stream is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog

from dmbot.clock import Clock

_READ_TIMEOUT = 60.0  # Mastodon sends a `:thump` heartbeat every 15 s
_MAX_BACKOFF = 300.0


def stream_url(streaming: str | None, instance_url: str) -> str:
    """The SSE URL of the `direct` stream: the instance's streaming host (given as ws/wss),
    or the instance itself. Plain http only where the instance is plain http (loopback)."""
    base = urlsplit(streaming or instance_url)
    scheme = {"wss": "https", "ws": "http"}.get(base.scheme, base.scheme)
    if scheme == "http" and urlsplit(instance_url).scheme != "http":
        scheme = "https"
    return urlunsplit((scheme, base.netloc, "/api/v1/streaming/direct", "", ""))


class DirectStream:
    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        token: str,
        on_event: Callable[[str], None],
        clock: Clock,
        logger: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._http = http
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        self._on_event = on_event
        self._clock = clock
        self._log = logger or structlog.get_logger("dmbot.stream")
        self.events = 0
        self.connected = asyncio.Event()
        self._broken = False
        self._delay = 5.0

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff."""
        while True:
            try:
                await self._listen()
                error = "the stream ended"
            except httpx.HTTPError as failure:
                error = f"{type(failure).__name__}: {failure}"[:200]
            except _Refused as refused:
                error = str(refused)
            self.connected.clear()
            if not self._broken:
                self._log.warning("stream.unavailable", error=error, retry_in_s=self._delay)
            self._broken = True
            await self._clock.sleep(self._delay)
            self._delay = min(self._delay * 2, _MAX_BACKOFF)

    def _opened(self) -> None:
        self.connected.set()
        if self._broken:
            self._log.info("stream.recovered")
        self._broken = False
        self._delay = 5.0

    async def _listen(self) -> None:
        timeout = httpx.Timeout(10.0, read=_READ_TIMEOUT)
        async with self._http.stream(
            "GET", self._url, headers=self._headers, timeout=timeout
        ) as response:
            if response.status_code != 200:
                raise _Refused(f"the streaming server answered {response.status_code}")
            self._opened()
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("data:") and event == "conversation":
                    self.events += 1
                    self._on_event(line.removeprefix("data:").strip())
                elif not line:
                    event = ""
                await asyncio.sleep(0)


class _Refused(Exception):
    pass
