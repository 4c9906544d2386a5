"""DMBOT_HTTP_PORT: the running daemon serves /metrics and /healthz."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx

from dmbot.app import open_app
from dmbot.clock import SystemClock
from dmbot.daemon import serve
from dmbot.logging import Redactor
from dmbot.settings import Settings
from dmbot.sim import Simulator

from conftest import MARK_ALL_READ, TOKEN


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_the_daemon_serves_metrics_and_health(live_sim: Simulator, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(MARK_ALL_READ, encoding="utf-8")
    live_sim.send_dm(live_sim.add_account("early", "remote.example"), to=[live_sim.owner])
    port = free_port()
    settings = Settings(
        instance_url=live_sim.base_url, access_token=TOKEN, rules_file=rules,
        data_dir=tmp_path / "data", poll_interval=3600, http_port=port, streaming=False,
    )
    async with open_app(settings, clock=SystemClock(), redactor=Redactor(), env={}) as app:
        loop = asyncio.create_task(serve(app, install_signals=False))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            async with asyncio.timeout(10):
                while app.store.get_meta("last_success_at") is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                while True:
                    try:
                        metrics = await http.get("/metrics")
                        break
                    except httpx.ConnectError:
                        await asyncio.sleep(0.02)
            health = await http.get("/healthz")
        app.stopping.set()
        await asyncio.wait_for(loop, timeout=10)
    text = metrics.text
    assert metrics.status_code == 200
    assert 'dmbot_polls_total{outcome="ok"} 1.0' in text
    assert 'dmbot_actions_total{kind="mark_read",outcome="ok"} 1.0' in text
    assert "dmbot_outbox_pending 0.0" in text
    assert health.status_code == 200
    assert health.text.startswith("healthy")
