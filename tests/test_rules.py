"""Rules evaluation: each field and operator, composition, lists, stop, merging, the guard."""

from __future__ import annotations

import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dmbot.actions import Delete, MarkRead, Notify
from dmbot.lists import ServerData
from dmbot.models import Event
from dmbot.rules import RulesError, check_scopes, evaluate, explain, load_rules, scope_error
from test_rules_builders import DATA, NOW, OWN_ID, account, event, load, rules_with, write

ROOT = Path(__file__).parent.parent
BOB = account("bob", "200", display_name="Bob the Builder")
SPAMMER = account("x@a.b.spam.example", "300")


def hits(tmp_path: Path, condition: str, ev: Event, server: ServerData | None = None,
         **sections: str) -> bool:
    rules = load(tmp_path, rules_with(condition, **sections))
    return evaluate(rules, ev, NOW, server) == [MarkRead(rule="hit")]


FIELD_CASES: list[tuple[str, dict[str, Any], bool]] = [
    # booleans, scalar shorthand for equals
    ("{sender.bot: true}", {"sender": account(bot=True)}, True),
    ("{sender.bot: true}", {}, False),
    ("{sender.locked: false}", {}, True),
    ("{sender.local: true}", {"sender": BOB}, True),
    ("{sender.local: true}", {}, False),
    ("{unread: false}", {"unread": True}, False),
    ("{from_me: true}", {"sender": account("me", OWN_ID)}, True),
    ("{from_me: true}", {}, False),
    ("{sensitive: true}", {"sensitive": True}, True),
    ("{is_reply: true}", {"in_reply_to_id": "116368390488686000"}, True),
    ("{is_reply: true}", {}, False),
    # text: equals / contains / starts_with / ends_with ignore case; a list means any of them
    ("{sender.username: ALICE}", {}, True),
    ('{sender.display_name: {contains: "LIC"}}', {}, True),
    ('{text: "Hello There"}', {}, True),
    ("{text: {contains: URGENT}}", {"content": "<p>this is urgent!</p>"}, True),
    ("{text: {contains: [nope, THERE]}}", {}, True),
    ("{text: {contains: [nope, nada]}}", {}, False),
    ("{text: {starts_with: hello}}", {}, True),
    ("{text: {ends_with: there}}", {}, True),
    ("{text: {ends_with: hello}}", {}, False),
    ("{spoiler_text: {contains: food}}", {"spoiler_text": "CW: food"}, True),
    ("{visibility: direct}", {}, True),
    ("{language: {in: [de, EN]}}", {}, True),
    ("{language: {in: [de]}}", {}, False),
    ("{language: null}", {"language": None}, True),
    ("{language: {in: [en]}}", {"language": None}, False),
    ("{language: {in: [no]}}", {"language": "no"}, True),  # YAML 1.2: `no` is text
    # regex: RE2, case-sensitive unless (?i); runs on the plain text of the HTML
    ('{text: {regex: "(?i)URGENT"}}', {"content": "<p>urgent</p>"}, True),
    ('{text: {regex: "URGENT"}}', {"content": "<p>urgent</p>"}, False),
    ('{text: {regex: ["^x", "there$"]}}', {}, True),
    ('{text: {regex: "a\\nb"}}', {"content": "<p>a<br>b</p>"}, True),
    ('{text: {regex: "span|class"}}', {"content": '<p><span class="h-card">hi</span></p>'}, False),
    ('{sender.display_name: {regex: "\\\\bBuilder$"}}', {"sender": BOB}, True),
    # several operators on one field: all must hold
    ("{text: {contains: hello, ends_with: there}}", {}, True),
    ("{text: {contains: hello, ends_with: nope}}", {}, False),
    # numbers
    ("{sender.followers_count: 50}", {}, True),
    ("{sender.followers_count: {gte: 50}}", {}, True),
    ("{sender.followers_count: {gt: 50}}", {}, False),
    ("{sender.followers_count: {gte: 10, lt: 100}}", {}, True),
    ("{sender.followers_count: {lte: 49}}", {}, False),
    ("{sender.followers_count: {in: [1, 50]}}", {}, True),
    ("{sender.statuses_count: {gte: 0}}", {}, True),
    ("{media.count: 1}", {"media_attachments": [{"id": "9", "type": "image"}]}, True),
    ("{media.count: 0}", {}, True),
    ("{participants.count: 2}", {"others": [BOB]}, True),
    ("{mentions.count: {gt: 0}}", {}, False),
    # account age, from `now`
    ("{sender.age_days: {lt: 30}}",
     {"sender": account(created_at=(NOW - timedelta(days=10)).isoformat())}, True),
    ("{sender.age_days: {lt: 30}}", {}, False),
    ("{sender.age_days: {lt: 30}}", {"sender": account(created_at=None)}, False),
    ("{not: {sender.age_days: {gte: 30}}}", {"sender": account(created_at=None)}, True),
    ('{sender.created_at: {lt: "2021-01-01"}}', {}, True),
    ('{sender.created_at: {gte: "2020-01-01T00:00:00Z"}}', {}, True),
    ('{sender.created_at: {gt: "2020-01-01"}}', {}, False),
    # accounts: case-insensitive, leading @, local accounts, IDNA domains
    ("{sender.acct: {in: [bob]}}", {"sender": BOB}, True),
    ("{sender.acct: {in: [bob]}}", {"sender": account("bob@other.example")}, False),
    ("{sender.acct: bob@mastodon.social}", {"sender": BOB}, True),
    ('{sender.acct: "@Alice@EXAMPLE.social"}', {}, True),
    ("{sender.acct: alice@bücher.example}", {"sender": account("alice@xn--bcher-kva.example")},
     True),
    ("{sender.acct: {contains: EXAMPLE}}", {}, True),
    ("{mentions: {in: [carol@x.example]}}",
     {"mentions": [{"id": "5", "username": "carol", "acct": "carol@x.example", "url": None}]},
     True),
    ("{mentions: {in: [carol@x.example]}}", {}, False),
    ("{participants.acct: {in: [bob]}}", {"others": [BOB]}, True),
    ("{participants.acct: {in: [bob]}}", {}, False),
    # domains: equals is exact, `in` covers subdomains, IDNA both ways, local = own instance
    ("{sender.domain: example.social}", {}, True),
    ("{sender.domain: EXAMPLE.social.}", {}, True),
    ("{sender.domain: social}", {}, False),
    ("{sender.domain: {in: [social]}}", {}, True),
    ("{sender.domain: {in: [spam.example]}}", {"sender": SPAMMER}, True),
    ("{sender.domain: {in: [spam.example]}}", {"sender": account("x@notspam.example")}, False),
    ("{sender.domain: {in: [b.spam.example]}}", {"sender": SPAMMER}, True),
    ("{sender.domain: {in: [z.spam.example]}}", {"sender": SPAMMER}, False),
    ("{sender.domain: mastodon.social}", {"sender": BOB}, True),
    ("{sender.domain: {in: [bücher.example]}}", {"sender": account("x@XN--BCHER-KVA.example")},
     True),
    ("{sender.domain: {in: [xn--bcher-kva.example]}}", {"sender": account("x@a.Bücher.example")},
     True),
    ("{sender.domain: {in: [bücher.example]}}", {"sender": account("x@bucher.example")}, False),
    ("{sender.domain: {ends_with: .social}}", {}, True),
    ("{participants.domain: {in: [spam.example]}}", {"others": [SPAMMER]}, True),
    ("{participants.domain: {in: [spam.example]}}", {}, False),
    ("{participants.domain: mastodon.social}", {"others": [BOB]}, True),
    ("{participants.bot: true}", {"others": [account("c@d.example", "7", bot=True)]}, True),
    ("{participants.username: {starts_with: bo}}", {"others": [BOB]}, True),
]


