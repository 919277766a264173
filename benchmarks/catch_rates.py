"""How often the quick check catches each class of defect of the zoo, and spares its controls.

Each row is a zoo store (``tests/zoo``) checked on the properties that decide its class, once
per seed, exactly as ``lance-offsets check SPEC --only IDS --seed S`` checks it (a fresh process
per run). A defective store must fail the named property in every run; a correct control must
fail none of them. Prints, per row: the class, the store, what it must do, how many runs did it,
the mean seconds per run, the outcomes of all its runs' properties (not-applicable left out)
and, for a miss, the outcome it got.

Usage: ``PYTHONPATH=tests python benchmarks/catch_rates.py [--seeds N] [--first S]
[--class K ...] [--list]``. The classes are those of issue 19 (the verdict rests on what reached
the disk; a harness problem is never the store's failure); the figures of the last run are in
the issue's closing note.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

Z = "zoo."


@dataclass(frozen=True)
class Row:
    """One store and what the quick check must say about it."""

    klass: str
    spec: str
    only: str  # the properties checked
    must_fail: str  # the property a defect must fail; "" for a control that must fail none


ROWS = (
    Row("1 view missed calls", Z + "bound_zoo:all_bound", "D3", ""),
    Row("1 view missed calls", Z + "bound_zoo:no_dir_fsync", "D3", "D3"),
    Row("1 view missed calls", Z + "bound_zoo:fsync_bound_no_dir_fsync", "D3", "D3"),
    Row("2 shim and the GIL", Z + "cthread_zoo:correct", "D1,D3,F2", ""),
    Row("2 shim and the GIL", Z + "cthread_zoo:ignores_fsync_errors", "F2", "F2"),
    Row("3 first open", Z + "powerloss_zoo:mkdir_at_open_fsynced", "D3", ""),
    Row("3 first open", Z + "powerloss_zoo:mkdir_at_open", "D3", "D3"),
    Row("4 declarations", Z + "exclusive_zoo:ExclusiveStore", "", ""),
    Row("4 declarations", Z + "fault_zoo:NotDurableSwallowsFileFsync", "F2", ""),
    Row("5 raising beside a handle", Z + "open_snapshot_zoo:NextIdAtOpen", "P2", "P2"),
    Row("5 raising beside a handle", Z + "open_snapshot_zoo:KeySetAtOpen", "P2", "P2"),
    Row("6 stratified damage", Z + "damage_zoo:EmptyDocumentIsEmpty", "F1", "F1"),
    Row("6 stratified damage", Z + "damage_zoo:EmptyFileIsAbsent", "F1", "F1"),
    Row("7 fail-stop", Z + "fault_zoo:fail_stop", "F2", ""),
    Row("7 fail-stop", Z + "fault_zoo:acks_after_fault", "F2", "F2"),
    Row("8 commit calls", Z + "commit_zoo:link_commit", "D3", ""),
    Row("8 commit calls", Z + "commit_zoo:link_commit_no_dir_fsync", "D3", "D3"),
    Row("8 commit calls", Z + "commit_zoo:mmap_msync", "D3", ""),
    Row("8 commit calls", Z + "commit_zoo:mmap_no_msync", "D3", "D3"),
    Row("10 server stores", Z + "kv_zoo:kv_fsync", "D2,F2", ""),
    Row("10 server stores", Z + "kv_zoo:kv_hasty", "D2,F2", ""),
    Row("10 server stores", Z + "kv_zoo:kv_snapshot", "D2", "D2"),
    Row("10 server stores", Z + "kv_zoo:kv_swallowing", "D2,F2", "D2"),
    Row("11 hangs bounded", Z + "hang_zoo:HangsOnDamage", "F1", "F1"),
    Row("12 commit point", Z + "fault_zoo:lock_unlinked_after_replace", "F2", ""),
    Row("12 commit point", Z + "fault_zoo:lock_unlinked_ignores_dir_sync", "F2", "F2"),
    Row("12 commit point", Z + "fault_zoo:retries_fsync", "F2", "F2"),
    Row("13 races on purpose", Z + "stress_concurrency_zoo:unlink_on_release", "M1", "M1"),
    Row("13 races on purpose", Z + "stress_concurrency_zoo:polling_unlink", "M1", "M1"),
    Row("13 races on purpose", Z + "stress_concurrency_zoo:careful", "M1,M2", ""),
)


def _run(row: Row, seed: int) -> tuple[dict[str, str], float]:
    """The outcome of each property of one quick check of ``row`` with ``seed``."""
    with tempfile.TemporaryDirectory(prefix="catch-rates-") as scratch:
        report = os.path.join(scratch, "verdict.json")
        command = [sys.executable, "-m", "lance_offsets", "check", row.spec, "--seed", str(seed)]
        command += ["--json", report] + (["--only", row.only] if row.only else [])
        started = time.monotonic()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        seconds = time.monotonic() - started
        try:
            with open(report, encoding="utf-8") as handle:
                outcomes: dict[str, str] = json.load(handle)["properties"]
        except (OSError, ValueError, KeyError):
            outcomes = {"check": "no report"}
    return outcomes, seconds


def _as_wanted(row: Row, outcomes: dict[str, str]) -> tuple[bool, str]:
    """Whether one run did what the row must, and the outcomes that say otherwise."""
    failed = sorted(pid for pid, outcome in outcomes.items() if outcome != "passed")
    if row.must_fail:
        ok = outcomes.get(row.must_fail) == "failed"
        return ok, "" if ok else f"{row.must_fail}: {outcomes.get(row.must_fail, 'absent')}"
    bad = [pid for pid in failed if outcomes[pid] == "failed" or outcomes[pid] == "no report"]
    return not bad, ", ".join(f"{pid}: {outcomes[pid]}" for pid in bad)


def _tally(seen: Counter[str]) -> str:
    """The outcomes of every run's properties, as counts (``passed 10, unverified 5``)."""
    return ", ".join(f"{outcome} {count}" for outcome, count in sorted(seen.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="runs per store (default 5)")
    parser.add_argument("--first", type=int, default=1, help="first seed (default 1)")
    parser.add_argument(
        "--class",
        dest="classes",
        action="append",
        default=[],
        metavar="K",
        help="only the rows whose class starts with K (repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="list the rows and stop")
    args = parser.parse_args()
    rows = [
        r
        for r in ROWS
        if not args.classes
        or any(r.klass.startswith(k + " ") or r.klass == k for k in args.classes)
    ]
    if args.list:
        for row in rows:
            print(f"{row.klass:28} {row.spec} --only {row.only or 'all'}")
        return
    seeds = range(args.first, args.first + args.seeds)
    print(
        f"{'class':28} {'store':52} {'must':12} {'as wanted':>9} {'s/run':>6}  "
        f"{'outcomes of every run':28} misses"
    )
    for row in rows:
        good = 0
        misses: list[str] = []
        seen: Counter[str] = Counter()
        total = 0.0
        for seed in seeds:
            outcomes, seconds = _run(row, seed)
            total += seconds
            seen.update(o for p, o in outcomes.items() if o != "not-applicable")
            ok, why = _as_wanted(row, outcomes)
            good += ok
            if not ok:
                misses.append(f"seed {seed}: {why}")
        must = f"fail {row.must_fail}" if row.must_fail else f"pass {row.only or 'all'}"
        store = row.spec.removeprefix(Z)
        print(
            f"{row.klass:28} {store:52} {must:12} {good:>4}/{len(seeds):<4} "
            f"{total / len(seeds):6.1f}  {_tally(seen):28} {'; '.join(misses)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
