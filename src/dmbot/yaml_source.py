"""The rules file as data with positions: every value remembers its line and column.

PyYAML composes the node tree; we build plain Python values from it ourselves, so that
- scalars follow YAML 1.2's core schema: only `true`/`false` are booleans (`no` stays the
  language code "no", `on` stays "on"), `22:00` stays a string, dates stay strings;
- a key given twice is an error instead of "the last one wins";
- every value and key has a `Location`, so any later check can say `file:line:column`.

`${VAR}` expansion lives here too, because it is the one place where the file's text meets
the environment; callers decide which values it applies to (notifier URLs, list file paths).
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeAlias, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

Key: TypeAlias = str | int
KeyPath: TypeAlias = tuple[Key, ...]

M = TypeVar("M", bound=BaseModel)

_MAX_NODES = 200_000  # a YAML alias bomb expands exponentially; a real rules file is small

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL: Mapping[str, bool] = MappingProxyType(
    {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
)
_INT = re.compile(r"^[-+]?[0-9]+$")
_INT_OCT = re.compile(r"^0o[0-7]+$")
_INT_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_VARIABLE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_MAX_FILE = 20 * 1024 * 1024  # Mastodon's own limit for an imported list


class RulesError(Exception):
    """A problem in the rules file or a list file, with where it is.

    `files` and `source_digest` describe what the failed load had read, so that a reloader
    can tell when it is worth trying again.
    """

    def __init__(
        self, path: Path, line: int | None, column: int | None, message: str
    ) -> None:
        super().__init__(path, line, column, message)
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        self.files: tuple[Path, ...] = (path,)
        self.source_digest = ""

    def __str__(self) -> str:
        where = str(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Location:
    path: Path
    line: int | None = None
    column: int | None = None

    def error(self, message: str) -> RulesError:
        return RulesError(self.path, self.line, self.column, message)

    def __str__(self) -> str:
        return f"line {self.line}" if self.line is not None else str(self.path)


@dataclass(frozen=True, slots=True)
class SourceMap:
    """Where each value (and each mapping key) of a parsed document starts."""

    path: Path
    values: Mapping[KeyPath, Location]
    keys: Mapping[KeyPath, Location]

    def at(self, path: Sequence[Key]) -> Location:
        """The value at `path`, or the nearest enclosing value that has a position."""
        for end in range(len(path), -1, -1):
            found = self.values.get(tuple(path[:end]))
            if found is not None:
                return found
        return Location(self.path)

    def key_at(self, path: Sequence[Key]) -> Location:
        """The key that introduces the value at `path` (the value itself for list items)."""
        return self.keys.get(tuple(path)) or self.at(path)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def source_digest(sources: Iterable[tuple[Path, bytes | None]]) -> str:
    """One hash over the files a load read (None: the file was missing)."""
    digest = hashlib.sha256()
    for path, content in sources:
        digest.update(str(path).encode() + b"\0")
        digest.update(b"-" if content is None else str(len(content)).encode() + b":" + content)
    return digest.hexdigest()


def check_name(what: str, name: str, where: Location) -> None:
    """Names that rules refer to (notifiers, lists, conditions) are simple words."""
    if not _IDENTIFIER.match(name):
        raise where.error(
            f"{what} name {name!r} must be letters, digits, '_', '-' or '.' (no spaces)"
        )


def _read(path: Path) -> tuple[bytes | None, str]:
    """A file's bytes, or None and why not."""
    try:
        if path.stat().st_size > _MAX_FILE:
            return None, f"it is larger than {_MAX_FILE} bytes"
        return path.read_bytes(), ""
    except OSError as exc:
        return None, exc.strerror or type(exc).__name__


def current_digest(paths: Iterable[Path]) -> str:
    """The digest `SourceFiles` would give for these files as they are on disk now."""
    return source_digest((path, _read(path)[0]) for path in paths)


class SourceFiles:
    """The files one load read, in order, with their bytes (None: missing or unreadable)."""

    def __init__(self) -> None:
        self.read: dict[Path, bytes | None] = {}

    def load(self, path: Path, declared: Location, what: str) -> bytes:
        content, why = (self.read[path], "") if path in self.read else _read(path)
        self.read[path] = content
        if content is None:
            raise declared.error(f"cannot read {what} {str(path)!r}: {why or 'unreadable'}")
        return content

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(self.read)

    @property
    def digest(self) -> str:
        return source_digest(self.read.items())


def parse_yaml(text: str, path: Path) -> tuple[object, SourceMap]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot parse"
        if exc.context and problem.startswith("but "):
            problem = f"{exc.context}, {problem}"
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        hint = " (check the indentation)" if "block" in problem else ""
        raise RulesError(path, line, column, f"invalid YAML: {problem}{hint}") from None
    except yaml.YAMLError as exc:
        raise RulesError(path, None, None, f"invalid YAML: {exc}") from None
    if root is None:
        raise RulesError(path, None, None, "the file is empty (it needs 'version: 1' and 'rules:')")
    builder = _Builder(path)
    value = builder.build(root, ())
    return value, SourceMap(path, builder.values, builder.keys)


