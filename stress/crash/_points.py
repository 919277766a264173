"""Crash points of a counted change, and how a report names each one.

A point is "before" or "after" an operation of the counting run's trace (only "before" for one
the audit hook saw, which never learns how it ended). The label names the operation as the trace
recorded it, with the libc call and its size and offset when the syscall backend recorded it.
"""

from __future__ import annotations

import os

from ..seam._trace import TraceOp

__all__ = ["label", "points"]


def label(op: TraceOp, phase: str, trace: list[TraceOp], root: str) -> str:
    where = os.path.relpath(op.path, root)
    if op.target:
        where += f" -> {os.path.relpath(op.target, root)}"
    text = f"killed {phase} op #{op.index} {op.call or op.kind} {where}"
    if op.call and op.note:  # syscall level: what the call moved
        text += f" ({op.note})"
    if _between_fsync_and_rename(trace, op.index + (1 if phase == "after" else 0)):
        text += " [after fsync, before rename]"
    return text


def _between_fsync_and_rename(trace: list[TraceOp], cut: int) -> bool:
    """Tell whether the kill falls between a file's fsync and its rename (the classic point).

    ``cut`` is the first operation the kill prevents; nothing may write to or rename the file
    between its fsync and its rename.
    """
    synced: set[str] = set()
    for op in trace[:cut]:
        if op.kind in ("fsync", "fdatasync") and op.error is None:
            synced.add(op.path)
        elif op.kind in ("write", "truncate", "rename", "replace", "unlink"):
            synced.discard(op.path)
    for op in trace[cut:]:
        if op.path in synced and op.kind in ("rename", "replace"):
            return True
        if op.kind in ("write", "truncate", "unlink"):
            synced.discard(op.path)
    return False


def removed_before_replaced(trace: list[TraceOp], cut: int) -> bool:
    """Whether the kill falls after a file was removed and before a rename put one back.

    ``cut`` is the first operation the kill prevents; "removed" includes renamed away. Then the
    key's old file is gone and its new one not yet in place: the structural sign of a
    store that deletes first and renames after, which a kill leaves with neither value.
    """
    gone = {
        op.path
        for op in trace[:cut]
        if op.error is None and op.kind in ("unlink", "rename", "replace")
    }
    return any(op.kind in ("rename", "replace") and op.target in gone for op in trace[cut:])


def points(trace: list[TraceOp]) -> list[tuple[TraceOp, str]]:
    points = []
    for op in trace:
        if op.kind == "mark":
            continue
        points.append((op, "before"))
        if op.note != "audit":  # the audit hook never sees an operation end
            points.append((op, "after"))
    return points
