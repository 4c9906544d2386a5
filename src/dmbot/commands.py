"""What each `dmbot` subcommand does. `cli.main` parses arguments and maps errors to exit
codes; these functions build what they need from the settings and return an exit code."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import httpx

from dmbot import __version__
from dmbot.clock import SystemClock
from dmbot.errors import ConfigError
from dmbot.logging import Redactor, configure_logging
from dmbot.notifiers import NotifierConfig
from dmbot.settings import Settings, load_settings
from dmbot.store import Status


def _settings(redactor: Redactor) -> Settings:
    settings = load_settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level, redactor=redactor)
    return settings


def run(args: argparse.Namespace, redactor: Redactor) -> int:
    settings = _settings(redactor)
    dry_run = bool(args.dry_run or settings.dry_run)
    return asyncio.run(_run(settings, redactor, once=args.once, dry_run=dry_run))


async def _run(settings: Settings, redactor: Redactor, *, once: bool, dry_run: bool) -> int:
    from dmbot.app import open_app
    from dmbot.daemon import Outage, run_cycle, serve
    from dmbot.shutdown import Stopped, install_stop_signals

    stopping = asyncio.Event()
    remove_signals = install_stop_signals(stopping)  # before startup: PID 1 in a container
    try:
        async with open_app(settings, clock=SystemClock(), redactor=redactor, dry_run=dry_run,
                            stopping=stopping) as app:
            if not once:
                await serve(app)
                return 0
            outage = Outage(settings.poll_interval, app.log)
            result = await run_cycle(app, outage, random.Random())  # noqa: S311 (jitter)
            return 0 if result is not None else 1
    except Stopped:
        return 0
    finally:
        remove_signals()


def status(args: argparse.Namespace, redactor: Redactor) -> int:
    from dmbot.store import Store

    settings = load_settings()
    _register_rule_secrets(settings, redactor)
    store = Store.open(settings.data_dir)
    try:
        print(redactor.redact(format_status(store.status(), datetime.now(UTC))))
    finally:
        store.close()
    return 0


def format_status(state: Status, now: datetime) -> str:
    def ago(when: datetime | None) -> str:
        if when is None:
            return "never"
        return f"{when.isoformat(timespec='seconds')} ({(now - when).total_seconds():.0f} s ago)"

    lines = [
        f"cursor:               {state.cursor or 'none yet (the first poll sets it)'}",
        f"last successful poll: {ago(state.last_success_at)}",
        f"last sweep:           {ago(state.last_sweep_at)}",
        f"outbox:               {state.pending} pending, {state.failed} failed"
        + (f", oldest pending since {ago(state.oldest_pending_at)}" if state.oldest_pending_at
           else ""),
        "recent actions:" if state.recent else "recent actions:       none",
    ]
    for entry in state.recent:
        target = f" → {entry.target}" if entry.target else ""
        detail = f" ({entry.detail})" if entry.detail else ""
        lines.append(
            f"  {entry.at.isoformat(timespec='seconds')}  {entry.kind:<9} {entry.outcome:<12} "
            f"conversation:status {entry.event_key}{target}{detail}"
        )
    return "\n".join(lines)


def _register_rule_secrets(settings: Settings, redactor: Redactor) -> None:
    """Load the rules only to learn which strings to mask; a broken file is not status's job."""
    from dmbot.app import load_rules_or_fail

    try:
        load_rules_or_fail(settings, os.environ, redactor)
    except (ConfigError, OSError):
        return
    try:
        redactor.add([settings.token()])
    except ConfigError:
        return


def check(args: argparse.Namespace, redactor: Redactor) -> int:
    settings = _settings(redactor)
    return asyncio.run(_check(settings, redactor))


async def _check(settings: Settings, redactor: Redactor) -> int:
    from dmbot.app import connect, load_rules_or_fail
    from dmbot.mastodon import MastodonClient

    base_url = settings.instance()
    token = settings.token()
    redactor.add([token])
    rules = load_rules_or_fail(settings, os.environ, redactor)
    print(f"settings: ok (instance {base_url}, data in {settings.data_dir})")
    print(f"rules:    ok ({settings.rules_file}: {rules.summary()})")
    async with _http() as http:
        client = MastodonClient(http, base_url, token, SystemClock())
        identity = await connect(client, settings, rules, first_run=True)
    print(f"token:    ok (@{identity.acct} on {identity.local_domain}, "
          f"scopes {' '.join(sorted(rules.required_scopes))})")
    return 0


