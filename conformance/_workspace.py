"""Fresh directories and every handle opened in them, closed at the end whatever happened.

A check also needs handles of its own beside the one under test (C7's before/after observation,
H3's probe, F1's warm handle). Those helpers go through :meth:`Workspace.second_handle`: in this
process when the store allows it, else in another process, else not at all; a refusal of a helper
never becomes the property's verdict (stores like LMDB refuse a second handle per process). And
what a check set aside on the way (a helper it could not open, an example voided because the
store's own operation failed outside the property) is kept in :attr:`Workspace.asides`, so the
verdict's details say it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from hypothesis import note, reject
from hypothesis.errors import Unsatisfiable

from lance_offsets._protocol import OffsetStore

from ._hang import Role
from ._watch import helper_calls

if TYPE_CHECKING:
    from ._context import CheckContext

__all__ = ["RemoteHandle", "Workspace", "close_quietly", "helper_handle"]


def close_quietly(handle: Any) -> None:
    """Close ``handle``; a store whose close raises is judged by C8, not by every other test."""
    with contextlib.suppress(Exception):
        handle.close()


class RemoteHandle:
    """A handle held by the workspace's child process; the store's errors arrive as RemoteError.

    The child holds one handle at a time: opening another closes this one. ``role`` says who
    the handle is for a hang report: the store under test, or a check's helper.
    """

    def __init__(self, remote: Any, path: str, role: Role = "store") -> None:
        self._remote = remote
        self._role: Role = role
        #: Seconds each call may take, when not the store's ``call_seconds``.
        self.bound: float | None = None
        remote.call("open", path, role=role)

    def _call(self, op: str, *args: object) -> Any:
        return self._remote.call(op, *args, role=self._role, bound=self.bound)

    def load(self, topic_id: int, consumer_id: int) -> int | None:
        return self._call("load", topic_id, consumer_id)  # type: ignore[no-any-return]

    def save(self, topic_id: int, consumer_id: int, offset: int) -> None:
        self._call("save", topic_id, consumer_id, offset)

    def delete(self, topic_id: int, consumer_id: int) -> None:
        self._call("delete", topic_id, consumer_id)

    def list_all(self) -> dict[tuple[int, int], int]:
        return dict(self._call("list_all"))

    def close(self) -> None:
        self._call("close")

    def __enter__(self) -> RemoteHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Workspace:
    """Owns a scratch root: hands out fresh directories and remembers every handle it opened.

    :param factory: the store factory, called as ``factory(path)``.
    :param root: where to make directories; None means the system temporary directory.
    :ivar asides: what the check set aside, message -> how often (first message of each kind).
    :ivar evidence: counts of what the check exercised, for the verdict's ``evidence``.
    """

    def __init__(self, factory: Callable[[str], OffsetStore], root: str | None = None) -> None:
        self.factory = factory
        self.root = tempfile.mkdtemp(prefix="lance-conformance-", dir=root)
        self._handles: list[Any] = []
        self._count = 0
        self._remote: Any = None
        self._refused = ""
        #: Why a helper handle in another process could not be opened ("" before any refusal):
        #: not tried again in this run. A store that holds its data locked (an exclusive lock
        #: kept by the open handle) makes each try wait for its own lock timeout, every example.
        self._remote_refused = ""
        self._aside_kinds: dict[str, str] = {}
        self.asides: dict[str, int] = {}
        self.evidence: dict[str, int] = {}

    def fresh_dir(self) -> str:
        """Return a new, empty directory that no earlier example used."""
        self._count += 1
        path = os.path.join(self.root, f"store-{self._count}")
        os.mkdir(path)
        return path

    def open(self, path: str) -> Any:
        """Open a handle with the factory and remember it so :meth:`close_all` closes it."""
        handle = self.factory(path)
        self._handles.append(handle)
        return handle

    def track(self, handle: Any) -> Any:
        """Remember a handle opened some other way (``open_named``, a hook wrapper)."""
        self._handles.append(handle)
        return handle

    def close_all(self) -> None:
        """Close every handle handed out so far (closing twice is allowed by the contract)."""
        handles, self._handles = self._handles, []
        for handle in reversed(handles):
            close_quietly(handle)

    # -- helpers of the checks themselves ------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the evidence counter ``name``."""
        self.evidence[name] = self.evidence.get(name, 0) + n

    def aside(self, kind: str, message: str) -> None:
        """Record that the check set something aside; the first message of each kind is kept."""
        message = self._aside_kinds.setdefault(kind, message)
        self.asides[message] = self.asides.get(message, 0) + 1

    def remote_handle(self, spec: str, path: str, role: Role = "store") -> RemoteHandle:
        """A handle on ``path`` in the workspace's child process (started on first use).

        Raises whatever opening raised; a child that died is stopped first, so the next call
        starts a new one (one that hangs raises :class:`~._hang.StoreHung`, stopped already).
        """
        if self._remote is None:
            from ._remote import RemoteStore

            self._remote = RemoteStore(spec)
        try:
            return RemoteHandle(self._remote, path, role)
        except Exception as exc:
            if " in the child process raised " not in str(exc):
                self.stop_remote()
            raise

    def stop_remote(self) -> None:
        """Stop the child process (a new one starts on next use), e.g. after it died."""
        if self._remote is not None:
            self._remote.stop()
            self._remote = None

    def second_handle(
        self, path: str, *, spec: str | None, one_handle: bool, part: str, shared: bool = True
    ) -> Any | None:
        """A helper handle on ``path`` while another is open here, or None when none can be had.

        In this process unless the store declares one handle per process or refused one before;
        else in another process when the store has an import spec; else None, and ``part`` (what
        the helper was for) is recorded as not checked. A refusal is the store's right under
        ``handles_per_process = 1`` and P2's finding otherwise, never the calling check's. Only a
        store that claims ``shared`` promises that another process sees the same data.
        """
        if one_handle:
            why = "the store declares one handle per process (handles_per_process = 1)"
        elif self._refused:
            why = self._refused
        else:
            try:
                with helper_calls():
                    return self.open(path)
            except Exception as exc:
                why = (
                    "the store refused a second handle in this process "
                    f"({type(exc).__name__}: {exc}); P2 judges that"
                )
                self._refused = why
        if spec is None or not shared:
            lacks = "has no import spec" if spec is None else "does not claim shared"
            self.aside("helper", f"{why}, and it {lacks}: {part} was not checked")
            return None
        if not self._remote_refused:
            try:
                handle = self.remote_handle(spec, path, "helper")
            except Exception as exc:
                self._remote_refused = f"{type(exc).__name__}: {exc}"
            else:
                self.aside("helper", f"{why}: {part} observed through another process")
                self.count("helper handles in another process")
                return handle
        self.aside(
            "remote helper",
            f"{why}, and a handle in another process could not be opened either "
            f"({self._remote_refused}): {part} was not checked",
        )
        return None

    def outside(self, call: str, exc: BaseException, see: str, *, when: str = "") -> NoReturn:
        """Void this example: the store's own ``call`` failed where the property did not expect.

        The property cannot be judged on it, and blaming it would hide the real defect, which
        property ``see`` covers; the verdict's details say so (and an all-void run fails).
        """
        op = call.partition("(")[0]
        kind = type(exc).__name__
        if kind == "RemoteError":  # "save(...) in the child process raised OverflowError: ..."
            kind = str(exc).rpartition(" raised ")[2].partition(":")[0] + " in another process"
        message = f"{call} raised {kind}{when}: the store's own {op} failed; see {see}"
        note(message)
        self.aside(f"outside {op} {kind}", message)
        self.count("examples void: the store failed elsewhere")
        reject()

    def run(self, test: Callable[[], None], details: str = "") -> str:
        """Run the Hypothesis ``test``; return ``details`` joined with what was set aside."""
        try:
            test()
        except Unsatisfiable as exc:
            raise Unsatisfiable(f"{exc}; {self.aside_text()}") from exc
        return "; ".join(filter(None, [details, self.aside_text()]))

    def aside_text(self) -> str:
        """The asides as one sentence each, with how often each happened."""
        return "; ".join(
            message if n == 1 else f"{message} ({n} times)" for message, n in self.asides.items()
        )

    def cleanup(self) -> None:
        """Close every handle, stop the child process and remove the scratch root."""
        self.close_all()
        self.stop_remote()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


def helper_handle(ctx: CheckContext, path: str, part: str) -> Any | None:
    """:meth:`Workspace.second_handle` for the store of ``ctx``, as its capabilities allow."""
    return ctx.workspace.second_handle(
        path,
        spec=ctx.spec,
        one_handle=ctx.caps.one_handle,
        shared=ctx.caps.shared,
        part=part,
    )