class _Builder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: dict[KeyPath, Location] = {}
        self.keys: dict[KeyPath, Location] = {}
        self.count = 0
        self.active: set[int] = set()

    def where(self, node: yaml.Node) -> Location:
        mark = node.start_mark
        return Location(self.path, mark.line + 1, mark.column + 1)

    def build(self, node: yaml.Node, at: KeyPath) -> object:
        self.count += 1
        if self.count > _MAX_NODES:
            raise self.where(node).error("too many values (a runaway YAML alias?)")
        self.values[at] = self.where(node)
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        if id(node) in self.active:
            raise self.where(node).error("a YAML alias refers to itself")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*at, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, yaml.MappingNode)
            return self.mapping(node, at)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, at: KeyPath) -> dict[str, object]:
        result: dict[str, object] = {}
        first_seen: dict[str, Location] = {}
        for key_node, value_node in node.value:
            where = self.where(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                raise where.error("a key must be a plain name, not a list or mapping")
            key = str(key_node.value)
            if key == "<<" and key_node.style is None:
                raise where.error("YAML merge keys ('<<') are not supported; use named conditions")
            if key in first_seen:
                raise where.error(f"duplicate key {key!r} (first given on {first_seen[key]})")
            first_seen[key] = where
            self.keys[(*at, key)] = where
            result[key] = self.build(value_node, (*at, key))
        return result


def _scalar(node: yaml.ScalarNode) -> object:
    text: str = node.value
    if node.style is not None:  # quoted, literal or folded: always a string
        return text
    if _NULL.match(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.match(text):
        return int(text)
    if _INT_OCT.match(text):
        return int(text[2:], 8)
    if _INT_HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    return text


def expand_env(value: str, env: Mapping[str, str], where: Location) -> str:
    """`${VAR}` and `${VAR:-default}` from `env`; `$${` is a literal `${`; other `$` stay."""

    def substitute(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        body = match.group(1)
        if body is None:
            raise where.error("unterminated '${' (write '$${' for a literal '${')")
        name, sep, default = body.partition(":-")
        if not _NAME.match(name):
            raise where.error(
                f"bad variable reference '${{{body}}}' (use ${{NAME}} or ${{NAME:-default}})"
            )
        found = env.get(name)
        if sep:
            return found if found else default
        if found is None:
            raise where.error(
                f"environment variable {name!r} is not set"
                f" (set it, or write ${{{name}:-default}} for a fallback)"
            )
        return found

    return _VARIABLE.sub(substitute, value)


def validate(model: type[M], data: object, src: SourceMap, at: KeyPath = ()) -> M:
    """`model.model_validate(data)`, with the first problem reported at its file position.

    A misspelt key also makes the key it was meant to be "missing"; only the misspelling is
    reported then, with its "did you mean".
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        misspelt = {tuple(e["loc"][:-1]) for e in errors if e["type"] == "extra_forbidden"}
        errors = [e for e in errors
                  if e["type"] != "missing" or tuple(e["loc"][:-1]) not in misspelt]
        problems = [_problem(model, error, src, at) for error in errors]
        problems.sort(key=lambda e: (e.line or 0, e.column or 0))
        raise problems[0] from None


def _problem(model: type[BaseModel], error: Any, src: SourceMap, at: KeyPath) -> RulesError:
    loc: KeyPath = tuple(part for part in error["loc"] if isinstance(part, str | int))
    kind, label = error["type"], (repr(loc[-1]) if loc and isinstance(loc[-1], str) else "value")
    if kind == "extra_forbidden":
        known = _keys_of(model, loc[:-1])
        where = src.key_at((*at, *loc))
        return where.error(f"unknown key {loc[-1]!r}{did_you_mean(str(loc[-1]), known)}")
    if kind == "missing":
        return src.at((*at, *loc[:-1])).error(f"missing key {loc[-1]!r}")
    messages = {
        "bool_type": "must be true or false",
        "string_type": "must be text (put it in quotes)",
        "int_type": "must be a whole number",
        "float_type": "must be a number",
        "dict_type": "must be a mapping (key: value)",
        "model_type": "must be a mapping (key: value)",
        "list_type": "must be a list",
        "tuple_type": "must be a list",
        "string_too_short": "must not be empty",
        "greater_than_equal": f"must be at least {error.get('ctx', {}).get('ge')}",
        "less_than_equal": f"must be at most {error.get('ctx', {}).get('le')}",
    }
    where = src.at((*at, *loc))
    expected = str(error.get("ctx", {}).get("expected", ""))
    if kind in ("literal_error", "enum") and expected:
        choices = re.findall(r"'([^']*)'", expected) or [expected]
        hint = did_you_mean(str(error.get("input")), choices) if choices != [expected] else ""
        return where.error(f"{label} must be {expected}{hint}")
    if kind in messages:
        secret = bool(at + loc) and (at + loc)[0] == "notifiers" and kind != "bool_type"
        return where.error(f"{label} {messages[kind]}{'' if secret else _got(error['input'])}")
    text = str(error["msg"])
    return where.error(f"{label}: {text[:1].lower()}{text[1:]}")


def _got(value: object) -> str:
    if isinstance(value, bool):
        return f", not {str(value).lower()}"
    if value is None:
        return ", not null"
    if isinstance(value, str | int | float):
        text = repr(value)
        return f", not {text if len(text) <= 40 else text[:37] + '...'}"
    return f", not a {'mapping' if isinstance(value, dict) else 'list'}"


def _keys_of(model: type[BaseModel], loc: KeyPath) -> list[str]:
    current: object = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            fields = {info.alias or name: info for name, info in current.model_fields.items()}
            current = fields[part].annotation if part in fields else None
        else:  # an item of a list or a value of a dict: the last type argument
            args = [arg for arg in get_args(current) if arg is not type(None)]
            current = args[-1] if args else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []
