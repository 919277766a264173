"""The ``lance-offsets`` command line: inspect and reset consumers' offsets, run the suite.

Subcommands live in :mod:`._cli_commands` (ls, get, set, rm) and :mod:`._cli_transfer` (export,
import); ``check`` and ``report`` belong to the conformance suite and are imported only when asked
for, so the everyday commands start without loading Hypothesis and pytest. ``docs/cli.md`` is the
manual.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Final

from . import _bench, _cli_commands, _cli_lnc, _cli_transfer
from ._cli_common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliError, print_error
from ._cli_os_errors import os_error_line
from ._errors import InvalidConsumerNameError, OffsetStoreError
from ._interrupt import Interrupted, exit_code, stop_on_signals
from ._version import __version__

__all__ = ["build_parser", "main"]

PROG: Final = "lance-offsets"
#: The module that implements ``check`` (written with the conformance suite).
CHECK_MODULE: Final = "lance_offsets.conformance._check"
_CHECK_HELP: Final = "run the conformance suite against a store (needs lance-offsets[check])"
#: The module that implements ``report`` (``report merge``: the verdicts of a run's shards).
REPORT_MODULE: Final = "lance_offsets.conformance._report_cli"
_REPORT_HELP: Final = (
    "work with check's JSON verdicts: 'report merge' joins a run's shards (needs "
    "lance-offsets[check])"
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Return the top-level parser; ``command`` is the subcommand about to be parsed, if known.

    The ``check`` and ``report`` subcommands' arguments are added only when ``command`` is
    theirs: they come from the conformance suite, whose import is slow and needs the ``check``
    extra.
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect and reset the offsets LANCE consumers keep under a base directory "
        "({BASE_DIR}/{consumer}/topic-{t}-consumer-{c}.offset) or in a database (STORE: "
        "sqlite:///path, postgresql://...), and check offset stores.",
        epilog="Exit status: 0 done, 1 operational failure (missing key, corrupt file, lock "
        "timeout, I/O error), 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _cli_commands.register(subparsers)
    _cli_transfer.register(subparsers)
    _cli_lnc.register(subparsers)  # import-lnc: lnc-client's offsets directory
    _bench.register(subparsers)
    check = subparsers.add_parser("check", help=_CHECK_HELP, description=_CHECK_HELP)
    report = subparsers.add_parser("report", help=_REPORT_HELP, description=_REPORT_HELP)
    if command == "check":
        _add_suite_arguments(check, "check", CHECK_MODULE)
    if command == "report":
        _add_suite_arguments(report, "report", REPORT_MODULE)
    return parser


def _add_suite_arguments(parser: argparse.ArgumentParser, command: str, module: str) -> None:
    try:
        # By name, not a from-import: the suite is optional (the check extra) and may be absent.
        suite_command = importlib.import_module(module)
    except ImportError as exc:
        problem = _suite_import_problem(exc, command, module)
        # Accept whatever follows, so the user sees why the command is unavailable rather than
        # an "unrecognized arguments" usage error.
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        parser.set_defaults(handler=lambda _args: _fail(problem))
        return
    suite_command.add_arguments(parser)
    parser.set_defaults(handler=suite_command.run)


def _suite_import_problem(exc: ImportError, command: str, module: str) -> str:
    missing = getattr(exc, "name", None) or ""
    if missing in (module, "lance_offsets.conformance"):
        return (
            f"the {command!r} command is not available in this installation ({module} is missing)"
        )
    top = missing.partition(".")[0]
    if top and top != "lance_offsets":
        return (
            f"the {command!r} command needs the {top!r} package, which is not installed; "
            "install it with: pip install 'lance-offsets[check]'"
        )
    return f"the {command!r} command could not be loaded: {exc}"


def _fail(message: str) -> int:
    print_error(message)
    return EXIT_FAILURE


def _command_of(argv: Sequence[str]) -> str | None:
    # The subcommand is the first word that is not an option: only --version and -h/--help come
    # before it, and neither takes a value.
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status (also the console script's entry)."""
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(words))
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # argparse exits for --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Call the subcommand's handler, turning expected failures into one line and a status.

    Ctrl-C and SIGTERM stop any command the same way: what was under way unwinds (a lock is
    released, a temporary file removed), one line says so, and the status is 128 + the signal.
    """
    try:
        # Then ignored: after the command only Python's own shutdown is left to run.
        with stop_on_signals(then_ignore=True):
            return _handle(args)
    except KeyboardInterrupt as exc:
        name = exc.name if isinstance(exc, Interrupted) else "SIGINT"
        print_error(f"{args.command}: interrupted by {name}")
        return exit_code(exc)


def _handle(args: argparse.Namespace) -> int:
    try:
        code: int = args.handler(args)
    except SystemExit as exc:  # a handler's parser.error()
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except CliError as exc:
        print_error(exc.message)
        return exc.code
    except InvalidConsumerNameError as exc:  # pragma: no cover - argument types reject these first
        print_error(str(exc))
        return EXIT_USAGE
    except BrokenPipeError:  # pragma: no cover - `lance-offsets ls | head`: not an error
        # Python flushes stdout again at exit and would complain; point it at devnull first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (OffsetStoreError, OSError) as exc:
        # Corrupt files, lock timeouts: expected, and the store's message names the key and file.
        # Other OSErrors are worded by the commands with what they were doing; one that got here
        # without is still one line in the same words, naming the command instead.
        if isinstance(exc, OffsetStoreError):
            print_error(str(exc))
        else:
            print_error(os_error_line(exc, f"complete '{PROG} {args.command}'", writing=None))
        return EXIT_FAILURE
    return code
