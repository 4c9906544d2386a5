"""The command line. `main(argv) -> int` is the only place that prints errors and picks exit
codes: 0 ok, 2 a mistake in settings or rules (one sentence, no traceback), 1 anything else.

Heavy imports happen inside the commands, so `dmbot healthcheck` stays cheap.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dmbot import __version__
from dmbot.errors import ConfigError

if TYPE_CHECKING:
    from dmbot.logging import Redactor


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmbot",
        description="Watch a Mastodon account's direct messages and act on them by rules.",
    )
    parser.add_argument("--version", action="version", version=f"dmbot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="poll on a schedule and act on new messages")
    run.add_argument("--once", action="store_true", help="one cycle, then exit")
    run.add_argument("--dry-run", action="store_true", help="log actions instead of doing them")

    commands.add_parser("status", help="cursor, last successful poll, outbox, last actions")
    commands.add_parser("healthcheck", help="exit 0 when the daemon is healthy (for Docker)")
    commands.add_parser("check", help="validate settings, rules, token and its scopes")

    explain = commands.add_parser("explain", help="what the rules would do with recent DMs")
    explain.add_argument("--limit", type=int, default=10, help="conversations to show (<= 40)")

    test = commands.add_parser("test", help="evaluate rules against sample conversations")
    test.add_argument("rules", help="the rules file")
    test.add_argument("samples", help="a JSON file of sample conversations and expectations")

    notify_test = commands.add_parser("notify-test", help="send a test notification")
    notify_test.add_argument("name", nargs="?", help="one notifier (default: all)")

    demo = commands.add_parser("demo", help="a simulated instance and sample DMs, no account")
    demo.add_argument("--fast", action="store_true", help="no pauses between the scenes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "healthcheck":
        return _healthcheck()
    from dmbot.logging import Redactor

    redactor = Redactor()
    try:
        return _dispatch(args, redactor)
    except ConfigError as error:
        print(f"dmbot: error: {redactor.redact(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run_main() -> None:
    sys.exit(main())


def _healthcheck() -> int:
    from dmbot.health import check_health

    health = check_health(os.environ)
    print(("healthy: " if health.healthy else "unhealthy: ") + health.reason)
    return 0 if health.healthy else 1


def _dispatch(args: argparse.Namespace, redactor: Redactor) -> int:
    from dmbot import commands

    handler = {
        "run": commands.run,
        "status": commands.status,
        "check": commands.check,
        "explain": commands.explain,
        "test": commands.test_samples,
        "notify-test": commands.notify_test,
        "demo": commands.demo,
    }[args.command]
    return handler(args, redactor)


if __name__ == "__main__":
    run_main()
