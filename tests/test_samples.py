"""`dmbot test RULES SAMPLES`: saved conversations checked against the rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dmbot.rules import load_rules
from dmbot.samples import SamplesError, run_samples
from test_rules_builders import DATA, NOW, conversation


@pytest.fixture
def samples() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / "samples.json").read_text(encoding="utf-8"))
    return loaded


def test_the_samples_pass(tmp_path: Path) -> None:
    rules = load_rules(DATA / "rules.yaml", {})
    report = run_samples(rules, DATA / "samples.json", NOW, "mastodon.social")
    assert report.ok, report.text
    assert (report.total, report.failed) == (4, 0)
    assert report.text.splitlines() == [
        "ok   the real conversation: nothing to do: []",
        "ok   spam from a blocked server: [delete]",
        "ok   a server-side domain block: [delete]",
        "ok   an urgent message from a friend: [mark_read, notify:phone]",
        "4 samples, 0 failed",
    ]


def test_a_failing_sample_says_what_differs(tmp_path: Path, samples: dict[str, Any]) -> None:
    samples["samples"][3]["expect"] = ["notify:phone"]
    samples["samples"][3]["matched"] = ["urgent"]
    samples["samples"][1]["expect"] = ["notify:phon", "archive"]
    path = tmp_path / "samples.json"
    path.write_text(json.dumps(samples))
    report = run_samples(load_rules(DATA / "rules.yaml", {}), path, NOW, "mastodon.social")
    assert not report.ok
    lines = report.text.splitlines()
    assert lines[1] == (
        "FAIL spam from a blocked server: no notifier is named 'phon';"
        " 'archive' is not an action (notify:<name>, mark_read, delete);"
        " expected [archive, notify:phon], got [delete] (matched: [blocked])"
    )
    assert lines[3] == (
        "FAIL an urgent message from a friend: expected [notify:phone], got"
        " [mark_read, notify:phone]; expected rules [urgent] to match, got [friends, urgent]"
        " (matched: [friends, urgent])"
    )
    assert lines[-1] == "4 samples, 2 failed"


def test_a_plain_list_of_samples_works_too(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"conversation": conversation(), "expect": []}]))
    report = run_samples(load_rules(DATA / "rules.yaml", {}), path, NOW, "mastodon.social")
    assert report.text.splitlines() == ["ok   sample 1: []", "1 sample, 0 failed"]


@pytest.mark.parametrize(("content", "message"), [
    ('[{"conversation": {}, "expect": []},\n  oops]',
     "s.json:2:3: invalid JSON: Expecting value"),
    ('{"samples": [{"name": "x", "conversation": {}, "expect": "delete"}]}',
     "s.json: sample 1 (x), expect: Input should be a valid list"),
    ('{"samples": [], "domain_block": []}',
     "s.json: domain_block: Extra inputs are not permitted"),
    ('[{"name": "no status", "conversation": {"id": "1", "last_status": null}, "expect": []}]',
     "s.json: no status: not a Mastodon conversation: a conversation without a last status"
     " makes no event"),
    ('[{"conversation": {"id": "1", "last_status": {"id": "2"}}, "expect": []}]',
     "s.json: sample 1: not a Mastodon conversation: last_status.created_at: Field required"),
])
def test_a_broken_samples_file_is_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(SamplesError) as caught:
        run_samples(load_rules(DATA / "rules.yaml", {}), path, NOW, "mastodon.social")
    assert str(caught.value).replace(f"{tmp_path}/", "") == message


def test_a_missing_samples_file(tmp_path: Path) -> None:
    with pytest.raises(SamplesError, match="cannot read: No such file or directory"):
        run_samples(load_rules(DATA / "rules.yaml", {}), tmp_path / "none.json", NOW, "x.example")
