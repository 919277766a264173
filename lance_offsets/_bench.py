"""``lance-offsets bench``: one run, one disk, every figure with its floor, ratio and goal.

Prints a table, writes it as JSON, and draws the ratios against their goals as a PNG when
matplotlib is installed. The figures come from :mod:`._bench_store` (the stores beside inline
syscalls, C and SQLite) and :mod:`._bench_suite` (the conformance and stress kit itself). Goals
are printed, never asserted: a bench on a shared, loaded machine reports, it does not judge.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

from ._cli_common import os_errors, print_error

if TYPE_CHECKING:
    from ._bench_store import Figure

__all__ = ["register", "run"]

_HELP = "measure the stores and the suite beside their floors and goals (table, JSON, PNG)"


def register(subparsers: Any) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser("bench", help=_HELP, description=_HELP)
    parser.add_argument("--dir", default=".", help="parent of the scratch directory (the disk)")
    parser.add_argument("--json", default="bench.json", help="where to write the figures")
    parser.add_argument("--png", default="bench.png", help="chart of ratios (needs matplotlib)")
    parser.add_argument(
        "--only",
        choices=("stores", "suite", "drivers"),
        help="measure only the stores, only the suite, or only the driver (with --driver)",
    )
    parser.add_argument(
        "--driver",
        metavar="SPEC",
        help="also measure this driver store (exec:'./my-driver') beside the reference store: "
        "the quick check and the --stress kill-verify cycles (docs/drivers.md)",
    )
    parser.add_argument("--calls", type=int, default=150, help="durable saves per variant")
    parser.add_argument("--seconds", type=float, default=1.0, help="each throughput run")
    parser.add_argument("--seed", type=int, default=1)
    parser.set_defaults(handler=run)


def _value(number: float) -> str:
    return f"{number:,.0f}" if abs(number) >= 100 else f"{number:,.2f}"


def table(figures: list[Figure]) -> str:
    """The figures as aligned text, one per line, grouped."""
    lines = []
    group = ""
    for f in figures:
        if f.group != group:
            group = f.group
            lines.append(f"\n{group}")
        floor = "" if f.floor is None else f"{f.floor_name} {_value(f.floor)}"
        ratio = "" if f.ratio is None else f"{f.ratio:.2f}x"
        verdict = {True: "met", False: "NOT met", None: ""}[f.met]
        goal = f"goal {f.goal}: {verdict}" if f.goal else ""
        lines.append(
            f"  {f.name:42} {_value(f.value):>10} {f.unit:9} {floor:54} {ratio:>8}  {goal}".rstrip()
        )
    return "\n".join(lines)


def _chart(figures: list[Figure], path: str) -> str:
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return "no chart: matplotlib is not installed"
    rated = [f for f in figures if f.ratio is not None]
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(rated) + 1))
    colours = ["tab:green" if f.met else "tab:red" if f.met is False else "tab:gray" for f in rated]
    ratios = [f.ratio or 0.0 for f in rated]
    ax.barh([f"{f.name} / {f.floor_name}" for f in rated], ratios, color=colours)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("ratio to floor (green: goal met, red: not met, grey: no goal)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return f"chart: {path}"


def run(args: argparse.Namespace) -> int:
    """Measure, print, save; exit 0 whatever the figures say."""
    # Imported here: the CLI registers bench for every command, and a directory command must
    # not load sqlite3 or the stress kit (tests/slow/test_cli_processes.py).
    from ._bench_floors import file_system
    from ._bench_store import store_figures

    if args.only == "drivers" and not args.driver:
        print_error("bench: --only drivers needs --driver SPEC")
        return 2
    if args.driver:
        from .conformance._spec import SpecError, load_factory

        try:
            load_factory(args.driver)  # a spec that names no program fails now, not in minutes
        except SpecError as exc:
            print_error(f"bench: --driver: {exc}")
            return 2

    with os_errors(f"make a scratch directory in --dir {args.dir!r}", writing=True):
        scratch = tempfile.mkdtemp(prefix="lance-bench-", dir=args.dir)
    began = time.perf_counter()
    try:
        where = f"{file_system(scratch)} at {os.path.realpath(scratch)}"
        print(f"lance-offsets bench: python {platform.python_version()}, {sys.platform}, {where}")
        print(f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}", flush=True)
        figures: list[Figure] = []
        if args.only in (None, "stores"):
            figures += store_figures(
                scratch, calls=args.calls, seconds=args.seconds, seed=args.seed
            )
        if args.only in (None, "suite"):
            from ._bench_suite import suite_figures

            figures += suite_figures(scratch, seed=args.seed)
        if args.driver and args.only in (None, "drivers"):
            from ._bench_drivers import driver_figures

            figures += driver_figures(scratch, args.driver, seed=args.seed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(table(figures))
    met = [f for f in figures if f.met is not None]
    print(
        f"\n{sum(1 for f in met if f.met)} of {len(met)} goals met in "
        f"{time.perf_counter() - began:.0f} s; load average now {os.getloadavg()[0]:.2f}"
    )
    with (
        os_errors(f"write the figures to --json {args.json!r}", writing=True),
        open(args.json, "w", encoding="utf-8") as fh,
    ):
        json.dump([dataclasses.asdict(f) for f in figures], fh, indent=2)
    with os_errors(f"draw the chart to --png {args.png!r}", writing=True):
        chart = _chart(figures, args.png)
    print(f"figures: {args.json}; {chart}")
    return 0
