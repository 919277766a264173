"""The verdict of ``lance-offsets check`` as files: JSON, Markdown and JUnit XML.

JSON is for programs, Markdown for a CI page such as ``$GITHUB_STEP_SUMMARY``, JUnit XML for CI
test tabs.

Every writer takes one :class:`Verdict`, so the three files always tell the same story. The JSON
layout is versioned (:data:`SCHEMA`); fields are only ever added under one version.
"""

from __future__ import annotations

import datetime
import platform
import shlex
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html import escape
from typing import Any, Final

from lance_offsets.stress._options import DEFAULT_TEAR_SIZE

from lance_offsets._version import __version__

from ._catalog import PROPERTIES
from ._diagnosis import (
    Diagnosis,
    diagnose,
    diagnosis_json,
    explain,
    failure_order,
    root_causes,
    root_causes_json,
)
from ._results import OUTCOMES, PropertyResult, evidence_text

__all__ = ["SCHEMA", "Verdict", "report_json", "report_junit", "report_markdown"]

#: Name and version of the JSON report's layout.
SCHEMA: Final = "lance-offsets-check/1"

_MARK: Final = {
    "passed": "✅",
    "failed": "❌",
    "unverified": "⚠️",
    "not-applicable": "\N{HEAVY MINUS SIGN}",
}
#: The mark of a property an interrupted run never reached.
_NOT_RUN_MARK: Final = "\N{BLACK SQUARE FOR STOP}"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True)
class Verdict:
    """One run of the check: what was asked, and what each property got."""

    store: str
    results: list[PropertyResult]
    seconds: float
    seed: int | None = None
    profile: str | None = None
    stress: bool = False
    strict: bool = False
    ended: datetime.datetime = field(default_factory=_now)
    #: The property IDs ``--only`` asked for, in the order given (None: all of them).
    only: tuple[str, ...] | None = None
    #: Properties checked at once (``--workers``); the verdict does not depend on it.
    workers: int = 1
    #: The bytes a disk writes atomically in D3's and B1's power cuts (``--tear-size``).
    tear_size: int = DEFAULT_TEAR_SIZE
    #: The signal that stopped the run early (``"SIGINT"``, ``"SIGTERM"``), or None.
    interrupted: str | None = None
    #: Properties asked for that had not finished when the run was interrupted.
    not_run: tuple[str, ...] = ()
    #: ``(K, N)`` when this run was shard K of N (``--shard K/N``); None for a whole run.
    shard: tuple[int, int] | None = None
    #: How many shards' verdicts ``report merge`` joined into this one; None when not merged.
    merged_shards: int | None = None
    #: What ran the check (``json_document``'s ``python`` and ``platform``); None: this process.
    #: A merged verdict keeps its shards'.
    python: str | None = None
    platform: str | None = None

    @property
    def started(self) -> datetime.datetime:
        return self.ended - datetime.timedelta(seconds=self.seconds)

    def counts(self) -> dict[str, int]:
        """How many properties got each outcome, most serious first."""
        return {o: sum(r.outcome == o for r in self.results) for o in OUTCOMES}

    def summary(self) -> str:
        """``"20 passed, 1 failed, 1 unverified, 1 not applicable"`` (and what did not run)."""
        counts = self.counts()
        text = (
            f"{counts['passed']} passed, {counts['failed']} failed, {counts['unverified']} "
            f"unverified, {counts['not-applicable']} not applicable"
        )
        if self.interrupted:
            text += f", {len(self.not_run)} not run (interrupted by {self.interrupted})"
        return text

    def stopped(self) -> str:
        """What an interrupted run did not check, in a sentence; ``""`` for a whole run."""
        if not self.interrupted:
            return ""
        left = ", ".join(self.not_run) or "none"
        return (
            f"Interrupted by {self.interrupted} after {len(self.results)} properties: these "
            f"did not run and have no verdict: {left}."
        )

    def replay(self) -> str:
        """The command that asks for this run again: every option that shapes the verdict."""
        words = ["lance-offsets", "check", shlex.quote(self.store)]
        if self.only is not None:
            words += ["--only", ",".join(self.only)]
        if self.profile:
            words += ["--profile", self.profile]
        if self.stress:
            words.append("--stress")
        if self.seed is not None:
            words += ["--seed", str(self.seed)]
        if self.strict:
            words.append("--strict")
        if self.tear_size != DEFAULT_TEAR_SIZE:
            words += ["--tear-size", str(self.tear_size)]
        if self.workers > 1:
            words += ["--workers", str(self.workers)]
        if self.shard is not None:
            words += ["--shard", f"{self.shard[0]}/{self.shard[1]}"]
        return " ".join(words)

    def fails(self, result: PropertyResult) -> bool:
        """Whether ``result`` fails the run (unverified only under ``--strict``)."""
        return result.outcome == "failed" or (self.strict and result.outcome == "unverified")


