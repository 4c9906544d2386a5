"""Broken rules files: each one is refused with `file:line:column: what is wrong`."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmbot.rules import RulesError, load_rules
from test_rules_builders import write

BROKEN = [
    pytest.param("""\
version: 1
rules:
  - name: r
    if: {sender.domian: spam.example}
    do: [mark_read]
""",
        "rules.yaml:4:10: unknown field 'sender.domian' (did you mean 'sender.domain'?)",
        id='field'),
    pytest.param("""\
version: 1
rule: []
""",
        "rules.yaml:2:1: unknown key 'rule' (did you mean 'rules'?)",
        id='topkey'),
    pytest.param("""\
version: 1
rules:
  - name: r
    stpo: true
""",
        "rules.yaml:4:5: unknown key 'stpo' (did you mean 'stop'?)",
        id='rulekey'),
    pytest.param("""\
version: 1
rules:
  - name: r
    stop: yes
""",
        "rules.yaml:4:11: 'stop' must be true or false, not 'yes'",
        id='booltype'),
    pytest.param("""\
version: 1
rules:
  - do: [mark_read]
""",
        "rules.yaml:3:5: missing key 'name'",
        id='missingname'),
    pytest.param("""\
version: 1
notifiers:
  phone: "json://localhost/x"
rules:
  - name: r
    do: [{notify: phon}]
""",
        "rules.yaml:6:19: unknown notifier 'phon' (did you mean 'phone'?)",
        id='notifier'),
    pytest.param("""\
version: 1
lists:
  friends: [bob]
rules:
  - name: r
    if: {sender.acct: {in: friend}}
    do: [mark_read]
""",
        "rules.yaml:6:28: unknown list 'friend' (did you mean 'friends'?)",
        id='list'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: {text: {regx: a}}
    do: [mark_read]
""",
        "rules.yaml:4:17: unknown operator 'regx' (did you mean 'regex'?)",
        id='op'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: {sender.followers_count: {">=": 3}}
    do: [mark_read]
""",
        "rules.yaml:4:35: unknown operator '>=' (did you mean 'gte'?)",
        id='opalias'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: {sender.bot: {contains: x}}
    do: [mark_read]
""",
        "rules.yaml:4:23: sender.bot is true or false: it takes equals, not 'contains'",
        id='opkind'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if:
      text: {regex: "(a+"}
    do: [mark_read]
