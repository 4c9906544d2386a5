"""The rules file as YAML: 1.2 scalars, duplicate keys, aliases, positions, ${VAR}."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmbot.yaml_source import Location, RulesError, expand_env, parse_yaml

FILE = Path("rules.yaml")


@pytest.mark.parametrize(("text", "value"), [
    ("no", "no"), ("yes", "yes"), ("on", "on"), ("off", "off"), ("y", "y"),  # not booleans
    ("true", True), ("False", False), ("~", None), ("null", None), ("", None),
    ("22:00", "22:00"), ("2024-01-31", "2024-01-31"),  # not sexagesimal, not a date object
    ("12", 12), ("-3", -3), ("0x1F", 31), ("0o17", 15), ("1.5", 1.5), ("1e3", 1000.0),
    ("012", 12), ('"true"', "true"), ("'12'", "12"), ("|\n  text\n", "text\n"),
])
def test_scalars_follow_yaml_1_2(text: str, value: object) -> None:
    parsed, _ = parse_yaml(f"key: {text}\n", FILE)
    assert parsed == {"key": value}


def test_every_value_and_key_has_a_position() -> None:
    parsed, src = parse_yaml("a:\n  - x\n  - {b: [1, 2]}\n", FILE)
    assert parsed == {"a": ["x", {"b": [1, 2]}]}
    assert src.at(("a", 1, "b", 1)) == Location(FILE, 3, 13)
    assert src.key_at(("a", 1, "b")) == Location(FILE, 3, 6)
    assert src.at(("a", 1, "nope", 7)) == Location(FILE, 3, 5)  # nearest known value


@pytest.mark.parametrize(("text", "message"), [
    ("a: 1\nb: 2\na: 3\n", "rules.yaml:3:1: duplicate key 'a' (first given on line 1)"),
    ("a: &x [*x]\n", "rules.yaml:1:4: a YAML alias refers to itself"),
    ("? [a]\n: 1\n", "rules.yaml:1:3: a key must be a plain name, not a list or mapping"),
    ("a: [\n", "rules.yaml:2:1: invalid YAML: expected the node content, but found"
     " '<stream end>'"),
    ("a: 1\n---\nb: 2\n", "rules.yaml:2:1: invalid YAML: expected a single document in the"
     " stream, but found another document"),
])
def test_yaml_problems(text: str, message: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_yaml(text, FILE)
    assert str(caught.value) == message


def test_an_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    with pytest.raises(RulesError, match="too many values"):
        parse_yaml("\n".join(lines) + "\n", FILE)


@pytest.mark.parametrize(("value", "expanded"), [
    ("ntfys://ntfy.sh/${TOPIC}", "ntfys://ntfy.sh/t0p1c"),
    ("${MISSING:-fallback}", "fallback"),
    ("${EMPTY:-fallback}", "fallback"),
    ("${EMPTY}", ""),
    ("pa$$word$", "pa$$word$"),
    ("$${TOPIC}", "${TOPIC}"),
    ("${TOPIC}${TOPIC}", "t0p1ct0p1c"),
])
def test_environment_expansion(value: str, expanded: str) -> None:
    env = {"TOPIC": "t0p1c", "EMPTY": ""}
    assert expand_env(value, env, Location(FILE, 1, 1)) == expanded


@pytest.mark.parametrize(("value", "message"), [
    ("${NOPE}", "environment variable 'NOPE' is not set (set it, or write ${NOPE:-default}"
     " for a fallback)"),
    ("${TOPIC", "unterminated '${' (write '$${' for a literal '${')"),
    ("${1X}", "bad variable reference '${1X}' (use ${NAME} or ${NAME:-default})"),
    ("${A:?err}", "bad variable reference '${A:?err}' (use ${NAME} or ${NAME:-default})"),
])
def test_environment_expansion_errors(value: str, message: str) -> None:
    with pytest.raises(RulesError) as caught:
        expand_env(value, {}, Location(FILE, 4, 9))
    assert str(caught.value) == f"rules.yaml:4:9: {message}"
