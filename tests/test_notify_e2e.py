"""Issue #4 end to end: a DM sent in the simulator reaches real local receivers through real
Apprise, by way of the real composition (`open_app`: a rules file, the engine, the executor, a
SQLite file). Time moves only on the `ManualClock`; a cycle's deliveries have finished when
`poll_once` returns, so "nothing arrived" is checked at once and arrivals with a bounded wait.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from dmbot.app import App, open_app
from dmbot.clock import ManualClock
from dmbot.delivery import BURST_REASON, COOLDOWN_REASON, QUIET_REASON
from dmbot.logging import Redactor
from dmbot.settings import Settings
from dmbot.sim import SimAccount, Simulator

from conftest import TOKEN
from receivers import JsonReceiver, Request, SmtpSink, body_text

SMTP_USER = "dmbot-mailer"
SMTP_PASSWORD = "smtp-Pa55-4e1c"
HOOK_USER = "hookuser"
HOOK_PASSWORD = "hook-s3cret-77a0"

HTML = (
    '<p><span class="h-card" translate="no"><a href="https://sim.example/@me" '
    'class="u-url mention">@<span>me</span></a></span> the menu is at '
    '<a href="https://food.example/menu" rel="nofollow noopener" target="_blank">'
    '<span class="invisible">https://</span><span class="">food.example/menu</span>'
    '<span class="invisible"></span></a></p><p>Tom &amp; Jerry&#39;s at <b>noon</b>?</p>'
)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink(user=SMTP_USER, password=SMTP_PASSWORD) as sink:
        yield sink


@pytest.fixture
def hook() -> Iterator[JsonReceiver]:
    with JsonReceiver() as receiver:
        yield receiver


@dataclass
class Bot:
    """dmbot as `dmbot run` composes it, against the simulator and the local receivers.

    The rules name the receivers as `${MAIL}` and `${HOOK}`, expanded from the environment as
    a user's rules would; `${HOOK}/path` picks a path, so each notifier is told apart.
    """

    sim: Simulator
    clock: ManualClock
    smtp: SmtpSink
    hook: JsonReceiver
    tmp_path: Path
    settings: Settings | None = None
    env: dict[str, str] = field(default_factory=dict)

    def rules(self, text: str) -> None:
        path = self.tmp_path / "rules.yaml"
        path.write_text(text, encoding="utf-8")
        self.env = {
            "MAIL": self.smtp.apprise_url(to="me@example.com", sender="dmbot@example.com"),
            "HOOK": f"json://{HOOK_USER}:{HOOK_PASSWORD}@127.0.0.1:{self.hook.port}",
        }
        self.settings = Settings(
            instance_url=self.sim.base_url, access_token=TOKEN, rules_file=path,
            data_dir=self.tmp_path / "data", poll_interval=60,
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[App]:
        """The app as `dmbot run` builds it; the data directory outlives it (a restart)."""
        assert self.settings is not None, "write the rules first"
        async with open_app(
            self.settings, clock=self.clock, redactor=Redactor(), env=self.env
        ) as app:
            yield app

    def stranger(self, username: str, display_name: str = "") -> SimAccount:
        return self.sim.add_account(
            username, "remote.example", display_name=display_name or username.title()
        )

    def dm(
        self,
        sender: SimAccount,
        text: str = "",
        *,
        spoiler_text: str = "",
        html: str | None = None,
        thread: Literal["new"] | None = None,
    ) -> str:
        """A DM from `sender` to the owner; returns its status URL, as notifications show it."""
        status = self.sim.send_dm(
            sender, to=[self.sim.owner], text=text, spoiler_text=spoiler_text, html=html,
            thread=thread,
        )
        return f"https://remote.example/@{sender.username}/{status.id}"


@pytest.fixture
def bot(
    sim: Simulator, clock: ManualClock, smtp: SmtpSink, hook: JsonReceiver, tmp_path: Path
) -> Bot:
    return Bot(sim, clock, smtp, hook, tmp_path)


def at(hook: JsonReceiver, path: str) -> list[Request]:
    return [request for request in hook.requests if request.path == path]


def unread(sim: Simulator) -> list[bool]:
    return [view.unread for view in sim.conversations(sim.owner)]


# -- 1. what arrives -----------------------------------------------------------------------


TEMPLATED = """\
version: 1
notifiers:
  mail: {urls: "${MAIL}", privacy: full}
  hook: {urls: "${HOOK}/dm", privacy: full}
rules:
  - name: alert
    if: {unread: true}
    do:
      - notify:
          to: [mail, hook]
          title: "DM from {sender.display_name} (@{sender.acct})"
          body: "{text}\\n\\n-- {status.url}"
      - mark_read
