"""``lance-offsets report merge``: the shards' JSON verdicts of one run, as the run's verdict.

Wired into the CLI by ``lance_offsets._cli`` through :func:`add_arguments` and :func:`run`, as
``check`` is. ``merge`` reads each shard's ``check --shard K/N --json`` file, refuses files that
are not the shards of one run (exit 2, one line naming the file and the mismatch), then prints the
table and summary ``check`` prints and writes the reports asked for, and exits as ``check``
would: 1 when a property failed (unverified only under ``--strict``), 128 + the signal when a
shard was interrupted, else 0.
"""

from __future__ import annotations

import argparse
import sys

from lance_offsets._cli_common import EXIT_USAGE, print_error

from ._check import print_verdict, unwritable_report, write_reports
from ._merge import MergeError, exit_status, interruptions, merge_shards
from ._verdict_file import VerdictFileError, read_verdict

__all__ = ["add_arguments", "run"]

_MERGE_HELP = "join the JSON verdicts of a run's shards (check --shard K/N) into one verdict"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` actions (``merge``) and their arguments to ``parser``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    merge = actions.add_parser("merge", help=_MERGE_HELP, description=_MERGE_HELP)
    merge.add_argument(
        "shards", nargs="+", metavar="SHARD.json", help="each shard's check --json file"
    )
    merge.add_argument("--json", metavar="FILE", default=None, help="write the verdict as JSON")
    merge.add_argument(
        "--markdown",
        metavar="FILE",
        default=None,
        help="append the verdict as Markdown (e.g. to $GITHUB_STEP_SUMMARY)",
    )
    merge.add_argument(
        "--junit", metavar="FILE", default=None, help="write the verdict as JUnit XML"
    )
    merge.add_argument(
        "--html", metavar="FILE", default=None, help="write the verdict as one HTML page"
    )


def _merge(args: argparse.Namespace) -> int:
    out = sys.stdout
    for option in ("json", "markdown", "junit", "html"):
        path = getattr(args, option)
        problem = unwritable_report(option, path) if path else None
        if problem:
            print_error(f"report merge: {problem}")
            return EXIT_USAGE
    try:
        files = [read_verdict(path) for path in args.shards]
        verdict = merge_shards(files)
    except (VerdictFileError, MergeError) as exc:
        print_error(f"report merge: {exc}")
        return EXIT_USAGE
    print(
        f"merged {len(files)} shard(s) of: lance-offsets check {verdict.store} "
        f"(profile {verdict.profile}{', long stress runs' if verdict.stress else ''}, "
        f"seed {verdict.seed})",
        file=out,
    )
    for line in interruptions(files):
        print(line, file=out)
    print_verdict(verdict, out)
    write_reports(args, verdict)
    return exit_status(verdict)


def run(args: argparse.Namespace) -> int:
    """Run the ``report`` action ``args`` ask for and return its exit status."""
    if args.action == "merge":
        return _merge(args)
    raise AssertionError(f"unknown report action {args.action!r}")  # argparse allows none other
