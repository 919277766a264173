"""The asyncio face over PostgresOffsetStore, against a real temporary cluster (tests/_postgres.py).

psycopg's blocking API runs in each handle's thread (docs/async.md); this proves it with a real
server: the contract with await, handles saving at once from tasks, and a cancelled save that is
settled when CancelledError arrives. Skipped only without PostgreSQL server binaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import _postgres  # noqa: E402  (importable once the path is set)

pytest.importorskip("psycopg", reason="psycopg is in the test extra: pip install .[test]")

from lance_offsets import AsyncOffsetStore, PostgresOffsetStore  # noqa: E402


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with _postgres.cluster_or_skip() as cluster:
        yield cluster.dsn


def test_async_face_over_postgres(dsn: str) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)

    def opener() -> PostgresOffsetStore:
        return PostgresOffsetStore(dsn, "billing", schema=schema)

    async def main() -> None:
        handles = [await AsyncOffsetStore.open(opener) for _ in range(3)]
        # Tasks on three handles (three connections, three threads) save at once.
        await asyncio.gather(*(h.save(t, 7, n) for t, h in enumerate(handles) for n in range(20)))
        assert await handles[0].list_all() == {(0, 7): 19, (1, 7): 19, (2, 7): 19}
        await handles[1].delete(1, 7)
        assert await handles[2].load(1, 7) is None
        # Cancelled saves: after CancelledError the row holds the old or the new offset, and a
        # second read later agrees (nothing was left in flight).
        current = await handles[0].load(0, 7)
        for n in range(100, 130):
            task = asyncio.create_task(handles[0].save(0, 7, n))
            await asyncio.sleep(rng.random() / 1000)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            seen = await handles[1].load(0, 7)
            assert seen in (current, n), (seen, current, n)
            await asyncio.sleep(0.002)
            assert await handles[2].load(0, 7) == seen
            current = seen
        for handle in handles:
            await handle.close()

    asyncio.run(main())
