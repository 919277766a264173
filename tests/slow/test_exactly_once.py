"""The exactly-once example consumer (examples/exactly_once_consumer.py) under real SIGKILLs.

The consumer runs as a real process and is killed with SIGKILL at seeded random moments, then
restarted, until it has processed the whole stream; then every record's result must be in the
results table exactly once, with the right digest, and the offset must equal the end. Default run:
40 kills on SQLite (20 on PostgreSQL); ``pytest --stress``: 240 on each. Each test prints its seed
(``stress seed: N``, replay with ``--stress-seed N``) and, on failure, the records lost or
duplicated.

The child reports its phase (before its first transaction, inside one, committing, idle) in a
one-byte shared file, written through mmap so that reporting costs no system call; the byte read
after a kill says where the kill landed. The counts are printed and asserted: a kill test that
only ever hit idle processes would prove nothing.

The counter-examples: the same consumer committing its results and its offset in two transactions
is killed, deterministically, between the two; the same checker must find the duplicates (results
committed first) or the loss (offset first).

The child program is ``_exactly_once_child.py``.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lance_offsets.stress._options import StressOptions

TESTS = Path(__file__).resolve().parents[1]
EXAMPLES = TESTS.parent / "examples"
for _folder in (TESTS, TESTS / "slow", EXAMPLES):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import _postgres  # noqa: E402  (importable once the path is set)
import exactly_once_consumer as example  # noqa: E402
from _exactly_once_child import BEGIN, CHILD_TIMEOUT, COMMIT, IDLE, PAUSED, START  # noqa: E402

from lance_offsets import PostgresOffsetStore, SQLiteOffsetStore  # noqa: E402

pytestmark = pytest.mark.slow

CHILD = str(Path(__file__).resolve().with_name("_exactly_once_child.py"))
#: The status of a child our kill ended. Windows' TerminateProcess (Popen.kill) leaves 1, which a
#: crash leaves too; a crash there is still caught, by the verdict or by the next run's status.
KILLED = 1 if sys.platform == "win32" else -getattr(signal, "SIGKILL", 9)

#: Kills per test: the default run, and ``--stress`` (the acceptance run: 200 or more).
DEFAULT_KILLS, DEFAULT_PG_KILLS, STRESS_KILLS = 40, 20, 240
#: Records per round (SQLite, PostgreSQL): a round ends when the consumer finishes, and rounds
#: repeat until enough kills. Enough records that most kills find the consumer at work (SQLite
#: commits 300 records in batches of 3 in some 50 ms here), few enough to finish in seconds.
SQLITE_RECORDS, PG_RECORDS, BATCH = 3000, 1000, 3


# --- the checker ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What the results table and the offset say about one run of ``end`` records."""

    end: int
    offset: int | None
    lost: list[int]
    duplicated: dict[int, int]  # record -> times its result is stored
    wrong: list[int]  # records whose stored digest is not process(record)
    strangers: list[int]  # results for records outside 0..end-1

    @property
    def exactly_once(self) -> bool:
        problems = self.lost or self.duplicated or self.wrong or self.strangers
        return not problems and self.offset == self.end

    def describe(self) -> str:
        return (
            f"offset {self.offset} (end {self.end}); lost {self.lost}; duplicated "
            f"{self.duplicated}; wrong digest {self.wrong}; outside the stream {self.strangers}"
        )


def check_exactly_once(rows: list[tuple[int, str]], offset: int | None, end: int) -> Verdict:
    """Judge the stored results and offset of a consumer that should have processed 0..end-1."""
    counts = Counter(record for record, _digest in rows)
    expected = {n: example.process(payload) for n, payload in example.fetch(0, end, end)}
    wrong = sorted({r for r, digest in rows if r in expected and digest != expected[r]})
    return Verdict(
        end=end,
        offset=offset,
        lost=[r for r in range(end) if counts[r] == 0],
        duplicated={r: n for r, n in sorted(counts.items()) if n > 1},
        wrong=wrong,
        strangers=sorted(r for r in counts if not 0 <= r < end),
    )


def test_the_checker_sees_loss_duplicates_wrong_digests_and_a_wrong_offset() -> None:
    good = [(n, example.process(payload)) for n, payload in example.fetch(0, 4, 4)]
    assert check_exactly_once(good, 4, 4).exactly_once
    bad = check_exactly_once([*good[:1], good[2], good[2], (3, "x"), (9, "y")], 3, 4)
    assert not bad.exactly_once
    assert (bad.lost, bad.duplicated, bad.wrong, bad.strangers) == ([1], {2: 2}, [3], [9])
    assert not check_exactly_once(good, 3, 4).exactly_once  # every row, but the offset lags


