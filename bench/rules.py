"""Rules benchmark: events per second for 50 rules of mixed operators over synthetic events.

The rules use every kind of field (booleans, numbers, account age, relationships, domains in
a 1,000-entry list, accounts, participants, `text` with contains and RE2 regexes) and nest
all / any / not; a few match, one stops. Events are built before the clock starts; the
figure is `evaluate` alone, which includes turning each message's HTML into plain text once.

Run: python bench/rules.py [EVENTS]
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dmbot.fields import message_text
from dmbot.lists import ServerData
from dmbot.models import Conversation, Event, Relationship
from dmbot.rules import RuleSet, evaluate, load_rules

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
WORDS = ["hello", "urgent", "meeting", "offer", "free", "crypto", "invoice", "tonight", "call",
         "please", "thanks", "asap"]


def rules_file(directory: Path, count: int = 50) -> Path:
    blocked = [f"spam{i}.example" for i in range(1000)]
    (directory / "blocked.txt").write_text("#domain\n" + "\n".join(blocked) + "\n")
    friends = ", ".join(f"friend{i}@remote{i % 7}.example" for i in range(50))
    kinds = [
        "{{sender.bot: true}}",
        "{{sender.followers_count: {{gte: {n}, lt: {m}}}}}",
        "{{sender.age_days: {{lt: {n}}}}}",
        "{{text: {{contains: [{w}, {v}]}}}}",
        '{{text: {{regex: "(?i)\\\\b({w}|{v})\\\\b"}}}}',
        "{{all: [{{unread: true}}, {{not: {{sender.following: true}}}}, {{media.count: 0}}]}}",
        "{{any: [{{sender.acct: {{in: friends}}}},"
        " {{sender.display_name: {{starts_with: {w}}}}}]}}",
        "{{participants.domain: {{in: blocked}}}}",
        "{{all: [{{language: {{in: [en, de]}}}}, {{spoiler_text: {{contains: {w}}}}}]}}",
        "{{not: {{any: [{{sender.mutual: true}}, {{sender.domain: {{ends_with: .social}}}}]}}}}",
    ]
    lines = [
        "version: 1",
        "notifiers:",
        '  phone: "json://localhost:8080/phone"',
        '  inbox: "json://localhost:8080/inbox"',
        "lists:",
        "  blocked: [{file: blocked.txt}, {server: domain_blocks}]",
        f"  friends: [{friends}]",
        "rules:",
        "  - {name: blocked, if: {sender.domain: {in: blocked}}, do: [delete], stop: true}",
    ]
    pick = random.Random(1)
    for i in range(count - 1):
        condition = kinds[i % len(kinds)].format(
            n=pick.randint(1, 500), m=pick.randint(500, 5000), w=pick.choice(WORDS),
            v=pick.choice(WORDS),
        )
        action = ["[mark_read]", "[{notify: phone}]", "[{notify: [phone, inbox]}]"][i % 3]
        lines.append(f"  - {{name: rule{i}, if: {condition}, do: {action}}}")
    path = directory / "rules.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def account(pick: random.Random, n: int) -> dict[str, Any]:
    domain = pick.choice([f"spam{n % 1200}.example", f"remote{n % 7}.example", "bücher.social",
                          f"friend{n % 60}"])
    acct = f"user{n}@{domain}" if not domain.startswith("friend") else domain
    return {
        "id": str(1000 + n), "username": acct.split("@")[0], "acct": acct,
        "display_name": f"{pick.choice(WORDS)} person {n}", "bot": pick.random() < 0.1,
        "locked": False, "followers_count": pick.randint(0, 5000),
        "created_at": (NOW - timedelta(days=pick.randint(0, 3000))).isoformat(),
    }


def events(count: int) -> list[Event]:
    pick = random.Random(2)
    built = []
    for n in range(count):
        sender = account(pick, n)
        words = " ".join(pick.choice(WORDS) for _ in range(pick.randint(5, 60)))
        data = {
            "id": str(n), "unread": pick.random() < 0.7, "accounts": [sender],
            "last_status": {
                "id": str(10**17 + n), "created_at": NOW.isoformat(), "account": sender,
                "content": f'<p><span class="h-card"><a href="https://x.example/@me" '
                           f'class="u-url mention">@<span>me</span></a></span> {words}</p>',
                "spoiler_text": pick.choice(["", "", "", "cw: " + pick.choice(WORDS)]),
                "language": pick.choice(["en", "de", "fr", None]),
            },
        }
        event = Event.from_conversation(
            Conversation.model_validate(data), local_domain="mastodon.example",
            own_account_id="1",
        )
        rel = Relationship(id=sender["id"], following=pick.random() < 0.3,
                           followed_by=pick.random() < 0.3)
        built.append(event.model_copy(update={"relationship": rel}))
    return built


def run(rules: RuleSet, batch: list[Event], server: ServerData) -> tuple[float, int]:
    started = time.perf_counter()
    acted = sum(1 for event in batch if evaluate(rules, event, NOW, server))
    return time.perf_counter() - started, acted


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = rules_file(Path(tmp))
        started = time.perf_counter()
        rules = load_rules(path, {})
        load_ms = (time.perf_counter() - started) * 1000
        text = path.read_text().splitlines()  # the same rules less those reading `text`
        path.write_text("\n".join(line for line in text if "text:" not in line) + "\n")
        no_text = load_rules(path, {})
    server = ServerData.from_domain_blocks(f"blocked{i}.example" for i in range(500))
    batch = events(count)
    started = time.perf_counter()
    for event in batch:
        message_text(event)
    html_s = time.perf_counter() - started
    elapsed, acted = run(rules, batch, server)
    elapsed_plain, _ = run(no_text, batch, server)
    print(f"rules:                 {rules.summary()} (loaded in {load_ms:.0f} ms)")
    print(f"events:                {count} ({acted} with actions)")
    print(f"evaluate, 50 rules:    {count / elapsed:,.0f} events/s"
          f" ({elapsed / count * 1e6:.1f} µs/event)")
    print(f"  without text rules:  {count / elapsed_plain:,.0f} events/s"
          f" ({elapsed_plain / count * 1e6:.1f} µs/event, {len(no_text.rules)} rules)")
    print(f"  HTML to text alone:  {html_s / count * 1e6:.1f} µs/event")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
