"""Settings name the variable in every error; logs never carry a secret."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import structlog

from dmbot.errors import ConfigError
from dmbot.logging import Redactor, configure_logging
from dmbot.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("DMBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DMBOT_INSTANCE_URL": "http://x.example"}, "DMBOT_INSTANCE_URL: must start with https"),
        ({"DMBOT_INSTANCE_URL": "mastodon.example"}, "DMBOT_INSTANCE_URL: must be a URL"),
        ({"DMBOT_POLL_INTERVAL": "5"}, "DMBOT_POLL_INTERVAL: Input should be greater than or"),
        ({"DMBOT_LOG_FORMAT": "xml"}, "DMBOT_LOG_FORMAT"),
    ],
)
def test_bad_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings()


def test_the_token_comes_from_a_file_and_never_from_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "token"
    secret.write_text("tok-from-file\n", encoding="utf-8")
    monkeypatch.setenv("DMBOT_ACCESS_TOKEN_FILE", str(secret))
    assert load_settings().token() == "tok-from-file"
    monkeypatch.delenv("DMBOT_ACCESS_TOKEN_FILE")
    with pytest.raises(ConfigError, match="DMBOT_ACCESS_TOKEN is not set"):
        load_settings().token()
    monkeypatch.setenv("DMBOT_ACCESS_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="DMBOT_ACCESS_TOKEN_FILE: cannot read"):
        load_settings().token()


def test_loopback_http_is_allowed_and_the_url_is_normalised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DMBOT_INSTANCE_URL", "http://127.0.0.1:8080/")
    assert load_settings().instance() == "http://127.0.0.1:8080"


def test_redaction_covers_known_secrets_url_credentials_and_bearer_headers() -> None:
    stream = io.StringIO()
    redactor = Redactor(["tok-12345"])
    configure_logging(fmt="json", level="INFO", redactor=redactor, stream=stream)
    try:
        log = structlog.get_logger("test")
        log.info("x", token="tok-12345", url="mailto://user:hunter22@smtp.example",
                 nested={"h": "Bearer abc.def"})
        logging.getLogger("apprise").warning("sending to json://u:pw12345@host/ with tok-12345")
    finally:
        logging.getLogger().handlers.clear()
        structlog.reset_defaults()
    text = stream.getvalue()
    assert "tok-12345" not in text
    assert "hunter22" not in text
    assert "pw12345" not in text
    assert "abc.def" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["url"] == "mailto://***@smtp.example"
    assert lines[1]["logger"] == "apprise"


def test_values_the_rules_take_from_the_environment_are_masked(tmp_path: Path) -> None:
    from dmbot.app import load_rules_or_fail
    from dmbot.settings import Settings

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        'version: 1\nnotifiers:\n  phone: "ntfys://ntfy.sh/${NTFY_TOPIC}"\n'
        "rules:\n  - name: all\n    do: [notify]\n",
        encoding="utf-8",
    )
    topic_file = tmp_path / "topic"
    topic_file.write_text("topic-from-a-file-42\n", encoding="utf-8")
    redactor = Redactor()
    settings = Settings(rules_file=rules)
    loaded = load_rules_or_fail(settings, {"NTFY_TOPIC_FILE": str(topic_file)}, redactor)
    assert loaded.notifiers["phone"].urls == ("ntfys://ntfy.sh/topic-from-a-file-42",)
    assert "topic-from-a-file-42" not in redactor.redact("sent to ntfys://ntfy.sh/topic-from-a-file-42")

    topic_file.unlink()
    with pytest.raises(ConfigError, match="NTFY_TOPIC_FILE: cannot read"):
        load_rules_or_fail(settings, {"NTFY_TOPIC_FILE": str(topic_file)}, redactor)