def report_json(
    store: str,
    results: list[PropertyResult],
    seconds: float,
    *,
    seed: int | None = None,
    profile: str | None = None,
    stress: bool = False,
    strict: bool = False,
) -> dict[str, Any]:
    """The JSON verdict (docs/conformance.md, "The JSON file"), built from its parts."""
    return json_document(Verdict(store, results, seconds, seed, profile, stress, strict))


def this_platform() -> str:
    """The JSON verdict's ``platform`` for this process: OS, machine, and the details."""
    return f"{sys.platform} {platform.machine()} ({platform.platform()})"


def json_document(verdict: Verdict) -> dict[str, Any]:
    """The JSON verdict of ``verdict``: run facts, outcome per property, details and evidence."""
    diagnoses = diagnose(verdict.results)
    return {
        "schema": SCHEMA,
        "package": {"name": "lance-offsets", "version": __version__},
        "python": verdict.python or platform.python_version(),
        "platform": verdict.platform or this_platform(),
        "store": verdict.store,
        "profile": verdict.profile,
        "stress": verdict.stress,
        "strict": verdict.strict,
        "seed": verdict.seed,
        "only": list(verdict.only) if verdict.only is not None else None,
        "workers": verdict.workers,
        "tear_size": verdict.tear_size,
        "interrupted": verdict.interrupted,
        "not_run": list(verdict.not_run),
        "shard": (
            {"index": verdict.shard[0], "count": verdict.shard[1]} if verdict.shard else None
        ),
        "merged_shards": verdict.merged_shards,
        "replay": verdict.replay(),
        "started": verdict.started.isoformat(timespec="seconds"),
        "ended": verdict.ended.isoformat(timespec="seconds"),
        "seconds": round(verdict.seconds, 3),
        "properties": {r.id: r.outcome for r in verdict.results},
        "counts": verdict.counts(),
        "root_causes": root_causes_json(diagnoses),
        "details": {
            r.id: {
                "title": PROPERTIES[r.id].title,
                "outcome": r.outcome,
                "seconds": round(r.seconds, 3),
                "details": r.details,
                "evidence": dict(r.evidence),
                "artifacts": dict(r.artifacts),
                "diagnosis": diagnosis_json(diagnoses.get(r.id)),
            }
            for r in verdict.results
        },
    }


def _cell(text: str) -> str:
    # A table cell is one line, and a pipe would end it early.
    return text.replace("|", "\\|").replace("\n", " ")


def _fence(text: str) -> str:
    # A counterexample may itself hold backticks; a longer fence than any run inside it is safe.
    longest = max((len(run) for run in text.split("\n") if set(run) == {"`"}), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}text\n{text}\n{ticks}"


#: Characters Markdown could read as markup in running text (``2**32`` as bold, ``<x>`` as HTML).
_MARKUP: Final = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>|"})


def _prose(text: str) -> str:
    """``text`` as literal Markdown prose: markup characters escaped."""
    return text.translate(_MARKUP)


def _first_line(text: str, limit: int = 300) -> str:
    line = text.split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _markdown_causes(diagnoses: dict[str, Diagnosis]) -> list[str]:
    """The run's likely causes, the one behind most failures first, as a Markdown list."""
    if not diagnoses:
        return []
    lines = ["### Likely causes", ""]
    for root in root_causes(diagnoses):
        follows, label = root.follows(), root.label()
        lines.append(
            f"- **{label} {root.root}**: {_prose(root.cause.cause)}. *Usual remedy:* "
            f"{_prose(root.cause.remedy)}." + (f" ({'; '.join(follows)})" if follows else "")
        )
    return [*lines, ""]


