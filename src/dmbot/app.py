"""The composition root: `open_app` builds everything dmbot runs on (httpx client, Mastodon
client, store, rules, notifier, engine, stream) in one place, connects, and closes it all in
reverse order. Startup problems the user can fix become `ConfigError`s naming the setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import structlog
from pydantic import ValidationError

from dmbot import __version__
from dmbot.clock import Clock
from dmbot.decider import RulesDecider
from dmbot.engine import Engine, EngineConfig, Identity
from dmbot.errors import ConfigError
from dmbot.executor import Executor
from dmbot.logging import Redactor
from dmbot.mastodon import (
    AuthError,
    MastodonClient,
    MastodonError,
    PermanentError,
    TransientError,
)
from dmbot.metrics import Metrics
from dmbot.models import Conversation
from dmbot.notify import AppriseNotifier, Notifier, url_secrets
from dmbot.relationships import RelationshipCache
from dmbot.reload import RulesReloader
from dmbot.rules import RulesError, RuleSet, load_rules, scope_error
from dmbot.scopes import PROBED_SCOPES, probe_scopes
from dmbot.settings import FileBackedEnv, Settings
from dmbot.shutdown import unless_stopped
from dmbot.snowflake import newer
from dmbot.store import Store
from dmbot.stream import DirectStream, stream_url


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
