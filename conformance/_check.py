"""``lance-offsets check``: the conformance verdict on one store, a row per property.

Wired into the CLI by ``lance_offsets._cli`` through :func:`add_arguments` and :func:`run`.
Exit status: 0 when every applicable property passed, 1 when any failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from lance_offsets.stress._options import choose_seed

from ._catalog import PROPERTIES
from ._profiles import DEFAULT_PROFILE, PROFILES
from ._results import PropertyResult
from ._run import run_checks
from ._spec import DEFAULT_SPEC, SpecError, cwd_importable, load_factory

__all__ = ["add_arguments", "report_json", "run"]


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
        "--stress",
        action="store_true",
        help="run the long versions of the multi-process properties (minutes)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="SEED",
        help="seed of the multi-process runs, to replay a failure (default: fresh, printed)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="check N properties at once, each in its own process (same verdict as serial)",
    )


def _row(result: PropertyResult, out: TextIO) -> None:
    title = PROPERTIES[result.id].title
    print(f"{result.id:<4} {title:<50} {result.outcome:<15} {result.seconds:7.2f}s", file=out)
    out.flush()


def report_json(spec: str, results: list[PropertyResult], seconds: float) -> dict[str, Any]:
    """The JSON verdict: store, outcome per property, details per property, total seconds."""
    return {
        "store": spec,
        "properties": {r.id: r.outcome for r in results},
        "details": {
            r.id: {
                "title": PROPERTIES[r.id].title,
                "seconds": round(r.seconds, 3),
                "details": r.details,
            }
            for r in results
        },
        "seconds": round(seconds, 3),
    }


def run(args: argparse.Namespace) -> int:
    """Run the checks ``args`` ask for, print the table and failures, return the exit status."""
    out = sys.stdout
    only = None
    if args.only:
        only = [p.strip().upper() for p in args.only.split(",") if p.strip()]
        unknown = [p for p in only if p not in PROPERTIES]
        if unknown:
            print(
                f"lance-offsets check: unknown property IDs {unknown}; known: "
                f"{', '.join(PROPERTIES)}",
                file=sys.stderr,
            )
            return 2
    if args.workers < 1:
        print("lance-offsets check: --workers must be at least 1", file=sys.stderr)
        return 2
    cwd_importable()
    try:
        load_factory(args.spec)
    except SpecError as exc:
        print(f"lance-offsets check: {exc}", file=sys.stderr)
        return 2
    seed = choose_seed() if args.seed is None else args.seed
    print(
        f"checking {args.spec} (profile {args.profile}"
        f"{', long stress runs' if args.stress else ''}, {args.workers} worker(s), "
        f"stress seed {seed}: replay with --seed {seed})",
        file=out,
    )
    start = time.monotonic()
    try:
        results = run_checks(
            args.spec,
            profile=args.profile,
            only=only,
            stress=args.stress,
            workers=args.workers,
            seed=seed,
            progress=(lambda r: _row(r, out)) if args.workers == 1 else None,
        )
    except SpecError as exc:
        print(f"lance-offsets check: {exc}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - start
    if args.workers > 1:
        for result in results:
            _row(result, out)
    failed = [r for r in results if r.outcome == "failed"]
    for result in results:
        if result.outcome == "not-applicable":
            print(f"  {result.id} not applicable: {result.details}", file=out)
    for result in failed:
        print(f"\n=== {result.id} {PROPERTIES[result.id].title}: FAILED ===", file=out)
        print(result.details, file=out)
    passed = sum(r.outcome == "passed" for r in results)
    print(
        f"\n{passed} passed, {len(failed)} failed, "
        f"{len(results) - passed - len(failed)} not applicable in {seconds:.1f}s",
        file=out,
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(report_json(args.spec, results, seconds), file, indent=2)
            file.write("\n")
    return 1 if failed else 0
