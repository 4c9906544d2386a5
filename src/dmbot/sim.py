"""A Mastodon simulator on 127.0.0.1, faithful to the parts dmbot talks to.

State is the server's own model (`../shared/mastodon-api.md` §2): a conversation *row* per
(owner, thread, exact set of other participants), ordered and paged by its `last_status_id`;
status ids are Snowflakes from the simulator's clock. The HTTP layer (`dmbot.sim_http`) adds
Mastodon's auth, scopes, throttles, Link headers, errors and the `direct` SSE stream, plus a
JSON control API under `/_sim/` for tests that run the simulator in another process.

`Simulator` builds one component per concept, each owning its state, and hands each what it
reads: accounts and tokens (`AccountBook`, `dmbot.sim_accounts`), direct messages and the rows
they make (`DirectMessages`, `dmbot.sim_dms`), relationships and domain blocks
(`RelationshipBook`, `dmbot.sim_relationships`), faults and outages (`FaultPlan`,
`dmbot.sim_faults`). The first three share one lock, since rows and relationships name
accounts and a DM updates its author's counts; the fault plan, read on every request and by
nothing else, has its own. `Simulator` answers its public API from them, one line a method,
and adds the request log, the streams and serving.

Simplified on purpose:
- Notification policies, blocks and mutes never filter or drop a DM; hold one back with
  `send_dm(..., deliver=False)` and release it with `deliver()`. Relationships are data only.
- Only the per-token (API) and per-user paging throttles exist; unauthenticated requests are
  counted per client IP. `limit=0` answers 400 (Mastodon answers 500).
- Non-numeric cursors count as 0, like Ruby's `to_i`.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from dmbot.sim_accounts import AccountBook
from dmbot.sim_dms import DirectMessages
from dmbot.sim_faults import FAULT_KINDS, Fault, FaultKind, FaultPlan, OutageMode
from dmbot.sim_http import SimServer
from dmbot.sim_model import (
    ConversationView,
    NowSource,
    OffsetClock,
    RecordedRequest,
    SimAccount,
    SimStatus,
    SimToken,
    ascii_domain,
    unicode_domain,
)
from dmbot.sim_relationships import RelationshipBook
from dmbot.sim_stream import Streams, Subscriber

__all__ = [
    "FAULT_KINDS",
    "ConversationView",
    "Fault",
    "FaultKind",
    "Json",
    "NowSource",
    "OffsetClock",
    "OutageMode",
    "RecordedRequest",
    "SimAccount",
    "SimStatus",
    "SimToken",
    "Simulator",
    "ascii_domain",
    "main",
    "unicode_domain",
]

Json = dict[str, Any]


class Simulator:
    """The simulated instance. Every public method is thread-safe; see the module docstring."""

    def __init__(
        self,
        clock: NowSource | None = None,
        *,
        domain: str = "sim.example",
        api_limit: int = 300,
        paging_limit: int = 300,
        heartbeat: float = 15.0,
    ) -> None:
        self.clock: NowSource = clock or OffsetClock()
        self.domain = ascii_domain(domain)
        self.api_limit = api_limit
        self.paging_limit = paging_limit
        self.heartbeat = heartbeat
        self._lock = threading.RLock()
        self._streams = Streams()
        self.accounts = AccountBook(self._lock, self.clock, self.domain, self._streams)
        self.messages = DirectMessages(
            self._lock, self.clock, self.domain, self.accounts, self._streams
        )
        self.relationships = RelationshipBook(self._lock, self.accounts)
        self.faults = FaultPlan()
        self.owner = self.accounts.owner
        self._requests: list[RecordedRequest] = []
        self._server: SimServer | None = None
        self._serve_thread: threading.Thread | None = None

        # The public API: each method is the owning component's, bound here.
        self.add_account = self.accounts.add_account
        self.account = self.accounts.account
        self.add_token = self.accounts.add_token
        self.revoke_token = self.accounts.revoke_token
        self.lookup_token = self.accounts.lookup_token

        self.send_dm = self.messages.send_dm
        self.deliver = self.messages.deliver
        self.soft_delete = self.messages.soft_delete
        self.delete_status = self.messages.delete_status
        self.status = self.messages.status
        self.conversations = self.messages.conversations
        self.conversation = self.messages.conversation
        self.set_unread = self.messages.set_unread
        self.delete_conversation = self.messages.delete_conversation
        self.conversations_above = self.messages.conversations_above
        self.conversations_below = self.messages.conversations_below
        self.conversation_json = self.messages.conversation_json

        self.set_relationship = self.relationships.set_relationship
        self.relationships_json = self.relationships.relationships_json
        self.block_domain = self.relationships.block_domain
        self.unblock_domain = self.relationships.unblock_domain
        self.domain_blocks_page = self.relationships.domain_blocks_page

        self.inject_fault = self.faults.inject_fault
        self.clear_faults = self.faults.clear_faults
        self.take_fault = self.faults.take_fault
        self.stop_answering = self.faults.stop_answering
        self.resume = self.faults.resume
        self.wait_while_hanging = self.faults.wait_while_hanging

    # -- recorded requests ----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """API requests answered so far (not `/_sim/`), oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def record_request(
        self, method: str, path: str, query: dict[str, str], status: int | None
    ) -> None:
        entry = RecordedRequest(method, path, query, status, self.clock.now())
        with self._lock:
            self._requests.append(entry)

    # -- streaming ------------------------------------------------------------------------

    def subscribe(self, owner: SimAccount, token: str) -> Subscriber:
        """A queue of Conversation JSON strings for `owner`'s `direct` stream; None ends it."""
        return self._streams.subscribe(owner.id, token)

    def unsubscribe(self, sub: Subscriber) -> None:
        self._streams.unsubscribe(sub)

    # -- serving --------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a daemon thread; returns the base URL (the OS picks the port for 0)."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the simulator is already serving")
            self.faults.open()
            self._streams.open()
            self._server = SimServer(self, (host, port))
            self._serve_thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.02},  # how soon stop() is noticed
                name="dmbot.sim",
                daemon=True,
            )
            self._serve_thread.start()
            return self._server.base_url

    def stop(self) -> None:
        """Stop serving: end streams, release hung requests, close every connection."""
        with self._lock:
            server, thread = self._server, self._serve_thread
            self._server = self._serve_thread = None
            self.faults.close()
            self._streams.close()
        if server is not None:
            server.stop()
        if thread is not None:
            thread.join()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not serving")
        return self._server.base_url

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        url = self.start(host, port)
        try:
            yield url
        finally:
            self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m dmbot.sim`: serve until SIGTERM or SIGINT, then exit 0."""
    parser = argparse.ArgumentParser(
        prog="python -m dmbot.sim", description="A Mastodon simulator on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: the OS picks one")
    parser.add_argument("--token", help="a bearer token for the owner account (@me)")
    parser.add_argument("--scopes", default="read write follow", help="the token's scopes")
    parser.add_argument("--domain", default="sim.example")
    parser.add_argument("--heartbeat", type=float, default=15.0, help="SSE heartbeat, seconds")
    parser.add_argument("--api-limit", type=int, default=300, help="requests per 5 min per token")
    parser.add_argument("--paging-limit", type=int, default=300, help="paging requests per 15 min")
    args = parser.parse_args(argv)
    sim = Simulator(
        domain=args.domain,
        heartbeat=args.heartbeat,
        api_limit=args.api_limit,
        paging_limit=args.paging_limit,
    )
    if args.token:
        sim.add_token(args.token, scopes=args.scopes.split())
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked before any thread starts, so every thread inherits the mask and sigwait gets them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        url = sim.start(args.host, args.port)
    except OSError as exc:
        sys.stderr.write(f"dmbot.sim: error: cannot listen on {args.host}:{args.port}: {exc}\n")
        return 1
    sys.stdout.write(f"dmbot.sim listening on {url}\n")
    sys.stdout.flush()
    try:
        signal.sigwait(stop_signals)
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
