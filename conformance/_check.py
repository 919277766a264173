"""``lance-offsets check``: the conformance verdict on one store, a row per property.

Wired into the CLI by ``lance_offsets._cli`` through :func:`add_arguments` and :func:`run`.
Exit status: 0 when no property failed, 1 when any failed (with ``--strict``, also when any is
unverified), 2 on a usage error. ``unverified`` (claimed, but the suite could not exercise it here)
does not fail a plain check: the store broke nothing the suite could see, and a store whose I/O the
suite cannot observe is not wrong for that. The report says so on every such row.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import time
from typing import Final, TextIO

from lance_offsets.stress._options import DEFAULT_TEAR_SIZE, choose_seed, tear_size

from lance_offsets._cli_common import os_errors, print_error
from lance_offsets._cli_os_errors import os_error_line
from lance_offsets._interrupt import Interrupted, exit_code

from ._catalog import PROPERTIES, property_ids
from ._diagnosis import Diagnosis, diagnose, explain, failure_order, root_causes
from ._driver import DriverError
from ._html import report_html
from ._profiles import DEFAULT_PROFILE, PROFILES
from ._progress import Estimate, ProgressLine
from ._report import Verdict, json_document, report_json, report_junit, report_markdown
from ._results import PropertyResult, evidence_text
from ._run import default_stress_options, run_checks
from ._shards import Shard, parse_shard, share
from ._spec import DEFAULT_SPEC, SpecError, canonical_spec, cwd_importable, load_factory

__all__ = [
    "add_arguments",
    "print_verdict",
    "report_json",
    "run",
    "unwritable_report",
    "write_reports",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``check`` arguments to ``parser``."""
    parser.add_argument(
        "spec",
        nargs="?",
        default=DEFAULT_SPEC,
        metavar="SPEC",
        help=f"store factory as 'package.module:factory', called as factory(path) "
        f"(default: {DEFAULT_SPEC}, the lock-file store in a temporary directory)",
    )
    parser.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        choices=sorted(PROFILES),
        help=f"Hypothesis profile (default {DEFAULT_PROFILE}; ci is derandomized)",
    )
    parser.add_argument(
        "--only",
        metavar="IDS",
        default=None,
        help="comma-separated property IDs to check, e.g. C1,C5,P2 (default: all)",
    )
    parser.add_argument(
        "--json", metavar="FILE", default=None, help="also write the verdict as JSON"
    )
    parser.add_argument(
        "--markdown",
        metavar="FILE",
        default=None,
        help="also append the verdict as Markdown (e.g. to $GITHUB_STEP_SUMMARY)",
    )
    parser.add_argument(
        "--junit",
        metavar="FILE",
        default=None,
        help="also write the verdict as JUnit XML, one test case per property",
    )
    parser.add_argument(
        "--html",
        metavar="FILE",
        default=None,
        help="also write one self-contained HTML page: the table, each counterexample, and "
        "drawings of the failing history (M1/M2) or crash state (D3)",
    )
    parser.add_argument(
        "--stress",
        action="store_true",
        help="run the long versions of the multi-process properties (minutes)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="SEED",
        help="seed of everything drawn at random (the Hypothesis examples and the multi-process "
        "runs): the same command and seed give the same verdict in any directory "
        "(default: fresh, printed)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when any property is unverified (claimed, but not exercised here), "
        "not only when one failed",
    )
    parser.add_argument(
        "--tear-size",
        type=_tear_size,
        default=DEFAULT_TEAR_SIZE,
        metavar="BYTES",
        help="the bytes a disk writes atomically in D3's and B1's power cuts: 512 (a sector, "
        "the default), 4096 (4k: most current drives) or 1 (any byte: the pessimistic model)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="check N properties at once, each in its own process (same verdict as serial)",
    )
    parser.add_argument(
        "--shard",
        metavar="K/N",
        default=None,
        help="run only shard K of N: the selected properties split by expected cost, those of "
        "one campaign together; with one --seed for all N, 'lance-offsets report merge' joins "
        "the shards' --json verdicts into the verdict of one machine",
    )


def _tear_size(text: str) -> int:
    try:
        return tear_size(text)
    except ValueError as exc:  # argparse shows an ArgumentTypeError's message, not a ValueError's
        raise argparse.ArgumentTypeError(str(exc)) from None


def _row(result: PropertyResult) -> str:
    title = PROPERTIES[result.id].title
    line = f"{result.id:<4} {title:<50} {result.outcome:<15} {result.seconds:7.2f}s"
    if result.evidence:
        line += f"  {evidence_text(result.evidence)}"
    return line


_OUTPUTS: Final = ("json", "markdown", "junit", "html")


