"""Delivering a Notification through Apprise, one outcome per target URL (the I/O edge).

`AppriseNotifier` is the only code that calls Apprise to send. It builds one Apprise object
per URL and call, so every URL gets its own outcome (Apprise's own result objects count a
service whose URL says `optional=yes` as a success; we look at the attempts instead) and a
URL that fails to load fails alone. Apprise's retries are switched off whatever the URL says
(`?retry=3`): the outbox retries with backoff, and stacked retries would multiply.

Apprise URLs hold secrets (SMTP passwords, bot tokens, webhook ids). Nothing here logs, and
what leaves this module shows a URL only through Apprise's privacy rendering (`mask_url`);
error texts are scrubbed with `url_secrets`, which the log redaction also uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import warnings
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import apprise

from dmbot.notifiers import NotifierConfig
from dmbot.render import Notification
from dmbot.text import truncate

DEFAULT_TIMEOUT = 30.0
MIN_SECRET = 4
_SCHEME = re.compile(r"^\s*([a-z0-9]{1,32})://", re.IGNORECASE)
_ERROR_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})
_MAX_ERROR = 300


@dataclass(frozen=True)
class TargetOutcome:
    target: str  # the URL as Apprise renders it for privacy: secrets masked
    ok: bool
    error: str | None = None
    key: str = ""  # `target_key` of the URL, to record which targets a row was delivered to


class Notifier(Protocol):
    async def send(self, notifier: NotifierConfig, note: Notification) -> list[TargetOutcome]:
        """Deliver `note` to every URL of `notifier`; one outcome per URL, in URL order."""
        ...


class AppriseNotifier:
    """`Notifier` through Apprise's async API. Never raises for a delivery problem."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._timeout = timeout

    async def send(self, notifier: NotifierConfig, note: Notification) -> list[TargetOutcome]:
        return list(await asyncio.gather(*(self._send_one(url, note) for url in notifier.urls)))

    async def _send_one(self, url: str, note: Notification) -> TargetOutcome:
        key = target_key(url)
        masked = _opaque(url)
        try:
            asset = apprise.AppriseAsset(service_timeout=self._timeout)
            plugin = _instantiate(url, asset)
            if plugin is None:
                return TargetOutcome(masked, ok=False, error="not a valid Apprise URL", key=key)
            masked = _privacy_url(plugin)
            plugin.retry = 0  # the outbox retries, with backoff; Apprise must not as well
            title, body = _fit(plugin, note)
            sender = apprise.Apprise(asset=asset)
            sender.add(plugin)
            result = await sender.async_notify(
                body=body, title=title, body_format=note.body_format
            )
            ok, error = _outcome(result)
        except Exception as e:  # a plugin bug is one failed target, not a crashed cycle
            ok, error = False, f"{type(e).__name__}: {e}"
        if error is not None:
            error = truncate(_redact(error, url), _MAX_ERROR)
        return TargetOutcome(masked, ok=ok, error=error, key=key)


def target_key(url: str) -> str:
    """A stable short id of a URL, so the outbox can remember which targets a notification
    reached without storing the URL (and its secrets). Not for logs: it is a hash of one."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def is_valid_url(url: str) -> bool:
    """Whether Apprise can load `url` (no network)."""
    try:
        return _instantiate(url) is not None
    except Exception:
        return False


def mask_url(url: str) -> str:
    """`url` as Apprise renders it for privacy; `scheme://***` when Apprise can't load it.

    Apprise masks what its plugins declare private, but shows the extra query arguments some
    plugins accept (`json://...?+Authorization=Bearer ...` headers); their values are
    masked here as well.
    """
    try:
        plugin = _instantiate(url)
        if plugin is not None:
            return _privacy_url(plugin)
    except Exception:  # noqa: S110  # falls through to the opaque form below
        pass
    return _opaque(url)


def url_secrets(url: str) -> set[str]:
    """The substrings of `url` that must not appear in logs or errors (>= 4 characters).

    A part of the URL (user, password, host, path segment, query value) is secret when
    Apprise uses it (it is in the plain rendering) but masks it (it is not in the privacy
    rendering); the password always is, and so is the value of any query argument the plugin
    doesn't declare (headers and other pass-through values). When Apprise can't load the URL,
    every part but the scheme and host counts. Each secret comes as written and
    percent-encoded, since logs may hold either.
    """
    parts = _url_parts(url)
    secrets = {parts.password}
    try:
        plugin = _instantiate(url)
    except Exception:
        plugin = None
    if plugin is None:
        secrets.update([parts.user, *parts.path, *(v for _, v in parts.query)])
    else:
        used = unquote(str(plugin.url(privacy=False)))
        shown = unquote(str(plugin.url(privacy=True)))
        secrets.update(v for v in parts.candidates if v in used and v not in shown)
        public = _public_args(plugin)
        secrets.update(v for k, v in parts.query if k.lower() not in public)
    found = set()
    for secret in secrets:
        if len(secret) >= MIN_SECRET:
            found.update({secret, quote(secret, safe=""), quote(secret)})
    return found


# -- helpers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parts:
    user: str
    password: str
    netloc: tuple[str, ...]  # host[:port] whole and split: a token may sit there (tgram://)
    path: tuple[str, ...]
    query: tuple[tuple[str, str], ...]

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.user, self.password, *self.netloc, *self.path, *(v for _, v in self.query))


def _url_parts(url: str) -> _Parts:
    try:
        split = urlsplit(url.strip())
        netloc = split.netloc
    except ValueError:
        return _Parts("", "", (), tuple(url.split("/")), ())
    userinfo, _, hostport = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return _Parts(
        unquote(user),
        unquote(password),
        tuple(unquote(s) for s in {hostport, *hostport.split(":")} if s),
        tuple(unquote(s) for s in split.path.split("/") if s),
        tuple(parse_qsl(split.query, keep_blank_values=False)),
    )


def _opaque(url: str) -> str:
    """`scheme://***`: all that is safe to show of a URL Apprise can't render."""
    match = _SCHEME.match(url)
    return f"{match.group(1).lower()}://***" if match else "***"


