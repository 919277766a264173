"""The verdicts of one run's shards (``check --shard K/N``) joined into the run's verdict.

The shards must be of one run: the same store, profile, ``--stress``, seed, ``--strict``,
``--only``, Python release (3.12), kind of machine and kit version, every shard K of N once, and
each holding exactly its share of the properties (``_shards.share``), so no property is missing
or twice. Then the joined verdict is the one a single machine gives with that seed: each
property's result is the one its shard found, and the replay command is the single-machine
command.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from typing import Any, Final

from lance_offsets._interrupt import Interrupted, exit_code
from lance_offsets._version import __version__

from ._catalog import property_ids
from ._report import Verdict
from ._shards import Shard, share
from ._verdict_file import VerdictFile

__all__ = ["MergeError", "exit_status", "interruptions", "merge_shards"]


class MergeError(ValueError):
    """Files that are not the shards of one run; the message names the file and the mismatch."""


def _machine(verdict: Verdict) -> str:
    # "linux x86_64 (Linux-6.8.0-...)": shards of a run share the OS and architecture; the
    # details in parentheses (kernel build, glibc) may differ between runners of one kind.
    return (verdict.platform or "").split(" (", 1)[0]


#: The facts every shard of a run shares: what was asked, and what ran it.
_SAME: Final[tuple[tuple[str, Callable[[VerdictFile], Any]], ...]] = (
    ("store", lambda f: f.verdict.store),
    ("profile", lambda f: f.verdict.profile),
    ("--stress", lambda f: f.verdict.stress),
    ("seed", lambda f: f.verdict.seed),
    ("--strict", lambda f: f.verdict.strict),
    ("--tear-size", lambda f: f.verdict.tear_size),
    ("--only", lambda f: f.verdict.only and ",".join(f.verdict.only)),
    ("shard count", lambda f: f.verdict.shard and f.verdict.shard[1]),
    # Runners of one kind may differ in the patch release (3.12.7, 3.12.8): nothing drawn does.
    ("Python", lambda f: ".".join((f.verdict.python or "").split(".")[:2])),
    ("machine", lambda f: _machine(f.verdict)),
)


def _one_run(files: Sequence[VerdictFile], version: str) -> None:
    first = files[0]
    for file in files:
        if file.verdict.shard is None:
            raise MergeError(
                f"{file.path}: not a shard's verdict (it has no 'shard': check wrote it without "
                "--shard K/N)"
            )
        if file.version != version:
            raise MergeError(
                f"{file.path}: written by lance-offsets {file.version}, and this is {version}: "
                "merge with the version that ran the shards"
            )
        for name, fact in _SAME:
            if fact(file) != fact(first):
                raise MergeError(
                    f"{file.path}: {name} {fact(file)!r}, but {first.path} has "
                    f"{fact(first)!r}: not shards of one run"
                )


def _every_shard_once(files: Sequence[VerdictFile]) -> None:
    count = files[0].verdict.shard[1] if files[0].verdict.shard else 1
    seen: dict[int, str] = {}
    for file in files:
        index = file.verdict.shard[0] if file.verdict.shard else 1
        if index in seen:
            raise MergeError(f"{file.path}: shard {index}/{count} again (also {seen[index]})")
        seen[index] = file.path
    missing = [f"{k}/{count}" for k in range(1, count + 1) if k not in seen]
    if missing:
        given = ", ".join(f.path for f in files)
        raise MergeError(f"shard {', '.join(missing)} missing: the files given are {given}")


def _held(verdict: Verdict) -> list[str]:
    # An interrupted shard lists what it did not finish; those are still its share.
    return [r.id for r in verdict.results] + list(verdict.not_run)


def _each_its_share(files: Sequence[VerdictFile]) -> None:
    owner: dict[str, str] = {}
    for file in files:
        for pid in _held(file.verdict):
            if pid in owner:
                raise MergeError(f"{file.path}: {pid} is also in {owner[pid]}")
            owner[pid] = file.path
    for file in files:
        verdict = file.verdict
        assert verdict.shard is not None  # checked by _one_run
        assert verdict.profile is not None
        expected = share(
            verdict.only,
            Shard(*verdict.shard),
            profile=verdict.profile,
            stress=verdict.stress,
        )
        held = set(_held(verdict))
        if held != set(expected):
            lacks = [p for p in expected if p not in held]
            extra = sorted(held - set(expected))
            what = "; ".join(
                part
                for part in (
                    f"lacks {', '.join(lacks)}" if lacks else "",
                    f"holds {', '.join(extra)}, which it does not run" if extra else "",
                )
                if part
            )
            raise MergeError(
                f"{file.path}: shard {verdict.shard[0]}/{verdict.shard[1]} of this run checks "
                f"{', '.join(expected) or 'nothing'}, but the file {what}"
            )


def merge_shards(files: Sequence[VerdictFile], *, version: str = __version__) -> Verdict:
    """One verdict from the verdicts of every shard of one run; :class:`MergeError` if they are not.

    :param version: the kit version the shards must have been written by (this one's).
    """
    if not files:
        raise MergeError("no shard verdicts given")
    if files[0].verdict.profile is None:
        raise MergeError(f"{files[0].path}: no profile: not a verdict of lance-offsets check")
    _one_run(files, version)
    _every_shard_once(files)
    _each_its_share(files)
    verdicts = sorted((f.verdict for f in files), key=lambda v: v.shard or (1, 1))
    first = verdicts[0]
    order = {pid: i for i, pid in enumerate(property_ids())}
    results = sorted((r for v in verdicts for r in v.results), key=lambda r: order[r.id])
    not_run = sorted((p for v in verdicts for p in v.not_run), key=order.__getitem__)
    ended = max(v.ended for v in verdicts)
    started = min(v.started for v in verdicts)
    platforms = list(dict.fromkeys(v.platform for v in verdicts if v.platform))
    pythons = list(dict.fromkeys(v.python for v in verdicts if v.python))
    return Verdict(
        first.store,
        results,
        (ended - started).total_seconds(),
        first.seed,
        first.profile,
        first.stress,
        first.strict,
        ended=ended,
        only=first.only,
        workers=max(v.workers for v in verdicts),
        tear_size=first.tear_size,
        interrupted=next((v.interrupted for v in verdicts if v.interrupted), None),
        not_run=tuple(not_run),
        merged_shards=len(verdicts),
        python="; ".join(pythons) or None,
        platform="; ".join(platforms) or None,
    )


def interruptions(files: Sequence[VerdictFile]) -> list[str]:
    """One line per interrupted shard: which, by what signal, and what it did not run."""
    lines = []
    for file in sorted(files, key=lambda f: f.verdict.shard or (1, 1)):
        verdict = file.verdict
        if verdict.interrupted or verdict.not_run:
            shard = f"{verdict.shard[0]}/{verdict.shard[1]}" if verdict.shard else "?"
            lines.append(
                f"shard {shard} ({file.path}) was interrupted"
                f"{f' by {verdict.interrupted}' if verdict.interrupted else ''}; not run: "
                f"{', '.join(verdict.not_run) or 'nothing'}"
            )
    return lines


def exit_status(verdict: Verdict) -> int:
    """What ``check`` exits with for ``verdict``.

    128 + the signal when one stopped the run, 1 when a property fails it (unverified only under
    ``--strict``) or was not run, else 0.
    """
    if verdict.interrupted:
        try:
            return exit_code(Interrupted(signal.Signals[verdict.interrupted]))
        except KeyError:  # a signal this platform does not know: still no pass
            return 1
    if verdict.not_run:
        return 1  # a verdict with properties left out is no pass
    return 1 if any(verdict.fails(r) for r in verdict.results) else 0