# --- the harness ---------------------------------------------------------------------------------


@dataclass
class KillCounts:
    """Where the kills landed, read from the phase byte after each kill."""

    by_phase: Counter[bytes] = field(default_factory=Counter)
    lives: int = 0

    @property
    def kills(self) -> int:
        return sum(self.by_phase.values())

    @property
    def in_transaction(self) -> int:
        return self.by_phase[BEGIN] + self.by_phase[COMMIT]

    def summary(self) -> str:
        return (
            f"{self.kills} kills in {self.lives} runs: {self.in_transaction} inside a transaction "
            f"({self.by_phase[COMMIT]} while committing), {self.by_phase[START]} before the "
            f"first transaction (start-up, open), {self.by_phase[IDLE]} between transactions"
        )


class Consumer:
    """Starts the child consumer on one store URL and kills it, remembering where kills landed."""

    def __init__(self, url: str, end: int, workdir: Path, mode: str = "atomic") -> None:
        self.url, self.end, self.mode = url, end, mode
        self.phase_file = workdir / "phase"
        self.counts = KillCounts()

    def start(self, pause: tuple[str, int] = ("", 0)) -> subprocess.Popen[bytes]:
        self.phase_file.write_bytes(START)
        self.counts.lives += 1
        command = [sys.executable, CHILD, str(self.phase_file), self.url]
        command += [str(self.end), str(BATCH), self.mode, pause[0], str(pause[1])]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def phase(self) -> bytes:
        return self.phase_file.read_bytes()[:1]

    def wait_for(self, proc: subprocess.Popen[bytes], accept: Callable[[bytes], bool]) -> bool:
        """Poll the phase byte until ``accept``s it (True) or the child exits (False)."""
        deadline = time.monotonic() + CHILD_TIMEOUT
        while not accept(self.phase()):
            if proc.poll() is not None:
                return False
            assert time.monotonic() < deadline, f"child stuck in phase {self.phase()!r}"
            time.sleep(0.0005)
        return True

    def kill(self, proc: subprocess.Popen[bytes]) -> bool:
        """SIGKILL the child if it still runs; True if this kill ended it.

        False when it had finished its stream first; a child that failed on its own fails here.
        """
        if proc.poll() is None:
            proc.kill()  # SIGKILL; TerminateProcess on Windows
        _out, err = proc.communicate(timeout=CHILD_TIMEOUT)  # reaps it and closes the pipes
        if proc.returncode == KILLED:
            self.counts.by_phase[self.phase()] += 1
            return True
        assert proc.returncode == 0, f"consumer failed ({proc.returncode}): {err.decode()}"
        return False

    def finish(self, proc: subprocess.Popen[bytes]) -> None:
        """Let the child run to its end; it must exit 0."""
        _out, err = proc.communicate(timeout=CHILD_TIMEOUT)
        assert proc.returncode == 0, f"consumer failed ({proc.returncode}): {err.decode()}"

    def run_with_random_kills(self, rng: random.Random, kills: int) -> None:
        """Kill and restart at seeded random moments until ``kills``, then run to the end."""
        while True:
            proc = self.start()
            if self.counts.kills >= kills:
                self.finish(proc)
                return
            # One kill in five at any moment from the start (start-up, opening or creating the
            # database); the others once the consumer works, where the transactions are.
            if rng.random() < 0.2:
                time.sleep(rng.uniform(0.0, 0.15))
            elif not self.wait_for(proc, lambda phase: phase != START):
                self.finish(proc)  # finished before it was killed: the stream is done
                return
            else:
                time.sleep(rng.uniform(0.0, 0.02))
            if not self.kill(proc):
                return  # it finished its stream before the kill


def sqlite_verdict(database: Path, end: int) -> Verdict:
    with contextlib.closing(sqlite3.connect(database)) as con:
        rows = con.execute("SELECT record, digest FROM results").fetchall()
    with SQLiteOffsetStore.open(database, example.CONSUMER_NAME) as store:
        offset = store.load(example.TOPIC_ID, example.CONSUMER_ID)
    return check_exactly_once(rows, offset, end)


def kills_wanted(request: pytest.FixtureRequest, default: int) -> int:
    return STRESS_KILLS if request.config.getoption("stress") else default


