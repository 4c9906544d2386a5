"""The Apprise adapter against real local receivers: what arrives is what the user sees."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import apprise
import pytest

from dmbot.actions import Notify
from dmbot.notifiers import NotifierConfig, Privacy
from dmbot.notify import (
    AppriseNotifier,
    _fit,
    _instantiate,
    is_valid_url,
    mask_url,
    target_key,
    url_secrets,
)
from dmbot.render import Notification, render
from test_render import make_event

from receivers import JsonReceiver, SmtpSink, body_text

PASSWORD = "s3cret-Pa55"
HTML = (
    '<p>Hi <span class="h-card"><a href="https://home.example/@me" class="u-url mention">'
    "@<span>me</span></a></span>, lunch?</p><p>Menu: <a href=\"https://food.example/menu\">"
    'https://food.example/menu</a><br>Tom &amp; Jerry&#39;s</p>'
)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink(user="bot", password=PASSWORD) as sink:
        yield sink


@pytest.fixture
def hook() -> Iterator[JsonReceiver]:
    with JsonReceiver() as receiver:
        yield receiver


def notifier(*urls: str, **fields: Any) -> NotifierConfig:
    return NotifierConfig(name="phone", urls=urls, **fields)


async def send(config: NotifierConfig, note: Notification) -> list[Any]:
    return list(await AppriseNotifier(timeout=15).send(config, note))


async def test_email_arrives_as_templated_plain_text(smtp: SmtpSink) -> None:
    config = notifier(smtp.apprise_url(to="me@example.com"), privacy=Privacy.FULL)
    action = Notify(rule="friends", to=("phone",), title="{sender.display_name} wrote",
                    body="{text}\n\n-- {status.url}")
    note = render(make_event(content=HTML), action, config)

    [outcome] = await send(config, note)

    assert outcome.ok, outcome.error
    [message] = smtp.wait_for(1)
    assert message["Subject"] == "Alice wrote"
    assert message["To"] == "me@example.com"
    assert message.get_content_type() == "text/plain"
    assert body_text(message) == (
        "Hi @me, lunch?\n\nMenu: https://food.example/menu\nTom & Jerry's\n\n"
        "-- https://example.social/@alice/100"
    )
    assert smtp.logins == [("bot", PASSWORD)]
    assert PASSWORD not in outcome.target
    assert outcome.target.startswith("mailto://bot:****@127.0.0.1:")
    assert outcome.key == target_key(config.urls[0])


async def test_json_gets_title_and_body(hook: JsonReceiver) -> None:
    config = notifier(hook.apprise_url("/dm"))
    note = render(make_event(content=HTML), Notify(rule="r", to=("phone",)), config)

    [outcome] = await send(config, note)

    assert outcome.ok, outcome.error
    [request] = hook.wait_for(1)
    assert request.path == "/dm"
    assert request.json["title"] == "DM from Alice (@alice@example.social)"
    assert request.json["message"] == note.body
    assert "<" not in request.json["message"]


async def test_content_warning_is_what_arrives(hook: JsonReceiver) -> None:
    config = notifier(hook.apprise_url())
    event = make_event(spoiler="spoilers for the finale", content="<p>the butler did it</p>")
    await send(config, render(event, Notify(rule="r", to=("phone",)), config))
    [request] = hook.wait_for(1)
    assert request.json["message"].startswith("CW: spoilers for the finale")
    assert "butler" not in str(request.json)


async def test_link_only_sends_no_message_text(hook: JsonReceiver, smtp: SmtpSink) -> None:
    config = notifier(hook.apprise_url(), smtp.apprise_url(), privacy=Privacy.LINK_ONLY)
    event = make_event(content="<p>my bank PIN is 1234</p>", display_name="Secret Sender")
    outcomes = await send(config, render(event, Notify(rule="r", to=("phone",)), config))
    assert all(o.ok for o in outcomes)
    [request] = hook.wait_for(1)
    [message] = smtp.wait_for(1)
    assert request.json["title"] == message["Subject"] == "New direct message"
    assert request.json["message"] == body_text(message) == "https://example.social/@alice/100"
    for seen in (str(request.json), message.as_string()):
        assert "PIN" not in seen
        assert "Secret Sender" not in seen


async def test_markdown_body_reaches_the_target_as_written(hook: JsonReceiver) -> None:
    config = notifier(hook.apprise_url())
    note = Notification("t", r"**bold** and \_escaped\_", body_format="markdown")
    [outcome] = await send(config, note)
    assert outcome.ok
    assert hook.wait_for(1)[0].json["message"] == note.body


async def test_one_outcome_per_target_in_url_order(hook: JsonReceiver, smtp: SmtpSink) -> None:
    urls = (hook.apprise_url("/one"), "nosuchscheme://x", smtp.apprise_url())
    outcomes = await send(notifier(*urls), Notification("t", "b"))
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].error == "not a valid Apprise URL"
    assert outcomes[1].target == "nosuchscheme://***"
    assert [o.key for o in outcomes] == [target_key(u) for u in urls]


async def test_refused_email_is_a_failed_outcome(smtp: SmtpSink) -> None:
    config = notifier(smtp.apprise_url())
    smtp.refuse_next(1, "451 4.3.0 mailbox busy")
    [refused] = await send(config, Notification("t", "first"))
    assert not refused.ok
    assert refused.error
    assert smtp.messages == []

    [accepted] = await send(config, Notification("t", "second"))
    assert accepted.ok
    assert body_text(smtp.wait_for(1)[0]) == "second"


async def test_permanent_refusal_too(smtp: SmtpSink) -> None:
    smtp.refuse_next(1, "554 5.7.1 rejected")
    [outcome] = await send(notifier(smtp.apprise_url()), Notification("t", "b"))
    assert not outcome.ok


async def test_http_error_is_a_failed_outcome_and_apprise_does_not_retry(
    hook: JsonReceiver,
) -> None:
    hook.fail_next(5)
    url = hook.apprise_url() + "?retry=3&wait=0"  # the user asked Apprise to retry: we don't
    [outcome] = await send(notifier(url), Notification("t", "b"))
    assert not outcome.ok
    assert outcome.error is not None
    assert "500" in outcome.error
    assert hook.hits == 1


async def test_optional_target_that_fails_is_not_delivered(hook: JsonReceiver) -> None:
    hook.fail_next(1)
    [outcome] = await send(notifier(hook.apprise_url() + "?optional=yes"), Notification("t", "b"))
    assert not outcome.ok


async def test_wrong_password_never_shows_it(caplog: pytest.LogCaptureFixture) -> None:
    with SmtpSink(user="bot", password="the-right-one") as sink:
        config = notifier(sink.apprise_url().replace("the-right-one", PASSWORD))
        with caplog.at_level(logging.DEBUG):
            [outcome] = await send(config, Notification("t", "b"))
    assert not outcome.ok
    assert set(sink.logins) == {("bot", PASSWORD)}  # it was tried, and refused
    assert sink.messages == []
    assert PASSWORD not in repr(outcome)
    assert PASSWORD not in caplog.text


async def test_unreachable_server(hook: JsonReceiver) -> None:
    port = hook.port
    hook.stop()
    [outcome] = await send(notifier(f"json://127.0.0.1:{port}/x"), Notification("t", "b"))
    assert not outcome.ok
    assert outcome.error


async def test_a_crashing_plugin_is_a_failed_outcome_with_secrets_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def explode(self: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"boom near {PASSWORD}")

    monkeypatch.setattr(apprise.Apprise, "async_notify", explode)
    url = f"json://bot:{PASSWORD}@127.0.0.1:9/x"
    [outcome] = await send(notifier(url), Notification("t", "b"))
    assert not outcome.ok
    assert outcome.error == "RuntimeError: boom near ***"


def test_long_bodies_are_cut_to_what_the_target_takes() -> None:
    plugin = _instantiate("json://127.0.0.1:9/x")
    plugin.body_maxlen = 20
    title, body = _fit(plugin, Notification("title", "word " * 10))
    assert title == "title"
    assert len(body) <= 20
    assert body.endswith("…")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"mailto://bot:{PASSWORD}@127.0.0.1:2525?mode=insecure&from=a@example.com&to=b@example.com",
         "mailto://bot:****@127.0.0.1:2525/"),
        ("json://127.0.0.1:8080/hook?+Authorization=Bearer%20tok3nvalue", "%2BAuthorization=***"),
        ("tgram://123456789:ABCdefGHIjklMNOpqr/12345678", "tgram://1...r/12345678"),
        ("nosuchscheme://user:pw@host", "nosuchscheme://***"),
        ("user:password@host", "***"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    shown = mask_url(url)
    assert masked in shown
    for secret in url_secrets(url):
        assert secret not in shown


@pytest.mark.parametrize(
    ("url", "secrets", "not_secret"),
    [
        (f"mailto://bot:{PASSWORD}@127.0.0.1:2525?mode=insecure&from=a@example.com&to=b@example.com",
         {PASSWORD}, {"127.0.0.1", "insecure", "a@example.com", "bot"}),
        ("json://127.0.0.1:8080/hook?+Authorization=Bearer%20tok3nvalue",
         {"Bearer tok3nvalue", "Bearer%20tok3nvalue"}, {"hook", "127.0.0.1"}),
        ("ntfys://tk_abcdefgh@ntfy.sh/topic", {"tk_abcdefgh"}, {"ntfy.sh", "topic"}),
        ("tgram://123456789:ABCdefGHIjklMNOpqr/12345678",
         {"123456789:ABCdefGHIjklMNOpqr", "ABCdefGHIjklMNOpqr"}, {"12345678"}),
        ("https://discord.com/api/webhooks/4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
         {"4174216298", "JHMHI8qBe7bk2ZwO5U711o3dV_js"}, {"discord.com", "webhooks"}),
        ("nosuchscheme://user:pw1234@host/tok3n", {"pw1234", "tok3n"}, {"host"}),
        ("json://a:b@127.0.0.1/x", set(), {"b"}),  # shorter than 4 characters: not redacted
    ],
)
def test_url_secrets(url: str, secrets: set[str], not_secret: set[str]) -> None:
    found = url_secrets(url)
    assert secrets <= found
    assert not (not_secret & found)
    assert all(len(s) >= 4 for s in found)


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("json://127.0.0.1:8080/x", True),
        ("mailto://bot:pw@127.0.0.1:2525?from=a@example.com&to=b@example.com", True),
        ("ntfys://ntfy.sh/topic", True),
        ("nosuchscheme://x", False),
        ("mailto://", False),
        ("not a url", False),
        ("", False),
    ],
)
def test_is_valid_url(url: str, valid: bool) -> None:
    assert is_valid_url(url) is valid
