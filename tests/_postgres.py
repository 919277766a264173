"""A throw-away PostgreSQL cluster for the PostgreSQL tests: the product's own, re-exported.

The cluster code lives in ``lance_offsets.stress.servers._postgres`` (the ``postgres`` reference
factory starts one when no DSN is configured, and the server-fault campaigns kill and restart
it); this module keeps the interface the tests and examples were written against. As root the
cluster runs as the ``postgres`` account; with no binaries :func:`find_bindir` returns None and
the caller skips.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from lance_offsets.stress.servers._postgres import (
    Cluster,
    PostgresServer,
    find_bindir,
    temporary_cluster,
)

__all__ = [
    "DSN_VARIABLE",
    "Cluster",
    "PostgresServer",
    "cluster_or_skip",
    "find_bindir",
    "temporary_cluster",
]

#: How the PostgreSQL tests find a DSN; also what the ``postgres`` conformance factory reads.
DSN_VARIABLE = "LANCE_OFFSETS_PG_DSN"


@contextlib.contextmanager
def cluster_or_skip() -> Iterator[Cluster]:
    """A temporary cluster for one test module, or skip it (with the reason) on a machine without
    PostgreSQL's server binaries."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    with temporary_cluster(bindir) as cluster:
        yield cluster