@pytest.mark.parametrize(("condition", "shape", "expected"), FIELD_CASES)
def test_field_operators(tmp_path: Path, condition: str, shape: dict[str, Any],
                         expected: bool) -> None:
    assert hits(tmp_path, condition, event(**shape)) is expected


RELATIONSHIP_CASES = [
    ("{sender.following: true}", (True, False), True),
    ("{sender.following: true}", (False, True), False),
    ("{sender.followed_by: true}", (False, True), True),
    ("{sender.mutual: true}", (True, True), True),
    ("{sender.mutual: true}", (True, False), False),
    # not fetched: read as "not following"
    ("{sender.following: true}", None, False),
    ("{sender.following: false}", None, True),
    ("{sender.mutual: false}", None, True),
]


@pytest.mark.parametrize(("condition", "relationship", "expected"), RELATIONSHIP_CASES)
def test_relationship_fields(tmp_path: Path, condition: str,
                             relationship: tuple[bool, bool] | None, expected: bool) -> None:
    assert hits(tmp_path, condition, event(relationship=relationship)) is expected


COMPOSITION_CASES = [
    ("{}", True),
    ("{all: [{unread: true}, {sender.bot: false}]}", True),
    ("{all: [{unread: true}, {sender.bot: true}]}", False),
    ("{any: [{sender.bot: true}, {unread: false}]}", False),
    ("{any: [{sender.bot: true}, {unread: true}]}", True),
    ("{not: {sender.bot: true}}", True),
    ("{not: {not: {sender.bot: true}}}", False),
    ("{unread: true, sender.bot: true}", False),  # several keys: all of them
    ("{unread: true, any: [{sender.bot: true}, {text: {contains: hello}}]}", True),
    ("{all: [{any: [{not: {unread: false}}, {sender.bot: true}]},"
     " {not: {any: [{sender.locked: true}, {all: [{unread: true}, {sender.bot: true}]}]}}]}", True),
]


