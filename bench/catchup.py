"""Catch-up benchmark: 10,000 new conversations waiting on the simulator (loopback HTTP).

Prints list requests made, wall time, events per second and peak RSS. The simulator runs
in the same process (its time and memory are included), so the figures are an upper bound
for dmbot alone. Run: python bench/catchup.py [N]
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from dmbot.clock import ManualClock
from dmbot.sim import Simulator

from _harness import TOKEN, engine_for, quiet_logs


async def main(count: int) -> None:
    clock = ManualClock(datetime(2026, 11, 2, 12, 0, tzinfo=UTC))
    sim = Simulator(clock, api_limit=100_000, paging_limit=100_000)
    sim.add_token(TOKEN)
    with sim.serve(), tempfile.TemporaryDirectory() as tmp:
        async with httpx.AsyncClient(timeout=30) as http:
            engine, client, store, decider = engine_for(sim, clock, http, Path(tmp))
            await engine.poll_once()  # first start: empty account, cursor set
            clock.advance(600)
            seed_started = time.perf_counter()
            senders = [sim.add_account(f"u{i}", "remote.example") for i in range(count)]
            for sender in senders:
                sim.send_dm(sender, to=[sim.owner], text="hello")
            seeded = time.perf_counter() - seed_started
            clock.advance(1)
            before = client.requests_made
            started = time.perf_counter()
            cpu_started = time.process_time()
            result = await engine.poll_once()
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            store.close()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"conversations:        {count}")
    print(f"seeding the simulator: {seeded:.2f} s (not part of the figures below)")
    print(f"new events:           {result.new_events} (decider saw {decider.events})")
    print(f"list requests:        {client.requests_made - before} "
          f"(floor(N/40)+1 = {count // 40 + 1})")
    print(f"wall time:            {wall:.2f} s (simulator included)")
    print(f"CPU time:             {cpu:.2f} s (simulator included)")
    print(f"events per second:    {result.new_events / wall:,.0f}")
    print(f"peak RSS:             {rss_mib:.0f} MiB (process, simulator included)")


if __name__ == "__main__":
    quiet_logs()
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
