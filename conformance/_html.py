"""The verdict of ``lance-offsets check`` as one self-contained HTML page (``--html FILE``).

The page loads nothing at view time: CSS is inline and the drawings are inline SVG generated
here, so what a browser shows is what this module wrote (and what a test can find in it). It
holds the property table (outcome, seconds, evidence), every failure's counterexample, and, when
a failure carries :attr:`~._results.PropertyResult.artifacts`:

- ``history`` (M1/M2): a timeline, one lane per worker process, each operation a bar from call
  to return; one whose effect is unknown (it raised something undocumented) has a dashed
  outline, and one that never returned (its worker was killed) also runs to the end of the
  window, hatched. The minimal non-linearizable excerpt is outlined in red and numbered.
- ``crash_state`` (D3): the files the power cut left beside the trace up to the cut, with the
  entry operations that persisted or were undone marked.

Stable classes and ``data-*`` attributes (``g.lane[data-process]``, ``rect.op``,
``rect.op.excerpt``, ``tr.file``, ``li.trace-op.undone``) are part of the page's contract: the
browser test finds the drawing through them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any, Final

from ._catalog import PROPERTIES
from ._diagnosis import Diagnosis, diagnose, explain, failure_order, root_causes
from ._report import Verdict
from ._results import PropertyResult, evidence_text

__all__ = ["report_html"]

_CSS: Final = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; }
table.excerpt td:not(:last-child) { white-space: nowrap; }
tr.failed td.outcome { background: #fdd; font-weight: bold; }
tr.unverified td.outcome { background: #ffe9b3; }
tr.not-run td.outcome { background: #e4e4e4; color: #555; }
p.stopped { border-left: 4px solid #b58900; padding-left: 0.5em; }
tr.passed td.outcome { background: #dfd; }
tr.not-applicable td.outcome { color: #777; }
pre { background: #f6f6f6; padding: 0.5em; overflow-x: auto; white-space: pre; }
section.failure { border-top: 2px solid #c00; margin-top: 1.5em; }
svg.timeline { background: #fff; border: 1px solid #ccc; }
svg .lane-bg { fill: #f4f4f4; }
svg .lane:nth-child(odd) .lane-bg { fill: #e9edf2; }
svg .lane-label, svg .axis text { font: 12px monospace; fill: #333; }
svg .op-label { font: 10px monospace; fill: #000; }
svg .excerpt-label { font: bold 10px monospace; fill: #d00; }
rect.op { stroke: #555; stroke-width: 0.5; }
rect.save { fill: #7fb3e6; }
rect.load { fill: #9fd49f; }
rect.delete { fill: #e6b07f; }
rect.fail { opacity: 0.45; }
rect.info { stroke: #000; stroke-width: 1.2; stroke-dasharray: 3 2; }
rect.open { fill: url(#hatch); }
rect.excerpt { stroke: #d00; stroke-width: 2.5; }
.legend span { display: inline-block; margin-right: 1.2em; }
.swatch { display: inline-block; width: 1.6em; height: 0.9em; vertical-align: middle;
  border: 1px solid #555; margin-right: 0.3em; }
.crash-state { display: flex; gap: 2em; align-items: flex-start; flex-wrap: wrap; }
.crash-state > div { flex: 1 1 30em; min-width: 0; }
ol.trace { font: 12px monospace; padding-left: 3.5em; }
li.persisted { background: #dfd; }
li.undone { background: #fdd; text-decoration: line-through; }
td.content { font-family: monospace; white-space: pre-wrap; word-break: break-all; }
"""

#: The timeline's geometry, in SVG pixels.
_LABEL_WIDTH: Final = 70
_PLOT_WIDTH: Final = 1000
_LANE_HEIGHT: Final = 34
_BAR_HEIGHT: Final = 14
_AXIS_HEIGHT: Final = 28
_TICKS: Final = 6
#: Bars narrower than this get no label inside the lane (the tooltip still has it).
_LABELLED_WIDTH: Final = 70
#: Width of one character of a bar's label (10 px monospace), to cut labels to their bar.
_CHAR_WIDTH: Final = 6.1


def report_html(verdict: Verdict) -> str:
    """The whole page: summary, likely causes, table, reasons, failures with their drawings.

    Failures come root first, each followed by the failures that are its consequences.
    """
    diagnoses = diagnose(verdict.results)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>lance-offsets check: {escape(verdict.store)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>lance-offsets check: <code>{escape(verdict.store)}</code></h1>",
        f'<p class="summary"><b>{escape(verdict.summary())}</b> in {verdict.seconds:.1f} s '
        f"(profile {escape(verdict.profile or 'default')}"
        f"{', long stress runs' if verdict.stress else ''}, seed {verdict.seed}). "
        f"Replay: <code>{escape(verdict.replay())}</code></p>",
        f'<p class="stopped">{escape(verdict.stopped())}</p>' if verdict.interrupted else "",
        _causes(diagnoses),
        _table(verdict.results, verdict.not_run),
        _reasons(verdict.results),
    ]
    parts += [_failure(r, diagnoses.get(r.id)) for r in failure_order(verdict.results, diagnoses)]
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p) + "\n"


