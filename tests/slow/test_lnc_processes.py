"""lnc-client's interface through our drop-in, with real processes: four processes on one key
(lnc-client's own FileOffsetStore beside ours), and a consumer killed and restarted.

Each process saves its own rising offsets on one ``(consumer, topic)`` and loads after each save.
The key holds an offset before the workers start, so a load that returns None has lost it, and a
save that raises has lost its offset too. lnc-client's store (no lock, one shared temp name, no
fsync) is measured and printed, never asserted: its failure rate depends on the machine. Ours must
show no error, no None, only offsets somebody saved, and end on the last save of one process.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
from pathlib import Path
from typing import Any

import pytest

lnc_offset = pytest.importorskip("lnc_client.offset", reason="the lnc extra installs lnc-client")
lnc_config = pytest.importorskip("lnc_client.config")

from lance_offsets.lnc import LanceOffsetStore  # noqa: E402

WORKERS = 4
SAVES = 150
CONSUMER, TOPIC = "billing", 3


def _store(kind: str, directory: str) -> Any:
    if kind == "lnc-client":
        return lnc_offset.FileOffsetStore(directory)
    return LanceOffsetStore.lockfile(directory)


async def _hammer(kind: str, directory: str, worker: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed * 100 + worker)
    store = _store(kind, directory)
    errors: list[str] = []
    loads: list[int | None] = []
    saved: list[int] = []
    for n in range(1, SAVES + 1):
        offset = n * WORKERS + worker  # unique to this worker, rising
        try:
            await store.save(CONSUMER, TOPIC, offset)
            saved.append(offset)
        except Exception as exc:
            errors.append(f"save {offset}: {type(exc).__name__}")
        try:
            loads.append(await store.load(CONSUMER, TOPIC))
        except Exception as exc:
            errors.append(f"load: {type(exc).__name__}")
        if rng.random() < 0.1:
            await asyncio.sleep(rng.random() / 1000)
    if hasattr(store, "close"):
        await store.close()
    return {"errors": errors, "loads": loads, "saved": saved}


def _worker(kind: str, directory: str, worker: int, seed: int, out: str) -> None:
    result = asyncio.run(_hammer(kind, directory, worker, seed))
    Path(out).write_text(json.dumps(result), encoding="utf-8")


def _run(kind: str, directory: Path, seed: int) -> dict[str, Any]:
    async def first() -> None:
        store = _store(kind, str(directory))
        await store.save(CONSUMER, TOPIC, 0)  # the key exists before anyone races on it
        if hasattr(store, "close"):
            await store.close()

    asyncio.run(first())
    ctx = multiprocessing.get_context("spawn")
    outs = [directory.parent / f"{kind}-{w}.json" for w in range(WORKERS)]
    procs = [
        ctx.Process(target=_worker, args=(kind, str(directory), w, seed, str(outs[w])))
        for w in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(180)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    results = [json.loads(out.read_text(encoding="utf-8")) for out in outs]

    async def last() -> int | None:
        store = _store(kind, str(directory))
        value: int | None = await store.load(CONSUMER, TOPIC)
        if hasattr(store, "close"):
            await store.close()
        return value

    saved = {0} | {o for r in results for o in r["saved"]}
    loads = [v for r in results for v in r["loads"]]
    summary = {
        "saves": WORKERS * SAVES,
        "errors": sum(len(r["errors"]) for r in results),
        "loads": len(loads),
        "loads of None": sum(v is None for v in loads),
        "loads of a value never saved": sum(v is not None and v not in saved for v in loads),
        "final": asyncio.run(last()),
        "last saves": [r["saved"][-1] if r["saved"] else None for r in results],
        "first errors": [e for r in results for e in r["errors"]][:3],
    }
    print(f"{kind}: {summary}")
    return summary


def test_four_processes_one_key(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    _run("lnc-client", tmp_path / "theirs", seed)  # measured, printed, not asserted
    ours = _run("lance-offsets", tmp_path / "ours", seed)
    assert ours["errors"] == 0, ours
    assert ours["loads of None"] == 0, ours
    assert ours["loads of a value never saved"] == 0, ours
    assert ours["final"] in ours["last saves"], ours  # the last save of some process won


# -- a consumer-style loop that restarts from the stored offset -------------------------------

RECORDS = 400
BATCH = 25


async def _consume(store_dir: str, config: object, log: str, stop_after: int | None) -> int:
    """What lnc-client's StandaloneConsumer does with its offset store, around a fake fetch.

    ``connect()`` loads ``(consumer_name, topic_id, topic_name=...)`` and starts there; each
    ``commit()`` saves the current offset under the same key. Records are "processed" by
    appending their number to ``log``.
    """
    async with LanceOffsetStore.lockfile(store_dir) as store:
        offset = await store.load(
            config.consumer_name,  # type: ignore[attr-defined]
            config.topic_id,  # type: ignore[attr-defined]
            topic_name=config.topic_name,  # type: ignore[attr-defined]
        )
        offset = offset or 0
        batches = 0
        while offset < RECORDS:
            end = min(offset + BATCH, RECORDS)
            with open(log, "a", encoding="ascii") as out:
                out.write("".join(f"{n}\n" for n in range(offset, end)))
                out.flush()
                os.fsync(out.fileno())
            offset = end
            await store.save(
                config.consumer_name,  # type: ignore[attr-defined]
                config.topic_id,  # type: ignore[attr-defined]
                offset,
                topic_name=config.topic_name,  # type: ignore[attr-defined]
            )
            batches += 1
            if stop_after is not None and batches >= stop_after:
                os.kill(os.getpid(), 9)  # a crash right after a commit
        return offset


def _consumer_process(store_dir: str, log: str, stop_after: int | None) -> None:
    config = lnc_config.StandaloneConfig(consumer_name="billing", topic_name="orders")
    asyncio.run(_consume(store_dir, config, log, stop_after))


def test_consumer_restarts_from_the_stored_offset(tmp_path: Path) -> None:
    """Real processes killed with SIGKILL right after commits; every restart resumes there."""
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    log = str(tmp_path / "processed.log")
    ctx = multiprocessing.get_context("spawn")
    runs = 0
    while True:
        runs += 1
        stop_after = rng.randrange(1, 5) if runs < 6 else None
        proc = ctx.Process(target=_consumer_process, args=(str(tmp_path), log, stop_after))
        proc.start()
        proc.join(120)
        assert proc.exitcode is not None, "consumer did not finish"
        if proc.exitcode == 0:
            break
        assert proc.exitcode == -9
    with open(log, encoding="ascii") as file:
        processed = [int(line) for line in file]
    print(f"{runs} runs, {len(processed)} records processed")
    # Commits follow processing, and a kill comes right after a commit: nothing is processed
    # twice, nothing skipped, whatever the number of restarts.
    assert processed == list(range(RECORDS))