@pytest.mark.parametrize(("condition", "expected"), COMPOSITION_CASES)
def test_composition(tmp_path: Path, condition: str, expected: bool) -> None:
    assert hits(tmp_path, condition, event()) is expected


NAMED = """
conditions:
  stranger: {not: {sender.following: true}}
  fresh: {sender.age_days: {lt: 30}}
  fresh_stranger: {all: [stranger, fresh]}
"""


@pytest.mark.parametrize(("condition", "shape", "expected"), [
    ("stranger", {}, True),
    ("stranger", {"relationship": (True, False)}, False),
    ("fresh_stranger", {}, False),
    ("fresh_stranger", {"sender": account(created_at=NOW.isoformat())}, True),
    ("{any: [fresh, {not: stranger}]}", {"relationship": (True, False)}, True),
])
def test_named_conditions(tmp_path: Path, condition: str, shape: dict[str, Any],
                          expected: bool) -> None:
    assert hits(tmp_path, condition, event(**shape), conditions=NAMED) is expected


LISTS = """
lists:
  blocked:
    entries: [spam.example, {file: blocked.csv}, {server: domain_blocks}]
    allow: [ok.spam.example]
  friends: ["@Alice@example.social", bob]
  words: [Hello There, Hi]
"""


@pytest.mark.parametrize(("condition", "sender", "server", "expected"), [
    ("{sender.domain: {in: blocked}}", "x@bad.spam.example", None, True),
    ("{sender.domain: {in: blocked}}", "x@ok.spam.example", None, False),  # allow wins
    ("{sender.domain: {in: blocked}}", "x@a.ok.spam.example", None, False),
    ("{sender.domain: {in: blocked}}", "x@m.nsfw.social", None, True),  # from the CSV file
    ("{sender.domain: {in: blocked}}", "x@bücher.example", None, True),  # CSV has punycode
    ("{sender.domain: {in: blocked}}", "x@mine.example", None, False),
    ("{sender.domain: {in: blocked}}", "x@a.mine.example", ["MINE.example"], True),  # server
    ("{sender.acct: {in: friends}}", "alice@example.social", None, True),
    ("{sender.acct: {in: friends}}", "bob", None, True),
    ("{sender.acct: {in: friends}}", "bob@elsewhere.example", None, False),
    ("{text: {in: words}}", "alice@example.social", None, True),
])
def test_named_lists(tmp_path: Path, condition: str, sender: str, server: list[str] | None,
                     expected: bool) -> None:
    shutil.copy(DATA / "blocked_domains.csv", tmp_path / "blocked.csv")
    data = ServerData.from_domain_blocks(server) if server is not None else None
    ev = event(sender=account(sender))
    assert hits(tmp_path, condition, ev, data, lists=LISTS) is expected


def test_stop_ends_the_run_and_only_when_the_rule_matches(tmp_path: Path) -> None:
    rules = load(tmp_path, """
        version: 1
        rules:
          - {name: not-me, if: {sender.bot: true}, do: [delete], stop: true}
          - {name: first, if: {unread: true}, do: [mark_read], stop: true}
          - {name: never, do: [delete], allow_delete_all: true}
        """)
    assert evaluate(rules, event(), NOW) == [MarkRead(rule="first")]
    matches = explain(rules, event(), NOW)
    assert [(m.name, m.matched, m.stopped, m.skipped) for m in matches] == [
        ("not-me", False, False, ""),
        ("first", True, True, ""),
        ("never", False, False, "after stop"),
    ]


