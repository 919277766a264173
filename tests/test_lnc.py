"""The lnc-client drop-in (lance_offsets.lnc) against the real lnc-client package, and its key
mapping (docs/async.md, "lnc-client")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

lnc_offset = pytest.importorskip("lnc_client.offset", reason="the lnc extra installs lnc-client")

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


# -- lance-offsets import-lnc ---------------------------------------------------------------


def _lnc_dir(tmp_path: Path) -> Path:
    lnc_dir = tmp_path / "lnc"

    async def main() -> None:
        theirs = lnc_offset.FileOffsetStore(lnc_dir)  # the real package writes the files
        await theirs.save("billing", 3, 42)
        await theirs.save("a/b", 0, 7, topic_name="orders")

    asyncio.run(main())
    (lnc_dir / "billing_3.tmp").write_text('{"offset": 99}')  # an interrupted lnc save
    return lnc_dir


def test_import_lnc_dry_run_then_import_then_the_drop_in_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lance_offsets._cli import main

    lnc_dir, base = _lnc_dir(tmp_path), tmp_path / "base"
    base.mkdir()
    assert main(["import-lnc", str(lnc_dir), "--to", str(base), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would set consumer 'billing' topic id 3" in out
    assert "absent -> 42" in out
    assert "skipped billing_3.tmp" in out
    assert list(base.iterdir()) == []  # a dry run writes nothing
    assert main(["import-lnc", str(lnc_dir), "--to", str(base)]) == 0
    assert "changed 2, unchanged 0" in capsys.readouterr().out
    assert main(["import-lnc", str(lnc_dir), "--to", str(base)]) == 0
    assert "changed 0, unchanged 2" in capsys.readouterr().out

    async def resumed() -> tuple[int | None, int | None]:
        async with LanceOffsetStore.lockfile(base) as ours:
            return (
                await ours.load("billing", 3),
                await ours.load("a/b", 5, topic_name="orders"),
            )

    assert asyncio.run(resumed()) == (42, 7)  # never the .tmp file's 99


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not an lnc-client offset file"),
        ('{"consumer": "c", "topic_id": 1}', "no 'offset' field"),
        ('{"consumer": "c", "topic_id": 1, "offset": -5}', "got -5"),
        ('{"consumer": "c", "topic_id": 1, "offset": "12"}', "offset must be an int"),
        ('{"consumer": 4, "topic_id": 1, "offset": 1}', "'consumer' must be a string, got 4"),
        ('{"consumer": "c", "topic_id": 4294967296, "offset": 1}', "got 4294967296"),
        ("[1]", "expected a JSON object"),
    ],
)
def test_import_lnc_bad_input_names_file_and_value_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    from lance_offsets._cli import main

    lnc_dir, base = _lnc_dir(tmp_path), tmp_path / "base"
    base.mkdir()
    (lnc_dir / "zzz_1.offset").write_text(content)
    assert main(["import-lnc", str(lnc_dir), "--to", str(base)]) == 1
    err = capsys.readouterr().err
    assert "zzz_1.offset" in err
    assert message in err
    assert list(base.iterdir()) == []
