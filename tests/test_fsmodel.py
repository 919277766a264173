"""The power-loss file-system model on handcrafted traces (no interposer, no processes)."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lance_offsets.stress.powerloss._fsdata import content_choices
from lance_offsets.stress.powerloss._fsmodel import (
    O_TMPFILE,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    CrashState,
    ModelError,
    StateStream,
    Tree,
    UnknownCall,
    _cut,
    explore,
    materialise,
    replay,
    tree_digest,
)
from lance_offsets.stress.seam._trace import OpKind, TraceOp

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="the model's paths are POSIX paths; D3 runs on Linux only"
)

ROOT = "/data/store"
CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


class Trace:
    """Builds a trace the way the interposer records one, numbering operations."""

    def __init__(self) -> None:
        self.ops: list[TraceOp] = []

    def add(self, kind: OpKind, rel: str, **fields: Any) -> Trace:
        path = f"{ROOT}/{rel}" if rel else ROOT
        target = fields.pop("target", None)
        if target is not None:
            fields["target"] = f"{ROOT}/{target}"
        self.ops.append(TraceOp(len(self.ops), kind, path, **fields))
        return self

    def create(self, rel: str) -> Trace:
        return self.add("open", rel, flags=CREATE, content=b"")

    def write(self, rel: str, content: bytes) -> Trace:
        return self.add("write", rel, content=content)

    def fsync(self, rel: str, content: bytes) -> Trace:
        return self.add("fsync", rel, content=content)

    def dirsync(self, rel: str = "") -> Trace:
        return self.add("fsync", rel, is_dir=True)

    def mark(self, note: str) -> Trace:
        return self.add("mark", "", note=note)


def files_at(states: tuple[CrashState, ...], point: int) -> list[dict[str, bytes | None]]:
    return [dict(s.tree) for s in states if s.point == point]


def values_of(states: tuple[CrashState, ...], point: int, name: str) -> set[bytes | None]:
    return {tree.get(name) for tree in files_at(states, point)}


INITIAL: Tree = (("k", b"1\n"),)


def save(trace: Trace, value: bytes, *, file_sync: bool = True, dir_sync: bool = True) -> Trace:
    trace.create("k.tmp").write("k.tmp", value)
    if file_sync:
        trace.fsync("k.tmp", value)
    trace.add("close", "k.tmp", content=value).add("replace", "k.tmp", target="k")
    if dir_sync:
        trace.dirsync()
    return trace


def test_correct_save_protocol_leaves_old_or_new_value_at_every_point() -> None:
    trace = save(Trace(), b"2\n")
    found = explore(trace.ops, ROOT, INITIAL, seed=1)
    assert found.sampled_points == 0
    assert found.exhaustive_points == len(trace.ops) + 1
    for point in range(-1, len(trace.ops)):
        assert values_of(found.states, point, "k") <= {b"1\n", b"2\n"}, point
    last = len(trace.ops) - 1
    assert values_of(found.states, last, "k") == {b"2\n"}
    # The temp file's creation was undone or persisted; both states are reachable before the sync.
    assert values_of(found.states, last - 1, "k.tmp") == {None, b"2\n"}


def test_missing_file_fsync_can_leave_an_empty_target_after_the_directory_sync() -> None:
    trace = save(Trace(), b"2\n", file_sync=False)
    found = explore(trace.ops, ROOT, INITIAL, seed=1, tear=1)
    last = len(trace.ops) - 1
    assert b"" in values_of(found.states, last, "k")
    assert b"\0\0" in values_of(found.states, last, "k")
    assert b"2" in values_of(found.states, last, "k")  # torn after one byte


def test_missing_directory_fsync_can_undo_the_rename() -> None:
    trace = save(Trace(), b"2\n", dir_sync=False)
    found = explore(trace.ops, ROOT, INITIAL, seed=1)
    last = len(trace.ops) - 1
    trees = files_at(found.states, last)
    assert {"k": b"1\n"} in trees  # rename and temp creation both undone
    assert {"k": b"1\n", "k.tmp": b"2\n"} in trees  # rename undone: the source name comes back
    undone = [s for s in found.states if s.point == last and dict(s.tree) == {"k": b"1\n"}]
    assert any("replace" in op for op in undone[0].undone)
    assert "UNDONE" in undone[0].describe()


def test_rename_before_data_sync_can_persist_the_rename_without_the_data() -> None:
    trace = Trace().create("k.tmp").write("k.tmp", b"2\n").add("replace", "k.tmp", target="k")
    after_rename = len(trace.ops) - 1
    trace.fsync("k", b"2\n").dirsync()
    found = explore(trace.ops, ROOT, INITIAL, seed=1)
    assert b"" in values_of(found.states, after_rename, "k")
    assert values_of(found.states, len(trace.ops) - 1, "k") == {b"2\n"}


def test_exhaustive_count_for_one_unsynced_new_file() -> None:
    trace = Trace().create("n").write("n", b"ab")
    found = explore(trace.ops, ROOT, (), seed=1, tear=1)
    states = files_at(found.states, 1)
    # Entry lost; or kept holding "ab", "" (dropped), "a" (torn), or two zero bytes.
    assert sorted(states, key=repr) == sorted(
        [{}, {"n": b"ab"}, {"n": b""}, {"n": b"a"}, {"n": b"\0\0"}], key=repr
    )


def test_fsync_of_a_new_file_does_not_persist_its_entry() -> None:
    trace = Trace().create("n").write("n", b"ab").fsync("n", b"ab")
    found = explore(trace.ops, ROOT, (), seed=1)
    assert files_at(found.states, 2) == [{"n": b"ab"}, {}] or files_at(found.states, 2) == [
        {},
        {"n": b"ab"},
    ]


def test_fdatasync_syncs_data_like_fsync() -> None:
    trace = Trace().write("k", b"22\n").add("fdatasync", "k", content=b"22\n")
    found = explore(trace.ops, ROOT, INITIAL, seed=1)
    assert values_of(found.states, 1, "k") == {b"22\n"}
    assert b"1\n" in values_of(found.states, 0, "k")


def test_in_place_overwrite_can_leave_the_truncated_file() -> None:
    trace = Trace().add("open", "k", flags=CREATE, content=b"").write("k", b"2\n")
    found = explore(trace.ops, ROOT, INITIAL, seed=1, tear=1)
    assert {b"1\n", b"", b"2", b"2\n"} <= values_of(found.states, 1, "k")


def test_unlink_since_the_last_directory_sync_may_be_undone() -> None:
    trace = Trace().add("unlink", "k")
    found = explore(trace.ops, ROOT, INITIAL, seed=1)
    assert values_of(found.states, 0, "k") == {None, b"1\n"}
    trace.dirsync()
    assert values_of(explore(trace.ops, ROOT, INITIAL, seed=1).states, 1, "k") == {None}


def test_undone_mkdir_takes_the_files_under_it() -> None:
    trace = Trace().add("mkdir", "d").create("d/f").write("d/f", b"x").fsync("d/f", b"x")
    trace.dirsync("d")
    found = explore(trace.ops, ROOT, (), seed=1)
    assert files_at(found.states, len(trace.ops) - 1) in (
        [{}, {"d": None, "d/f": b"x"}],
        [{"d": None, "d/f": b"x"}, {}],
    )


def test_rename_across_directories_persists_per_directory() -> None:
    initial: Tree = (("a", None), ("b", None), ("a/f", b"x"))
    trace = Trace().add("rename", "a/f", target="b/f").dirsync("b")
    found = explore(trace.ops, ROOT, initial, seed=1)
    trees = files_at(found.states, 1)
    # The new name is durable; the old one may come back (a second link to the same inode).
    assert all(t.get("b/f") == b"x" for t in trees)
    assert {t.get("a/f") for t in trees} == {None, b"x"}


def test_failed_operations_marks_and_paths_outside_the_root_change_nothing() -> None:
    trace = Trace().add("unlink", "k", error="EACCES").mark("ack save 1 2 3")
    trace.ops.append(TraceOp(2, "unlink", "/elsewhere/k"))
    found = explore(trace.ops, ROOT, INITIAL, seed=1)
    assert {s.tree for s in found.states} == {INITIAL}
    assert found.points == 4


def test_an_open_of_an_unknown_file_without_create_is_a_model_error() -> None:
    trace = Trace().add("open", "ghost", flags=os.O_RDONLY, content=b"")
    with pytest.raises(ModelError, match="ghost"):
        explore(trace.ops, ROOT, INITIAL, seed=1)


def test_long_traces_are_sampled_reproducibly_and_bounded() -> None:
    trace = Trace()
    for i in range(12):  # twelve saves of distinct keys, never a directory sync
        trace.create(f"k{i}.tmp").write(f"k{i}.tmp", b"7\n").fsync(f"k{i}.tmp", b"7\n")
        trace.add("replace", f"k{i}.tmp", target=f"k{i}")
    first = explore(trace.ops, ROOT, INITIAL, seed=5, budget=40)
    again = explore(trace.ops, ROOT, INITIAL, seed=5, budget=40)
    assert first == again
    assert first.sampled_points > 0
    last = len(trace.ops) - 1
    assert 0 < len(files_at(first.states, last)) <= 40
    # The journal-order extremes are always among the samples: nothing persisted, everything did.
    assert {"k": b"1\n"} in files_at(first.states, last)
    assert any(len(t) == 13 and "k11" in t for t in files_at(first.states, last))


def test_materialise_writes_the_tree(tmp_path: Path) -> None:
    tree: Tree = (("d", None), ("d/f", b"x\n"), ("g", b""))
    materialise(tree, str(tmp_path))
    assert (tmp_path / "d" / "f").read_bytes() == b"x\n"
    assert (tmp_path / "g").read_bytes() == b""


def test_a_torn_overwrite_mixes_new_and_old_bytes_and_never_shrinks_the_file() -> None:
    old = b"A" * 100
    new = b"A" * 10 + b"B" * 80 + b"A" * 10  # a pwrite over bytes 10..89
    contents = {c for c, _ in content_choices(old, [(7, new)], tear=1)}
    assert old in contents
    assert new in contents
    assert all(len(c) == 100 for c in contents)  # an overwrite cannot cut the file short
    assert b"A" * 10 + b"B" * 40 + b"A" * 50 in contents  # torn half way through the write


def test_an_append_tears_to_prefixes_or_zeros_beyond_the_synced_length() -> None:
    contents = {c for c, _ in content_choices(b"12", [(3, b"12345")], tear=1)}
    assert {b"12", b"123", b"1234", b"12345", b"12\0\0\0"} == contents


def test_every_write_since_the_sync_may_be_the_last_to_land() -> None:
    choices = content_choices(b"", [(1, b"a"), (2, b"ab"), (3, b"abc")])
    hows = dict(choices)
    assert hows[b"abc"].endswith("kept")
    assert "as after #2" in hows[b"ab"]
    assert "dropped" in hows[b""]


def test_replay_rebuilds_the_directory_the_trace_leaves() -> None:
    trace = save(Trace(), b"2\n", dir_sync=False).add("mkdir", "d").create("d/x")
    assert replay(trace.ops, ROOT, INITIAL) == (("d", None), ("d/x", b""), ("k", b"2\n"))


NAMES = ("a", "b", "c")


@st.composite
def random_traces(draw: st.DrawFn) -> tuple[Trace, dict[str, bytes]]:
    """Random create/write/fsync/rename/unlink/dir-fsync sequences a real process could make."""
    trace, live = Trace(), {"k": b"1\n"}
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.sampled_from(NAMES))
        action = draw(st.sampled_from(["write", "fsync", "rename", "unlink", "dirsync"]))
        if action == "dirsync":
            trace.dirsync()
        elif action == "write":
            if name not in live:
                trace.create(name)
            live[name] = live.get(name, b"") + draw(st.binary(min_size=1, max_size=3))
            trace.write(name, live[name])
        elif name not in live:
            continue
        elif action == "fsync":
            trace.fsync(name, live[name])
        elif action == "rename":
            target = draw(st.sampled_from([*NAMES, "k"]))
            if target != name:
                trace.add("rename", name, target=target)
                live[target] = live.pop(name)
        else:
            trace.add("unlink", name)
            del live[name]
    return trace, live


@settings(deadline=None, max_examples=60)
@given(random_traces())
def test_the_uncut_tree_and_the_synced_tree_are_always_crash_states(
    case: tuple[Trace, dict[str, bytes]],
) -> None:
    trace, live = case
    found = explore(trace.ops, ROOT, INITIAL, seed=1, budget=500)
    last = len(trace.ops) - 1
    trees = [dict(s.tree) for s in found.states if s.point == last]
    assert dict(replay(trace.ops, ROOT, INITIAL)) == live
    if found.sampled_points == 0:
        assert live in trees  # nothing lost is always one outcome
    # Syncing every file, then the directory, leaves exactly one state: the uncut tree.
    for name, content in sorted(live.items()):
        trace.fsync(name, content)
    trace.dirsync()
    synced = explore(trace.ops, ROOT, INITIAL, seed=1)
    assert [dict(s.tree) for s in synced.states if s.point == len(trace.ops) - 1] == [live]


def test_a_file_written_many_times_is_explored_within_a_cap_without_building_every_state() -> None:
    # A log appended to and never synced (SQLite's WAL under synchronous=OFF): hundreds of
    # versions, thousands of torn contents per crash point. The stream counts them without
    # building them, and builds only the capped draw.
    root = "/data/store"
    trace = [TraceOp(0, "open", f"{root}/log", flags=os.O_CREAT | os.O_WRONLY, content=b"")]
    content = b""
    for i in range(1, 200):
        content += bytes([i % 251]) * 4096
        trace.append(TraceOp(i, "write", f"{root}/log", content=content))
    stream = StateStream(trace, root, (), seed=1, budget=48, cap=300)
    assert stream.candidates > 300
    assert stream.drawn == 300
    states = list(stream)
    assert 0 < len(states) <= 300
    again = [s.tree for s in StateStream(trace, root, (), seed=1, budget=48, cap=300)]
    assert again == [s.tree for s in states]  # seeded: the same draw every time
    choices = content_choices(b"", [(op.index, op.content or b"") for op in trace[1:]])
    assert len(choices) > 900  # lazily: recipes, not 900 copies of up to 800 kB
    assert choices[0][0] == content
    assert choices[1][0] == b""


def test_a_states_data_account_quotes_a_large_file_as_its_whole_repr_would() -> None:
    # The account is cut at 160 characters of repr(content); it is built from a head of the
    # content only, so the quotes must still be those of the whole (its last bytes decide).
    rng = random.Random(12)
    pieces = [b"'", b'"', b"\\", b"a", b"\x00", b"\n", b"\xff", b"x" * 70]
    for _ in range(20000):
        content = b"".join(rng.choice(pieces) for _ in range(rng.randrange(120)))
        chars = rng.choice([4, 40, 160])
        assert _cut("f: kept -> ", content, chars) == f"f: kept -> {content!r}"[:chars]
    # A single quote far past the cut, no double quote: the whole is shown in double quotes.
    assert _cut("", b"a" * 500 + b"'", 8) == 'b"aaaaaa'
    assert _cut("", b"'" + b"a" * 500 + b'"', 8) == "b'\\'aaaa"


def test_the_streams_digests_are_the_digests_of_the_trees_it_builds() -> None:
    # The model names each state by its files' content digests it already holds: the name must
    # be the tree's own digest, or states would be dropped as duplicates (or checked twice).
    trace = save(save(Trace(), b"2\n", file_sync=False), b"33\n", dir_sync=False)
    trace.write("k", b"4")  # unsynced data on a synced file: torn and dropped versions
    stream = StateStream(trace.ops, ROOT, INITIAL, seed=1)
    pairs = list(stream.digested())
    assert len(pairs) > 20
    for state, digest in pairs:
        assert digest == tree_digest(state.tree), state
    assert len({d for _, d in pairs}) == len({s.tree for s, _ in pairs})


def failed_sync_save(*, rewrite: bool) -> Trace:
    """A save whose first fsync of the temp file fails (EIO); the store syncs again and renames.

    With ``rewrite`` it writes the same bytes again before the second sync (dirty pages again).
    """
    trace = Trace().create("k.tmp").write("k.tmp", b"22\n")
    trace.add("fsync", "k.tmp", content=b"22\n", error="EIO")
    if rewrite:
        trace.write("k.tmp", b"22\n")
    trace.fsync("k.tmp", b"22\n").add("close", "k.tmp", content=b"22\n")
    return trace.add("replace", "k.tmp", target="k").dirsync()


def test_data_written_before_a_failed_fsync_may_be_lost_though_a_later_fsync_succeeded() -> None:
    # fsyncgate: after a failed writeback the pages are clean, a second fsync has nothing to
    # write, and the disk may keep what it held (nothing: zeros at the file's new size).
    trace = failed_sync_save(rewrite=False)
    found = explore(trace.ops, ROOT, INITIAL, seed=1)
    last = len(trace.ops) - 1
    assert values_of(found.states, last, "k") >= {b"22\n", b"\0\0\0"}
    lost = next(s for s in found.states if s.point == last and dict(s.tree)["k"] == b"\0\0\0")
    assert lost.dropped == ("k",)
    assert "failed sync #2" in lost.describe()


def test_writing_the_data_again_after_a_failed_fsync_makes_the_next_fsync_count() -> None:
    trace = failed_sync_save(rewrite=True)
    found = explore(trace.ops, ROOT, INITIAL, seed=1)
    assert values_of(found.states, len(trace.ops) - 1, "k") == {b"22\n"}


def test_a_failed_fsync_loses_only_what_was_not_written_again_after_it() -> None:
    # A log appended to: record 1 written, its fsync fails; record 2 appended and synced. The
    # second fsync makes record 2 durable, not record 1 (written once, before the failure).
    initial: Tree = (("log", b""),)
    trace = Trace().write("log", b"one\n").add("fsync", "log", content=b"one\n", error="EIO")
    trace.write("log", b"one\ntwo\n").fsync("log", b"one\ntwo\n")
    found = explore(trace.ops, ROOT, initial, seed=1)
    last = values_of(found.states, len(trace.ops) - 1, "log")
    assert b"one\ntwo\n" in last
    assert b"\0\0\0\0two\n" in last  # record 1 lost for good, record 2 on disk
    assert b"" not in last  # the second sync did reach the disk: the size and record 2
    # A failed sync of a file with nothing unsynced loses nothing.
    clean = Trace().add("fsync", "k", content=b"1\n", error="EIO")
    assert values_of(explore(clean.ops, ROOT, INITIAL, seed=1).states, 0, "k") == {b"1\n"}


def torn(choices: Any) -> set[bytes]:
    return {c for c, how in choices if "torn at byte" in how}


def test_a_write_inside_one_sector_is_never_torn() -> None:
    # A disk writes a sector whole or not at all: "ab" is all there, or the file is empty, or
    # (its size reached the journal first) two zero bytes; never "a".
    assert {c for c, _ in content_choices(b"", [(1, b"ab")])} == {b"ab", b"", b"\0\0"}
    old = b"A" * 600
    over = b"A" * 10 + b"B" * 480 + b"A" * 110  # bytes 10..489 of sector 0: old or new
    assert {c for c, _ in content_choices(old, [(1, over)])} == {old, over}


def test_a_write_across_sectors_is_torn_only_at_their_boundaries() -> None:
    old = b"A" * 2000
    new = b"A" * 100 + b"B" * 1800 + b"A" * 100  # bytes 100..1899: sectors 0 to 3
    cuts = {new[:c] + old[c:] for c in (512, 1024, 1536)}
    assert torn(content_choices(old, [(1, new)])) == cuts
    assert torn(content_choices(old, [(1, new)], tear=4096)) == set()  # one 4 KiB sector
    assert len(torn(content_choices(old, [(1, new)], tear=1))) > 3  # byte-level: finer
    append = content_choices(b"", [(1, bytes(range(256)) * 40)], tear=4096)  # 10,240 bytes
    assert {len(c) for c in torn(append)} == {4096, 8192}


def test_a_long_write_is_torn_at_a_few_sector_boundaries_only() -> None:
    new = b"x" * (1 << 20)
    for tear in (512, 4096):
        lengths = {len(c) for c in torn(content_choices(b"", [(1, new)], tear=tear))}
        assert 3 <= len(lengths) <= 7
        assert all(n % tear == 0 and 0 < n < len(new) for n in lengths), (tear, lengths)


def test_the_tear_size_reaches_every_crash_state_of_a_stream() -> None:
    trace = Trace().create("n").write("n", b"x" * 1500)
    contents = {
        tear: values_of(explore(trace.ops, ROOT, (), seed=1, tear=tear).states, 1, "n")
        for tear in (1, 512, 4096)
    }
    assert contents[4096] == {None, b"", b"x" * 1500, b"\0" * 1500}
    assert contents[512] == contents[4096] | {b"x" * 512, b"x" * 1024}
    assert b"x" in contents[1]  # byte-level: torn after one byte too
    assert b"x" not in contents[512]


# The calls of issue 19 (class 8), as the seam records them.
LINK: OpKind = "link"
UNKNOWN: OpKind = "unknown"


def test_a_link_from_a_synced_temp_file_is_durable_once_the_directory_is_synced() -> None:
    trace = Trace().create("t").write("t", b"5\n").fsync("t", b"5\n")
    trace.add(LINK, "k.1", target="t", content=b"5\n").add("unlink", "t")
    linked = len(trace.ops) - 2
    trace.dirsync()
    found = explore(trace.ops, ROOT, (), seed=1)
    # Before the directory sync the link can be undone like any new entry ...
    assert values_of(found.states, linked, "k.1") == {None, b"5\n"}
    undone = next(s for s in found.states if s.point == linked and "k.1" not in dict(s.tree))
    assert any(" link " in op or "link k.1" in op for op in undone.undone), undone.undone
    # ... and the file's synced data goes with the inode to its new name: never torn or empty.
    assert values_of(found.states, len(trace.ops) - 1, "k.1") == {b"5\n"}
    assert values_of(found.states, len(trace.ops) - 1, "t") == {None}


def test_a_failed_link_changes_nothing_and_a_link_over_a_name_is_a_model_error() -> None:
    trace = Trace().create("t").write("t", b"6\n")
    trace.add(LINK, "k", target="t", content=b"6\n", error="EEXIST")
    found = explore(trace.ops, ROOT, INITIAL, seed=1)
    assert values_of(found.states, len(trace.ops) - 1, "k") == {b"1\n"}
    trace.add(LINK, "k", target="t", content=b"6\n")  # succeeded though k exists: a gap
    with pytest.raises(ModelError, match="the link succeeded though"):
        explore(trace.ops, ROOT, INITIAL, seed=1)


def test_an_o_tmpfile_file_has_no_name_until_a_link_gives_it_one() -> None:
    if not O_TMPFILE:
        pytest.skip("no O_TMPFILE on this platform")
    trace = Trace().add("open", "", flags=O_TMPFILE | os.O_WRONLY, fd=7, content=b"")
    trace.write("#tmpfile-7", b"9\n").fsync("#tmpfile-7", b"9\n")
    before = len(trace.ops) - 1
    trace.add(LINK, "k.9", target=None, fd=7, content=b"9\n").dirsync()
    found = explore(trace.ops, ROOT, (), seed=1)
    assert files_at(found.states, before) == [{}]  # unnamed: no state shows it
    assert files_at(found.states, len(trace.ops) - 1) == [{"k.9": b"9\n"}]
    assert replay(trace.ops, ROOT, ()) == (("k.9", b"9\n"),)
    unsynced = Trace().add("open", "", flags=O_TMPFILE | os.O_WRONLY, fd=3, content=b"")
    unsynced.write("#tmpfile-3", b"9\n").add(LINK, "k.9", fd=3, content=b"9\n").dirsync()
    left = values_of(explore(unsynced.ops, ROOT, (), seed=1).states, 3, "k.9")
    assert left == {b"9\n", b"", b"\0\0"}  # named and durable, its data not


def test_rename_noreplace_is_a_rename_and_exchange_swaps_two_entries() -> None:
    initial: Tree = (("a", b"A"), ("b", b"B"))
    swap = Trace().add("rename", "a", target="b", flags=RENAME_EXCHANGE)
    found = explore(swap.ops, ROOT, initial, seed=1)
    # One entry operation: both names swap, or neither (the directory was not synced).
    assert sorted(map(repr, files_at(found.states, 0))) == sorted(
        map(repr, [{"a": b"A", "b": b"B"}, {"a": b"B", "b": b"A"}])
    )
    assert replay(swap.ops, ROOT, initial) == (("a", b"B"), ("b", b"A"))
    new = Trace().add("rename", "a", target="c", flags=RENAME_NOREPLACE).dirsync()
    assert files_at(explore(new.ops, ROOT, initial, seed=1).states, 1) == [{"b": b"B", "c": b"A"}]
    for bad in (
        Trace().add("rename", "a", target="b", flags=RENAME_NOREPLACE),
        Trace().add("rename", "a", target="c", flags=RENAME_EXCHANGE),
    ):
        with pytest.raises(ModelError):
            explore(bad.ops, ROOT, initial, seed=1)
    failed = Trace().add("rename", "a", target="b", flags=RENAME_NOREPLACE, error="EEXIST")
    assert files_at(explore(failed.ops, ROOT, initial, seed=1).states, 0) == [dict(initial)]


def test_copy_file_range_fallocate_and_truncate_by_path_are_writes_and_truncations() -> None:
    old = b"a" * 2048
    trace = Trace().add("write", "f", content=b"a" * 1024 + b"b" * 1024, call="copy_file_range")
    trace.add("write", "f", content=b"a" * 512 + b"\0" * 512 + b"b" * 1024, call="fallocate")
    trace.add("truncate", "f", content=b"a" * 512, call="truncate")
    found = explore(trace.ops, ROOT, (("f", old),), seed=1)
    left = values_of(found.states, 2, "f")
    assert {old, b"a" * 512} <= left  # dropped, or every change kept (the cut shrinks the file)
    assert b"a" * 1024 + b"b" * 1024 in left  # the copy landed, the hole punch did not
    assert all(len(c or b"") in (512, 2048) for c in left)  # a truncation is never torn
    assert replay(trace.ops, ROOT, (("f", old),)) == (("f", b"a" * 512),)


def test_a_mapping_may_write_back_any_subset_of_its_dirty_pages() -> None:
    page = 4096
    old = b"\0" * (4 * page)
    new = b"".join(bytes([n + 1]) * page if n in (0, 2, 3) else b"\0" * page for n in range(4))
    trace = Trace().add("write", "m", content=new, call="mmap")
    found = explore(trace.ops, ROOT, (("m", old),), seed=1)
    left = values_of(found.states, 0, "m")
    subsets = {
        b"".join(new[n * page : (n + 1) * page] if n in kept else old[:page] for n in range(4))
        for kept in ({0}, {2}, {3}, {0, 2}, {0, 3}, {2, 3}, set(), {0, 2, 3})
    }
    assert subsets <= left  # each of the 8 subsets of the three dirty pages
    middle = old[: 2 * page] + new[2 * page : 3 * page] + old[3 * page :]  # no torn write
    kept = next(s for s in found.states if dict(s.tree)["m"] == middle)
    assert "only dirty pages 2 written" in kept.describe()
    synced = Trace().add("write", "m", content=new, call="mmap").fsync("m", new)
    assert values_of(explore(synced.ops, ROOT, (("m", old),), seed=1).states, 1, "m") == {new}


def test_a_mapping_with_many_dirty_pages_tries_each_page_alone_and_each_missing() -> None:
    new = b"".join(bytes([n + 1]) * 4096 for n in range(10))
    choices = content_choices(b"", [(1, new)], pages=True)
    alone = [c for c, how in choices if "only dirty pages" in how and how.count(",") == 0]
    assert len(alone) == 10
    assert len(choices) < 2**10  # not every subset
    assert all(len(c) == len(new) for c, how in choices if "mapping" in how)


def test_an_unknown_call_is_named() -> None:
    trace = Trace().add(UNKNOWN, "k", call="renameat2", note="RENAME_WHITEOUT")
    with pytest.raises(UnknownCall, match="the store called renameat2 \\(RENAME_WHITEOUT\\) on"):
        explore(trace.ops, ROOT, INITIAL, seed=1)


def test_an_open_that_finds_an_unknown_file_holding_data_is_a_gap_in_the_trace() -> None:
    # The reference SQLite store links its new database into place; a recorder that misses the
    # link shows SQLite opening a file the model never saw, already full.
    trace = Trace().add("open", "db", flags=os.O_RDWR | os.O_CREAT, content=b"SQLite format 3")
    with pytest.raises(ModelError, match="the trace missed the call that made it"):
        replay(trace.ops, ROOT, ())
