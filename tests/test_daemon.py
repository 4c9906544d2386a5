"""The long-running loop: stopping during a slow response, and outages logged once."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from dmbot.app import App, open_app
from dmbot.clock import SystemClock
from dmbot.daemon import Outage, run_cycle, serve
from dmbot.logging import Redactor
from dmbot.settings import Settings
from dmbot.sim import Simulator

from conftest import MARK_ALL_READ, TOKEN


class SignallingTransport(httpx.AsyncBaseTransport):
    """Sets an event when a conversations request *starts*: the test's 'now it is in flight'."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.listing = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/conversations":
            self.listing.set()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def settings_for(sim: Simulator, tmp_path: Path) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(MARK_ALL_READ, encoding="utf-8")
    return Settings(
        instance_url=sim.base_url, access_token=TOKEN, rules_file=rules,
        data_dir=tmp_path / "data", poll_interval=10,
    )


async def stop_while_listing(
    app: App, sim: Simulator, transport: SignallingTransport, latency: float, grace: float,
    within: float = 10,
) -> None:
    """Serve, slow the next list request, and stop (as SIGTERM does) while it is in flight;
    the loop must end `within` seconds."""
    sim.inject_fault("latency", count=1, seconds=latency)
    transport.listing.clear()  # starting up listed once, to learn the token's scopes
    loop = asyncio.create_task(serve(app, install_signals=False, stop_grace=grace))
    await asyncio.wait_for(transport.listing.wait(), timeout=10)
    app.stopping.set()
    await asyncio.wait_for(loop, timeout=within)


@pytest.fixture
async def transport() -> SignallingTransport:
    return SignallingTransport()  # created inside the test's event loop


async def test_stopping_during_a_slow_response_records_it_and_leaves_actions_queued(
    live_sim: Simulator, tmp_path: Path, transport: SignallingTransport
) -> None:
    sender = live_sim.add_account("slowpoke", "remote.example")
    live_sim.send_dm(sender, to=[live_sim.owner], text="hello")
    settings = settings_for(live_sim, tmp_path)
    async with open_app(settings, clock=SystemClock(), redactor=Redactor(), env={},
                        transport=transport) as app:
        await stop_while_listing(app, live_sim, transport, latency=1.5, grace=7.0)
        # The response in flight was recorded; the action waits, durably, for the next start.
        assert app.store.cursor == live_sim.conversations(live_sim.owner)[0].last_status_id
        assert app.store.pending_count() == 1
    assert live_sim.conversations(live_sim.owner)[0].unread

    async with open_app(settings, clock=SystemClock(), redactor=Redactor(), env={}) as again:
        await again.engine.poll_once()
    assert not live_sim.conversations(live_sim.owner)[0].unread


async def test_a_cycle_stuck_past_the_grace_is_cancelled_and_loses_nothing(
    live_sim: Simulator, tmp_path: Path, transport: SignallingTransport
) -> None:
    sender = live_sim.add_account("stuck", "remote.example")
    live_sim.send_dm(sender, to=[live_sim.owner], text="hello")
    settings = settings_for(live_sim, tmp_path)
    async with open_app(settings, clock=SystemClock(), redactor=Redactor(), env={},
                        transport=transport) as app:
        await stop_while_listing(app, live_sim, transport, latency=3.0, grace=0.2, within=2)
        assert app.store.cursor is None  # cancelled before anything was recorded
    assert live_sim.conversations(live_sim.owner)[0].unread

    async with open_app(settings, clock=SystemClock(), redactor=Redactor(), env={}) as again:
        await again.engine.poll_once()
    assert not live_sim.conversations(live_sim.owner)[0].unread


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    live_sim: Simulator, tmp_path: Path
) -> None:
    settings = settings_for(live_sim, tmp_path)
    async with open_app(settings, clock=SystemClock(), redactor=Redactor(), env={}) as app:
        outage = Outage(10, app.log)
        rng = random.Random(1)
        with capture_logs() as logs:
            await run_cycle(app, outage, rng)
            live_sim.stop_answering("drop")
            for _ in range(4):
                assert await run_cycle(app, outage, rng) is None
            live_sim.resume()
            assert await run_cycle(app, outage, rng) is not None
            await run_cycle(app, outage, rng)
    events = [entry["event"] for entry in logs]
    assert events.count("mastodon.unavailable") == 1
    assert events.count("mastodon.recovered") == 1
    recovered = next(e for e in logs if e["event"] == "mastodon.recovered")
    assert recovered["down_for_s"] >= 0
    assert outage.failures == 0


def test_retries_back_off_and_stay_bounded() -> None:
    outage = Outage(60, structlog.get_logger("test"))
    rng = random.Random(7)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    delays = []
    for _ in range(12):
        outage.failed(now, RuntimeError("down"), rng)
        assert outage.retry_at is not None
        delays.append((outage.retry_at - now).total_seconds())
    assert delays[0] <= 60
    assert max(delays) <= 900
    assert delays[-1] > delays[0]
