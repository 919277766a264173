"""A throw-away PostgreSQL cluster from the machine's own binaries, for the PostgreSQL tests.

initdb and pg_ctl refuse to run as root, and CI runs as root: there the cluster is created and
run as the ``postgres`` account (``runuser``), in a directory that account owns. The server listens
on a free localhost port with ``fsync=on`` (durability is what the store is tested for) and is
stopped, fast, at the end. No binaries: :func:`find_bindir` returns None and the caller skips.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: How the PostgreSQL tests find a DSN; also what the ``postgres`` conformance factory reads.
DSN_VARIABLE = "LANCE_OFFSETS_PG_DSN"


@dataclass(frozen=True)
class Cluster:
    """A running temporary cluster."""

    dsn: str
    data_dir: str
    log_file: str


def find_bindir() -> str | None:
    """Return a directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(done.stdout.strip())
    # Debian and Ubuntu keep the server binaries out of PATH, one directory per major version.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
    for folder in candidates:
        if all(os.access(os.path.join(folder, b), os.X_OK) for b in ("initdb", "pg_ctl")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_owner() -> list[str]:
    """The command prefix that runs PostgreSQL's binaries as a non-root account."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root without runuser: cannot start PostgreSQL as postgres")
    return [runuser, "-u", "postgres", "--"]


@contextmanager
def temporary_cluster(bindir: str) -> Iterator[Cluster]:
    """Start a cluster in a new temporary directory; stop it and remove the directory after."""
    root = tempfile.mkdtemp(prefix="lance-offsets-pg-")
    prefix = _as_owner()
    if prefix:
        shutil.chown(root, user="postgres", group=None)
    data, log, sockets = (os.path.join(root, n) for n in ("data", "server.log", "sock"))
    run = [*prefix]
    try:
        subprocess.run(
            [*run, os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        subprocess.run([*run, "mkdir", sockets], check=True)
        port = _free_port()
        options = (
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=on "
            "-c synchronous_commit=on -c max_connections=200"
        )
        subprocess.run(
            [*run, os.path.join(bindir, "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "60",
             "-o", options, "start"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        try:
            yield Cluster(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", data, log)
        finally:
            subprocess.run(
                [*run, os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"],
                check=False, capture_output=True,
            )  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