"""


async def test_a_dm_arrives_by_email_and_json_exactly_as_templated(bot: Bot) -> None:
    bot.rules(TEMPLATED)
    async with bot.running() as app:
        await app.engine.poll_once()
        url = bot.dm(bot.stranger("alice", "Alice Liddell"), html=HTML)
        await app.engine.poll_once()

    [message] = bot.smtp.wait_for(1)
    [request] = bot.hook.wait_for(1)
    body = (
        "@me the menu is at https://food.example/menu\n\nTom & Jerry's at noon?\n\n"
        f"-- {url}"
    )
    assert message["Subject"] == "DM from Alice Liddell (@alice@remote.example)"
    assert message["To"] == "me@example.com"
    assert body_text(message) == body
    assert request.json["title"] == "DM from Alice Liddell (@alice@remote.example)"
    assert request.json["message"] == body
    assert request.path == "/dm"
    assert unread(bot.sim) == [False]  # the rule's mark_read ran after the notification


CONTENT_WARNINGS = """\
version: 1
notifiers:
  hook: {urls: "${HOOK}/dm", privacy: full}
rules:
  - name: spoilers-welcome
    if: {sender.acct: reader@remote.example}
    do:
      - notify: {to: hook, body: "{text}", show_spoilered_text: true}
    stop: true
  - name: everyone
    do:
      - notify: {to: hook, body: "{text}"}
"""


async def test_a_content_warning_is_shown_instead_of_the_text_unless_the_rule_says(
    bot: Bot,
) -> None:
    bot.rules(CONTENT_WARNINGS)
    async with bot.running() as app:
        await app.engine.poll_once()
        bot.dm(bot.stranger("writer"), "the butler did it", spoiler_text="finale spoilers")
        await app.engine.poll_once()
        [hidden] = bot.hook.wait_for(1)
        bot.dm(bot.stranger("reader"), "the butler did it", spoiler_text="finale spoilers")
        await app.engine.poll_once()
        [_, shown] = bot.hook.wait_for(2)

    assert hidden.json["message"] == "CW: finale spoilers"
    assert shown.json["message"] == "CW: finale spoilers\n\n@me the butler did it"


PRIVACY = """\
version: 1
notifiers:
  lockscreen: {urls: "${HOOK}/link", privacy: link_only}
  watch: {urls: "${HOOK}/who", privacy: sender_only}
  mail: {urls: "${MAIL}", privacy: sender_only}
rules:
  - name: all
    do:
      - notify:
          to: [lockscreen, watch, mail]
          title: "{sender} wrote"
          body: "{sender.handle} said: {text} {spoiler_text}\\n{status.url}"
"""


async def test_link_only_and_sender_only_send_no_message_text(bot: Bot) -> None:
    bot.rules(PRIVACY)
    async with bot.running() as app:
        await app.engine.poll_once()
        url = bot.dm(bot.stranger("banker", "Your Bank"), "your PIN is 4711",
                     spoiler_text="account details")
        await app.engine.poll_once()

    bot.hook.wait_for(2)
    [link] = at(bot.hook, "/link")
    [who] = at(bot.hook, "/who")
    [mail] = bot.smtp.wait_for(1)
    assert (link.json["title"], link.json["message"]) == ("New direct message", url)
    assert who.json["title"] == mail["Subject"] == "Your Bank (@banker@remote.example) wrote"
    assert who.json["message"] == body_text(mail) == (
        f"@banker@remote.example said:\n{url}"
    )
    for seen in (str(link.json), str(who.json), mail.as_string()):
        assert "4711" not in seen
        assert "account details" not in seen
    assert "Your Bank" not in str(link.json)


# -- 2. retries, restarts, partial failures ------------------------------------------------


ALERT_BOTH = """\
version: 1
notifiers:
  mail: "${MAIL}"
  hook: "${HOOK}/dm"
rules:
  - name: alert
    do:
      - notify: {to: [mail, hook], title: "DM from {sender.acct}", body: "{text}"}
