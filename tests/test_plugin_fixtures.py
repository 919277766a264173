"""The pytest plugin's fixtures for store authors and the machine's extension point
(docs/conformance.md, "Fixtures for store authors" and "A property of your own")."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant, run_state_machine_as_test
from lance_offsets.conformance import ContractViolation, store_machine

from lance_offsets import LockFileOffsetStore


def test_factory_and_directory_fixtures(
    offset_store_factory: Callable[[str], Any], offset_store_dir: str
) -> None:
    assert os.listdir(offset_store_dir) == []
    with offset_store_factory(offset_store_dir) as store:  # default: the reference store
        store.save(1, 2, 3)
    with offset_store_factory(offset_store_dir) as store:
        assert store.load(1, 2) == 3


# -- a property of your own, added to the machine ------------------------------------------


class _LeavesTempCopies(LockFileOffsetStore):
    """Passes the contract, but leaves a stray copy of every save behind."""

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        super().save(topic_id, consumer_id, offset)
        name = f"topic-{topic_id}-consumer-{consumer_id}.offset.bak"
        with open(os.path.join(self.directory, name), "wb") as file:
            file.write(b"%d\n" % offset)


def _leaky(path: str) -> LockFileOffsetStore:
    return _LeavesTempCopies.open(path, "conformance")


def _tidy(path: str) -> LockFileOffsetStore:
    return LockFileOffsetStore.open(path, "conformance")


def _with_x1(factory: Callable[[str], Any]) -> Any:
    class TidyMachine(store_machine(factory, focus=["C1"])):  # type: ignore[misc]
        @invariant()
        def x1_only_offset_and_lock_files(self) -> None:
            folder = os.path.join(self.path, "conformance")
            if not os.path.isdir(folder):
                return
            stray = [n for n in os.listdir(folder) if not n.endswith((".offset", ".lock"))]
            if stray:
                self.violation("X1", f"stray files {sorted(stray)}", "no stray files")

    return TidyMachine


_FEW = settings(max_examples=10, stateful_step_count=8, suppress_health_check=list(HealthCheck))


def test_own_property_passes_a_tidy_store() -> None:
    run_state_machine_as_test(_with_x1(_tidy), settings=_FEW)


def test_own_property_catches_a_leaky_store() -> None:
    with pytest.raises(ContractViolation, match=r"\[X1 no stray files\] stray files") as caught:
        run_state_machine_as_test(_with_x1(_leaky), settings=_FEW)
    assert caught.value.property_id == "X1"
