"""The HTML report (``check --html``): the page, and the drawn material failures carry.

These build histories and crash states by hand and parse the page with the standard library;
tests/slow/test_html_browser.py renders real failures in headless Chromium.
"""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from lance_offsets.conformance._html import report_html
from lance_offsets.conformance._report import Verdict
from lance_offsets.conformance._results import PropertyResult
from lance_offsets.stress.concurrency._history import Op, OpKind
from lance_offsets.stress.concurrency._linearize import check_history, drawn_history
from lance_offsets.stress.powerloss._fsmodel import CrashState
from lance_offsets.stress.powerloss._oracle import (
    SHOWN_BYTES,
    Expectation,
    Observation,
    Problem,
    drawn_crash_state,
)
from lance_offsets.stress.powerloss._oracle import Verdict as StateVerdict
from lance_offsets.stress.seam._trace import TraceOp

MEMORY = "lance_offsets.conformance.reference:memory"
KEY = (1, 2)
#: Monotonic time of the start signal: the drawn times are relative to it.
ORIGIN = 1000.0


class Elements(HTMLParser):
    """Every element of a page with its attributes and the ``data-process`` of its lane."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str], str | None]] = []
        self.lanes: list[str | None] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "g" and "lane" in found.get("class", "").split():
            self.lanes.append(found.get("data-process"))
        self.found.append((tag, found, self.lanes[-1] if self.lanes else None))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}, None))

    def handle_endtag(self, tag: str) -> None:
        if tag == "g" and self.lanes:
            self.lanes.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def having(self, tag: str, *classes: str) -> list[tuple[dict[str, str], str | None]]:
        return [
            (attrs, lane)
            for t, attrs, lane in self.found
            if t == tag and set(classes) <= set(attrs.get("class", "").split())
        ]


def parse(page: str) -> Elements:
    elements = Elements()
    elements.feed(page)
    return elements


def op(
    worker: int,
    seq: int,
    kind: OpKind,
    start: float,
    end: float | None,
    *,
    value: int | None = None,
    result: int | None = None,
) -> Op:
    """An operation on :data:`KEY`, times in seconds after :data:`ORIGIN` (end None: killed)."""
    if end is None:
        return Op(worker, seq, kind, KEY, value, ORIGIN + start)
    return Op(worker, seq, kind, KEY, value, ORIGIN + start, ORIGIN + end, "ok", result)


def stale_read_history() -> list[Op]:
    """Worker 1 reads the value worker 0 overwrote before the read began: not linearizable.

    The minimal excerpt is both saves and the read (without the save of 5 the read is merely
    of an unknown value, which the shrinker does not accept as the same failure).
    """
    return [
        op(0, 1, "save", 0.000, 0.001, value=5),
        op(0, 2, "save", 0.002, 0.003, value=6),
        op(1, 1, "load", 0.004, 0.005, result=5),
        # Unrelated, and one killed during its call: drawn as neighbours, not in the excerpt.
        op(2, 1, "save", 0.0041, None, value=7),
        op(1, 2, "delete", 0.006, 0.007),
    ]


def test_drawn_history_marks_the_minimal_excerpt_with_times_after_the_start() -> None:
    ops = stale_read_history()
    violations = check_history(ops, shrink_seconds=1.0)
    drawn = drawn_history(violations, ops, origin=ORIGIN)
    assert drawn["violation"] == "not-linearizable"
    assert drawn["key"] == list(KEY)
    assert drawn["operations in history"] == len(ops)
    by_id = {(d["process"], d["seq"]): d for d in drawn["operations"]}
    assert set(by_id) == {(o.worker, o.seq) for o in ops}
    excerpt = {k for k, d in by_id.items() if d["excerpt"]}
    (shown,) = [v for v in violations if v.kind == "not-linearizable"]
    assert excerpt == {(o.worker, o.seq) for o in shown.excerpt} == {(0, 1), (0, 2), (1, 1)}
    assert by_id[(1, 1)]["result"] == 5
    assert by_id[(0, 2)]["value"] == 6
    assert by_id[(0, 2)]["call"] == 0.002
    assert by_id[(0, 2)]["return"] == 0.003
    assert by_id[(2, 1)]["return"] is None
    assert by_id[(2, 1)]["outcome"] == "info"


def test_a_linearizable_history_draws_nothing() -> None:
    ops = [op(0, 1, "save", 0.0, 0.001, value=5), op(1, 1, "load", 0.002, 0.003, result=5)]
    assert drawn_history(check_history(ops), ops, origin=ORIGIN) == {}


def m1_verdict(ops: list[Op], details: str = "M1 failed") -> tuple[Verdict, dict[str, Any]]:
    drawn = drawn_history(check_history(ops, shrink_seconds=1.0), ops, origin=ORIGIN)
    results = [
        PropertyResult("C1", "passed", 0.5, "", {"examples": 20}),
        PropertyResult("M1", "failed", 2.0, details, {"workers": 3}, {"history": drawn}),
        PropertyResult("S1", "not-applicable", 0.0, "store does not claim named"),
    ]
    return Verdict("pkg.mod:factory", results, 2.5, 9, "quick"), drawn


def test_timeline_has_a_lane_per_process_and_a_bar_per_operation() -> None:
    verdict, drawn = m1_verdict(stale_read_history())
    page = parse(report_html(verdict))
    lanes = page.having("g", "lane")
    assert [a["data-process"] for a, _ in lanes] == ["0", "1", "2"]
    bars = page.having("rect", "op")
    assert len(bars) == len(drawn["operations"])
    # Every bar sits in its own process's lane.
    assert all(attrs["data-process"] == lane for attrs, lane in bars)
    excerpt = {(a["data-process"], a["data-seq"]) for a, _ in page.having("rect", "op", "excerpt")}
    assert excerpt == {("0", "1"), ("0", "2"), ("1", "1")}
    # Numbered in call order, as the excerpt's table below the timeline lists them.
    numbered = {
        a["data-excerpt"]: (a["data-process"], a["data-seq"])
        for a, _ in bars
        if a.get("data-excerpt")
    }
    assert numbered == {"1": ("0", "1"), "2": ("0", "2"), "3": ("1", "1")}
    assert len(page.having("tr", "excerpt-op")) == 3
    (killed,) = page.having("rect", "op", "open")
    assert killed[0]["data-process"] == "2"
    # The killed call runs to the window's end: past every recorded return.
    ends = [float(a["x"]) + float(a["width"]) for a, _ in bars]
    assert float(killed[0]["x"]) + float(killed[0]["width"]) == max(ends)
    # Bars are ordered in time as their calls were.
    x = {(a["data-process"], a["data-seq"]): float(a["x"]) for a, _ in bars}
    assert x[("0", "1")] < x[("0", "2")] < x[("1", "1")] < x[("1", "2")]
    assert "minimal non-linearizable excerpt" in "".join(page.text)


def test_page_escapes_the_store_text_and_loads_nothing() -> None:
    hostile = '<script>alert("x")</script> <img src="https://example.com/x.png"> & "quotes"'
    verdict, _ = m1_verdict(stale_read_history(), details=hostile)
    page = report_html(verdict)
    elements = parse(page)
    assert not elements.having("script")
    assert not elements.having("img")
    assert hostile in "".join(elements.text)  # shown as text, whole
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert not elements.having("link")
    # One page: the table has a row per property, a failure links to its section.
    rows = elements.having("tr")
    assert [a["data-property"] for a, _ in rows if "data-property" in a] == ["C1", "M1", "S1"]
    assert elements.having("section", "failure")[0][0]["id"] == "failure-M1"
    assert elements.having("a")[0][0]["href"] == "#failure-M1"


def crash_failure() -> tuple[CrashState, StateVerdict, list[TraceOp]]:
    trace = [
        TraceOp(0, "mark", ".", note="begin save 1 2 5"),
        TraceOp(1, "open", "/scratch/store/k.tmp", flags=0o101, content=b""),
        TraceOp(2, "write", "/scratch/store/k.tmp", content=b"5\n"),
        TraceOp(3, "replace", "/scratch/store/k.tmp", target="/scratch/store/k"),
        TraceOp(4, "mark", ".", note="ack save 1 2 5"),
        TraceOp(5, "mark", ".", note="begin save 1 2 6"),
    ]
    garbage = b"\x00\xff<b>" * 200
    state = CrashState(
        4,
        (("k.tmp", b"5\n"), ("sub", None), ("sub/junk", garbage)),
        persisted=(str(trace[1]),),
        undone=(str(trace[3]),),
        data=("k.tmp: kept -> b'5\\n'",),
    )
    problem = Problem("lost", "load(1, 2) lost (1, 2): found absent, expected 5 (acknowledged)")
    return state, StateVerdict((problem,)), trace


def test_drawn_crash_state_marks_the_trace_and_shows_bytes_safely() -> None:
    state, verdict, trace = crash_failure()
    expected = Expectation(((KEY, 5),))
    drawn = drawn_crash_state(
        (state, verdict),
        trace,
        expected,
        Observation(loads={KEY: None}, listing={}),
        [KEY],
        clean=lambda text: text.replace("/scratch/store/", ""),
    )
    assert drawn["point"] == 4
    assert drawn["violation"] == "lost"
    assert [t["index"] for t in drawn["trace"]] == [0, 1, 2, 3, 4]  # up to the cut only
    assert [t["fate"] for t in drawn["trace"]] == ["", "persisted", "", "undone", ""]
    assert "/scratch" not in str(drawn)
    files = {f["path"]: f for f in drawn["files"]}
    assert files["sub"]["type"] == "dir"
    assert files["k.tmp"]["content"] == "5\\n"
    junk = files["sub/junk"]
    assert junk["size"] == 1000
    assert junk["truncated"] is True
    assert junk["content"].startswith("\\x00\\xff<b>")
    assert len(junk["content"].encode("ascii")) <= 4 * SHOWN_BYTES
    assert drawn["expected"] == {"(1, 2)": "5 (acknowledged)"}


def test_crash_state_is_drawn_beside_the_trace() -> None:
    state, verdict, trace = crash_failure()
    drawn = drawn_crash_state(
        (state, verdict), trace, Expectation(((KEY, 5),)), Observation(), [KEY]
    )
    result = PropertyResult("D3", "failed", 1.0, "D3 failed", {}, {"crash_state": drawn})
    page = report_html(Verdict("pkg.mod:factory", [result], 1.0, 1, "quick"))
    elements = parse(page)
    assert [a["data-path"] for a, _ in elements.having("tr", "file")] == [
        "k.tmp",
        "sub",
        "sub/junk",
    ]
    assert [a["data-index"] for a, _ in elements.having("li", "trace-op", "undone")] == ["3"]
    assert [a["data-index"] for a, _ in elements.having("li", "trace-op", "persisted")] == ["1"]
    assert "<b>" not in page.split('data-path="sub/junk"')[1].split("</tr>")[0]  # escaped


def test_check_writes_the_html_page(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "lance_offsets", "check", MEMORY, "--only", "C1,S1"),
            *("--profile", "smoke", "--seed", "5", "--html", "report.html"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    elements = parse((tmp_path / "report.html").read_text(encoding="utf-8"))
    rows = [a for a, _ in elements.having("tr") if "data-property" in a]
    assert [(a["data-property"], a["class"]) for a in rows] == [
        ("C1", "passed"),
        ("S1", "not-applicable"),
    ]
    assert "--seed 5" in "".join(elements.text)


def test_html_to_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lance_offsets", "check", MEMORY, "--html", "/no/such/dir/r.html"],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--html /no/such/dir/r.html: no such directory /no/such/dir" in done.stderr
    assert list(tmp_path.iterdir()) == []