"""

# The executor's backoff after the n-th failed attempt is at most 30 s * 2**(n-1).
AFTER_FIRST_BACKOFF = 31
AFTER_SECOND_BACKOFF = 61


async def test_a_refusing_receiver_gets_it_exactly_once_after_recovering_even_across_restarts(
    bot: Bot,
) -> None:
    bot.rules(ALERT_BOTH)
    bot.hook.fail_next(2)
    bot.smtp.refuse_next(2)
    async with bot.running() as app:
        await app.engine.poll_once()
        bot.dm(bot.stranger("carol"), "are you there?")
        first = await app.engine.poll_once()
        assert (first.executed.retried, bot.hook.hits, len(bot.smtp.logins)) == (2, 1, 1)
        again = await app.engine.poll_once()  # not yet due: the backoff is at least a second
        assert (again.executed.retried, bot.hook.hits, len(bot.smtp.logins)) == (0, 1, 1)

    async with bot.running() as app:  # a restart keeps the retry
        bot.clock.advance(AFTER_FIRST_BACKOFF)
        second = await app.engine.poll_once()
        assert (second.executed.retried, bot.hook.hits, len(bot.smtp.logins)) == (2, 2, 2)
        bot.clock.advance(AFTER_SECOND_BACKOFF)
        third = await app.engine.poll_once()
        assert third.executed.done == 2

    [request] = bot.hook.wait_for(1)
    [message] = bot.smtp.wait_for(1)
    assert (request.json["title"], request.json["message"]) == (
        "DM from carol@remote.example", "@me are you there?"
    )
    assert (message["Subject"], body_text(message)) == (
        "DM from carol@remote.example", "@me are you there?"
    )

    async with bot.running() as app:
        for _ in range(3):
            bot.clock.advance(3600)
            await app.engine.poll_once()
        assert app.store.status().pending == 0
    assert (len(bot.hook.requests), bot.hook.hits, len(bot.smtp.messages)) == (1, 3, 1)


TWO_URLS = """\
version: 1
notifiers:
  everywhere: ["${MAIL}", "${HOOK}/dm"]
rules:
  - name: alert
    do:
      - notify: {to: everywhere, title: "DM from {sender.acct}", body: "{text}"}
"""


async def test_one_of_two_urls_failing_is_retried_alone(bot: Bot) -> None:
    bot.rules(TWO_URLS)
    bot.hook.fail_next(2)
    async with bot.running() as app:
        await app.engine.poll_once()
        bot.dm(bot.stranger("dave"), "one for each")
        await app.engine.poll_once()
        [message] = bot.smtp.wait_for(1)
        assert bot.hook.requests == []
        for wait in (AFTER_FIRST_BACKOFF, AFTER_SECOND_BACKOFF, 3600, 3600):
            bot.clock.advance(wait)
            await app.engine.poll_once()

    [request] = bot.hook.wait_for(1)
    assert (message["Subject"], body_text(message)) == ("DM from dave@remote.example",
                                                        "@me one for each")
    assert (request.json["title"], request.json["message"]) == (
        "DM from dave@remote.example", "@me one for each"
    )
    assert (len(bot.smtp.messages), len(bot.smtp.logins)) == (1, 1)  # never sent again
    assert (len(bot.hook.requests), bot.hook.hits) == (1, 3)


# -- 3. bursts and conversations -----------------------------------------------------------


async def test_a_burst_of_30_dms_is_one_digest_per_notifier(bot: Bot) -> None:
    bot.rules(ALERT_BOTH)
    async with bot.running() as app:
        await app.engine.poll_once()
        for i in range(30):
            bot.dm(bot.stranger(f"fan{i:02d}", f"Fan {i:02d}"), f"hello number {i}")
        result = await app.engine.poll_once()

    assert (result.new_events, result.executed.done) == (30, 60)
    [request] = bot.hook.wait_for(1)
    [message] = bot.smtp.wait_for(1)
    assert request.json["title"] == message["Subject"] == "30 new direct messages"
    lines = [f"- Fan {i:02d} (@fan{i:02d}@remote.example): @me hello number {i}"
             for i in range(20)]
    digest = "\n".join([*lines, "…and 10 more", "", BURST_REASON])
    assert request.json["message"] == body_text(message) == digest
    assert (bot.hook.hits, len(bot.smtp.logins)) == (1, 1)


async def test_a_digest_that_failed_is_retried_as_one_digest(bot: Bot) -> None:
    bot.rules(ALERT_BOTH)
    bot.hook.fail_next(3)
    async with bot.running() as app:
        await app.engine.poll_once()
        for i in range(12):
            bot.dm(bot.stranger(f"fan{i:02d}"), f"hello number {i}")
        await app.engine.poll_once()
        for _ in range(60):  # polling every 10 s (the shortest interval) for ten minutes
            bot.clock.advance(10)
            await app.engine.poll_once()
        assert app.store.status().pending == 0

    assert bot.hook.hits == 4
    [request] = bot.hook.requests  # not the twelve rows trickling in as their jitter allows
    assert request.json["title"] == "12 new direct messages"
    assert len(bot.smtp.messages) == 1


async def test_several_messages_of_one_conversation_in_a_cycle_make_one_notification(
    bot: Bot,
) -> None:
    bot.rules(ALERT_BOTH)
    async with bot.running() as app:
        await app.engine.poll_once()
        erin = bot.stranger("erin")
        for text in ("first", "second", "third"):
            bot.dm(erin, text)
        await app.engine.poll_once()

    [request] = bot.hook.wait_for(1)
    [message] = bot.smtp.wait_for(1)
    assert request.json["message"] == body_text(message) == "@me third"
    assert (bot.hook.hits, len(bot.smtp.logins)) == (1, 1)
    assert len(bot.sim.conversations(bot.sim.owner)) == 1


# -- 4. quiet hours ------------------------------------------------------------------------
# The clock starts at 12:00 UTC; the windows below run 11:30-13:00 UTC.

QUIET = """\
version: 1
notifiers:
  hook:
    urls: "${HOOK}/dm"
    quiet_hours: {start: "11:30", end: "13:00", timezone: UTC, then: THEN}
  plain: "${HOOK}/plain"