def _http() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=10.0),
        headers={"User-Agent": f"dmbot/{__version__}"},
    )


def explain(args: argparse.Namespace, redactor: Redactor) -> int:
    settings = _settings(redactor)
    if not 1 <= args.limit <= 40:
        raise ConfigError("--limit must be between 1 and 40")
    return asyncio.run(_explain(settings, redactor, args.limit))


async def _explain(settings: Settings, redactor: Redactor, limit: int) -> int:
    from dmbot.app import connect, load_rules_or_fail
    from dmbot.decider import RulesDecider
    from dmbot.explain import explain_table
    from dmbot.mastodon import MastodonClient
    from dmbot.models import Event
    from dmbot.relationships import RelationshipCache
    from dmbot.rules import explain as explain_rules

    base_url = settings.instance()
    token = settings.token()
    redactor.add([token])
    rules = load_rules_or_fail(settings, os.environ, redactor)
    clock = SystemClock()
    async with _http() as http:
        client = MastodonClient(http, base_url, token, clock)
        identity = await connect(client, settings, rules, first_run=True, read_only=True)
        page = await client.conversations(limit=limit)
        events = [
            Event.from_conversation(
                c, local_domain=identity.local_domain, own_account_id=identity.account_id
            )
            for c in page.conversations
            if c.last_status is not None
        ]
        decider = RulesDecider(
            rules=lambda: rules, client=client, clock=clock,
            relationships=RelationshipCache(client.relationships, clock),
        )
        prepared = await decider.prepare(events)
        server = decider.server_data
    now = clock.now()
    rows = [(event, explain_rules(rules, event, now, server)) for event in prepared]
    print(explain_table(rows))
    return 0


def test_samples(args: argparse.Namespace, redactor: Redactor) -> int:
    from dmbot.rules import RulesError, load_rules
    from dmbot.samples import SamplesError, run_samples

    rules_path = Path(args.rules)
    try:
        rules = load_rules(rules_path, os.environ)
        report = run_samples(
            rules, Path(args.samples), datetime.now(UTC),
            local_domain=os.environ.get("DMBOT_LOCAL_DOMAIN", "localhost"),
        )
    except (RulesError, SamplesError) as error:
        raise ConfigError(str(error)) from None
    print(report.text)
    return 0 if report.ok else 1


def notify_test(args: argparse.Namespace, redactor: Redactor) -> int:
    from dmbot.app import load_rules_or_fail

    settings = load_settings()
    configure_logging(fmt=settings.log_format, level="ERROR", redactor=redactor)
    rules = load_rules_or_fail(settings, os.environ, redactor)
    chosen = _pick_notifiers(rules.notifiers, args.name)
    return asyncio.run(_notify_test([rules.notifiers[name] for name in chosen], redactor))


def _pick_notifiers(notifiers: Mapping[str, object], name: str | None) -> list[str]:
    if not notifiers:
        raise ConfigError("the rules file defines no notifiers to test")
    if name is None:
        return list(notifiers)
    if name not in notifiers:
        close = difflib.get_close_matches(name, list(notifiers), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(notifiers)}"
        raise ConfigError(f"no notifier named {name!r} in the rules file{hint}")
    return [name]


async def _notify_test(configs: list[NotifierConfig], redactor: Redactor) -> int:
    from dmbot.notify import AppriseNotifier
    from dmbot.render import render_test

    notifier = AppriseNotifier()
    all_ok = True
    for config in configs:
        name = config.name
        outcomes = await notifier.send(config, render_test(config))
        for outcome in outcomes:
            all_ok &= outcome.ok
            verdict = "delivered" if outcome.ok else f"FAILED: {outcome.error or 'no reason given'}"
            print(redactor.redact(f"{name}: {outcome.target}: {verdict}"))
    return 0 if all_ok else 1


def demo(args: argparse.Namespace, redactor: Redactor) -> int:
    from dmbot.demo import run_demo

    return run_demo(pause=0.0 if args.fast else 10.0)
