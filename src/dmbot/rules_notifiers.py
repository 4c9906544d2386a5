"""The rules file's `notifiers:` section: names to `NotifierConfig`s, every URL checked.

A notifier is a URL, a list of URLs, or a mapping with `urls` and `NotifierConfig`'s other
fields. `${VAR}` in a URL is expanded from the environment, so the URLs usually hold secrets
(tokens, passwords). Apprise checks each one when the rules load, without touching the
network, and the errors name the notifier, never the URL.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping

import apprise

from dmbot.notifiers import NotifierConfig
from dmbot.yaml_source import (
    Key,
    Location,
    SourceMap,
    check_name,
    did_you_mean,
    expand_env,
    validate,
)

_SCHEME = re.compile(r"^\s*([A-Za-z0-9]{1,32})://")


def notifier_configs(
    raw: Mapping[str, object], src: SourceMap, env: Mapping[str, str]
) -> dict[str, NotifierConfig]:
    """The `notifiers:` section: name -> URL, list of URLs, or NotifierConfig's fields."""
    found = {}
    for name, value in raw.items():
        at: tuple[Key, ...] = ("notifiers", name)
        check_name("notifier", name, src.key_at(at))
        settings: dict[str, object] = {}
        urls, urls_at = value, at
        if isinstance(value, dict):
            if "name" in value:
                raise src.key_at((*at, "name")).error("unknown key 'name' (the key above is it)")
            settings = dict(value)
            urls, urls_at = settings.pop("urls", None), (*at, "urls")
            if urls is None:
                raise src.at(at).error(f"notifier {name!r} has no 'urls'")
        listed = urls if isinstance(urls, list) else [urls]
        if not listed:
            raise src.at(urls_at).error(f"notifier {name!r} has no URLs")
        expanded = []
        for index, url in enumerate(listed):
            where = src.at((*urls_at, index) if isinstance(urls, list) else urls_at)
            if not isinstance(url, str):
                raise where.error(f"notifier {name!r}: a URL is text, such as ntfys://ntfy.sh/x")
            label = f"notifier {name!r}" + (f" URL {index + 1}" if len(listed) > 1 else "")
            expanded.append(_apprise_url(expand_env(url, env, where), label, where))
        found[name] = validate(NotifierConfig, {**settings, "name": name, "urls": expanded},
                               src, at)
    return found


def _apprise_url(url: str, label: str, where: Location) -> str:
    """Check that Apprise can use `url` (no network); errors never show the URL itself."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        raise where.error(f"{label} is not a URL (it needs a scheme, as in ntfys://...)")
    with warnings.catch_warnings():  # Apprise's e-mail plugin imports the deprecated imghdr
        warnings.simplefilter("ignore", DeprecationWarning)
        service = apprise.Apprise.instantiate(url)
        known = set(apprise.plugins.N_MGR.schemas())  # type: ignore[no-untyped-call]  # untyped
    if service is not None:
        return url
    name = scheme.group(1).lower()
    if name in ("http", "https"):
        raise where.error(
            f"{label}: Apprise does not recognise this {name}:// URL as a service"
            " (for a plain webhook write json:// or jsons://)"
        )
    if name not in known:
        raise where.error(
            f"{label}: Apprise does not know the scheme '{name}://'{did_you_mean(name, known)}"
        )
    raise where.error(
        f"{label}: Apprise cannot use this {name}:// URL (check it against Apprise's documentation)"
    )