def _privacy_url(plugin: Any) -> str:
    rendered = str(plugin.url(privacy=True))
    split = urlsplit(rendered)
    if not split.query:
        return rendered
    public = _public_args(plugin)
    pairs = parse_qsl(split.query, keep_blank_values=True)
    query = urlencode([(k, v if k.lower() in public else "***") for k, v in pairs], safe="*@")
    return urlunsplit(split._replace(query=query))


def _public_args(plugin: Any) -> set[str]:
    """Query arguments the plugin declares and doesn't mark private (`mode`, `format`, ...):
    Apprise may drop them from its rendering, which doesn't make them secret."""
    args = getattr(plugin, "template_args", None)
    tokens = getattr(plugin, "template_tokens", None)
    if not isinstance(args, dict):
        return set()
    tokens = tokens if isinstance(tokens, dict) else {}
    public = set()
    for name, spec in args.items():
        if not isinstance(spec, dict) or spec.get("private"):
            continue
        alias = spec.get("alias_of")
        target = tokens.get(alias) if isinstance(alias, str) else None
        if isinstance(target, dict) and target.get("private"):
            continue
        public.add(str(name).lower())
    return public


def _instantiate(url: str, asset: Any = None) -> Any:
    """Apprise's plugin for `url`, or None.

    Apprise logs an input that doesn't look like a URL verbatim ("Unsupported URL: ..."),
    secrets and all, so such input never reaches it; for real URLs it masks its own logs.

    The first call loads Apprise's plugins, and one of them imports `imghdr`, deprecated
    since Python 3.11: that one warning is silenced here, where it is known to come from.
    """
    if not _SCHEME.match(url):
        return None
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="'imghdr' is deprecated", category=DeprecationWarning
        )
        return apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)


def _fit(plugin: Any, note: Notification) -> tuple[str, str]:
    """Title and body cut to what the target accepts, with a visible `…` rather than a
    silent cut (or a message split in several) further down the line."""
    title, body = note.title, note.body
    title_max = _int(getattr(plugin, "title_maxlen", 0))
    body_max = _int(getattr(plugin, "body_maxlen", 0))
    if title_max > 0:
        title = truncate(title, title_max)
    elif title and body_max > 0:
        body_max = max(0, body_max - len(title) - 2)  # the title goes into the body
    if body_max > 0:
        body = truncate(body, body_max)
    return title, body


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _outcome(result: Any) -> tuple[bool, str | None]:
    """(delivered?, why not) from what `async_notify` returned: an `AppriseResult` in
    Apprise 2.x, a bool or None in 1.x."""
    if result is None or isinstance(result, bool):
        return bool(result), None if result else "Apprise reported a failure"
    services = list(getattr(result, "results", ()) or ())
    if not services:
        status = getattr(getattr(result, "status", None), "name", "FAILURE")
        return False, f"nothing was sent ({status})"
    service = services[0]
    attempts = list(getattr(service, "attempts", ()) or ())
    # An attempt's own status, not the service's: `optional=yes` makes a failure "succeed".
    if any(getattr(getattr(a, "status", None), "name", "") == "SUCCESS" for a in attempts):
        return True, None
    messages = [
        str(getattr(entry, "message", ""))
        for entry in _logs(service)
        if str(getattr(entry, "level", "")).upper() in _ERROR_LEVELS
    ]
    status = getattr(getattr(service, "status", None), "name", "FAILURE")
    if messages:
        return False, "; ".join(dict.fromkeys(m for m in messages if m))
    return False, "timed out" if status == "TIMEOUT" else "delivery failed"


def _logs(service: Any) -> list[Any]:
    try:
        return list(service.logs())
    except Exception:
        return []


def _redact(text: str, url: str) -> str:
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