rules:
  - name: vip
    if: {sender.acct: boss@remote.example}
    do:
      - notify: {to: hook, body: "{text}", bypass_quiet_hours: true}
    stop: true
  - name: own-window
    if: {sender.acct: {in: [night@remote.example]}}
    do:
      - notify:
          to: plain
          body: "{text}"
          quiet_hours: {start: "11:30", end: "13:00", timezone: UTC, then: THEN}
    stop: true
  - name: others
    do:
      - notify: {to: hook, body: "{text}"}
"""


async def test_quiet_hours_hold_then_one_digest_and_a_bypassing_rule_goes_at_once(
    bot: Bot,
) -> None:
    bot.rules(QUIET.replace("THEN", "digest"))
    async with bot.running() as app:
        await app.engine.poll_once()
        for name in ("gina", "hank"):
            bot.dm(bot.stranger(name, name.title()), f"late message from {name}")
        bot.dm(bot.stranger("night", "Night Owl"), "first")
        bot.dm(bot.stranger("boss", "The Boss"), "call me now")
        held = await app.engine.poll_once()
        [urgent] = bot.hook.wait_for(1)
        assert (held.executed.held, held.executed.done) == (3, 1)
        assert urgent.json["message"] == "@me call me now"

        bot.clock.advance(30 * 60)  # 12:30, still quiet: more arrive, nothing goes out
        bot.dm(bot.sim.account("night@remote.example"), "second")
        await app.engine.poll_once()
        assert bot.hook.hits == 1

        bot.clock.advance(30 * 60 + 1)  # 13:00:01, the window is over
        after = await app.engine.poll_once()
        assert after.executed.done == 4
        assert bot.hook.hits == 3
        bot.clock.advance(3600)
        await app.engine.poll_once()

    [digest] = at(bot.hook, "/dm")[1:]
    assert digest.json["title"] == "2 new direct messages"
    assert digest.json["message"] == (
        "- Gina (@gina@remote.example): @me late message from gina\n"
        "- Hank (@hank@remote.example): @me late message from hank\n\n" + QUIET_REASON
    )
    [own] = at(bot.hook, "/plain")  # the rule's own window: both messages, one notification
    assert own.json["message"] == "@me second\n\n(+1 earlier message in this conversation)"
    assert bot.hook.hits == 3


async def test_quiet_hours_then_drop_drops_and_says_so_in_the_status(bot: Bot) -> None:
    bot.rules(QUIET.replace("THEN", "drop"))
    async with bot.running() as app:
        await app.engine.poll_once()
        bot.dm(bot.stranger("gina"), "at lunch")
        bot.dm(bot.stranger("night"), "still up?")
        result = await app.engine.poll_once()
        assert result.executed.dropped == 2
        bot.clock.advance(3600)
        await app.engine.poll_once()
        state = app.store.status()

    assert bot.hook.hits == 0
    assert (state.pending, state.failed) == (0, 0)
    notes = [(entry.kind, entry.outcome, entry.detail) for entry in state.recent]
    assert notes == [("notify", "dropped", "quiet hours")] * 2


# -- 5. cooldown ---------------------------------------------------------------------------


COOLDOWN = """\
version: 1
notifiers:
  hook: {urls: "${HOOK}/dm", cooldown_seconds: 600}
rules:
  - name: all
    do:
      - notify: {to: hook, body: "{text}"}
