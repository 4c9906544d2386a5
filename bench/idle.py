"""Idle-poll benchmark: requests and CPU time per poll when nothing is new (sweeps off:
they cost one request per 40 conversations of the last week, once an hour).

Run: python bench/idle.py [POLLS]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from dmbot.clock import ManualClock
from dmbot.engine import EngineConfig
from dmbot.sim import Simulator

from _harness import TOKEN, engine_for, quiet_logs


async def main(polls: int) -> None:
    clock = ManualClock(datetime(2026, 11, 2, 12, 0, tzinfo=UTC))
    sim = Simulator(clock, api_limit=100_000, paging_limit=100_000)
    sim.add_token(TOKEN)
    for i in range(200):
        sim.send_dm(sim.add_account(f"u{i}", "remote.example"), to=[sim.owner])
    with sim.serve(), tempfile.TemporaryDirectory() as tmp:
        async with httpx.AsyncClient(timeout=30) as http:
            no_sweeps = EngineConfig(sweep_every=timedelta(days=365))
            engine, client, store, _ = engine_for(sim, clock, http, Path(tmp), no_sweeps)
            await engine.poll_once()
            clock.advance(600)
            await engine.poll_once()
            before = client.requests_made
            cpu_started = time.process_time()
            wall_started = time.perf_counter()
            for _ in range(polls):
                clock.advance(60)
                await engine.poll_once()
            cpu = time.process_time() - cpu_started
            wall = time.perf_counter() - wall_started
            store.close()
    print(f"idle polls:           {polls}")
    print(f"requests per poll:    {(client.requests_made - before) / polls:.2f}")
    print(f"CPU per poll:         {cpu / polls * 1000:.2f} ms (simulator included)")
    print(f"wall per poll:        {wall / polls * 1000:.2f} ms (loopback)")


if __name__ == "__main__":
    quiet_logs()
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