""",
        "rules.yaml:5:21: bad regex '(a+': missing ): (a+",
        id='regex'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if:
      text: {regex: ["ok", "(?<=x)y"]}
    do: [mark_read]
""",
        "rules.yaml:5:28: bad regex '(?<=x)y': invalid perl operator: (?<=",
        id='lookaround'),
    pytest.param("""\
version: 1
notifiers:
  phone: "ntfz://user:hunter2@ntfy.sh/topic"
rules: []
""",
        "rules.yaml:3:10: notifier 'phone': Apprise does not know the scheme 'ntfz://'"
        " (did you mean 'ntfy'?)",
        id='scheme'),
    pytest.param("""\
version: 1
notifiers:
  hook: ["json://localhost/a", "https://user:hunter2@example.com/hook"]
rules: []
""",
        "rules.yaml:3:32: notifier 'hook' URL 2: Apprise does not recognise this"
        ' https:// URL as a service (for a plain webhook write json:// or jsons://)',
        id='https'),
    pytest.param("""\
version: 1
notifiers:
  tg: "tgram://hunter2"
rules: []
""",
        "rules.yaml:3:7: notifier 'tg': Apprise cannot use this tgram:// URL (check it"
        " against Apprise's documentation)",
        id='badurl'),
    pytest.param("""\
version: 1
notifiers:
  x: "hunter2"
rules: []
""",
        "rules.yaml:3:6: notifier 'x' is not a URL (it needs a scheme, as in ntfys://...)",
        id='notaurl'),
    pytest.param("""\
version: 1
notifiers:
  phone: "ntfys://ntfy.sh/${NTFY_TOPIC}"
rules: []
""",
        "rules.yaml:3:10: environment variable 'NTFY_TOPIC' is not set (set it, or write"
        ' ${NTFY_TOPIC:-default} for a fallback)',
        id='env'),
    pytest.param("""\
version: 1
rules:
  - name: r
    do: [mark_read]
    do: [delete]
""",
        "rules.yaml:5:5: duplicate key 'do' (first given on line 4)",
        id='dupkey'),
    pytest.param("""\
version: 1
rules:
  - {name: r, do: [mark_read]}
  - {name: r, do: [delete], if: {unread: true}}
""",
        "rules.yaml:4:12: duplicate rule name 'r' (first on line 3)",
        id='duprule'),
    pytest.param("""\
version: 1
rules:
  - name: r
   do: [mark_read]
""",
        "rules.yaml:4:4: invalid YAML: expected <block end>, but found '<block mapping"
        " start>' (check the indentation)",
        id='yaml'),
    pytest.param("""\
version: 2
rules: []
""",
        'rules.yaml:1:10: unknown version 2 (this dmbot reads 1)',
        id='version'),
    pytest.param("""\
version: 1
rules:
  - name: nuke
    if: {}
    do: [delete]
""",
        "rules.yaml:4:9: rule 'nuke' would delete every conversation: its condition is"
        " always true (if that is what you want, add 'allow_delete_all: true')",
        id='deleteall'),
    pytest.param("""\
version: 1
rules:
  - name: idle
    if: {unread: true}
""",
        "rules.yaml:3:5: rule 'idle' does nothing: give it 'do' or 'stop: true'",
        id='nothing'),
    pytest.param("""\
version: 1
lists:
  blocked: [{file: missing.csv}]
rules: []
""",
        "rules.yaml:3:13: cannot read list file 'missing.csv': No such file or directory",
        id='listfile'),
    pytest.param("""\
version: 1
rules:
  - name: r
    do: [delet]
""",
        "rules.yaml:4:10: unknown action 'delet' (did you mean 'delete'?)",
        id='action'),
    pytest.param("""\
version: 1
conditions:
  a: {any: [b]}
  b: {not: a}
rules: []
""",
        "rules.yaml:4:12: condition 'a' refers to itself (a -> b -> a)",
        id='cycle'),
    pytest.param("""\
version: 1
conditions:
  stranger: {sender.following: false}
rules:
  - name: r
    if: strangr
    do: [mark_read]
""",
        "rules.yaml:6:9: unknown condition 'strangr' (did you mean 'stranger'?)",
        id='unknowncond'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: unread
    do: [mark_read]
""",
        "rules.yaml:4:9: unknown condition 'unread' ('unread' is a field: write {unread: ...})",
        id='fieldascond'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: {sender.acct: [a, b]}
    do: [mark_read]
""",
        'rules.yaml:4:23: sender.acct: a list here is ambiguous; write {in: [...]} to'
        ' match any of them',
        id='ambiguous'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: {text: {contains: ""}}
    do: [mark_read]
""",
        'rules.yaml:4:27: text: an empty contains matches every message',
        id='emptycontains'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: {sender.username: 123}
    do: [mark_read]
""",
        'rules.yaml:4:27: sender.username compares text, not 123 (put it in quotes)',
        id='number'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: {any: []}
    do: [mark_read]
""",
        "rules.yaml:4:15: 'any' needs a list of conditions",
        id='anyempty'),
    pytest.param("""\
version: 1
notifiers:
  my phone: "json://localhost/x"
rules: []
""",
        "rules.yaml:3:3: notifier name 'my phone' must be letters, digits, '_', '-' or"
        " '.' (no spaces)",
        id='notifiername'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: {sender.followers_count: {gt: true}}
    do: [mark_read]
""",
        'rules.yaml:4:39: sender.followers_count is a number, not true',
        id='boolnum'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: {sender.created_at: {lt: last year}}
    do: [mark_read]
""",
        'rules.yaml:4:34: sender.created_at needs a date such as 2024-01-31 or'
        " 2024-01-31T12:00:00Z, not 'last year'",
        id='date'),
    pytest.param("""\
version: 1
rules:
  - name: r
    do: [{mark_read: {now: true}}]
""",
        'rules.yaml:4:22: mark_read takes no options',
        id='markreadopts'),
    pytest.param("""\
version: 1
rules:
  - name: r
    do: [mark_read]
    allow_delete_all: true
""",
        "rules.yaml:5:5: rule 'r' says allow_delete_all but does not delete",
        id='allowdelete'),
    pytest.param('',
        "rules.yaml: the file is empty (it needs 'version: 1' and 'rules:')",
        id='empty'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: {sender.domain: {in: [spam.example, "https://bad.example/x"]}}
    do: [mark_read]
""",
        "rules.yaml:4:45: 'https://bad.example/x' is a URL; write just the domain 'bad.example'",
        id='domainentry'),
    pytest.param("""\
version: 1
lists:
  blocked: [alice@example.social]
rules:
  - name: r
    if: {sender.domain: {in: blocked}}
    do: [mark_read]
""",
        "rules.yaml:3:13: 'alice@example.social' is an account, not a domain; write"
        " 'example.social' (list 'blocked' is compared with sender.domain)",
        id='acctindomain'),
    pytest.param("""\
version: 1
notifiers:
  phone: {urls: "json://localhost/x", privacy: ful}
rules: []
""",
        "rules.yaml:3:48: 'privacy' must be 'full', 'truncated', 'sender_only' or"
        " 'link_only' (did you mean 'full'?)",
        id='privacy'),
    pytest.param("""\
version: 1
base: &b {name: r, do: [mark_read]}
rules:
  - <<: *b
""",
        "rules.yaml:4:5: YAML merge keys ('<<') are not supported; use named conditions",
        id='merge'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: {sender.bot: null}
    do: [mark_read]
""",
        'rules.yaml:4:22: sender.bot is never empty; null cannot match it',
        id='null'),
    pytest.param("""\
version: 1
notifiers: {phone: "json://localhost/x"}
rules:
  - name: r
    do:
      - notify: {to: phone, titel: hi}
""",
        "rules.yaml:6:29: unknown key 'titel' (did you mean 'title'?)",
        id='notifydict'),
    pytest.param("""\
version: 1
rules:
  - name: r
    do: [notify]
""",
        "rules.yaml:4:10: notify needs a 'notifiers:' section naming where to send",
        id='nonotifiers'),
    pytest.param("""\
version: 1
lists:
  b: [{server: domain_block}]
rules: []
""",
        "rules.yaml:3:7: unknown server list 'domain_block' (did you mean"
        " 'domain_blocks'?); known: domain_blocks",
        id='serverlist'),
    pytest.param("""\
version: 1
lists:
  b: [{server: domain_blocks}]
rules:
  - name: r
    if: {language: {in: b}}
    do: [mark_read]
""",
        "rules.yaml:3:6: list 'b' includes 'server: domain_blocks', which holds domains;"
        ' it cannot be compared with language',
        id='serverlisttext'),
    pytest.param("""\
version: 1
lists:
  b: {entries: [a.example], alow: [b.example]}
rules: []
""",
        "rules.yaml:3:29: unknown key 'alow' in a list (did you mean 'allow'?)",
        id='listkey'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: true
    do: [mark_read]
""",
        'rules.yaml:4:9: a condition is a mapping such as {sender.bot: true}, or a'
        " condition's name",
        id='condtype'),
    pytest.param("""\
version: 1
rules:
  - name: r
    if: {sender.followers_count: {regex: "1"}}
    do: [mark_read]
""",
        'rules.yaml:4:35: sender.followers_count is a number: it takes equals, in, gt,'
        " gte, lt, lte, not 'regex'",
        id='regexnum'),
    pytest.param("""\
version: 1
lists: {l: [a]}
rules:
  - name: r
    if: {sender.followers_count: {in: l}}
    do: [mark_read]
""",
        'rules.yaml:5:39: lists hold text; sender.followers_count is a number: use an'
        ' inline list',
        id='inlistnum'),
    pytest.param("""\
- version: 1
""",
        "rules.yaml:1:1: the rules file must be a mapping with 'version' and 'rules'",
        id='notmapping'),
    pytest.param('version: 1\nrules:\n\t- name: r\n',
        "rules.yaml:3:1: invalid YAML: found character '\\t' that cannot start any token",
        id='tab'),
]