def _table(results: Sequence[PropertyResult], not_run: Sequence[str] = ()) -> str:
    rows = [
        '<table class="properties"><thead><tr><th>ID</th><th>property</th><th>outcome</th>'
        "<th>seconds</th><th>evidence</th></tr></thead><tbody>"
    ]
    rows.extend(
        f'<tr class="{escape(r.outcome)}" data-property="{escape(r.id)}">'
        f"<td>{_link(r)}</td><td>{escape(PROPERTIES[r.id].title)}</td>"
        f'<td class="outcome">{escape(r.outcome)}</td><td class="num">{r.seconds:.2f}</td>'
        f'<td class="evidence">{escape(evidence_text(r.evidence))}</td></tr>'
        for r in results
    )
    rows.extend(
        f'<tr class="not-run" data-property="{escape(pid)}"><td>{escape(pid)}</td>'
        f'<td>{escape(PROPERTIES[pid].title)}</td><td class="outcome">not run</td>'
        '<td class="num"></td><td class="evidence"></td></tr>'
        for pid in not_run
    )
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _link(result: PropertyResult) -> str:
    pid = escape(result.id)
    return f'<a href="#failure-{pid}">{pid}</a>' if result.outcome == "failed" else pid


def _reasons(results: Sequence[PropertyResult]) -> str:
    reasons = [r for r in results if r.outcome in ("unverified", "not-applicable")]
    if not reasons:
        return ""
    items = "".join(
        f"<li><b>{escape(r.id)}</b> {escape(r.outcome)}: {escape(r.details)}</li>" for r in reasons
    )
    return f'<h2>Not exercised</h2><ul class="reasons">{items}</ul>'


def _causes(diagnoses: dict[str, Diagnosis]) -> str:
    """The run's likely causes, the one behind most failures first (``ul.causes``)."""
    if not diagnoses:
        return ""
    items = []
    for root in root_causes(diagnoses):
        follows, label = root.follows(), root.label()
        items.append(
            f'<li class="cause" data-cause="{escape(root.cause.id)}" '
            f'data-root="{escape(root.root)}"><b>{label} {escape(root.root)}</b>: '
            f"{escape(root.cause.cause)}. <i>Usual remedy:</i> {escape(root.cause.remedy)}."
            + (f" ({escape('; '.join(follows))})" if follows else "")
            + "</li>"
        )
    return f'<h2>Likely causes</h2><ul class="causes">{"".join(items)}</ul>'


def _failure(result: PropertyResult, diagnosis: Diagnosis | None = None) -> str:
    pid = escape(result.id)
    after = ""
    if diagnosis is not None and diagnosis.consequence_of:
        after = f" (consequence of {escape(diagnosis.consequence_of)}'s cause)"
    violation = result.details.split("\n", 1)[0]
    parts = [
        f'<section class="failure" id="failure-{pid}" data-property="{pid}">',
        f"<h2>{pid} {escape(PROPERTIES[result.id].title)}: failed{after}</h2>",
        f'<p class="violation"><b>{escape(violation)}</b></p>',
    ]
    if diagnosis is not None:
        told = "".join(f"<li>{escape(line)}</li>" for line in explain(diagnosis))
        parts.append(f'<ul class="diagnosis">{told}</ul>')
    history = result.artifacts.get("history")
    if history:
        parts.append(_timeline(history))
    crash_state = result.artifacts.get("crash_state")
    if crash_state:
        parts.append(_crash_state(crash_state))
    parts += [
        "<h3>Counterexample</h3>",
        f'<pre class="counterexample">{escape(result.details)}</pre>',
        "</section>",
    ]
    return "\n".join(parts)


# -- M1/M2: the concurrent history as a timeline ----------------------------------------------


def _op_words(op: Mapping[str, Any]) -> str:
    key = ", ".join(str(k) for k in op["key"])
    if op["kind"] == "save":
        what = f"save ({key}) = {op['value']}"
    elif op["kind"] == "load":
        what = f"load ({key}) -> {op['result'] if op['outcome'] == 'ok' else '?'}"
    else:
        what = f"delete ({key})"
    return what


def _op_when(op: Mapping[str, Any]) -> str:
    end = "never returned" if op["return"] is None else f"{op['return'] * 1000:.3f}"
    how = op["outcome"] + (f" ({op['error']})" if op.get("error") else "")
    return f"[{op['call'] * 1000:.3f} .. {end}] ms, {how}"