def test_every_matching_rule_contributes_and_actions_merge_in_execution_order(
    tmp_path: Path,
) -> None:
    rules = load(tmp_path, """
        version: 1
        notifiers:
          phone: "json://localhost/phone"
          inbox: "json://localhost/inbox"
        rules:
          - {name: a, if: {unread: true}, do: [delete, {notify: {to: phone, title: A}}]}
          - {name: b, if: {unread: true}, do: [mark_read, delete, {notify: [phone, inbox]}]}
          - {name: c, if: {sender.bot: true}, do: [{notify: inbox}]}
          - {name: d, if: {unread: true}, do: [mark_read], enabled: false}
        """)
    assert evaluate(rules, event(), NOW) == [
        Notify(rule="a", to=("phone",), title="A"),
        Notify(rule="b", to=("inbox",)),
        MarkRead(rule="b"),
        Delete(rule="a"),
    ]


def test_notify_without_a_target_means_every_notifier(tmp_path: Path) -> None:
    rules = load(tmp_path, """
        version: 1
        notifiers: {phone: "json://localhost/p", inbox: ["json://localhost/i", "jsons://x.example/i"]}
        rules: [{name: all, do: notify}]
        """)
    assert evaluate(rules, event(), NOW) == [Notify(rule="all", to=("phone", "inbox"))]
    assert rules.notifiers["inbox"].urls == ("json://localhost/i", "jsons://x.example/i")


ALWAYS_TRUE = [
    None,
    "{}",
    "{all: [{}]}",
    "{any: [{unread: true}, {}]}",
    "{not: {not: {}}}",
    '{text: {regex: "urgent|"}}',
    '{sender.display_name: {regex: "^"}}',
    "everything",
]


@pytest.mark.parametrize("condition", ALWAYS_TRUE)
def test_delete_with_an_always_true_condition_is_refused(tmp_path: Path,
                                                         condition: str | None) -> None:
    rule = "- name: nuke\n    do: [delete]" + (f"\n    if: {condition}" if condition else "")
    text = f"version: 1\nconditions: {{everything: {{}}}}\nrules:\n  {rule}\n"
    path = write(tmp_path, text)
    with pytest.raises(RulesError) as caught:
        load_rules(path, {})
    assert "rule 'nuke' would delete every conversation: its condition is always true" \
        " (if that is what you want, add 'allow_delete_all: true')" in str(caught.value)
    load_rules(write(tmp_path, text + "    allow_delete_all: true\n"), {})


@pytest.mark.parametrize("condition", [
    "{any: [{unread: true}, {sender.bot: true}]}",
    '{text: {regex: "^$"}}',
    '{language: {regex: "x*"}}',  # matches every message that has a language, not all
    '{participants.acct: {regex: "x*"}}',
])
def test_delete_with_a_real_condition_is_allowed(tmp_path: Path, condition: str) -> None:
    load(tmp_path, f"version: 1\nrules: [{{name: ok, if: {condition}, do: [delete]}}]\n")


def test_a_catastrophic_pattern_against_a_hostile_message_stays_fast(tmp_path: Path) -> None:
    rules = load(tmp_path, r"""
        version: 1
        rules:
          - {name: a, if: {text: {regex: "(a+)+$"}}, do: [mark_read]}
          - {name: b, if: {text: {regex: "(x+x+)+y"}}, do: [mark_read]}
          - {name: c, if: {text: {regex: "^(\\w+\\s?)*$"}}, do: [mark_read]}
          - {name: d, if: {spoiler_text: {regex: "(a|aa)+$"}}, do: [mark_read]}
        """)
    hostile = "a" * 50_000 + "!" + "x" * 50_000
    evaluate(rules, event(content="<p>warm up</p>"), NOW)
    ev = event(content=f"<p>{hostile}</p>", spoiler_text="a" * 60_000 + "!")
    start = time.perf_counter()
    actions = evaluate(rules, ev, NOW)
    elapsed = time.perf_counter() - start
    assert actions == []
    assert elapsed < 0.050, f"{elapsed * 1000:.1f} ms"


def test_text_is_capped(tmp_path: Path) -> None:
    rules = load(tmp_path, """
        version: 1
        rules: [{name: tail, if: {text: {contains: needle}}, do: [mark_read]}]
        """)
    assert evaluate(rules, event(content=f"<p>{'a' * 200_000} needle</p>"), NOW) == []
    assert evaluate(rules, event(content="<p>a needle</p>"), NOW) == [MarkRead(rule="tail")]


