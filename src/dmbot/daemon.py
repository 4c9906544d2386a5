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
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from dmbot import __version__
from dmbot.clock import Clock
from dmbot.decider import RulesDecider
from dmbot.engine import CycleResult, Engine, EngineConfig, Identity
from dmbot.errors import ConfigError
from dmbot.executor import Executor
from dmbot.logging import Redactor
from dmbot.mastodon import AuthError, MastodonClient, MastodonError, TransientError
from dmbot.notify import AppriseNotifier, Notifier, url_secrets
from dmbot.relationships import RelationshipCache
from dmbot.reload import RulesReloader
from dmbot.rules import RulesError, RuleSet, load_rules
from dmbot.settings import Settings
from dmbot.store import Store

STOP_GRACE_SECONDS = 7.0


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
    log: structlog.typing.FilteringBoundLogger = field(
        default_factory=lambda: structlog.get_logger("dmbot.daemon")
    )

    @property
    def rules(self) -> RuleSet:
        return self.reloader.current


def register_rule_secrets(redactor: Redactor, rules: RuleSet) -> None:
    for notifier in rules.notifiers.values():
        for url in notifier.urls:
            redactor.add(url_secrets(url))


def load_rules_or_fail(settings: Settings, env: Mapping[str, str]) -> RuleSet:
    try:
        return load_rules(settings.rules_file, env)
    except RulesError as error:
        raise ConfigError(str(error)) from None


async def connect(client: MastodonClient, settings: Settings, first_run: bool) -> Identity:
    """Who the token belongs to. A refused token is the user's to fix; so is an instance that
    never answered before. An instance that worked before and is down now is waited for."""
    try:
        account = await client.verify_credentials()
        instance = await client.instance()
    except AuthError as error:
        raise ConfigError(
            f"DMBOT_ACCESS_TOKEN was refused by {settings.instance_url} ({error}); "
            "check the token and its scopes (read:statuses write:conversations)"
        ) from None
    except MastodonError as error:
        if first_run:
            raise ConfigError(
                f"DMBOT_INSTANCE_URL: cannot reach {settings.instance_url} ({error})"
            ) from None
        raise
    return Identity(account_id=account.id, acct=account.acct, local_domain=instance.domain)


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
) -> AsyncIterator[App]:
    env = dict(os.environ if env is None else env)
    base_url = settings.instance()
    token = settings.token()
    redactor.add([token])
    rules = load_rules_or_fail(settings, env)
    register_rule_secrets(redactor, rules)
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
        identity = await _connect_with_retry(client, settings, store, clock)
        reloader = RulesReloader(settings.rules_file, env, rules)
        stopping = asyncio.Event()
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
        )
        engine = Engine(
            client=client, store=store, clock=clock, decider=decider, executor=executor,
            identity=identity, config=engine_config(settings), stopping=stopping,
        )
        yield App(
            settings=settings, clock=clock, client=client, store=store, reloader=reloader,
            engine=engine, identity=identity, redactor=redactor, stopping=stopping,
        )


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        overlap=timedelta(seconds=settings.overlap_seconds),
        sweep_every=timedelta(seconds=settings.sweep_interval),
        sweep_horizon=timedelta(days=settings.sweep_horizon_days),
        bootstrap_limit=settings.bootstrap_limit,
        include_own_messages=settings.include_own_messages,
    )


async def _connect_with_retry(
    client: MastodonClient, settings: Settings, store: Store, clock: Clock
) -> Identity:
    first_run = store.get_meta("last_success_at") is None
    log = structlog.get_logger("dmbot.daemon")
    delay = 5.0
    while True:
        try:
            identity = await connect(client, settings, first_run)
        except TransientError as error:
            log.warning("mastodon.unavailable", error=str(error), retry_in_s=delay)
            await clock.sleep(delay)
            delay = min(delay * 2, 300.0)
            continue
        store.set_meta("account_id", identity.account_id)
        return identity


class Outage:
    """Logs an outage once when it starts and once when it ends, and paces retries."""

    def __init__(self, interval: float, log: structlog.typing.FilteringBoundLogger) -> None:
        self._interval = interval
        self._log = log
        self.down_since: datetime | None = None
        self.failures = 0
        self.retry_at: datetime | None = None

    def failed(self, now: datetime, error: Exception, rng: random.Random) -> None:
        if self.down_since is None:
            self.down_since = now
            self._log.warning("mastodon.unavailable", error=str(error))
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
        register_rule_secrets(app.redactor, app.reloader.current)
        app.log.info("rules.reloaded", change=outcome.change, summary=app.rules.summary())
    elif outcome.kind == "invalid" and outcome.first_report:
        app.log.error("rules.invalid", error=str(outcome.error), keeping="the last good rules")


async def run_cycle(app: App, outage: Outage, rng: random.Random) -> CycleResult | None:
    """One guarded cycle: network trouble is logged once and retried, never fatal."""
    started = asyncio.get_running_loop().time()
    try:
        result = await app.engine.poll_once()
    except (TransientError, AuthError) as error:
        outage.failed(app.clock.now(), error, rng)
        return None
    except Exception as error:  # a bug must not stop a daemon that runs for months
        app.log.exception("cycle.crashed")
        outage.failed(app.clock.now(), error, rng)
        return None
    outage.recovered(app.clock.now())
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
    app: App, *, install_signals: bool = True, stop_grace: float = STOP_GRACE_SECONDS
) -> None:
    """Run cycles until SIGTERM/SIGINT; SIGHUP reloads the rules at once."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    reload_now = asyncio.Event()
    wake.set()
    if install_signals:
        loop.add_signal_handler(signal.SIGTERM, app.stopping.set)
        loop.add_signal_handler(signal.SIGINT, app.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, _reload_and_wake, reload_now, wake)
    interval = app.settings.poll_interval
    scheduler = AsyncIOScheduler()
    scheduler.add_job(
        wake.set, "interval", seconds=interval, jitter=max(1, interval // 10),
        coalesce=True, max_instances=1,
    )
    scheduler.start()
    outage = Outage(interval, app.log)
    rng = random.Random()  # noqa: S311 (jitter, not cryptography)
    app.log.info("daemon.started", account=app.identity.acct, interval_s=interval,
                 rules=app.rules.summary())
    try:
        while not app.stopping.is_set():
            await _first_of(wake, app.stopping)
            if app.stopping.is_set():
                break
            wake.clear()
            check_rules_reload(app, force=reload_now.is_set())
            reload_now.clear()
            if outage.waiting(app.clock.now()):
                continue
            await _finish_or_cancel(run_cycle(app, outage, rng), app.stopping, stop_grace)
    finally:
        scheduler.shutdown(wait=False)
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        app.log.info("daemon.stopped")


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
