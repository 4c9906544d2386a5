"""Settings: environment variables (`DMBOT_*`), a `.env` file, and secret files.

Built once in `cli.main` and validated before anything starts. Every problem becomes a
`ConfigError` whose message names the variable, never its secret value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dmbot.errors import ConfigError

__all__ = ["ConfigError", "Settings", "load_settings"]

ENV_PREFIX = "DMBOT_"
_SECRET_FIELDS = frozenset({"access_token"})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        hide_input_in_errors=True,
    )

    instance_url: str | None = None
    access_token: SecretStr | None = None
    access_token_file: Path | None = None
    rules_file: Path = Path("rules.yaml")
    data_dir: Path = Path("data")
    poll_interval: int = Field(default=60, ge=10, le=86_400)
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    dry_run: bool = False
    include_own_messages: bool = False
    overlap_seconds: int = Field(default=300, ge=0, le=6 * 3600)
    sweep_interval: int = Field(default=3600, ge=60, le=7 * 86_400)
    sweep_horizon_days: int = Field(default=7, ge=1, le=90)
    bootstrap_limit: int = Field(default=40, ge=0, le=40)
    give_up_after_hours: float = Field(default=24, gt=0, le=24 * 30)
    http_port: int | None = Field(default=None, ge=1, le=65_535)
    streaming: bool = True

    @field_validator("instance_url")
    @classmethod
    def _https_or_loopback(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if not parts.hostname:
            raise ValueError("must be a URL such as https://mastodon.social")
        loopback_http = parts.scheme == "http" and _is_loopback(parts.hostname)
        if parts.scheme != "https" and not loopback_http:
            raise ValueError("must start with https:// (plain http only for a loopback address)")
        return f"{parts.scheme}://{parts.netloc}".rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def instance(self) -> str:
        """The instance URL; only the commands that talk to Mastodon need it."""
        if self.instance_url is None:
            raise ConfigError(
                "DMBOT_INSTANCE_URL is not set: give your server's address, "
                "e.g. https://mastodon.social"
            )
        return self.instance_url

    def token(self) -> str:
        """The token, from `DMBOT_ACCESS_TOKEN` or the file `DMBOT_ACCESS_TOKEN_FILE` names."""
        if self.access_token is not None and self.access_token.get_secret_value().strip():
            return self.access_token.get_secret_value().strip()
        if self.access_token_file is not None:
            try:
                token = self.access_token_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ConfigError(
                    f"DMBOT_ACCESS_TOKEN_FILE: cannot read {self.access_token_file}: "
                    f"{error.strerror}"
                ) from None
            if token:
                return token
            raise ConfigError(f"DMBOT_ACCESS_TOKEN_FILE: {self.access_token_file} is empty")
        raise ConfigError(
            "DMBOT_ACCESS_TOKEN is not set: create a token in your Mastodon account under "
            "Settings → Development (scopes read:statuses write:conversations) and set it, "
            "or point DMBOT_ACCESS_TOKEN_FILE at a file holding it"
        )


class FileBackedEnv(Mapping[str, str]):
    """The environment for `${VAR}` in the rules file, where `VAR_FILE=/path` also defines
    `VAR` from that file (Docker secrets), unless `VAR` itself is set. Files are read only
    when a rule asks for the variable, so unrelated `*_FILE` variables never matter."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        plain: Mapping[str, str] = (
            environ._environ if isinstance(environ, FileBackedEnv) else environ
        )
        self._environ: dict[str, str] = dict(plain)
        self.read: set[str] = set()  # the names `${VAR}` asked for: their values are secrets

    def values_read(self) -> list[str]:
        """What the rules took from the environment: masked in every log line."""
        return [self[name] for name in sorted(self.read)]

    def __getitem__(self, name: str) -> str:
        if name in self._environ:
            self.read.add(name)
            return self._environ[name]
        path = self._environ.get(f"{name}_FILE")
        if path is None:
            raise KeyError(name)
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as error:
            raise ConfigError(f"{name}_FILE: cannot read {path}: {error.strerror}") from None
        self.read.add(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)  # the variables as set; `VAR` behind `VAR_FILE` is looked up

    def __len__(self) -> int:
        return len(self._environ)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (
            name in self._environ or f"{name}_FILE" in self._environ
        )


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's errors into one sentence naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        name = ENV_PREFIX + str(first["loc"][0]).upper() if first["loc"] else "settings"
        if first["type"] == "missing":
            raise ConfigError(f"{name} is not set") from None
        shown = "" if str(first["loc"][0]) in _SECRET_FIELDS else _shown(first.get("input"))
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}{shown}") from None


def _shown(value: object) -> str:
    return f" (got {value!r})" if isinstance(value, str | int | float) else ""