def _timeline(history: Mapping[str, Any]) -> str:
    ops: list[Mapping[str, Any]] = list(history["operations"])
    if not ops:
        return ""
    processes = sorted({op["process"] for op in ops})
    start: float = min(op["call"] for op in ops)
    end: float = max(op["call"] if op["return"] is None else op["return"] for op in ops)
    span = end - start or 1e-6
    # Room after the last return, so that a bar that never returned visibly runs on.
    stop = end + span * 0.04

    def x(t: float) -> float:
        return _LABEL_WIDTH + (t - start) / (stop - start) * _PLOT_WIDTH

    height = _AXIS_HEIGHT + _LANE_HEIGHT * len(processes)
    svg = [
        f'<svg class="timeline" '
        f'width="{_LABEL_WIDTH + _PLOT_WIDTH + 10}" height="{height}" '
        f'viewBox="0 0 {_LABEL_WIDTH + _PLOT_WIDTH + 10} {height}">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ddd"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#888" stroke-width="3"/></pattern></defs>',
        _axis(start, stop, x, height),
    ]
    excerpt = sorted((op for op in ops if op["excerpt"]), key=lambda op: op["call"])
    numbers = {(op["process"], op["seq"]): n for n, op in enumerate(excerpt, 1)}
    for row, process in enumerate(processes):
        top = _AXIS_HEIGHT + row * _LANE_HEIGHT
        mine = [op for op in ops if op["process"] == process]
        svg.append(f'<g class="lane" data-process="{int(process)}">')
        svg.append(
            f'<rect class="lane-bg" x="0" y="{top}" width="{_LABEL_WIDTH + _PLOT_WIDTH + 10}" '
            f'height="{_LANE_HEIGHT}"/>'
        )
        svg.append(
            f'<text class="lane-label" x="6" y="{top + _LANE_HEIGHT / 2 + 4}">'
            f"worker {int(process)}</text>"
        )
        svg += [
            _bar(
                op,
                top,
                (x(op["call"]), x(stop if op["return"] is None else op["return"])),
                numbers.get((op["process"], op["seq"])),
            )
            for op in mine
        ]
        svg.append("</g>")
    svg.append("</svg>")
    total = history.get("operations in history", len(ops))
    caption = (
        f'<p class="history-caption">{escape(str(history.get("summary", "")))}</p>'
        f"<p>{len(ops)} of {total} operations drawn (those nearest the excerpt), "
        f"{len(processes)} worker processes, {len(excerpt)} in the excerpt. Times in ms after "
        "the workers' start signal; hover a bar for its details.</p>"
    )
    return "\n".join(
        [
            "<h3>Timeline of the concurrent history</h3>",
            caption,
            _legend(str(history.get("violation", ""))),
            *svg,
            _excerpt(excerpt),
        ]
    )


def _axis(start: float, stop: float, x: Callable[[float], float], height: int) -> str:
    ticks = ['<g class="axis">']
    for i in range(_TICKS + 1):
        t = start + (stop - start) * i / _TICKS
        at = x(t)
        ticks.append(
            f'<line x1="{at:.1f}" y1="{_AXIS_HEIGHT - 6}" x2="{at:.1f}" y2="{height}" '
            'stroke="#bbb" stroke-width="0.5"/>'
            f'<text x="{at:.1f}" y="{_AXIS_HEIGHT - 10}" text-anchor="middle">'
            f"{t * 1000:.2f} ms</text>"
        )
    ticks.append("</g>")
    return "".join(ticks)


def _bar(op: Mapping[str, Any], top: int, span: tuple[float, float], number: int | None) -> str:
    """One operation's bar in its lane; ``number``: its place in the excerpt (None: not in it)."""
    left, right = span
    width = max(2.0, right - left)
    classes = ["op", op["kind"], op["outcome"]]
    if op["return"] is None:
        classes.append("open")
    if number is not None:
        classes.append("excerpt")
    words = _op_words(op)
    y = top + (_LANE_HEIGHT - _BAR_HEIGHT) / 2
    bar = (
        f'<rect class="{escape(" ".join(classes))}" x="{left:.2f}" y="{y:.1f}" '
        f'width="{width:.2f}" height="{_BAR_HEIGHT}" data-process="{int(op["process"])}" '
        f'data-seq="{int(op["seq"])}" data-kind="{escape(op["kind"])}" '
        f'data-outcome="{escape(op["outcome"])}"'
        + (f' data-excerpt="{number}">' if number is not None else ">")
        + f"<title>worker {int(op['process'])} #{int(op['seq'])}: {escape(words)} "
        f"{escape(_op_when(op))}</title></rect>"
    )
    if number is not None:
        # Above the bar, its number in the excerpt's table: readable however short the call
        # was, and however close the excerpt's calls are to each other.
        bar += f'<text class="excerpt-label" x="{left:.2f}" y="{y - 2:.1f}">{number}</text>'
    elif width >= _LABELLED_WIDTH:
        # Inside the bar, cut to fit (SVG text does not clip); the tooltip has it whole.
        room = int((width - 4) / _CHAR_WIDTH)
        shown = words if len(words) <= room else words[: room - 1] + "…"
        bar += (
            f'<text class="op-label" x="{left + 2:.2f}" y="{y + _BAR_HEIGHT - 3:.1f}">'
            f"{escape(shown)}</text>"
        )
    return bar


