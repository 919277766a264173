"""STUB: the lance-offsets command line (being written; see issue 2)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    del argv
    print("lance-offsets: not implemented yet", file=sys.stderr)
    return 2