def _unwritable(option: str, path: str) -> str | None:
    """Why a report cannot be written to ``path``, found before minutes of work; or None."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"--{option} {path}: is a directory"
    if not os.path.isdir(folder):
        return f"--{option} {path}: no such directory {folder}"
    if not os.access(folder, os.W_OK):
        denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), folder)
        return os_error_line(denied, f"write the --{option} report {path!r}", writing=True)
    return None


def _write_reports(args: argparse.Namespace, verdict: Verdict) -> None:
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(json_document(verdict), file, indent=2)
            file.write("\n")
    if args.markdown:
        # Appended: $GITHUB_STEP_SUMMARY collects every step's summary in one file.
        with open(args.markdown, "a", encoding="utf-8") as file:
            file.write(report_markdown(verdict))
    if args.junit:
        with open(args.junit, "wb") as file:
            file.write(report_junit(verdict))
    if args.html:
        with open(args.html, "w", encoding="utf-8") as file:
            file.write(report_html(verdict))


class _UsageError(Exception):
    """A bad argument, found before any work; ``main`` prints it and exits 2."""


def _selected(only: str | None) -> list[str] | None:
    """The property IDs ``--only`` names (None: all); unknown or no IDs are a usage error."""
    if only is None:
        return None
    ids = [p.strip().upper() for p in only.split(",") if p.strip()]
    if not ids:
        raise _UsageError(f"--only {only!r} names no property; known: {', '.join(PROPERTIES)}")
    unknown = [p for p in ids if p not in PROPERTIES]
    if unknown:
        raise _UsageError(f"unknown property IDs {unknown}; known: {', '.join(PROPERTIES)}")
    return ids


def _validate(args: argparse.Namespace) -> list[str] | None:
    """Check every argument before minutes of work; return the selected IDs."""
    only = _selected(args.only)
    if args.workers < 1:
        raise _UsageError("--workers must be at least 1")
    _shard(args)
    for option in _OUTPUTS:
        path = getattr(args, option)
        unwritable = _unwritable(option, path) if path else None
        if unwritable:
            raise _UsageError(unwritable)
    cwd_importable()
    try:
        load_factory(args.spec)
        # An exec: spec means the same program in every process, whatever its directory.
        args.spec = canonical_spec(args.spec)
    except SpecError as exc:
        raise _UsageError(str(exc)) from exc
    return only


def _shard(args: argparse.Namespace) -> Shard | None:
    """The shard ``--shard K/N`` names (None: the whole run); a bad one is a usage error."""
    if args.shard is None:
        return None
    try:
        return parse_shard(args.shard)
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc


def _causes(diagnoses: dict[str, Diagnosis], out: TextIO) -> None:
    """The run's likely causes, the one behind most failures first, each with its remedy."""
    if not diagnoses:
        return
    print("\nLikely causes, the one behind most failures first:", file=out)
    for root in root_causes(diagnoses):
        follows, label = root.follows(), root.label()
        print(f"  {label} {root.root}: {root.cause.cause}", file=out)
        print(f"    usual remedy: {root.cause.remedy}", file=out)
        if follows:
            print(f"    {'; '.join(follows)}", file=out)


def _failure(result: PropertyResult, diagnosis: Diagnosis | None, out: TextIO) -> None:
    """One failure: the violation first, then its likely cause and remedy, then the rest."""
    title = PROPERTIES[result.id].title
    after = (
        f" (consequence of {diagnosis.consequence_of}'s cause)"
        if diagnosis and diagnosis.consequence_of
        else ""
    )
    print(f"\n=== {result.id} {title}: FAILED{after} ===", file=out)
    violation, _, rest = result.details.partition("\n")
    print(violation, file=out)
    for line in explain(diagnosis) if diagnosis else []:
        print(line, file=out)
    if rest:
        print(rest, file=out)


def _report(verdict: Verdict, out: TextIO) -> None:
    """Print what follows the table: reasons, likely causes, failures, the closing line.

    Failures come root first: a failure whose likely cause another failure shows more directly
    follows that one, marked as its consequence.
    """
    for result in verdict.results:
        if result.outcome in ("unverified", "not-applicable"):
            word = result.outcome.replace("-", " ")
            reason = result.details.replace("\n", "\n      ")  # continuation under its row
            print(f"  {result.id} {word}: {reason}", file=out)
    diagnoses = diagnose(verdict.results)
    _causes(diagnoses, out)
    for result in failure_order(verdict.results, diagnoses):
        _failure(result, diagnoses.get(result.id), out)
    unverified = verdict.counts()["unverified"]
    if unverified:
        effect = (
            "they fail it (--strict)" if verdict.strict else "they do not fail it (see --strict)"
        )
        print(
            f"\n{unverified} unverified: claimed by the store, but this check could not "
            f"exercise them here; {effect}",
            file=out,
        )
    print(
        f"\n{verdict.summary()} in {verdict.seconds:.1f}s (seed {verdict.seed}; replay: "
        f"{verdict.replay()})",
        file=out,
    )