@pytest.mark.parametrize(("text", "message"), BROKEN)
def test_a_broken_rules_file_is_refused_with_its_position(tmp_path: Path, text: str,
                                                          message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_rules(path, {})
    assert str(caught.value).replace(f"{tmp_path}/", "") == message


def test_the_error_carries_its_parts(tmp_path: Path) -> None:
    path = write(tmp_path, """
        version: 1
        rules:
          - {name: r, if: {sender.domian: x}, do: [delete]}
        """)
    with pytest.raises(RulesError) as caught:
        load_rules(path, {})
    error = caught.value
    assert (error.path, error.line, error.column) == (path, 3, 20)
    assert error.message == "unknown field 'sender.domian' (did you mean 'sender.domain'?)"
    assert error.files == (path,)


def test_a_bad_entry_in_a_list_file_is_reported_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "blocked.csv").write_text("#domain\nspam.example\n\n# a comment\nalice@x.example\n")
    path = write(tmp_path, """
        version: 1
        lists:
          blocked: [{file: blocked.csv}]
        rules:
          - {name: r, if: {participants.domain: {in: blocked}}, do: [delete]}
        """)
    with pytest.raises(RulesError) as caught:
        load_rules(path, {})
    assert str(caught.value) == (
        f"{tmp_path / 'blocked.csv'}:5:1: 'alice@x.example' is an account, not a domain;"
        " write 'x.example' (list 'blocked' is compared with participants.domain)"
    )
    assert caught.value.files == (path, tmp_path / "blocked.csv")


