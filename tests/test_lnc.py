"""The lnc-client drop-in (lance_offsets.lnc) against the real lnc-client package, and its key
mapping (docs/async.md, "lnc-client")."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

lnc_offset = pytest.importorskip("lnc_client.offset", reason="the lnc extra installs lnc-client")
lnc_config = pytest.importorskip("lnc_client.config")

from lance_offsets import InvalidConsumerNameError, LockFileOffsetStore  # noqa: E402
from lance_offsets._layout import check_consumer_name  # noqa: E402
from lance_offsets._lnc_keys import escape, lnc_key, unescape  # noqa: E402
from lance_offsets.lnc import LanceOffsetStore  # noqa: E402


@given(st.text())
def test_escape_is_injective_and_gives_valid_consumer_names(name: str) -> None:
    assert unescape(escape(name)) == name
    assert "." not in escape(name)
    ours, _ = lnc_key(name[:20], 1, None)  # 20 characters escape to at most 240 bytes
    check_consumer_name(ours)  # raises if not a portable directory name


@given(st.text(max_size=40), st.text(max_size=40), st.text(max_size=40), st.text(max_size=40))
def test_different_lnc_keys_never_share_ours(c1: str, t1: str, c2: str, t2: str) -> None:
    try:
        first, second = lnc_key(c1, 7, t1 or None), lnc_key(c2, 7, t2 or None)
    except InvalidConsumerNameError:
        assume(False)  # too long for a consumer name: refused, never truncated (tested below)
        return
    assert (first == second) == ((c1, t1 or None) == (c2, t2 or None))


def test_keys_lnc_client_itself_confuses_stay_apart(tmp_path: Path) -> None:
    # lnc-client's FileOffsetStore maps "a/b" and "a_b" to one file, and topic name "5" and
    # topic id 5 too; ours keeps all four apart.
    async def main() -> None:
        theirs = lnc_offset.FileOffsetStore(tmp_path / "theirs")
        await theirs.save("a/b", 5, 1)
        await theirs.save("a_b", 5, 2)
        assert await theirs.load("a/b", 5) == 2  # theirs: the other consumer's offset
        async with LanceOffsetStore.lockfile(tmp_path / "ours") as ours:
            await ours.save("a/b", 5, 1)
            await ours.save("a_b", 5, 2)
            await ours.save("a_b", 0, 3, topic_name="5")
            assert await ours.load("a/b", 5) == 1
            assert await ours.load("a_b", 5) == 2
            assert await ours.load("a_b", 0, topic_name="5") == 3
            assert await ours.load("a_b", 99, topic_name="5") == 3  # the name is the topic

    asyncio.run(main())


def test_mapping_errors_name_the_problem() -> None:
    with pytest.raises(InvalidConsumerNameError, match="use shorter names"):
        lnc_key("é" * 200, 1, None)
    with pytest.raises(TypeError, match="topic_id"):
        lnc_key("c", "1", None)


def test_drop_in_implements_the_real_interface(tmp_path: Path) -> None:
    async def main() -> None:
        store = LanceOffsetStore.lockfile(tmp_path)
        assert isinstance(store, lnc_offset.OffsetStore)
        assert await store.load("app", 3) is None
        await store.save("app", 3, 42)
        assert await store.load("app", 3) == 42
        await store.delete("app", 3)
        await store.delete("app", 3)
        assert await store.load("app", 3) is None
        with pytest.raises(ValueError, match="topic_id"):
            await store.save("app", 2**32, 1)
        with pytest.raises(ValueError, match="offset"):
            await store.save("app", 3, -1)
        await store.close()

    asyncio.run(main())
    # Where it went: a lock-file store any of our tools (and the Rust client) read.
    with LockFileOffsetStore.open(str(tmp_path), "lnc.app.id") as plain:
        assert plain.list_all() == {}


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
