"""The simulator's HTTP server: Mastodon's API behind the stages a request passes there.

A request to `/api` goes through the same stages as on Mastodon: an outage or injected fault
(the proxy in front), Rack::Attack's fixed-window throttles (`dmbot.sim_limits`), then the
route (`dmbot.sim_api`); the `direct` stream is Node's, outside the throttles. `/_sim/` is the
control API (`dmbot.sim_control`): never throttled, faulted or recorded.

The simulator's modules import `dmbot.sim` only for types, so that `python -m dmbot.sim`
(which runs it as `__main__`) has one copy of it.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from dmbot.sim_api import ApiRequest, route
from dmbot.sim_control import control
from dmbot.sim_faults import Fault
from dmbot.sim_limits import API_PERIOD, Throttles, Verdict, throttles_for
from dmbot.sim_stream import write_events
from dmbot.sim_wire import ApiError, Query, Response, error, json_response, last

if TYPE_CHECKING:
    from dmbot.sim import Simulator

BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


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
        token = self._token(query)
        verdict = self.server.throttles.hit(
            now, throttles_for(sim, token, self.client_address[0], query)
        )
        if verdict.limited:
            response = error(429, "Too many requests", verdict.headers(now))
            return self._recorded(path, query, response)
        try:
            response = route(sim, ApiRequest(self.command, parts, query, token, self._base()))
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

    # -- streaming ------------------------------------------------------------------------------

    def _streaming(self, path: str, parts: list[str], query: Query) -> Response | None:
        if self.command == "GET" and parts == ["api", "v1", "streaming", "health"]:
            return self._recorded(path, query, Response(200, b"OK", {"Content-Type": "text/plain"}))
        if self.command != "GET" or parts != ["api", "v1", "streaming", "direct"]:
            return self._recorded(path, query, error(400, "Unknown channel requested"))
        sim = self.server.sim
        token = self._token(query)
        found = sim.lookup_token(token) if token else None
        if token is None or found is None or found.revoked or found.account is None:
            message = "Missing access token" if token is None else "Invalid access token"
            return self._recorded(path, query, error(401, message))
        if not found.scopes.intersection(("read", "read:statuses")):
            message = "Access token does not have the required scopes"
            return self._recorded(path, query, error(401, message))
        self._recorded(path, query, Response(200))
        sub = sim.subscribe(found.account, found.token)
        try:
            write_events(self, sub.events, sim.heartbeat, self.server.closing)
        finally:
            sim.unsubscribe(sub)
        return None
