"""The driver protocol's plumbing (docs/drivers.md), on real driver processes.

``tests/drivers/py_driver.py`` is a driver in Python over our lock-file store; each of its flags
breaks the protocol one way. Every store call here is a request to a real process, and every
broken driver must become one harness error naming the driver, the request and what came back,
never an exception a property would judge as the store's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from _drivers import py_driver  # noqa: E402  (importable once the path is set)
from lance_offsets.conformance import _driver, load_factory  # noqa: E402
from lance_offsets.conformance._capabilities import capabilities_of  # noqa: E402
from lance_offsets.conformance._driver import (  # noqa: E402
    DriverBatchStore,
    DriverError,
    _static,
    driver_factory,
    resolve_exec_spec,
)
from lance_offsets.conformance._spec import SpecError, canonical_spec  # noqa: E402

from lance_offsets import CorruptOffsetError, LockTimeoutError, StoreClosedError  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="drivers are POSIX programs here"),
]

TOP = (2**32 - 1, 2**64 - 1)


def _batch_store(spec: str, path: Path) -> DriverBatchStore:
    """A handle of a driver that declares save_many (py_driver does)."""
    store = driver_factory(spec)(str(path))
    assert isinstance(store, DriverBatchStore)
    return store


def test_every_u64_round_trips_and_the_answers_become_python_values(tmp_path: Path) -> None:
    factory = driver_factory(py_driver())
    with _batch_store(py_driver(), tmp_path) as store:
        assert isinstance(store, DriverBatchStore)
        store.save(*TOP, 2**64 - 1)
        store.save(0, 0, 0)
        store.save_many({(1, 23): 5, (12, 3): 6})
        assert store.load(*TOP) == 2**64 - 1
        assert store.load(0, 0) == 0
        assert store.load(7, 7) is None
        assert store.list_all() == {TOP: 2**64 - 1, (0, 0): 0, (1, 23): 5, (12, 3): 6}
        store.delete(0, 0)
        store.delete(0, 0)  # absent: no error
        assert store.load(0, 0) is None
    # Another handle is another process, on the same files.
    with factory(str(tmp_path)) as again:
        assert again.load(*TOP) == 2**64 - 1


def test_capabilities_come_from_the_answer_to_open(tmp_path: Path) -> None:
    factory = driver_factory(py_driver("--declare", "durable=false", "--declare", 'offset_max="9"'))
    caps = capabilities_of(factory)  # read before any handle: one probe in a scratch directory
    assert (caps.durable, caps.persistent, caps.offset_max, caps.has("named")) == (
        False,
        True,
        9,
        True,
    )
    assert factory.batch is True
    opened = factory.open_named
    assert opened is not None
    with opened(str(tmp_path), "billing") as named:
        named.save(1, 2, 3)
    assert (tmp_path / "billing" / "topic-1-consumer-2.offset").read_bytes() == b"3\n"


def test_ranges_are_the_drivers_and_types_the_suites(tmp_path: Path) -> None:
    with _batch_store(py_driver(), tmp_path) as store:
        for bad in ((2**32, 0, 1), (0, 2**64, 1), (0, 0, 2**64), (-1, 0, 1), (0, 0, 2**100)):
            with pytest.raises(ValueError, match="must be in"):
                store.save(*bad)
        for wrong in ((True, 0, 1), (0, 1.0, 1), (0, 0, "5"), (None, 0, 1)):
            with pytest.raises(TypeError, match="must be an int"):
                store.save(*wrong)
        with pytest.raises(TypeError):
            store.save_many([(1, 2, 3)])  # type: ignore[arg-type]  # a list, not a mapping
        assert store.list_all() == {}  # nothing refused changed anything


def test_errors_come_back_as_the_contracts_kinds(tmp_path: Path) -> None:
    store = load_factory(py_driver())(str(tmp_path))
    store.save(7, 1, 5)
    damaged = tmp_path / "conformance" / "topic-7-consumer-1.offset"
    damaged.write_bytes(b"12")  # cut short: no newline
    with pytest.raises(CorruptOffsetError) as raised:
        store.load(7, 1)
    assert raised.value.path == str(damaged)
    assert raised.value.key == (7, 1)
    (tmp_path / "conformance").chmod(0o500)
    try:
        if os.geteuid() != 0:  # root writes anyway: the io kind is the fault tests' business
            with pytest.raises(OSError, match="ermission"):
                store.save(7, 2, 1)
    finally:
        (tmp_path / "conformance").chmod(0o700)
    store.close()
    store.close()  # a second close is no error
    for call in (lambda: store.load(7, 1), lambda: store.save(7, 1, 1), store.list_all):
        with pytest.raises(StoreClosedError):
            call()


def test_lock_timeout_kind_is_a_lock_timeout_error() -> None:
    from lance_offsets.conformance._driver import DriverLockTimeoutError

    error = DriverLockTimeoutError("busy", key=(1, 2), path="/x")
    assert isinstance(error, LockTimeoutError)
    assert isinstance(error, TimeoutError)
    assert str(error) == "busy"


@pytest.mark.parametrize(
    ("flags", "request_op", "shown"),
    [
        (["--crash-at-start"], '"op":"open"', ["exited with status 3", "told to crash"]),
        (["--garbage", "load"], '"op":"load"', ["b'this is not json', which is not JSON"]),
        (["--unknown-reply", "load"], '"op":"load"', ["neither 'ok' nor 'error'"]),
        (["--exit-mid", "save"], '"op":"save"', ["exited with status 4", "leaving in the middle"]),
        (["--noise", "save"], '"op":"save"', ["b'saving now...', which is not JSON"]),
        (["--wrong-id", "load"], '"op":"load"', ["answered id 9 (expected 2)"]),
        (["--unknown-kind", "load"], '"op":"load"', ["unknown error kind 'oops'"]),
        (["--declare", "persistant=true"], '"op":"open"', ["unknown capability 'persistant'"]),
        (["--hang", "load"], '"op":"load"', ["no answer within 1 s"]),
    ],
)
def test_a_broken_driver_is_one_harness_error_naming_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    request_op: str,
    shown: list[str],
) -> None:
    monkeypatch.setenv("LANCE_OFFSETS_DRIVER_SECONDS", "1")
    spec = py_driver(*flags)
    started = time.monotonic()

    def use() -> None:
        with load_factory(spec)(str(tmp_path)) as store:
            store.save(1, 2, 3)
            store.load(1, 2)

    with pytest.raises(DriverError) as raised:
        use()
    text = str(raised.value)
    assert not isinstance(raised.value, Exception)  # never judged as the store's exception
    assert text.startswith(f"driver {canonical_spec(spec)!r} broke the protocol answering {{")
    assert request_op in text
    for part in shown:
        assert part in text
    assert time.monotonic() - started < 15  # a hang is cut off, never waited out


def test_a_driver_that_outlives_close_is_named_and_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_driver, "EXIT_SECONDS", 0.5)
    store = driver_factory(py_driver("--linger-after-close"))(str(tmp_path))
    pid = store._proc.proc.pid
    with pytest.raises(DriverError, match=r"still ran 0\.5 s after answering close"):
        store.close()
    assert store._proc.proc.poll() is not None
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_the_check_stops_with_one_line_and_status_2_on_a_broken_driver(tmp_path: Path) -> None:
    spec = py_driver("--garbage", "list_all")
    done = subprocess.run(
        [sys.executable, "-m", "lance_offsets", "check", spec, "--only", "C6", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("lance-offsets: error")]
    assert len(error) == 1, done.stderr
    assert "broke the protocol answering" in error[0]
    assert '"op":"list_all"' in error[0]
    assert "C6" not in done.stdout.split("\n", 1)[-1].replace("--only C6", "")  # no verdict row


def test_specs_are_resolved_where_they_are_given(tmp_path: Path) -> None:
    script = tmp_path / "driver.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    (tmp_path / "data.json").write_text("{}")
    os.chdir(tmp_path)
    resolved = resolve_exec_spec("exec:./driver.sh data.json --flag x")
    assert resolved == f"exec:{script} {tmp_path / 'data.json'} --flag x"
    assert resolve_exec_spec(resolved, cwd="/") == resolved  # resolved already: unchanged
    assert resolve_exec_spec("exec:sh -c 'exit 0'").startswith("exec:/")  # found on PATH
    for bad, why in (
        ("exec:", "names no program"),
        ("exec:./missing", "no program"),
        ("exec:'unclosed", "No closing quotation"),
        ("exec:no-such-program-anywhere", "on PATH"),
    ):
        with pytest.raises(SpecError, match=why):
            load_factory(bad)
    (tmp_path / "plain").write_text("")
    with pytest.raises(SpecError, match="not executable"):
        load_factory("exec:./plain")


def test_static_programs_are_told_apart(tmp_path: Path) -> None:
    assert _static(sys.executable) is False  # dynamically linked: the shim runs in it
    script = tmp_path / "s.py"
    script.write_text(f"#!{sys.executable}\n")
    assert _static(str(script)) is False  # judged by its interpreter
    assert _static(str(tmp_path / "missing")) is False


def test_a_driver_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """SIGKILL the owner: its driver is killed with it (the launcher's death signal)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the death signal is Linux's (PR_SET_PDEATHSIG)")
    code = (
        "import sys, time\n"
        "from lance_offsets.conformance import load_factory\n"
        f"store = load_factory({py_driver()!r})({str(tmp_path)!r})\n"
        "print(store._proc.proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    with owner, owner.stdout:
        driver = int(owner.stdout.readline())
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{driver}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.02)
    else:
        raise AssertionError(f"driver {driver} still runs 5 s after its owner was killed")


def test_json_lines_are_what_the_page_shows(tmp_path: Path) -> None:
    """The requests on the wire are docs/drivers.md's, numbers as strings."""
    log = tmp_path / "wire.log"
    spy = tmp_path / "spy.sh"
    spy.write_text(
        f"#!/bin/sh\ntee -a {log} | {sys.executable} {Path(py_driver()[5:].split()[1])}\n"
    )
    spy.chmod(0o755)
    with load_factory(f"exec:{spy}")(str(tmp_path / "store")) as store:
        store.save(*TOP, 2**64 - 1)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert (lines[0]["id"], lines[0]["op"], lines[0]["protocol"]) == (0, "open", 1)
    assert lines[1] == {
        "id": 1,
        "op": "save",
        "topic_id": "4294967295",
        "consumer_id": "18446744073709551615",
        "offset": "18446744073709551615",
    }
    assert lines[2] == {"id": 2, "op": "close"}


def test_the_pytest_door_stops_with_status_2_on_a_broken_driver(tmp_path: Path) -> None:
    spec = py_driver("--garbage", "load")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--pyargs",
            "lance_offsets.conformance.suite",
            "--store",
            spec,
            "--conformance-only",
            "C1",
            "--conformance-seed",
            "1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "broke the protocol answering" in done.stdout + done.stderr
    assert "1 failed" not in done.stdout  # no verdict on the store
