"""Stopping cleanly. Signals only set an event; whoever owns the work decides when to stop:
`unless_stopped` abandons a wait (startup, a pause), `finish_or_cancel` lets a cycle finish and
cancels it after a grace period, at an `await`, where the store is always consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """Asked to stop before the daemon was up: nothing had started, nothing to finish."""


async def unless_stopped(work: Coroutine[Any, Any, T], stopping: asyncio.Event) -> T:
    """Await `work`, or cancel it and raise `Stopped` as soon as `stopping` is set."""
    task = asyncio.create_task(work)
    stop = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise Stopped


def install_stop_signals(stopping: asyncio.Event) -> Callable[[], None]:
    """SIGTERM and SIGINT set `stopping`; returns the function that removes the handlers."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    def remove() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    return remove


async def first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def finish_or_cancel(
    cycle_coro: Coroutine[Any, Any, object], stopping: asyncio.Event, grace: float
) -> None:
    """Let a cycle finish; once stopping, give it a grace period, then cancel it."""
    cycle = asyncio.create_task(cycle_coro)
    stop_wait = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({cycle, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not cycle.done():
            done, _ = await asyncio.wait({cycle}, timeout=grace)
            if not done:
                cycle.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cycle
        if cycle.done() and not cycle.cancelled():
            cycle.result()
    finally:
        stop_wait.cancel()
