"""Real local receivers for notifications: an SMTP server and an HTTP JSON endpoint.

Both listen on 127.0.0.1 on a port the OS picks, run in a background thread, and are context
managers. Tests wait for arrivals with a bounded condition wait (`wait_for(n)`), never a sleep
loop, and can make the next N deliveries fail to test retries:

    with SmtpSink(user="bot", password="s3cret") as smtp:
        url = smtp.apprise_url(to="me@example.com")   # mailto://bot:s3cret@127.0.0.1:PORT?...
        ...
        [message] = smtp.wait_for(1)                   # email.message.EmailMessage

    with JsonReceiver() as hook:
        hook.fail_next(2)                              # answer 500 twice
        url = hook.apprise_url("/notify")              # json://127.0.0.1:PORT/notify
        ...
        [request] = hook.wait_for(1)                   # .path, .headers, .json
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

WAIT_SECONDS = 10.0


T = TypeVar("T")


class _Collector(Generic[T]):
    """Items that arrive from another thread, and a bounded wait for them."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._arrived = threading.Condition()

    def add(self, item: T) -> None:
        with self._arrived:
            self._items.append(item)
            self._arrived.notify_all()

    @property
    def items(self) -> list[T]:
        with self._arrived:
            return list(self._items)

    def wait_for(self, count: int, timeout: float = WAIT_SECONDS) -> list[T]:
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._items) >= count, timeout):
                raise TimeoutError(f"{len(self._items)} of {count} expected arrivals")
            return list(self._items)


class _Refusals:
    """A thread-safe count of deliveries still to refuse."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left = 0

    def set(self, count: int) -> None:
        with self._lock:
            self._left = count

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


# -- SMTP --------------------------------------------------------------------------------


class _Background:
    """A receiver running in a background thread: `with Receiver() as r:` starts and stops it."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SmtpSink(_Background):
    """An aiosmtpd server with plain-text AUTH (LOGIN/PLAIN without TLS, loopback only).

    Collects each accepted message parsed as an `EmailMessage`; `refuse_next(n, code)` makes
    the next n messages fail at DATA with a 4xx (temporary) or 5xx (permanent) reply.
    """

    def __init__(self, *, user: str | None = None, password: str | None = None) -> None:
        self.user, self.password = user, password
        self.port = 0
        self.logins: list[tuple[str, str]] = []
        self.envelopes: list[Envelope] = []
        self._messages: _Collector[EmailMessage] = _Collector()
        self._refusals = _Refusals()
        self._refusal = "451 4.3.0 try again later"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def apprise_url(self, *, to: str = "me@example.com", sender: str = "bot@example.com") -> str:
        """The Apprise URL for plain SMTP on this port (`mailto://` is not TLS by default;
        `mode=insecure` says so explicitly)."""
        auth = ""
        if self.user is not None:
            auth = quote(self.user, safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        return f"mailto://{auth}127.0.0.1:{self.port}?mode=insecure&from={sender}&to={to}"

    def refuse_next(self, count: int, reply: str = "451 4.3.0 try again later") -> None:
        self._refusal = reply
        self._refusals.set(count)

    @property
    def messages(self) -> list[EmailMessage]:
        return self._messages.items

    def wait_for(self, count: int, timeout: float = WAIT_SECONDS) -> list[EmailMessage]:
        return self._messages.wait_for(count, timeout)

    def start(self) -> Self:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self._server = future.result(WAIT_SECONDS)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._close(self._server), self._loop).result(
                WAIT_SECONDS
            )
            self._server = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(WAIT_SECONDS)
        self._loop.close()

    async def _serve(self) -> asyncio.Server:
        def protocol() -> SMTP:
            return SMTP(
                self,
                hostname="localhost",
                authenticator=self._authenticate,
                auth_require_tls=False,  # loopback only; aiosmtpd warns if AUTH is required
            )

        return await self._loop.create_server(protocol, "127.0.0.1", 0)

    @staticmethod
    async def _close(server: asyncio.Server) -> None:
        server.close()
        await server.wait_closed()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = (data.login.decode(), data.password.decode())
        self.logins.append(login)
        # handled=False: aiosmtpd answers (235 or 535) itself.
        return AuthResult(success=login == (self.user, self.password), handled=False)

    # aiosmtpd handler hook
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self._refusals.take():
            return self._refusal
        # Lines as a mail client shows them: LF, not the wire's CRLF.
        content = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.envelopes.append(envelope)
        self._messages.add(message)
        return "250 OK"


def body_text(message: EmailMessage) -> str:
    """The plain-text body a mail client shows (without the final newline SMTP adds)."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, f"no text/plain part in {message.get_content_type()}"
    content = part.get_content()
    assert isinstance(content, str)
    return content.removesuffix("\n")


# -- HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    json: Any


class JsonReceiver(_Background):
    """A ThreadingHTTPServer that records every request's JSON body and headers.

    Answers 200, or `fail_next(n, status)` times the given status (500 by default).
    """

    def __init__(self) -> None:
        self._requests: _Collector[Request] = _Collector()
        self._hits: _Collector[int] = _Collector()  # every request, answered 200 or not
        self._refusals = _Refusals()
        self._status = 500
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def apprise_url(self, path: str = "/notify", *, scheme: str = "json") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def fail_next(self, count: int, status: int = 500) -> None:
        self._status = status
        self._refusals.set(count)

    @property
    def requests(self) -> list[Request]:
        """The requests answered 200."""
        return self._requests.items

    @property
    def hits(self) -> int:
        """How many requests arrived, failed ones included."""
        return len(self._hits.items)

    def wait_for(self, count: int, timeout: float = WAIT_SECONDS) -> list[Request]:
        return self._requests.wait_for(count, timeout)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(WAIT_SECONDS)
        self._server.server_close()

    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the stdlib's hook name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                status = receiver._status if receiver._refusals.take() else 200
                receiver._hits.add(status)
                if status == 200:
                    receiver._requests.add(
                        Request(self.command, self.path, dict(self.headers.items()), body)
                    )
                payload = b"{}" if status == 200 else b'{"error": "receiver told to fail"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_PUT = do_POST  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test output is not the place for an access log."""

        return Handler
