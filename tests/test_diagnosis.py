"""Likely causes from findings (conformance/_diagnosis.py), and how every report says them.

Hand-made results, no processes: the zoo stores run through the real checks in
test_conformance_zoo.py and the tests/slow/ files of each campaign.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from lance_offsets.conformance._catalog import PROPERTIES
from lance_offsets.conformance._check import _report
from lance_offsets.conformance._diagnosis import (
    CAUSES,
    FACTS,
    FINDINGS,
    diagnose,
    explain,
    failure_order,
    finding,
    findings_of,
    root_causes,
)
from lance_offsets.conformance._html import report_html
from lance_offsets.conformance._report import Verdict, json_document, report_junit, report_markdown
from lance_offsets.conformance._results import PropertyResult


def failed(pid: str, violation: str, *facts: str) -> PropertyResult:
    """A failure whose details lead with ``violation`` and whose check recorded ``facts``."""
    found = [finding(fact, f"{violation} [{fact}]") for fact in facts]
    details = f"{violation}\nstatistics of the run\nthe whole story"
    return PropertyResult(pid, "failed", 1.5, details, {"n": 1}, {FINDINGS: found} if facts else {})


def passed(pid: str) -> PropertyResult:
    return PropertyResult(pid, "passed", 0.5, "fine", {"examples": 20})


#: What the in-place store (tests/zoo/stress_crash_zoo.py:in_place) shows, by property.
IN_PLACE = [
    failed("C7", "save(False, 0, 0) returned; expected TypeError", "wrong-type-accepted"),
    failed("M1", "load of key (12, 3) raised ValueError: corrupt", "read-raised"),
    failed("M2", "load of key (7, 7) raised ValueError: corrupt", "read-raised"),
    failed(
        "D1", "key (1, 2) (save over, killed after op #1): load raised", "kill-left-key-unreadable"
    ),
    passed("D2"),
    failed("D3", "load(1, 2) lost (1, 2)", "create-undone", "power-cut-tore-file-in-place"),
    failed("D4", "key (1, 2): list_all() = raised ValueError", "listing-raises-on-torn-file"),
    passed("D5"),
    failed("F2", "key (1, 2), fault ENOSPC: a fresh handle found", "failed-save-changed-value"),
]


def test_every_fact_names_one_cause_and_every_cause_known_properties() -> None:
    for fact, named in FACTS.items():
        assert fact in CAUSES[named].facts
    for cause in CAUSES.values():
        assert cause.cause, cause.id
        assert cause.remedy, cause.id
        assert cause.facts, cause.id
        assert set(cause.explains) <= set(PROPERTIES), cause.id
    # One fact, one cause: no fact is listed twice.
    listed = [fact for c in CAUSES.values() for fact in c.facts]
    assert len(listed) == len(set(listed))


def test_a_finding_names_a_known_fact_and_keeps_one_line() -> None:
    with pytest.raises(ValueError, match="unknown finding 'no-such-fact'"):
        finding("no-such-fact", "x")
    made = finding("read-raised", "first line\nsecond line")
    assert made == {"fact": "read-raised", "shown": "first line"}
    assert len(finding("read-raised", "x" * 1000)["shown"]) == 300


def test_facts_a_newer_version_wrote_give_no_diagnosis_rather_than_a_wrong_one() -> None:
    result = PropertyResult(
        "D1",
        "failed",
        1.0,
        "x",
        artifacts={FINDINGS: [{"fact": "from-the-future", "shown": "?"}, "not a mapping"]},
    )
    assert findings_of(result) == []
    assert diagnose([result]) == {}


def test_a_correct_store_and_a_failure_without_findings_get_no_diagnosis() -> None:
    assert diagnose([passed(pid) for pid in PROPERTIES]) == {}
    # A pass that somehow carries findings is not diagnosed either: only failures are.
    odd = PropertyResult("D1", "passed", 1.0, "", artifacts={FINDINGS: [finding("hung", "x")]})
    assert diagnose([odd, failed("C1", "C1 broke")]) == {}


def test_the_in_place_store_groups_under_one_root_cause_shown_by_d1() -> None:
    diagnoses = diagnose(IN_PLACE)
    first, *others = root_causes(diagnoses)
    assert first.cause.id == "in-place-write"
    assert first.root == "D1"
    assert first.consequences == ("M1", "M2", "D4", "F2")
    assert first.also == ("D3",)  # D3 shows it besides its own first cause
    for pid in first.consequences:
        assert diagnoses[pid].consequence_of == "D1"
    assert diagnoses["D1"].consequence_of is None
    # D3's own evidence shows first a directory never fsynced after a creation: its own root.
    assert diagnoses["D3"].consequence_of is None
    assert [x.cause.id for x in diagnoses["D3"].likely] == [
        "directory-not-fsynced",
        "in-place-write",
    ]
    assert {r.root for r in others} == {"C7", "D3"}
    assert "D2" not in diagnoses
    assert "D5" not in diagnoses


def test_failures_print_root_first_then_its_consequences() -> None:
    order = [r.id for r in failure_order(IN_PLACE, diagnose(IN_PLACE))]
    assert order[:5] == ["D1", "M1", "M2", "D4", "F2"]
    assert sorted(order[5:]) == ["C7", "D3"]
    # A failure with no diagnosis still prints, after the diagnosed ones.
    with_unknown = [*IN_PLACE, failed("C1", "save then load differs")]
    assert [r.id for r in failure_order(with_unknown, diagnose(with_unknown))][-1] == "C1"


def test_the_root_is_the_most_direct_demonstration_among_the_failures() -> None:
    without_d1 = [r for r in IN_PLACE if r.id != "D1"]
    (first, *_) = root_causes(diagnose(without_d1))
    assert first.root == "F2"  # the in-place cause's next most direct demonstration
    assert first.consequences == ("M1", "M2", "D4")


def test_a_property_showing_a_cause_only_second_never_leads_it_over_one_showing_it_first() -> None:
    results = [
        failed("D3", "lost", "create-undone", "power-cut-tore-file-in-place"),
        failed("M1", "raised", "read-raised"),
    ]
    diagnoses = diagnose(results)
    assert diagnoses["M1"].consequence_of is None  # M1 leads in-place: D3 shows it second
    assert diagnoses["D3"].likely[1].root == "M1"
    told = explain(diagnoses["D3"])
    assert told[0].startswith("likely cause: the directory is not fsynced")
    assert any(line.startswith("also likely, as M1 shows: the offset file is") for line in told)


def test_explain_says_cause_and_remedy_and_what_a_consequence_follows() -> None:
    diagnoses = diagnose(IN_PLACE)
    told = explain(diagnoses["M2"])
    assert told[0].startswith("consequence of D1's cause; likely cause: the offset file is")
    assert told[1].startswith("usual remedy: write the new value to a temporary file")
    assert explain(diagnoses["D1"])[0].startswith("likely cause: the offset file is truncated")


@pytest.mark.parametrize(
    ("facts", "cause"),
    [
        (("kill-left-key-unreadable",), "in-place-write"),
        (("acked-lost-after-kill",), "acknowledged-before-durable"),
        (("rename-undone",), "directory-not-fsynced"),
        (("create-undone",), "directory-not-fsynced"),
        (("power-cut-dropped-renamed-data",), "file-not-fsynced-before-rename"),
        (("listing-shows-leftover",), "leftover-listed"),
        (("later-save-fails-after-kill",), "leftover-blocks"),
        (("stale-lock-waits",), "stale-lock-file"),
        (("two-writers-at-once", "read-raised"), "lock-not-exclusive"),
        (("read-raised",), "in-place-write"),
        (("error-swallowed",), "error-swallowed"),
        (("failed-save-changed-value",), "in-place-write"),
        (("damage-read-as-absent",), "unreadable-read-as-absent"),
        (("stale-view",), "stale-cache"),
        (("wrong-type-accepted",), "loose-types"),
        (("closed-handle-works",), "close-does-nothing"),
        (("hook-on-failed-save",), "hook-on-failed-save"),
    ],
)
def test_each_demonstrated_fact_names_its_likely_cause(facts: tuple[str, ...], cause: str) -> None:
    (diagnosis,) = diagnose([failed("D1", "violation", *facts)]).values()
    assert diagnosis.likely[0].cause.id == cause


# -- the reports ------------------------------------------------------------------------------


def verdict() -> Verdict:
    return Verdict("zoo:in_place", IN_PLACE, 12.0, 7, "quick")


def test_terminal_leads_with_the_root_cause_and_prints_its_failure_first() -> None:
    out = io.StringIO()
    _report(verdict(), out)
    text = out.getvalue()
    causes = text.index("Likely causes, the one behind most failures first:")
    root = text.index("  root cause, shown by D1: the offset file is truncated")
    assert causes < root < text.index("=== D1 atomic under kill: FAILED ===")
    assert "    consequences: M1, M2, D4, F2; also seen in: D3" in text
    d1 = text.index("=== D1 atomic under kill: FAILED ===")
    m1 = text.index(
        "=== M1 concurrent histories linearizable: FAILED (consequence of D1's cause) ==="
    )
    assert d1 < m1  # catalog order would print M1 first
    # The violation is the first line of each block, then its cause and remedy.
    block = text[d1:].splitlines()
    assert block[1] == "key (1, 2) (save over, killed after op #1): load raised"
    assert block[2].startswith("likely cause: the offset file is truncated")
    assert block[3].startswith("usual remedy: ")
    assert "=== D3 acknowledged survives power loss: FAILED ===" in text  # its own root: unmarked


def test_json_gains_root_causes_and_a_diagnosis_per_property() -> None:
    document = json.loads(json.dumps(json_document(verdict())))
    (first, *_) = document["root_causes"]
    assert first["cause"] == "in-place-write"
    assert first["root"] == "D1"
    assert first["consequences"] == ["M1", "M2", "D4", "F2"]
    assert first["also_shown_by"] == ["D3"]
    assert first["remedy"].startswith("write the new value to a temporary file")
    details: dict[str, Any] = document["details"]
    assert details["D2"]["diagnosis"] is None  # passed
    assert details["M1"]["diagnosis"]["consequence_of"] == "D1"
    (cause,) = details["M1"]["diagnosis"]["causes"]
    assert cause["cause"] == "in-place-write"
    assert cause["root"] == "D1"
    assert cause["shown"].startswith("load of key (12, 3) raised")
    assert details["D1"]["diagnosis"]["consequence_of"] is None
    assert [c["cause"] for c in details["D3"]["diagnosis"]["causes"]] == [
        "directory-not-fsynced",
        "in-place-write",
    ]
    # The layout only gains fields: everything that was there still is.
    assert document["schema"] == "lance-offsets-check/1"
    assert {"title", "outcome", "seconds", "details", "evidence", "artifacts"} <= set(details["D1"])


def test_junit_message_is_the_violation_and_the_text_adds_cause_and_remedy() -> None:
    (suite,) = ET.fromstring(report_junit(verdict())).iter("testsuite")
    cases = {case.get("name", "").split()[0]: case for case in suite.iter("testcase")}
    failure = cases["D4"].find("failure")
    assert failure is not None
    assert failure.text is not None
    assert failure.get("message") == "key (1, 2): list_all() = raised ValueError"
    assert "consequence of D1's cause; likely cause: the offset file is" in failure.text
    assert "usual remedy: write the new value" in failure.text
    assert failure.text.index("the whole story") < failure.text.index("likely cause")
    assert failure.text.rstrip().endswith("--seed 7")  # the replay closes it, as before
    assert cases["D2"].find("failure") is None


def test_markdown_lists_causes_and_each_failure_leads_with_its_violation() -> None:
    page = report_markdown(verdict())
    assert "### Likely causes" in page
    assert page.index("### Likely causes") < page.index("| | ID | property |")
    assert "- **root cause, shown by D1**: the offset file is truncated" in page
    assert "(consequences: M1, M2, D4, F2; also seen in: D3)" in page
    summary = (
        "<details><summary><b>M1 concurrent histories linearizable: failed</b>: load of key "
        "(12, 3) raised ValueError: corrupt</summary>"
    )
    assert summary in page
    block = page[page.index(summary) :]
    assert block.index("consequence of D1's cause") < block.index("```text")
    assert page.index("<summary><b>D1 ") < page.index("<summary><b>M1 ")
    # Causes are prose: "2**32" must not turn into bold text.
    assert "0 \\<= topic\\_id \\< 2\\*\\*32" in page
    # Every row shows its own evidence and time.
    assert "| ❌ | D4 | crash leftovers are harmless | failed | 1.50 | n 1 |" in page


def test_html_lists_causes_and_orders_failures_root_first() -> None:
    page = report_html(verdict())
    assert (
        '<ul class="causes"><li class="cause" data-cause="in-place-write" data-root="D1">' in page
    )
    sections = [page.index(f'id="failure-{pid}"') for pid in ("D1", "M1", "M2", "D4", "F2")]
    assert sections == sorted(sections)
    assert "M1 concurrent histories linearizable: failed (consequence of D1's cause)" in page
    assert '<p class="violation"><b>load of key (7, 7) raised ValueError: corrupt</b></p>' in page
    assert '<ul class="diagnosis"><li>likely cause: ' in page