def _legend(violation: str) -> str:
    items = [
        ("save", "background:#7fb3e6"),
        ("load", "background:#9fd49f"),
        ("delete", "background:#e6b07f"),
        ("fail (documented: no effect)", "background:#7fb3e6;opacity:0.45"),
        ("effect unknown (raised something undocumented)", "border:1.5px dashed #000"),
        (
            "never returned (worker killed): runs to the end",
            "background:repeating-linear-gradient(45deg,#ddd 0 3px,#888 3px 6px);"
            "border:1.5px dashed #000",
        ),
        (
            "minimal non-linearizable excerpt"
            if violation == "not-linearizable"
            else f"the operations showing the violation ({violation})",
            "background:#fff;border:2.5px solid #d00",
        ),
    ]
    spans = "".join(
        f'<span><i class="swatch" style="{style}"></i>{escape(name)}</span>'
        for name, style in items
    )
    return f'<p class="legend">{spans}</p>'


def _excerpt(excerpt: Sequence[Mapping[str, Any]]) -> str:
    rows = "".join(
        f'<tr class="excerpt-op"><td class="num">{n}</td><td>worker {int(op["process"])}</td>'
        f"<td>#{int(op['seq'])}</td><td>{escape(_op_words(op))}</td>"
        f"<td>{escape(_op_when(op))}</td></tr>"
        for n, op in enumerate(excerpt, 1)
    )
    return (
        '<h4>The excerpt</h4><table class="excerpt"><thead><tr><th></th><th>process</th>'
        "<th>op</th><th>call</th><th>when, outcome</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


# -- D3: the crash state beside the trace ------------------------------------------------------


def _crash_state(state: Mapping[str, Any]) -> str:
    files = "".join(
        f'<tr class="file" data-path="{escape(f["path"])}" data-type="{escape(f["type"])}">'
        f"<td><code>{escape(f['path'])}</code></td>"
        + (
            "<td>directory</td><td></td>"
            if f["type"] == "dir"
            else f'<td class="num">{int(f["size"])} bytes</td><td class="content">'
            f"{escape(f['content'])}{' … (truncated)' if f.get('truncated') else ''}</td>"
        )
        + "</tr>"
        for f in state["files"]
    )
    trace = "".join(_trace_op(op) for op in state["trace"])
    expected = "".join(
        f"<li><code>{escape(k)}</code>: {escape(v)}</li>" for k, v in state["expected"].items()
    )
    problems = "".join(f"<li>{escape(p)}</li>" for p in state["problems"])
    data = "".join(f"<li><code>{escape(d)}</code></li>" for d in state["data"])
    return (
        f"<h3>The crash state (power cut after operation #{int(state['point'])})</h3>"
        f'<ul class="problems">{problems}</ul>'
        f"<p>Expected: </p><ul>{expected}</ul><p>Found: {escape(state['found'])}</p>"
        + (f"<p>Unsynced data at the cut:</p><ul>{data}</ul>" if data else "")
        + '<div class="crash-state"><div><h4>Files left</h4><table class="files"><thead><tr>'
        "<th>path</th><th>size</th><th>content</th></tr></thead>"
        f"<tbody>{files}</tbody></table></div>"
        "<div><h4>Trace up to the cut</h4><p>Entry operations pending at the cut are marked "
        '<span style="background:#dfd">persisted</span> or '
        '<span style="background:#fdd">undone</span>.</p>'
        f'<ol class="trace" start="0">{trace}</ol></div></div>'
    )


def _trace_op(op: Mapping[str, Any]) -> str:
    fate = escape(op["fate"])
    mark = f" <b>[{fate}]</b>" if fate else ""
    index = int(op["index"])
    # The list numbers the operations already: drop the text's own "#N ".
    text = str(op["text"]).removeprefix(f"#{index} ")
    return (
        f'<li class="trace-op {fate}" value="{index}" data-index="{index}">'
        f"{escape(text)}{mark}</li>"
    )