def run(args: argparse.Namespace) -> int:
    """Run the checks ``args`` ask for, print the table and failures, return the exit status.

    Ctrl-C or SIGTERM (``lance_offsets._interrupt``, armed by the CLI) stops the run: the
    properties finished so far are reported (and written to every report asked for) as such, the
    rest as not run, with one line saying so; the exit status is 130 (SIGINT) or 143 (SIGTERM).
    """
    out = sys.stdout
    try:
        only = _validate(args)
    except _UsageError as exc:
        print_error(f"check: {exc}")
        return 2
    seed = choose_seed() if args.seed is None else args.seed
    ids = only if only is not None else property_ids()
    shard = _shard(args)
    if shard is not None:
        ids = share(ids, shard, profile=args.profile, stress=args.stress)
    print(
        f"checking {args.spec} (profile {args.profile}"
        f"{', long stress runs' if args.stress else ''}, {args.workers} worker(s), "
        f"seed {seed}: replay with --seed {seed})",
        file=out,
        flush=True,
    )
    if shard is not None:
        print(f"shard {shard}: {', '.join(ids) or 'no properties'}", file=out, flush=True)
    start = time.monotonic()
    timed = default_stress_options(args.stress, seed).seconds
    progress = ProgressLine(
        Estimate(ids, timed_seconds=timed, workers=args.workers), out, sys.stderr
    )
    finished: list[PropertyResult] = []

    def each(result: PropertyResult) -> None:
        finished.append(result)
        progress.finished(result, _row(result) if args.workers == 1 else None)

    stopped: Interrupted | None = None
    try:
        run_checks(
            args.spec,
            profile=args.profile,
            only=ids,
            stress=args.stress,
            workers=args.workers,
            seed=seed,
            progress=each,
            started=progress.started,
            say=lambda line: progress.line(f"  .. {line}"),
            tear_size=args.tear_size,
        )
    except SpecError as exc:
        progress.close()
        print_error(f"check: {exc}")
        return 2
    except DriverError as exc:  # the driver broke the protocol: no verdict on the store
        progress.close()
        print_error(f"check: {exc}")
        return 2
    except KeyboardInterrupt as exc:
        stopped = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
    finally:
        progress.close()
    seconds = time.monotonic() - start
    order = {pid: n for n, pid in enumerate(ids)}
    results = sorted(finished, key=lambda r: order[r.id])
    if args.workers > 1 and stopped is None:
        for result in results:
            print(_row(result), file=out)
    verdict = Verdict(
        args.spec,
        results,
        seconds,
        seed,
        args.profile,
        args.stress,
        args.strict,
        only=tuple(only) if only is not None else None,
        workers=args.workers,
        tear_size=args.tear_size,
        interrupted=stopped.name if stopped is not None else None,
        not_run=tuple(pid for pid in ids if pid not in {r.id for r in results}),
        shard=None if shard is None else (shard.index, shard.count),
    )
    if stopped is not None:
        with os_errors("write the reports", writing=True):
            _write_reports(args, verdict)
        written = [f"--{o}" for o in _OUTPUTS if getattr(args, o)]
        print_error(
            f"check: interrupted by {stopped.name} after {len(results)} of {len(ids)} properties"
            + (
                f"; {', '.join(written)} written with those, the other "
                f"{len(verdict.not_run)} marked not run"
                if written
                else ""
            )
        )
        return exit_code(stopped)
    _report(verdict, out)
    with os_errors("write the reports", writing=True):
        _write_reports(args, verdict)
    return 1 if any(verdict.fails(r) for r in results) else 0


# For ``lance-offsets report merge`` (``_report_cli.py``), which prints and writes as check does.


def print_verdict(verdict: Verdict, out: TextIO) -> None:
    """Print ``verdict`` as ``check`` does: a row per property, then what follows the table."""
    for result in verdict.results:
        print(_row(result), file=out)
    _report(verdict, out)


def unwritable_report(option: str, path: str) -> str | None:
    """Why the ``--option`` report cannot be written to ``path``, or None."""
    return _unwritable(option, path)


def write_reports(args: argparse.Namespace, verdict: Verdict) -> None:
    """Write ``verdict`` to each of ``args.json``, ``.markdown``, ``.junit``, ``.html`` given."""
    with os_errors("write the reports", writing=True):
        _write_reports(args, verdict)
