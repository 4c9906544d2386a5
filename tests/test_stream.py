"""The direct stream wakes the loop: a DM is acted on without waiting for the next poll."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from dmbot.app import open_app
from dmbot.clock import SystemClock
from dmbot.daemon import serve
from dmbot.logging import Redactor
from dmbot.settings import Settings
from dmbot.sim import Simulator
from dmbot.stream import stream_url

from conftest import MARK_ALL_READ, TOKEN


@pytest.mark.parametrize(
    ("streaming", "instance", "expected"),
    [
        ("wss://streaming.example", "https://example.social",
         "https://streaming.example/api/v1/streaming/direct"),
        (None, "https://example.social", "https://example.social/api/v1/streaming/direct"),
        ("ws://127.0.0.1:8080", "http://127.0.0.1:8080",
         "http://127.0.0.1:8080/api/v1/streaming/direct"),
        ("ws://evil.example", "https://example.social",  # never downgrade to plain http
         "https://evil.example/api/v1/streaming/direct"),
    ],
)
def test_stream_url(streaming: str | None, instance: str, expected: str) -> None:
    assert stream_url(streaming, instance) == expected


async def wait_until(predicate: Callable[[], bool]) -> None:
    """State that lives in the simulator's thread, polled with a deadline."""
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 (no event to wait on across threads)
            await asyncio.sleep(0.02)


async def test_a_dm_is_acted_on_as_soon_as_the_stream_rings(
    live_sim: Simulator, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(MARK_ALL_READ, encoding="utf-8")
    settings = Settings(
        instance_url=live_sim.base_url, access_token=TOKEN, rules_file=rules,
        data_dir=tmp_path / "data", poll_interval=3600,  # no scheduled poll in this test
    )
    async with open_app(settings, clock=SystemClock(), redactor=Redactor(), env={}) as app:
        assert app.stream is not None
        loop = asyncio.create_task(serve(app, install_signals=False, min_gap=0.1))
        await asyncio.wait_for(app.stream.connected.wait(), timeout=10)
        await wait_until(lambda: app.store.get_meta("last_success_at") is not None)

        sender = live_sim.add_account("quick", "remote.example")
        live_sim.send_dm(sender, to=[live_sim.owner], text="are you there?")
        await wait_until(lambda: not live_sim.conversations(live_sim.owner)[0].unread)

        app.stopping.set()
        await asyncio.wait_for(loop, timeout=10)
    assert app.stream.events >= 1


def test_echoes_of_conversations_already_seen_do_not_wake_the_loop(tmp_path: Path) -> None:
    import json

    from dmbot.app import ring_for_news
    from dmbot.store import Store

    def payload(status_id: str) -> str:
        return json.dumps({
            "id": "7", "unread": False, "accounts": [],
            "last_status": {"id": status_id, "created_at": "2026-11-02T12:00:00.000Z",
                            "account": {"id": "9", "username": "a", "acct": "a@x.example"}},
        })

    store = Store.open(tmp_path)
    store.record(seen=[("7", "1000")], events=[], cursor=None,
                 now=SystemClock().now())
    wake = asyncio.Event()
    ring = ring_for_news(store, wake)
    ring(payload("1000"))  # our own mark_read, echoed
    assert not wake.is_set()
    ring(payload("1001"))  # a new message
    assert wake.is_set()
    wake.clear()
    ring("not json")  # when in doubt, poll
    assert wake.is_set()
    store.close()
