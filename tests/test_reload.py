"""Hot reload: good edits are picked up, bad ones are reported once and the old rules stay."""

from __future__ import annotations

import os
from pathlib import Path

from dmbot.actions import Delete, MarkRead
from dmbot.reload import RulesReloader
from dmbot.rules import evaluate, load_rules
from test_rules_builders import NOW, event, write

RULES = """
version: 1
lists:
  blocked: [{file: blocked.txt}]
rules:
  - {name: blocked, if: {sender.domain: {in: blocked}}, do: [delete], stop: true}
  - {name: read, if: {unread: true}, do: [mark_read]}
"""


def edit(path: Path, text: str) -> None:
    """Write and move the modification time on, as a later save would."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def start(tmp_path: Path) -> RulesReloader:
    (tmp_path / "blocked.txt").write_text("spam.example\n")
    path = write(tmp_path, RULES)
    return RulesReloader(path, {}, load_rules(path, {}))


def test_nothing_changed(tmp_path: Path) -> None:
    reloader = start(tmp_path)
    assert reloader.check().kind == "unchanged"
    os.utime(tmp_path / "rules.yaml")  # touched, same content
    assert reloader.check().kind == "unchanged"
    assert reloader.check().kind == "unchanged"


def test_a_good_edit_is_picked_up_with_a_summary(tmp_path: Path) -> None:
    reloader = start(tmp_path)
    old = reloader.current
    edit(tmp_path / "rules.yaml", RULES.replace("[mark_read]}", "[mark_read], stop: true}")
         + "  - {name: urgent, if: {text: {contains: urgent}}, do: [mark_read]}\n")
    outcome = reloader.check()
    assert outcome.kind == "reloaded"
    assert outcome.change == "rules: +1 (urgent), -0, 1 changed (read)"
    assert outcome.rules is reloader.current is not old
    assert reloader.check().kind == "unchanged"


def test_an_invalid_edit_keeps_the_old_rules_and_is_reported_once(tmp_path: Path) -> None:
    reloader = start(tmp_path)
    good = reloader.current
    edit(tmp_path / "rules.yaml", RULES.replace("unread: true", "unred: true"))
    first = reloader.check()
    assert first.kind == "invalid"
    assert first.first_report
    assert first.rules is good is reloader.current
    assert str(first.error).endswith(
        "rules.yaml:6:23: unknown field 'unred' (did you mean 'unread'?)"
    )
    again = reloader.check()
    assert (again.kind, again.first_report, str(again.error)) == ("invalid", False,
                                                                  str(first.error))
    edit(tmp_path / "rules.yaml", RULES.replace("unread: true", "unread: maybe"))
    other = reloader.check()
    assert (other.kind, other.first_report) == ("invalid", True)
    assert reloader.check(force=True).first_report  # SIGHUP: the user asked, say it again
    assert evaluate(reloader.current, event(), NOW) == [MarkRead(rule="read")]
    edit(tmp_path / "rules.yaml", RULES)
    fixed = reloader.check()
    assert (fixed.kind, fixed.change) == ("reloaded", "no changes")


def test_a_list_file_edit_is_picked_up(tmp_path: Path) -> None:
    reloader = start(tmp_path)
    from_there = event(sender={**event().sender.model_dump(mode="json"),
                               "acct": "x@there.example"})
    assert evaluate(reloader.current, from_there, NOW) == [MarkRead(rule="read")]
    edit(tmp_path / "blocked.txt", "spam.example\nthere.example\n")
    outcome = reloader.check()
    assert (outcome.kind, outcome.change) == ("reloaded", "lists: blocked +1 -0")
    assert evaluate(reloader.current, from_there, NOW) == [Delete(rule="blocked")]


def test_a_missing_list_file_is_noticed_when_it_appears(tmp_path: Path) -> None:
    reloader = start(tmp_path)
    edit(tmp_path / "rules.yaml", RULES.replace("blocked.txt", "more.txt"))
    outcome = reloader.check()
    assert outcome.kind == "invalid"
    assert "cannot read list file" in str(outcome.error)
    assert reloader.check().kind == "invalid"
    (tmp_path / "more.txt").write_text("spam.example\nmore.example\n")
    outcome = reloader.check()
    assert (outcome.kind, outcome.change) == ("reloaded", "lists: blocked +1 -0")


def test_a_deleted_rules_file_keeps_the_rules_until_it_is_back(tmp_path: Path) -> None:
    reloader = start(tmp_path)
    (tmp_path / "rules.yaml").unlink()
    outcome = reloader.check()
    assert outcome.kind == "invalid"
    assert "No such file" in str(outcome.error)
    write(tmp_path, RULES)
    assert reloader.check().kind == "reloaded"


def test_force_reloads_even_when_nothing_changed(tmp_path: Path) -> None:
    reloader = start(tmp_path)
    outcome = reloader.check(force=True)
    assert (outcome.kind, outcome.change) == ("reloaded", "no changes")


def test_describe_change_names_what_changed_without_secrets(tmp_path: Path) -> None:
    reloader = RulesReloader(
        write(tmp_path, 'version: 1\nnotifiers: {a: "json://h/one", b: "json://h/b"}\n'
                        "lists: {l: [x], gone: [y]}\nrules: [{name: r, do: [notify]}]\n"),
        {}, load_rules(tmp_path / "rules.yaml", {}),
    )
    edit(tmp_path / "rules.yaml",
         'version: 1\nnotifiers: {a: "json://h/secret-two", c: "json://h/c"}\n'
         "lists: {l: [x, z, w], new: [q]}\nrules: [{name: s, do: [notify]}]\n")
    change = reloader.check().change
    assert change == ("rules: +1 (s), -1 (r), 0 changed; notifiers: +c, -b, ~a;"
                      " lists: gone removed, l +2 -0, new new")
    assert "secret" not in change
