"""The HTML report of real failures, rendered in headless Chromium: what is drawn is what failed.

A known M1 failure (the zoo's stale cache, real worker processes) and a known D3 failure (no
directory fsync, the real power-loss model) are checked, their pages written, and Chromium
renders each: the test reads the DOM after rendering, and the layout Chromium computed, and
compares both with the failure's artifacts. Chromium comes from Debian's ``chromium`` package
(``.ci/run`` installs it); without it these tests skip, saying so.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from lance_offsets.conformance._html import report_html
from lance_offsets.conformance._report import Verdict
from lance_offsets.conformance._results import PropertyResult
from lance_offsets.conformance._run import run_checks
from lance_offsets.stress._options import StressOptions

# tests/ is on sys.path (pytest puts the folder of tests/conftest.py there): share its parser.
from test_html_report import Elements, parse

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("zoo_importable")]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)"
)
#: Seconds Chromium may take to render one page before the test gives up on it.
BROWSER_SECONDS = 90

#: Appended to a copy of the page (the report itself has no script): records where Chromium laid
#: out each bar and its lane, and the colour it outlines the bar with, as JSON in the DOM.
MEASURE = """<script>
const out = [];
for (const bar of document.querySelectorAll("rect.op")) {
  const box = bar.getBoundingClientRect();
  const lane = bar.closest("g.lane").querySelector("rect.lane-bg").getBoundingClientRect();
  out.push({process: bar.dataset.process, seq: bar.dataset.seq, width: box.width,
    height: box.height, top: box.top, bottom: box.bottom, left: box.left, right: box.right,
    laneTop: lane.top, laneBottom: lane.bottom, stroke: getComputedStyle(bar).stroke,
    excerpt: bar.classList.contains("excerpt")});
}
const pre = document.createElement("pre");
pre.id = "measured";
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a fresh profile and no network chatter; fail on an error."""
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    done = subprocess.run(
        [
            CHROMIUM,
            *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic"),
            *("--no-first-run", "--disable-background-networking", "--disable-sync"),
            *("--disable-component-update", f"--user-data-dir={profile}", *args),
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def render(page: Path, tmp_path: Path) -> str:
    """Return the DOM Chromium built for ``page``, after running its scripts."""
    done = chromium(tmp_path, "--window-size=1200,1000", "--dump-dom", page.as_uri())
    assert "<body" in done.stdout, done.stderr[-2000:]
    return done.stdout


def screenshot(page: Path, tmp_path: Path, name: str) -> Path:
    """Save what Chromium draws of ``page`` as ``name``, where CI keeps it as an artifact.

    ``LANCE_OFFSETS_SCREENSHOTS`` names that folder (the GitHub workflow uploads it); without it
    the picture stays in the test's temporary directory.
    """
    folder = Path(os.environ.get("LANCE_OFFSETS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    picture = folder / name
    chromium(tmp_path, "--window-size=1300,1400", f"--screenshot={picture}", page.as_uri())
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
    print(f"screenshot: {picture}")
    return picture


def write_page(result: PropertyResult, tmp_path: Path, seed: int) -> Path:
    page = tmp_path / "report.html"
    verdict = Verdict(f"zoo:{result.id}", [result], result.seconds, seed, "quick")
    page.write_text(report_html(verdict), encoding="utf-8")
    return page


def loads_nothing(dom: str, elements: Elements) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", dom, re.IGNORECASE)
    assert not elements.having("link")
    assert not elements.having("img")


def short(options: StressOptions) -> StressOptions:
    return dataclasses.replace(options, long=False, seconds=2.0, progress=print)


@needs_chromium
def test_m1_failure_is_drawn_as_lanes_bars_and_the_excerpt(
    stress_options: StressOptions, tmp_path: Path
) -> None:
    options = short(stress_options)
    spec = "zoo.stress_concurrency_zoo:stale_cache"
    (result,) = run_checks(spec, only=["M1"], stress_options=options, seed=options.seed)
    print(result.details)
    assert result.outcome == "failed"
    history: dict[str, Any] = dict(result.artifacts["history"])
    ops = history["operations"]
    page = write_page(result, tmp_path, options.seed)
    measuring = tmp_path / "measured.html"
    measuring.write_text(
        page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8"
    )
    dom = render(measuring, tmp_path)
    elements = parse(dom)
    loads_nothing(render(page, tmp_path), parse(page.read_text(encoding="utf-8")))
    screenshot(page, tmp_path, "m1-timeline.png")

    # One lane per process of the drawn operations, one bar per operation, each in its lane.
    lanes = [a["data-process"] for a, _ in elements.having("g", "lane")]
    assert lanes == [str(p) for p in sorted({o["process"] for o in ops})]
    bars = elements.having("rect", "op")
    assert len(bars) == len(ops)
    assert all(attrs["data-process"] == lane for attrs, lane in bars)
    drawn = {(a["data-process"], a["data-seq"]) for a, _ in bars}
    assert drawn == {(str(o["process"]), str(o["seq"])) for o in ops}
    # The highlighted bars are exactly the minimal non-linearizable excerpt.
    excerpt = {(str(o["process"]), str(o["seq"])) for o in ops if o["excerpt"]}
    assert len(excerpt) >= 2  # a race needs two processes' operations at least
    highlighted = {
        (a["data-process"], a["data-seq"]) for a, _ in elements.having("rect", "excerpt")
    }
    assert highlighted == excerpt
    assert len({p for p, _ in excerpt}) >= 2

    # What Chromium laid out: every bar visible inside its own lane, the excerpt outlined in red
    # and nothing else.
    (pre,) = re.findall(r'<pre id="measured">(.*?)</pre>', dom, re.DOTALL)
    measured = json.loads(html.unescape(pre))
    assert len(measured) == len(ops)
    for box in measured:
        assert box["width"] > 0, box
        assert box["height"] > 0, box
        assert box["laneTop"] <= box["top"] < box["bottom"] <= box["laneBottom"], box
    red = {(b["process"], b["seq"]) for b in measured if b["stroke"] == "rgb(221, 0, 0)"}
    assert red == excerpt
    # Time runs left to right: within a lane, later calls start further right.
    for process in lanes:
        mine = sorted((o for o in ops if str(o["process"]) == process), key=lambda o: o["call"])
        left = {(b["process"], b["seq"]): b["left"] for b in measured}
        xs = [left[(process, str(o["seq"]))] for o in mine]
        assert xs == sorted(xs)


@needs_chromium
def test_d3_failure_shows_the_crash_state_files_beside_the_trace(
    stress_options: StressOptions, tmp_path: Path
) -> None:
    options = short(stress_options)
    spec = "zoo.powerloss_zoo:no_dir_fsync"
    (result,) = run_checks(spec, only=["D3"], stress_options=options, seed=options.seed)
    assert result.outcome == "failed", result.details
    state = result.artifacts["crash_state"]
    dom = render(write_page(result, tmp_path, options.seed), tmp_path)
    elements = parse(dom)
    loads_nothing(dom, elements)
    files = [a["data-path"] for a, _ in elements.having("tr", "file")]
    assert files == [f["path"] for f in state["files"]]
    assert files  # the cut left something to show
    items = elements.having("li", "trace-op")
    assert [a["data-index"] for a, _ in items] == [str(t["index"]) for t in state["trace"]]
    undone = [a["data-index"] for a, _ in elements.having("li", "trace-op", "undone")]
    assert undone == [str(t["index"]) for t in state["trace"] if t["fate"] == "undone"]
    assert undone  # the defect: a rename not made durable by a directory fsync, undone
    text = "".join(elements.text)
    assert state["problems"][0] in text
    # Scratch paths are gone when the report is read: the drawing names files by their place.
    assert "lance-d3-" not in str(state)
