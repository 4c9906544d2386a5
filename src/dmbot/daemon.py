"""The long-running loop. `serve` runs cycles on APScheduler's ticks, on SIGHUP and when the
direct stream rings. The scheduler only *wakes* the loop; the loop owns the cycle in flight
(APScheduler 3's asyncio executor would cancel it on shutdown). Network trouble is logged once
when it starts and once when it ends, and retried with backoff: never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from datetime import datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from dmbot.app import App, register_rule_secrets
from dmbot.engine import CycleResult
from dmbot.health import check_health
from dmbot.mastodon import AuthError, TransientError
from dmbot.metrics import MetricsServer
from dmbot.shutdown import Stopped, finish_or_cancel, first_of, unless_stopped

STOP_GRACE_SECONDS = 7.0
MIN_CYCLE_GAP_SECONDS = 5.0  # Mastodon allows 300 paging requests per 15 minutes


class Outage:
    """Logs an outage once when it starts and once when it ends, and paces retries."""

    def __init__(self, interval: float, log: structlog.typing.FilteringBoundLogger) -> None:
        self._interval = interval
        self._log = log
        self.down_since: datetime | None = None
        self.failures = 0
        self.retry_at: datetime | None = None

    def failed(
        self,
        now: datetime,
        error: Exception,
        rng: random.Random,
        event: str = "mastodon.unavailable",
    ) -> None:
        if self.down_since is None:
            self.down_since = now
            report = self._log.error if event == "mastodon.refused" else self._log.warning
            report(event, error=str(error))
        self.failures += 1
        backoff = min(self._interval * 2 ** (self.failures - 1), 900.0)
        self.retry_at = now + timedelta(seconds=backoff * rng.uniform(0.5, 1.0))

    def recovered(self, now: datetime) -> None:
        if self.down_since is not None:
            down_for = (now - self.down_since).total_seconds()
            self._log.info("mastodon.recovered", down_for_s=round(down_for, 1))
        self.down_since = None
        self.failures = 0
        self.retry_at = None

    def waiting(self, now: datetime) -> bool:
        return self.retry_at is not None and now < self.retry_at


def check_rules_reload(app: App, force: bool = False) -> None:
    outcome = app.reloader.check(force=force)
    if outcome.kind == "reloaded":
        app.metrics.rules_reload(ok=True)
        register_rule_secrets(app.redactor, app.reloader.current, app.reloader.env)
        app.log.info("rules.reloaded", change=outcome.change, summary=app.rules.summary())
    elif outcome.kind == "invalid" and outcome.first_report:
        app.metrics.rules_reload(ok=False)
        app.log.error("rules.invalid", error=str(outcome.error), keeping="the last good rules")


async def run_cycle(app: App, outage: Outage, rng: random.Random) -> CycleResult | None:
    """One guarded cycle: network trouble is logged once and retried, never fatal."""
    started = asyncio.get_running_loop().time()
    try:
        result = await app.engine.poll_once()
    except AuthError as error:  # a revoked token, or a scope taken away since the start
        outage.failed(app.clock.now(), error, rng, event="mastodon.refused")
        app.metrics.poll_done(ok=False, new_events=0, requests=0, when=app.clock.now())
        return None
    except TransientError as error:
        outage.failed(app.clock.now(), error, rng)
        app.metrics.poll_done(ok=False, new_events=0, requests=0, when=app.clock.now())
        return None
    except Exception as error:  # a bug must not stop a daemon that runs for months
        app.log.exception("cycle.crashed")
        outage.failed(app.clock.now(), error, rng)
        app.metrics.poll_done(ok=False, new_events=0, requests=0, when=app.clock.now())
        return None
    outage.recovered(app.clock.now())
    app.metrics.poll_done(
        ok=True, new_events=result.new_events, requests=result.requests, when=app.clock.now()
    )
    app.metrics.rate_remaining(app.client.rate.remaining)
    app.metrics.outbox_depth(app.store.pending_count())
    app.log.info(
        "poll",
        requests=result.requests,
        fetched=result.fetched,
        new=result.new_events,
        actions=result.actions_enqueued,
        done=result.executed.done,
        retried=result.executed.retried,
        failed=result.executed.failed,
        held=result.executed.held,
        swept=result.swept,
        cursor=result.cursor,
        rate_remaining=app.client.rate.remaining,
        duration_ms=int((asyncio.get_running_loop().time() - started) * 1000),
    )
    return result


async def serve(
    app: App,
    *,
    install_signals: bool = True,
    stop_grace: float = STOP_GRACE_SECONDS,
    min_gap: float = MIN_CYCLE_GAP_SECONDS,
) -> None:
    """Run cycles until `app.stopping` is set (SIGTERM/SIGINT, see `install_stop_signals`);
    SIGHUP reloads the rules and polls at once."""
    loop = asyncio.get_running_loop()
    wake = app.wake
    reload_now = asyncio.Event()
    wake.set()
    if install_signals:
        loop.add_signal_handler(signal.SIGHUP, _reload_and_wake, reload_now, wake)
    interval = app.settings.poll_interval
    scheduler = AsyncIOScheduler()
    scheduler.add_job(
        wake.set, "interval", seconds=interval, jitter=max(1, interval // 10),
        coalesce=True, max_instances=1,
    )
    outage = Outage(interval, app.log)
    rng = random.Random()  # noqa: S311 (jitter, not cryptography)
    async with contextlib.AsyncExitStack() as stack:
        scheduler.start()
        stack.callback(scheduler.shutdown, wait=False)
        if install_signals:
            stack.callback(loop.remove_signal_handler, signal.SIGHUP)
        if app.settings.http_port is not None:
            await _start_metrics(app, stack)
        if app.stream is not None:
            listening = asyncio.create_task(app.stream.run())
            stack.callback(listening.cancel)
        last_cycle: float | None = None
        app.log.info("daemon.started", account=app.identity.acct, interval_s=interval,
                     rules=app.rules.summary())
        while not app.stopping.is_set():
            await first_of(wake, app.stopping)
            if app.stopping.is_set():
                break
            wake.clear()
            check_rules_reload(app, force=reload_now.is_set())
            reload_now.clear()
            if outage.waiting(app.clock.now()):
                continue
            if last_cycle is not None and loop.time() - last_cycle < min_gap:
                # The stream can ring often; every poll spends Mastodon's paging budget.
                with contextlib.suppress(Stopped):
                    gap = min_gap - (loop.time() - last_cycle)
                    await unless_stopped(asyncio.sleep(gap), app.stopping)
                if app.stopping.is_set():
                    break
            last_cycle = loop.time()
            await finish_or_cancel(run_cycle(app, outage, rng), app.stopping, stop_grace)
    app.log.info("daemon.stopped")


async def _start_metrics(app: App, stack: contextlib.AsyncExitStack) -> None:
    """`/metrics` and `/healthz` on DMBOT_HTTP_PORT; health is the same check as Docker's."""
    env = {
        "DMBOT_DATA_DIR": str(app.settings.data_dir),
        "DMBOT_POLL_INTERVAL": str(app.settings.poll_interval),
    }

    def health() -> tuple[bool, str]:
        verdict = check_health(env)
        return verdict.healthy, verdict.reason

    server = MetricsServer(app.metrics, health, "0.0.0.0", app.settings.http_port or 0)  # noqa: S104 (a container's port)
    await server.start()
    stack.push_async_callback(server.stop)
    app.log.info("metrics.listening", port=server.port)


def _reload_and_wake(reload_now: asyncio.Event, wake: asyncio.Event) -> None:
    reload_now.set()
    wake.set()
