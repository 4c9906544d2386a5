"""`dmbot explain`: rule by rule, and the table a person reads."""

from __future__ import annotations

from dmbot.explain import action_labels, explain_table
from dmbot.rules import RuleMatch, evaluate, explain, load_rules, merge_actions
from test_rules_builders import DATA, NOW, account, event

TABLE = """\
sender                 unread  message                                  rules           actions
---------------------  ------  ---------------------------------------  --------------  ------------
@x@nsfw.social         yes     Buy now at https://spam.example/offer    blocked (stop)  delete
@alice@example.social  no      [CW: plans] URGENT: are we still on fo…  friends         notify:phone
                                                                        urgent          mark_read
@bob                   yes     hi                                       -               -"""


def test_explain_agrees_with_evaluate_rule_by_rule() -> None:
    rules = load_rules(DATA / "rules.yaml", {})
    friend = event(content="<p>urgent</p>", relationship=(True, True))
    matches = explain(rules, friend, NOW)
    assert [(m.name, m.matched, m.stopped, m.skipped) for m in matches] == [
        ("blocked", False, False, ""), ("friends", True, False, ""), ("urgent", True, False, ""),
    ]
    merged = merge_actions(a for m in matches for a in m.actions)
    assert merged == evaluate(rules, friend, NOW)
    assert action_labels(merged) == ["notify:phone", "mark_read"]
    assert isinstance(matches[0], RuleMatch)


def test_the_table() -> None:
    rules = load_rules(DATA / "rules.yaml", {})
    events = [
        event(sender=account("x@nsfw.social", "301"),
              content="<p>Buy now at https://spam.example/offer</p>"),
        event(content="<p>URGENT: are we still on for tonight? Let me know soon!</p>",
              spoiler_text="plans", relationship=(True, True), unread=False),
        event(sender=account("bob", "7"), content="<p>hi</p>"),
    ]
    assert explain_table([(e, explain(rules, e, NOW)) for e in events]) == TABLE


def test_the_table_prints_no_terminal_controls() -> None:
    rules = load_rules(DATA / "rules.yaml", {})
    hostile = event(sender=account("evil\x1b]0;pwned\x07@x.example", "9"),
                    content="<p>\x1b[2J\u202egnp.exe\x9b31m</p>", spoiler_text="\r\x08")
    table = explain_table([(hostile, explain(rules, hostile, NOW))], width=80)
    assert not any(ch in table for ch in "\x1b\x07\x08\r\x9b\u202e")
    assert all(len(line) <= 80 for line in table.splitlines())
