"""The process test_exactly_once.py kills: the example consumer, reporting where it is.

Run as ``python _exactly_once_child.py PHASE_FILE URL END BATCH MODE PAUSE_PHASE PAUSE_AT``. A
module of its own, importing neither pytest nor the test, so that each of the hundreds of
restarts costs only the consumer's own start-up.

The phase goes into a one-byte shared file through mmap: reporting costs no system call, and the
byte read after a SIGKILL says where the kill landed.
"""

from __future__ import annotations

import mmap
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

import exactly_once_consumer as example  # noqa: E402

#: Phase bytes: not yet in a transaction, inside one, committing it, between transactions,
#: between the two commits of the broken consumer, and paused for a planned kill.
START, BEGIN, COMMIT, IDLE, BETWEEN, PAUSED = b"-", b"B", b"C", b"I", b"S", b"P"
PHASES = {"begin": BEGIN, "commit": COMMIT, "idle": IDLE, "between": BETWEEN}
#: How long a paused child waits for its kill; the test's own waits are bounded by the same.
CHILD_TIMEOUT = 120.0


def consume_in_two_commits(
    db: example.Database,
    end: int,
    batch: int,
    on_phase: Callable[[str], None],
    offset_first: bool = False,
) -> None:
    """The defect: results and offset in two commits; a kill between them breaks exactly-once.

    Results first (the usual mistake): the restart redoes the batch, whose results are then stored
    twice. Offset first: the restart skips the batch, whose results are lost.
    """
    with db.store.transaction() as tx:
        tx.execute(example.CREATE_RESULTS)
    while True:
        offset = db.store.load(example.TOPIC_ID, example.CONSUMER_ID) or 0
        records = example.fetch(offset, batch, end)
        if not records:
            return
        if offset_first:
            db.store.save(example.TOPIC_ID, example.CONSUMER_ID, records[-1][0] + 1)
            on_phase("between")
        with db.store.transaction() as tx:
            on_phase("begin")
            for n, payload in records:
                tx.execute(db.insert, (n, example.process(payload)))
            on_phase("commit")
        if not offset_first:
            on_phase("between")
            db.store.save(example.TOPIC_ID, example.CONSUMER_ID, records[-1][0] + 1)
        on_phase("idle")


def main(argv: list[str]) -> int:
    """Run the consumer (MODE ``atomic``: the example; ``results-first``, ``offset-first``: the
    defects, committing results and offset in two transactions, in that order).

    The child pauses the PAUSE_AT-th time it reaches PAUSE_PHASE (PAUSE_AT 0: never), so that the
    test can kill it exactly there.
    """
    phase_file, url, end, batch, mode, pause_phase, pause_at = argv
    fd = os.open(phase_file, os.O_RDWR)
    shared = mmap.mmap(fd, 1)
    seen: Counter[str] = Counter()

    def on_phase(phase: str) -> None:
        shared[0:1] = PHASES[phase]
        seen[phase] += 1
        if phase == pause_phase and seen[phase] == int(pause_at):
            shared[0:1] = PAUSED
            time.sleep(CHILD_TIMEOUT)  # the test kills us here

    db = example.open_database(url)
    with db.store:
        if mode == "atomic":
            example.consume(db, int(end), int(batch), on_phase)
        else:
            first = mode == "offset-first"
            consume_in_two_commits(db, int(end), int(batch), on_phase, offset_first=first)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