def test_a_list_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    (tmp_path / "blocked.csv").write_bytes(b"spam.example\n\xff\xfe\n")
    path = write(tmp_path, "version: 1\nlists: {b: [{file: blocked.csv}]}\nrules: []\n")
    with pytest.raises(RulesError) as caught:
        load_rules(path, {})
    expected = f"{tmp_path / 'blocked.csv'}: not UTF-8 text (bad byte at offset 13)"
    assert str(caught.value) == expected


def test_a_missing_rules_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(RulesError) as caught:
        load_rules(tmp_path / "nope.yaml", {})
    assert str(caught.value) == (
        f"{tmp_path / 'nope.yaml'}: cannot read the rules file '{tmp_path / 'nope.yaml'}':"
        " No such file or directory"
    )


@pytest.mark.parametrize("url", [
    "ntfz://user:hunter2@ntfy.sh/topic",
    "https://user:hunter2@example.com/hook",
    "tgram://hunter2",
    "hunter2",
    "mailto://me:hunter2@",
])
def test_errors_never_show_a_notifier_url(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f'version: 1\nnotifiers:\n  x: "{url}"\nrules: []\n')
    with pytest.raises(RulesError) as caught:
        load_rules(path, {})
    assert "hunter2" not in str(caught.value)


def test_an_expanded_secret_is_not_shown_either(tmp_path: Path) -> None:
    path = write(tmp_path, 'version: 1\nnotifiers:\n  x: {urls: "json://h/${T}", max_chars: 1}\n'
                           "rules: []\n")
    with pytest.raises(RulesError) as caught:
        load_rules(path, {"T": "hunter2"})
    assert "hunter2" not in str(caught.value)
    assert str(caught.value).endswith("rules.yaml:3:41: 'max_chars' must be at least 20")
