"""The concurrency workers' pauses inside a store's calls (stress/concurrency/_widen.py).

A real store (the reference lock-file store) runs real saves, loads and deletes under the seam's
interposer with a :class:`Widener` as its ``on_op``: the pauses land only where race windows are
(after an open, before a rename, replace or unlink), and one seed gives the same pauses.
"""

from __future__ import annotations

from pathlib import Path

from lance_offsets.stress.concurrency._widen import CHANCE, LONGEST, Widener
from lance_offsets.stress.seam._interpose import traced

from lance_offsets import LockFileOffsetStore

#: Places a pause may happen, as :attr:`Widener.where` names them.
WINDOWS = {"after open", "before rename", "before replace", "before unlink"}


def _work(root: Path, seed: int) -> Widener:
    root.mkdir()
    widener = Widener(seed, "M1", 0)
    with traced(root, on_op=widener), LockFileOffsetStore.open(root, "widen") as store:
        for offset in range(40):
            store.save(1, 2, offset)
            assert store.load(1, 2) == offset
        store.delete(1, 2)
    return widener


def test_pauses_land_in_race_windows_and_follow_the_seed(tmp_path: Path) -> None:
    first = _work(tmp_path / "first", 1)
    print(dict(first.where), first.seconds)
    assert set(first.where) <= WINDOWS
    # 40 saves, each with a replace: about CHANCE of them pause before it.
    assert 0 < first.where["before replace"] < 40
    assert first.paused == sum(first.where.values())
    assert 0 < first.seconds <= first.paused * LONGEST
    again = _work(tmp_path / "again", 1)
    assert (again.where, again.seconds) == (first.where, first.seconds)
    other = _work(tmp_path / "other", 2)
    assert (other.where, other.seconds) != (first.where, first.seconds)


def test_the_draws_depend_on_the_seed_and_worker_only() -> None:
    def draws(seed: int, worker: int) -> list[float]:
        widener = Widener(seed, "M2", worker)
        return [widener.pause() for _ in range(200)]

    assert draws(7, 0) == draws(7, 0)
    assert draws(7, 0) != draws(7, 1)
    paused = [length for length in draws(7, 0) if length]
    assert all(0 < length <= LONGEST for length in paused)
    assert 0.5 * CHANCE < len(paused) / 200 < 1.5 * CHANCE