def test_environment_expands_in_notifier_urls_and_list_paths_only(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "b.txt").write_text("spam.example # comment\n")
    rules = load(tmp_path, """
        version: 1
        notifiers:
          phone: "json://localhost/${TOPIC}/${MISSING:-fallback}/$${literal}"
        lists:
          blocked: [{file: "${LIST_DIR:-nowhere}/b.txt"}]
        rules:
          - name: r
            if: {any: [{text: {contains: "${TOPIC}"}}, {sender.domain: {in: blocked}}]}
            do: [mark_read]
        """, env={"TOPIC": "secret-topic", "LIST_DIR": "lists"})
    assert rules.notifiers["phone"].urls == ("json://localhost/secret-topic/fallback/${literal}",)
    assert evaluate(rules, event(content="<p>secret-topic</p>"), NOW) == []
    assert evaluate(rules, event(content="<p>${TOPIC}</p>"), NOW) == [MarkRead(rule="r")]
    assert rules.watched_files == (tmp_path / "rules.yaml", tmp_path / "lists" / "b.txt")


def test_what_a_rule_set_needs(tmp_path: Path) -> None:
    rules = load(tmp_path, """
        version: 1
        lists:
          blocked: [{server: domain_blocks}]
          unused: [{server: domain_blocks}]
        rules:
          - {name: a, if: {sender.mutual: true}, do: [mark_read]}
          - {name: b, if: {sender.domain: {in: blocked}}, do: [delete]}
        """)
    assert rules.needs_relationships
    assert rules.server_lists == {"domain_blocks"}
    assert rules.required_scopes == {"read:statuses", "write:conversations", "read:follows",
                                     "read:blocks"}
    assert rules.summary() == "2 rules, 0 notifiers, 2 lists"
    quiet = load(tmp_path, "version: 1\nrules: [{name: a, if: {unread: true}, stop: true}]\n")
    assert not quiet.needs_relationships
    assert quiet.required_scopes == {"read:statuses"}
    assert quiet.summary() == "1 rule, 0 notifiers, 0 lists"


def test_check_scopes_points_at_the_rule_that_needs_the_scope(tmp_path: Path) -> None:
    rules = load(tmp_path, """
        version: 1
        rules:
          - {name: look, if: {unread: true}, stop: true}
          - {name: tidy, if: {sender.following: false}, do: [delete]}
        """)
    for enough in (["read", "write", "follow"], ["read:statuses", "write:conversations",
                                                 "read:follows"]):
        check_scopes(rules, enough)
    with pytest.raises(RulesError) as caught:
        check_scopes(rules, ["read"])
    assert str(caught.value) == (
        f"{tmp_path / 'rules.yaml'}:4:5: rule 'tidy' uses delete, which needs the token scope"
        " 'write:conversations'; the token lacks it (the token has: read)"
    )
    with pytest.raises(RulesError, match=r"asks about follows, which needs .*'read:follows'"):
        check_scopes(rules, ["read:statuses", "write"])
    probed = scope_error(rules, {"read:follows", "read:notifications"})
    assert str(probed).endswith("rules.yaml:4:5: rule 'tidy' asks about follows, which needs"
                                " the token scope 'read:follows'; the token lacks it")
    assert scope_error(rules, {"read:notifications"}) is None


def test_example_rules_file_loads_and_works(tmp_path: Path) -> None:
    shutil.copy(ROOT / "rules.example.yaml", tmp_path / "rules.yaml")
    shutil.copy(DATA / "blocked_domains.csv", tmp_path / "blocked_domains.csv")
    rules = load_rules(tmp_path / "rules.yaml", {"NTFY_TOPIC": "t"})
    assert rules.summary() == "8 rules (1 disabled), 2 notifiers, 3 lists"
    assert rules.notifiers["phone"].urls == ("ntfys://ntfy.sh/t",)
    spam = event(sender=account("x@nsfw.social"))
    assert evaluate(rules, spam, NOW) == [Delete(rule="blocked-domains")]
    friend = event(sender=BOB)
    assert evaluate(rules, friend, NOW) == [Notify(rule="friends-always-through", to=("phone",))]
    stranger = event(sender=account("carol@example.org"))
    assert evaluate(rules, stranger, NOW) == [Notify(rule="everything-else", to=("inbox",))]


def test_an_emptied_list_cannot_turn_a_delete_rule_into_delete_everything(tmp_path: Path) -> None:
    (tmp_path / "friends.txt").write_text("# nobody yet\n")
    text = """
        version: 1
        lists:
          friends: [{file: friends.txt}]
          blocked: [{server: domain_blocks}]
        rules:
          - {name: strangers, if: {not: {sender.acct: {in: friends}}}, do: [delete]}
        """
    with pytest.raises(RulesError, match="rule 'strangers' would delete every conversation"):
        load(tmp_path, text)
    (tmp_path / "friends.txt").write_text("alice@example.social\n")
    load(tmp_path, text)
    load(tmp_path, text.replace("sender.acct: {in: friends}", "sender.domain: {in: blocked}"))
