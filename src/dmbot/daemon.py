"""The composition root and the long-running loop.

`open_app` builds everything (httpx client, Mastodon client, store, rules, notifier, engine)
in one place and closes it in reverse order. `serve` runs cycles on APScheduler's ticks. The
scheduler only *wakes* the loop; the loop owns the cycle in flight, so a SIGTERM lets it
finish (APScheduler 3's asyncio executor would cancel it), and after a short grace it is
cancelled at an `await`, where the store is always consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import ValidationError

from dmbot import __version__
from dmbot.clock import Clock
from dmbot.decider import RulesDecider
from dmbot.engine import CycleResult, Engine, EngineConfig, Identity
from dmbot.errors import ConfigError
from dmbot.executor import Executor
from dmbot.health import check_health
from dmbot.logging import Redactor
from dmbot.mastodon import (
    AuthError,
    MastodonClient,
    MastodonError,
    PermanentError,
    TransientError,
)
from dmbot.metrics import Metrics, MetricsServer
from dmbot.models import Conversation
from dmbot.notify import AppriseNotifier, Notifier, url_secrets
from dmbot.relationships import RelationshipCache
from dmbot.reload import RulesReloader
from dmbot.rules import RulesError, RuleSet, load_rules, scope_error
from dmbot.scopes import PROBED_SCOPES, probe_scopes
from dmbot.settings import FileBackedEnv, Settings
from dmbot.snowflake import newer
from dmbot.store import Store
from dmbot.stream import DirectStream, stream_url

STOP_GRACE_SECONDS = 7.0
MIN_CYCLE_GAP_SECONDS = 5.0  # Mastodon allows 300 paging requests per 15 minutes
T = TypeVar("T")


@dataclass
class App:
    settings: Settings
    clock: Clock
    client: MastodonClient
    store: Store
    reloader: RulesReloader
    engine: Engine
    identity: Identity
    redactor: Redactor
    stopping: asyncio.Event
    metrics: Metrics
    stream: DirectStream | None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    log: structlog.typing.FilteringBoundLogger = field(
        default_factory=lambda: structlog.get_logger("dmbot.daemon")
    )

    @property
    def rules(self) -> RuleSet:
        return self.reloader.current


def register_rule_secrets(
    redactor: Redactor, rules: RuleSet, env: Mapping[str, str] | None = None
) -> None:
    """Mask the secret parts of every notifier URL, and every value `${VAR}` took from the
    environment (an ntfy topic is as secret as a password, though Apprise shows it)."""
    for notifier in rules.notifiers.values():
        for url in notifier.urls:
            redactor.add(url_secrets(url))
    if isinstance(env, FileBackedEnv):
        redactor.add(env.values_read())


def load_rules_or_fail(
    settings: Settings, env: Mapping[str, str], redactor: Redactor
) -> RuleSet:
    """Load the rules file (`${VAR}` from `env`, or `VAR_FILE`) and register its secrets."""
    source = env if isinstance(env, FileBackedEnv) else FileBackedEnv(env)
    try:
        rules = load_rules(settings.rules_file, source)
    except RulesError as error:
        raise ConfigError(str(error)) from None
    register_rule_secrets(redactor, rules, source)
    return rules


async def connect(
    client: MastodonClient,
    settings: Settings,
    rules: RuleSet,
    first_run: bool,
    *,
    read_only: bool = False,
) -> Identity:
    """Who the token belongs to, and whether it has the scopes the rules need.

    Every scope a rules file can need is probed once, so that a later reload needing one the
    token lacks can be refused. `read_only` (explain, dry runs) skips the write probe.
    A refused token or a missing scope is the user's to fix; so is an instance that never
    answered before. An instance that worked before and is down now is waited for."""
    probed = PROBED_SCOPES - {"write:conversations"} if read_only else PROBED_SCOPES
    try:
        account = await client.verify_credentials()
        instance = await client.instance()
        missing = await probe_scopes(client, probed)
    except AuthError as error:
        raise ConfigError(
            f"DMBOT_ACCESS_TOKEN was refused by {settings.instance_url} ({error}); "
            "check the token and its scopes (read:statuses write:conversations)"
        ) from None
    except PermanentError as error:
        raise ConfigError(
            f"DMBOT_INSTANCE_URL: {settings.instance_url} does not answer like a Mastodon "
            f"server ({error})"
        ) from None
    except MastodonError as error:
        if first_run:
            raise ConfigError(
                f"DMBOT_INSTANCE_URL: cannot reach {settings.instance_url} ({error})"
            ) from None
        raise
    problem = scope_error(rules, missing)
    if problem is not None:
        raise ConfigError(f"{problem} (give DMBOT_ACCESS_TOKEN a token that has it)")
    return Identity(
        account_id=account.id, acct=account.acct, local_domain=instance.domain,
        streaming_url=instance.streaming_url, missing_scopes=frozenset(missing),
    )


@contextlib.asynccontextmanager
async def open_app(
    settings: Settings,
    *,
    clock: Clock,
    redactor: Redactor,
    env: Mapping[str, str] | None = None,
    dry_run: bool = False,
    notifier: Notifier | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    stopping: asyncio.Event | None = None,
) -> AsyncIterator[App]:
    """Build everything, connect, and close it all in reverse order on the way out.

    Raises `ConfigError` for what the user must fix, and `Stopped` when `stopping` is set
    while it still waits for the instance to answer."""
    env = FileBackedEnv(os.environ if env is None else env)
    stopping = stopping or asyncio.Event()
    base_url = settings.instance()
    token = settings.token()
    redactor.add([token])
    rules = load_rules_or_fail(settings, env, redactor)
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                timeout=httpx.Timeout(30.0, connect=10.0),
                headers={"User-Agent": f"dmbot/{__version__}"},
                transport=transport,
            )
        )
        client = MastodonClient(http, base_url, token, clock)
        real_store = Store.open(settings.data_dir)
        stack.callback(real_store.close)
        store = real_store.copy_in_memory() if dry_run else real_store
        if dry_run:
            stack.callback(store.close)
        identity = await _connect_with_retry(
            client, settings, rules, store, clock, stopping, read_only=dry_run
        )
        reloader = RulesReloader(
            settings.rules_file, env, rules, missing_scopes=identity.missing_scopes
        )
        metrics = Metrics()
        decider = RulesDecider(
            rules=lambda: reloader.current,
            client=client,
            clock=clock,
            relationships=RelationshipCache(client.relationships, clock),
        )
        executor = Executor(
            client=client, store=store, clock=clock,
            notifier=notifier or AppriseNotifier(),
            notifiers=lambda: reloader.current.notifiers, dry_run=dry_run,
            give_up_after=timedelta(hours=settings.give_up_after_hours),
            stopping=stopping, on_outcome=metrics.action,
        )
        engine = Engine(
            client=client, store=store, clock=clock, decider=decider, executor=executor,
            identity=identity, config=engine_config(settings), stopping=stopping,
        )
        wake = asyncio.Event()
        stream = (
            DirectStream(
                http, stream_url(identity.streaming_url, base_url), token,
                ring_for_news(store, wake), clock,
            )
            if settings.streaming and not dry_run
            else None
        )
        yield App(
            settings=settings, clock=clock, client=client, store=store, reloader=reloader,
            engine=engine, identity=identity, redactor=redactor, stopping=stopping,
            metrics=metrics, stream=stream, wake=wake,
        )


def ring_for_news(store: Store, wake: asyncio.Event) -> Callable[[str], None]:
    """Wake the loop for a stream event, unless it only echoes a conversation already seen
    (our own mark_read comes back on the stream as an event too)."""

    def ring(payload: str) -> None:
        try:
            conversation = Conversation.model_validate_json(payload)
        except ValidationError:
            wake.set()
            return
        status = conversation.last_status
        if status is not None:
            seen = store.seen_ids([conversation.id]).get(conversation.id)
            if seen is not None and not newer(status.id, seen):
                return
        wake.set()

    return ring


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        overlap=timedelta(seconds=settings.overlap_seconds),
        sweep_every=timedelta(seconds=settings.sweep_interval),
        sweep_horizon=timedelta(days=settings.sweep_horizon_days),
        bootstrap_limit=settings.bootstrap_limit,
        include_own_messages=settings.include_own_messages,
    )


async def _connect_with_retry(
    client: MastodonClient,
    settings: Settings,
    rules: RuleSet,
    store: Store,
    clock: Clock,
    stopping: asyncio.Event,
    *,
    read_only: bool = False,
) -> Identity:
    first_run = store.get_meta("last_success_at") is None
    log = structlog.get_logger("dmbot.daemon")
    delay = 5.0
    while True:
        try:
            identity = await unless_stopped(
                connect(client, settings, rules, first_run, read_only=read_only), stopping
            )
        except TransientError as error:
            log.warning("mastodon.unavailable", error=str(error), retry_in_s=delay)
            await unless_stopped(clock.sleep(delay), stopping)
            delay = min(delay * 2, 300.0)
            continue
        store.set_meta("account_id", identity.account_id)
        return identity


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
            await _first_of(wake, app.stopping)
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
            await _finish_or_cancel(run_cycle(app, outage, rng), app.stopping, stop_grace)
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


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _finish_or_cancel(
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