def report_markdown(verdict: Verdict) -> str:
    """A Markdown page: summary, likely causes, a row per property, each failure's counterexample.

    Each failure's folded block leads with the violation (its summary line), then the likely
    cause and usual remedy, then the whole counterexample; roots come before their consequences.
    """
    diagnoses = diagnose(verdict.results)
    lines = [
        f"## lance-offsets check: `{verdict.store}`",
        "",
        f"**{verdict.summary()}** in {verdict.seconds:.1f} s "
        f"(profile {verdict.profile or 'default'}{', long stress runs' if verdict.stress else ''}"
        f", seed {verdict.seed}). Replay: `{verdict.replay()}`",
        "",
        *([f"**{verdict.stopped()}**", ""] if verdict.interrupted else []),
        *_markdown_causes(diagnoses),
        "| | ID | property | outcome | seconds | evidence |",
        "|---|---|---|---|---:|---|",
    ]
    lines.extend(
        f"| {_MARK[r.outcome]} | {r.id} | {_cell(PROPERTIES[r.id].title)} | {r.outcome} | "
        f"{r.seconds:.2f} | {_cell(evidence_text(r.evidence))} |"
        for r in verdict.results
    )
    lines.extend(
        f"| {_NOT_RUN_MARK} | {pid} | {_cell(PROPERTIES[pid].title)} | not run | | |"
        for pid in verdict.not_run
    )
    reasons = [r for r in verdict.results if r.outcome in ("unverified", "not-applicable")]
    if reasons:
        lines += ["", "### Not exercised", ""]
        lines += [f"- **{r.id}** {r.outcome}: {_cell(r.details)}" for r in reasons]
    for r in failure_order(verdict.results, diagnoses):
        diagnosis = diagnoses.get(r.id)
        told = [f"{_prose(line)}  " for line in explain(diagnosis)] if diagnosis else []
        lines += [
            "",
            f"<details><summary><b>{r.id} {PROPERTIES[r.id].title}: failed</b>: "
            f"{escape(_first_line(r.details), quote=False)}</summary>",
            "",
            *told,
            *([""] if told else []),
            _fence(r.details),
            "",
            "</details>",
        ]
    return "\n".join(lines) + "\n"


def report_junit(verdict: Verdict) -> bytes:
    """JUnit XML: one test case per property; failures carry the counterexample."""
    counts = verdict.counts()
    diagnoses = diagnose(verdict.results)
    failing = sum(verdict.fails(r) for r in verdict.results)
    suite = ET.Element(
        "testsuite",
        name=f"lance-offsets check {verdict.store}",
        tests=str(len(verdict.results) + len(verdict.not_run)),
        failures=str(failing),
        errors="0",
        skipped=str(
            counts["unverified"]
            + counts["not-applicable"]
            - (failing - counts["failed"])
            + len(verdict.not_run)
        ),
        time=f"{verdict.seconds:.3f}",
        timestamp=verdict.started.isoformat(timespec="seconds"),
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (("seed", verdict.seed), ("profile", verdict.profile)):
        ET.SubElement(properties, "property", name=name, value=str(value))
    for r in verdict.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"lance_offsets.check.{verdict.store}",
            name=f"{r.id} {PROPERTIES[r.id].title}",
            time=f"{r.seconds:.3f}",
        )
        first = r.details.split("\n", 1)[0][:500]
        if verdict.fails(r):
            # The message (what a CI test tab shows first) is the violation; the text adds the
            # likely cause and remedy after the counterexample.
            failure = ET.SubElement(case, "failure", message=first, type=r.outcome)
            diagnosis = diagnoses.get(r.id)
            told = "\n".join(explain(diagnosis)) + "\n\n" if diagnosis else ""
            failure.text = f"{r.details}\n\n{told}replay: {verdict.replay()}"
        elif r.outcome in ("unverified", "not-applicable"):
            ET.SubElement(case, "skipped", message=f"{r.outcome}: {first}")
        if r.evidence:
            ET.SubElement(case, "system-out").text = evidence_text(r.evidence)
    for pid in verdict.not_run:  # an interrupted run: asked for, never checked
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"lance_offsets.check.{verdict.store}",
            name=f"{pid} {PROPERTIES[pid].title}",
            time="0.000",
        )
        message = f"not run: the check was interrupted by {verdict.interrupted} before it"
        ET.SubElement(case, "skipped", message=message)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document
