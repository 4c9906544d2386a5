"""Hot reload: keep the last good rules, pick up good edits, report a bad edit once.

`check()` is cheap enough to call every poll: it stats the watched files (the rules file and
every list file it read) and only when a stat changed does it hash their content; only when
the content differs from what the running rules were loaded from does it load again. So a
`touch` does nothing, and an edit that is saved and reverted does nothing either.
`check(force=True)` (SIGHUP) reloads regardless and reports again.

While the file is invalid the reloader watches the files the failed load read, so fixing
the file (or creating the list file it was missing) is noticed the same way. The caller logs:
`reloaded` with `change` (see `describe_change`), `invalid` with `error` when `first_report`.

An edit that needs a token scope known to be missing (`missing_scopes`, learnt by probing
at start) is invalid too, reported at the rule or list that needs it: accepted, it would
make every poll fail with 403 and no message would be handled until the next edit.

Limits: an edit that keeps both size and modification time (same-second rewrite on a coarse
filesystem) is noticed only by `force`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dmbot.rules import RulesError, RuleSet, describe_change, load_rules, scope_error
from dmbot.yaml_source import current_digest

Stamp = tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    kind: Literal["unchanged", "reloaded", "invalid"]
    rules: RuleSet  # the rules in force after this check
    change: str = ""  # for "reloaded": one line, never a secret
    error: RulesError | None = None  # for "invalid"
    first_report: bool = False  # for "invalid": this error has not been reported before


class RulesReloader:
    def __init__(
        self, path: Path, env: Mapping[str, str], initial: RuleSet,
        missing_scopes: Iterable[str] = (),
    ) -> None:
        self.path = path
        self.env = env
        self.current = initial
        self.missing_scopes = frozenset(missing_scopes)  # scopes the token is known to lack
        self._files = initial.watched_files
        self._digest = initial.source_digest
        self._stamps: dict[Path, Stamp] = {}  # empty: the next check hashes once
        self._error: RulesError | None = None

    def check(self, force: bool = False) -> ReloadOutcome:
        if not force:
            stamps = {path: _stamp(path) for path in self._files}
            if stamps == self._stamps:
                return self._quiet()
            if current_digest(self._files) == self._digest:
                self._stamps = stamps
                return self._quiet()
        return self._load(force)

    def _load(self, force: bool) -> ReloadOutcome:
        self._stamps = {}
        try:
            new = load_rules(self.path, self.env)
            lacking = scope_error(new, self.missing_scopes)
            if lacking is not None:
                lacking.files, lacking.source_digest = new.watched_files, new.source_digest
                raise lacking
        except RulesError as error:
            first = force or self._error is None or str(error) != str(self._error)
            self._error = error
            self._files, self._digest = error.files, error.source_digest
            return ReloadOutcome("invalid", self.current, error=error, first_report=first)
        old, self.current, self._error = self.current, new, None
        self._files, self._digest = new.watched_files, new.source_digest
        return ReloadOutcome("reloaded", new, change=describe_change(old, new))

    def _quiet(self) -> ReloadOutcome:
        if self._error is not None:
            return ReloadOutcome("invalid", self.current, error=self._error)
        return ReloadOutcome("unchanged", self.current)


def _stamp(path: Path) -> Stamp:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)