def run_rounds(
    new_url: Callable[[int], str],
    verdict: Callable[[str, int], Verdict],
    *,
    records: int,
    workdir: Path,
    seed: int,
    kills: int,
) -> KillCounts:
    """Rounds of ``records`` records, each on a fresh store, until ``kills`` kills in all."""
    rng = random.Random(seed)
    total = KillCounts()
    for number in range(1, 1000):
        consumer = Consumer(new_url(number), records, workdir)
        consumer.run_with_random_kills(rng, kills - total.kills)
        total.by_phase.update(consumer.counts.by_phase)
        total.lives += consumer.counts.lives
        judged = verdict(consumer.url, records)
        assert judged.exactly_once, f"seed {seed}, round {number}: {judged.describe()}"
        if total.kills >= kills:
            break
    print(f"exactly-once, seed {seed}: {total.summary()}")
    return total


@pytest.mark.timeout(1800)  # with --stress: 240 kills and restarts, a minute or two
def test_sqlite_consumer_survives_random_kills_exactly_once(
    tmp_path: Path, request: pytest.FixtureRequest, stress_options: StressOptions
) -> None:
    kills = kills_wanted(request, DEFAULT_KILLS)
    counts = run_rounds(
        lambda n: f"sqlite:{tmp_path / f'round-{n}.sqlite3'}",
        lambda url, end: sqlite_verdict(Path(url.removeprefix("sqlite:")), end),
        records=SQLITE_RECORDS,
        workdir=tmp_path,
        seed=stress_options.seed,
        kills=kills,
    )
    assert counts.kills >= kills
    # Evidence that the kills hit work in progress, not only idle or starting processes.
    assert counts.in_transaction > 0, counts.summary()


def test_a_kill_inside_the_commit_block_loses_and_repeats_nothing(tmp_path: Path) -> None:
    database = tmp_path / "planned.sqlite3"
    consumer = Consumer(f"sqlite:{database}", 30, tmp_path)
    proc = consumer.start(pause=("commit", 3))  # rows 6..8 and offset 9 written, not committed
    assert consumer.wait_for(proc, lambda phase: phase == PAUSED)
    assert consumer.kill(proc)
    with SQLiteOffsetStore.open(database, example.CONSUMER_NAME) as store:
        assert store.load(example.TOPIC_ID, example.CONSUMER_ID) == 6  # the batch rolled back
    consumer.finish(consumer.start())
    judged = sqlite_verdict(database, 30)
    assert judged.exactly_once, judged.describe()


@pytest.mark.parametrize(
    ("mode", "lost", "duplicated"),
    [("results-first", [], {6: 2, 7: 2, 8: 2}), ("offset-first", [6, 7, 8], {})],
)
def test_two_separate_commits_are_caught_by_the_same_checker(
    tmp_path: Path, mode: str, lost: list[int], duplicated: dict[int, int]
) -> None:
    database = tmp_path / "broken.sqlite3"
    consumer = Consumer(f"sqlite:{database}", 30, tmp_path, mode=mode)
    proc = consumer.start(pause=("between", 3))  # the third batch, 6..8, half committed
    assert consumer.wait_for(proc, lambda phase: phase == PAUSED)
    assert consumer.kill(proc)
    consumer.finish(consumer.start())
    judged = sqlite_verdict(database, 30)
    assert not judged.exactly_once
    assert (judged.lost, judged.duplicated) == (lost, duplicated), judged.describe()
    assert (judged.wrong, judged.strangers, judged.offset) == ([], [], 30)


# --- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    pytest.importorskip("psycopg", reason="psycopg is in the test extra: pip install .[test]")
    with _postgres.cluster_or_skip() as cluster:
        yield cluster.dsn


@pytest.mark.timeout(1800)
def test_postgres_consumer_survives_random_kills_exactly_once(
    tmp_path: Path, request: pytest.FixtureRequest, stress_options: StressOptions, pg_dsn: str
) -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    server = conninfo_to_dict(pg_dsn)
    base = f"postgresql://{server['user']}@{server['host']}:{server['port']}"

    def new_url(number: int) -> str:
        name = f"eo_{os.getpid()}_{number}"  # a fresh database per round
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        return f"{base}/{name}"

    def verdict(url: str, end: int) -> Verdict:
        with psycopg.connect(url) as conn:
            rows = [(int(r), str(d)) for r, d in conn.execute("SELECT record, digest FROM results")]
        with PostgresOffsetStore(url, example.CONSUMER_NAME, create=False) as store:
            offset = store.load(example.TOPIC_ID, example.CONSUMER_ID)
        return check_exactly_once(rows, offset, end)

    kills = kills_wanted(request, DEFAULT_PG_KILLS)
    counts = run_rounds(
        new_url,
        verdict,
        records=PG_RECORDS,
        workdir=tmp_path,
        seed=stress_options.seed,
        kills=kills,
    )
    assert counts.kills >= kills
    assert counts.in_transaction > 0, counts.summary()