"""


async def test_a_second_message_within_the_cooldown_waits_for_the_next_digest(bot: Bot) -> None:
    bot.rules(COOLDOWN)
    async with bot.running() as app:
        await app.engine.poll_once()
        ivan = bot.stranger("ivan", "Ivan")
        bot.dm(ivan, "one")
        await app.engine.poll_once()
        [first] = bot.hook.wait_for(1)

        bot.clock.advance(60)
        bot.dm(ivan, "two")
        bot.dm(ivan, "three", thread="new")
        bot.dm(bot.stranger("judy", "Judy"), "unrelated")  # another sender is not held
        await app.engine.poll_once()
        [_, judy] = bot.hook.wait_for(2)

        bot.clock.advance(60)
        await app.engine.poll_once()
        assert bot.hook.hits == 2  # still within ivan's ten minutes

        bot.clock.advance(600 - 120)  # the cooldown has passed
        await app.engine.poll_once()
        [*_, folded] = bot.hook.wait_for(3)
        bot.clock.advance(3600)
        await app.engine.poll_once()

    assert first.json["message"] == "@me one"
    assert judy.json["message"] == "@me unrelated"
    assert folded.json["title"] == "2 new direct messages"
    assert folded.json["message"] == (
        "- Ivan (@ivan@remote.example): @me two\n"
        "- Ivan (@ivan@remote.example): @me three\n\n" + COOLDOWN_REASON
    )
    assert bot.hook.hits == 3


# -- 6. dmbot notify-test ------------------------------------------------------------------


NOTIFY_TEST = """\
version: 1
notifiers:
  mail: "${MAIL}"
  hook: "${HOOK}/test"
rules:
  - name: all
    do: [notify]
"""


def notify_test(bot: Bot, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMBOT_")}
    env.update(bot.env, DMBOT_RULES_FILE=str(bot.tmp_path / "rules.yaml"))
    return subprocess.run(
        [sys.executable, "-m", "dmbot.cli", "notify-test", *args],
        env=env, cwd=bot.tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )


def assert_no_secrets(result: subprocess.CompletedProcess[str]) -> None:
    shown = result.stdout + result.stderr
    for secret in (SMTP_PASSWORD, HOOK_PASSWORD, f"{HOOK_USER}:{HOOK_PASSWORD}"):
        assert secret not in shown


def test_notify_test_delivers_to_every_target_without_an_instance_or_token(bot: Bot) -> None:
    bot.rules(NOTIFY_TEST)

    result = notify_test(bot)

    assert result.returncode == 0, result.stderr
    [mail, hook] = result.stdout.splitlines()  # in the rules file's order
    # The target as Apprise shows it for privacy, with the credentials masked.
    assert mail.startswith(f"mail: mailto://***@127.0.0.1:{bot.smtp.port}/me%40example.com?")
    assert hook.startswith(f"hook: json://***@127.0.0.1:{bot.hook.port}/test?")
    assert mail.endswith(": delivered")
    assert hook.endswith(": delivered")
    [message] = bot.smtp.wait_for(1)
    [request] = bot.hook.wait_for(1)
    assert message["Subject"] == request.json["title"] == "dmbot test notification"
    assert "'mail'" in body_text(message)
    assert "'hook'" in request.json["message"]
    assert_no_secrets(result)


def test_notify_test_exits_1_when_a_target_fails_and_says_why(bot: Bot) -> None:
    bot.rules(NOTIFY_TEST)
    bot.hook.fail_next(1)

    result = notify_test(bot, "hook")

    assert result.returncode == 1
    [line] = result.stdout.splitlines()
    assert line.startswith(f"hook: json://***@127.0.0.1:{bot.hook.port}/test?")
    assert ": FAILED: " in line
    assert bot.smtp.messages == []
    assert_no_secrets(result)


def test_notify_test_says_why_a_target_failed(bot: Bot) -> None:
    bot.rules(NOTIFY_TEST)
    bot.hook.fail_next(1)

    result = notify_test(bot, "hook")

    assert result.stdout.rstrip("\n").endswith(
        ": FAILED: Failed to send JSON POST notification: Internal server error., error=500."
    )


def test_notify_test_of_an_unknown_name_exits_2_with_a_did_you_mean(bot: Bot) -> None:
    bot.rules(NOTIFY_TEST)

    result = notify_test(bot, "mial")

    assert result.returncode == 2
    assert result.stderr == (
        "dmbot: error: no notifier named 'mial' in the rules file (did you mean 'mail'?)\n"
    )
    assert result.stdout == ""
    assert bot.hook.hits == 0
    assert bot.smtp.logins == []
