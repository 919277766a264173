"""``python -m lance_offsets``: the ``lance-offsets`` command line."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())
