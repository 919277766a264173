"""Why a property likely failed and what usually fixes it, from what its own check demonstrated.

A check that fails records *findings* in its result (``artifacts["findings"]``, made by
:func:`finding`): each names a fact of :data:`FACTS` that the check saw, in the suite's terms
("a kill left the key unreadable"), with the line of its own evidence that shows it. This module
is the one place that knows what those facts usually mean: :data:`CAUSES` gives each likely
cause and its usual remedy in a store author's terms, the facts that demonstrate it, and the
properties it explains, the most direct demonstration first.

:func:`diagnose` turns a run's results into a diagnosis per failed property (a property with no
findings, or that did not fail, gets none), and groups failures that share a cause
(:func:`root_causes`): the property that shows the cause most directly is the group's root, and
every other failed property whose first likely cause it is, a consequence. The reports lead with
the roots and print each root's failure before its consequences (:func:`failure_order`).

A diagnosis is a likely cause, never a certainty: the facts are what the store did, the cause
is what usually makes a store do that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from ._catalog import PROPERTIES
from ._results import PropertyResult

__all__ = [
    "CAUSES",
    "FACTS",
    "FINDINGS",
    "Cause",
    "Diagnosis",
    "Likely",
    "RootCause",
    "diagnose",
    "diagnosis_json",
    "explain",
    "failure_order",
    "finding",
    "findings_of",
    "root_causes",
    "root_causes_json",
]

#: The key of :attr:`PropertyResult.artifacts` that holds a failed check's findings.
FINDINGS: Final = "findings"
#: Characters of a finding's evidence line kept (the details hold the whole story).
_SHOWN_CHARS: Final = 300


@dataclass(frozen=True)
class Cause:
    """One likely cause of failures, and its usual remedy.

    :ivar id: a stable name (``"in-place-write"``), used in the JSON report.
    :ivar cause: what the store most likely does wrong, in its author's terms.
    :ivar remedy: what usually fixes it.
    :ivar facts: the findings (:data:`FACTS`) that demonstrate it.
    :ivar explains: the properties it can fail, the most direct demonstration first: of several
        failures it explains, the first of these leads as the root.
    """

    id: str
    cause: str
    remedy: str
    facts: tuple[str, ...]
    explains: tuple[str, ...]


_TEMP_RENAME: Final = (
    "write the new value to a temporary file in the same directory, fsync it, then os.replace it "
    "over the old file and fsync the directory; never truncate or write the live file"
)
_OS_LOCK: Final = (
    "lock with an OS lock that dies with its holder (fcntl/flock, LockFileEx; portalocker) on a "
    "lock file that is never deleted"
)

CAUSES: Final[dict[str, Cause]] = {
    c.id: c
    for c in (
        Cause(
            "in-place-write",
            "the offset file is truncated and rewritten in place (or emptied before the new "
            "value is safely elsewhere) instead of written to a temporary file and renamed: "
            "until the write completes the key's only copy is empty or half-written, so a kill, "
            "a failed write or a reader in another process finds it so",
            _TEMP_RENAME,
            (
                "kill-left-key-unreadable",
                "kill-left-wrong-value",
                "kill-changed-other-key",
                "listing-raises-on-torn-file",
                "read-raised",
                "read-torn-value",
                "failed-save-changed-value",
                "power-cut-tore-file-in-place",
                "batch-kill-torn",
            ),
            ("D1", "F2", "D4", "D3", "B1", "M1", "M2"),
        ),
        Cause(
            "removed-before-replaced",
            "the old file is removed (or renamed away) before the new one is in place, so a kill "
            "between the two leaves the key with neither value",
            "os.replace the fsynced temporary file over the old file in one step; never delete "
            "the old file first",
            ("kill-left-key-absent",),
            ("D1",),
        ),
        Cause(
            "acknowledged-before-durable",
            "save returns before the offset is written and fsynced (it is buffered, written "
            "behind or on close), so a kill loses offsets the caller was told were committed",
            "write and fsync before save returns; a store that must batch writes exposes "
            'flush() and declares acknowledge = "flush", so a consumer counts an offset '
            "committed only once flush returned",
            ("acked-lost-after-kill",),
            ("D2",),
        ),
        Cause(
            "open-rewrites",
            "opening the store rewrites a file in place (a config, a header, a recovered log), "
            "so a kill during open leaves committed data unreadable",
            "leave committed files alone on open; a file open must write goes through a "
            "temporary file, fsync and rename, and a leftover of it must not stop the next open",
            ("open-lost-committed",),
            ("D2",),
        ),
        Cause(
            "directory-not-fsynced",
            "the directory is not fsynced after a rename, a link, a file or directory creation "
            "(the store's own directories made at open included) or a removal: a power cut can "
            "undo that change of its entries, bringing back the old value, no value, or a removed "
            "file (a rollback journal that rolls the save back)",
            "after os.replace or os.link (or creating or removing a file, or making a directory "
            "with os.mkdir), open the parent directory and fsync it before save (or open) "
            "returns; SQLite in rollback-journal mode needs synchronous=EXTRA (or WAL mode) for "
            "this",
            ("rename-undone", "create-undone", "unlink-undone"),
            ("D3", "B1"),
        ),
        Cause(
            "file-not-fsynced-before-rename",
            "the temporary file's data is not fsynced before the rename (or is fsynced only "
            "after it): a power cut can keep the rename and drop the data, leaving the key's "
            "file empty or torn",
            "fsync the temporary file's descriptor before closing it, and only then os.replace "
            "it over the old file",
            ("power-cut-dropped-renamed-data",),
            ("D3", "B1"),
        ),
        Cause(
            "never-fsynced",
            "the data is never fsynced: what a save wrote stays in the page cache, and a power "
            "cut drops it",
            "fsync the file, and the directory after a rename, before save returns (SQLite: "
            "not synchronous=OFF)",
            ("power-cut-dropped-unsynced-data",),
            ("D3", "B1"),
        ),
        Cause(
            "leftover-listed",
            "a file left by a killed save is taken for data: a temporary file matches the "
            "pattern list_all or open reads offsets from, so parsing it fails or it lists a key "
            "nobody saved",
            "give temporary files a name the listing skips (a distinct prefix or suffix), and "
            "ignore or remove stale ones on open",
            ("listing-shows-leftover",),
            ("D4",),
        ),
        Cause(
            "leftover-blocks",
            "a file left by a killed save blocks the next save or open: a temporary file created "
            "with O_EXCL, or a fixed name that must not exist",
            "create temporary files with unique names (tempfile.mkstemp in the store's "
            "directory) or with O_TRUNC, and clean up stale ones on open",
            ("open-fails-after-kill", "later-save-fails-after-kill", "recovered-cannot-save"),
            ("D4", "D3"),
        ),
        Cause(
            "replay-skips-damage",
            "recovery skips a record that does not verify (or stops there) and reads on, so a "
            "damaged leftover silently brings back older values or none",
            "raise on a record that fails its check, except the torn tail of the last, "
            "unacknowledged write",
            ("damaged-leftover-silent",),
            ("D4",),
        ),
        Cause(
            "stale-lock-file",
            "the lock is a file whose existence means 'locked' (created with O_EXCL, removed on "
            "release): a killed holder never removes it, and every later save waits or times "
            "out",
            f"{_OS_LOCK}; a lock file that must stay records its holder's pid, and a waiter "
            "breaks it when that process is gone",
            ("stale-lock-waits",),
            ("D5",),
        ),
        Cause(
            "unbounded-wait",
            "a call never returned: a lock never released (or released only on the success "
            "path), or a wait or retry with no deadline",
            "release locks in a finally block (or a with statement), and bound every wait and "
            "retry with a deadline, then raise",
            ("hung", "hung-after-fault", "hung-after-power-cut"),
            # A hang fails whichever property met it first; the crash and fault campaigns, and
            # F1's damaged reads, are where a wait with no deadline usually shows.
            ("D5", "F2", "D1", "D3", "F1", "D4"),
        ),
        Cause(
            "lock-not-exclusive",
            "the lock does not exclude other processes: two processes were inside one save at "
            "once (no lock, a thread lock, a shared temporary name, a read-modify-write of a "
            "shared file, or a lock file unlinked while held), so one's update is lost or a "
            "temporary file is renamed twice",
            f"{_OS_LOCK}, held around every save and delete (and every read-modify-write); "
            "write each save to a unique temporary file",
            ("two-writers-at-once", "lost-update"),
            ("M2", "M1"),
        ),
        Cause(
            "stale-cache",
            "a handle serves offsets from its own cache and does not notice another handle's or "
            "process's writes",
            "read the store on every load and list_all, or check the cache against the file "
            "(mtime, size, inode) or a version counter before trusting it",
            ("stale-view", "stale-own-value"),
            ("P2", "M1", "B1"),
        ),
        Cause(
            "skips-unchanged-save",
            "a save equal to the offset this handle last wrote is skipped as unchanged, though "
            "another handle or process moved the key since (an idle consumer's re-commit is "
            "lost)",
            "always write, or compare with what the store holds now, never with what this "
            "handle last wrote",
            ("write-lost-over-other",),
            ("P2",),
        ),
        Cause(
            "acts-on-open-snapshot",
            "a handle acts on something it read when it opened (the next free row id, the set "
            "of stored keys) or earlier: once another handle or process changed the store, its "
            "save collides with what the other wrote and raises",
            "read what a save needs when it saves, under the store's lock (a fresh id, whether "
            "the key exists), or retry a conflicting insert as an update; never trust a count "
            "or a key set kept since open",
            ("raised-beside-other-handle",),
            ("P2",),
        ),
        Cause(
            "one-handle-per-process",
            "the store refuses a second handle on one location in one process (as LMDB and "
            "RocksDB do)",
            "if that is by design, declare factory.handles_per_process = 1: the suite then "
            "checks other handles through another process",
            ("second-handle-refused",),
            ("P2",),
        ),
        Cause(
            "single-process-store",
            "a second process cannot use the store: it holds an exclusive lock for as long as a "
            "handle is open (a single-process design)",
            "lock around each operation rather than for a handle's lifetime, or declare "
            "factory.shared = False if the store is single-process by design",
            ("second-process-refused",),
            ("M1", "M2"),
        ),
        Cause(
            "keys-collide",
            "two keys share one storage location (a name built without a separator), so one "
            "key's save shows up in another",
            'build names with an unambiguous separator (f"{topic_id}-{consumer_id}")',
            ("read-other-keys-value",),
            ("C5", "M1"),
        ),
        Cause(
            "error-swallowed",
            "an I/O error in save (or delete) is caught and the call returns as if it had "
            "succeeded: the caller counts a change committed that was never stored",
            "let OSError propagate (or raise the store's own error with it as the cause); "
            "report success only once the write and its fsync succeeded",
            ("error-swallowed",),
            ("F2",),
        ),
        Cause(
            "fsync-error-ignored",
            "a failed fsync is ignored (or retried, and the retry trusted) and save returns: "
            "after a failed fsync the kernel may have dropped the dirty pages, so the offset is "
            "not durable",
            "treat a failed fsync as a failed save and raise; to retry, write the data again "
            "from the store's own copy and fsync again",
            ("fsync-error-ignored",),
            ("F2",),
        ),
        Cause(
            "error-path-leaves-state",
            "the error path leaves something behind (a lock, a temporary file, a handle "
            "half-changed), so the next save fails or hangs after the fault cleared",
            "clean up in finally blocks: release the lock, remove the temporary file, leave the "
            "handle as it was before the call",
            ("later-save-fails-after-fault",),
            ("F2",),
        ),
        Cause(
            "unreadable-read-as-absent",
            "a file that cannot be read or parsed is treated as 'no offset' (None, or missing "
            "from list_all), so the consumer silently starts over",
            "raise an error naming the key and file when a file cannot be read or does not "
            "parse; answer None only when the file does not exist",
            ("damage-read-as-absent", "failed-read-answered"),
            ("F1", "F2"),
        ),
        Cause(
            "unchecked-format",
            "damaged bytes still read as an offset: the format has no check (raw binary "
            "integers, lenient parsing)",
            "store a format the reader can check (decimal digits and a newline, or a "
            "checksum) and reject anything else",
            ("damage-read-as-value",),
            ("F1",),
        ),
        Cause(
            "last-known-good",
            "a handle falls back to a value it remembered when the file stops parsing, handing "
            "out an offset older than the one committed",
            "never answer from memory when the file is damaged: raise",
            ("warm-fallback",),
            ("F1",),
        ),
        Cause(
            "loose-types",
            "arguments are converted (int(x)) instead of checked: a bool, float or str is taken "
            "as a key or an offset, or a value out of the contract's range is stored",
            "check type(x) is int before anything (reject bool, float, str, None) and raise "
            "TypeError; check 0 <= topic_id < 2**32 and 0 <= consumer_id, offset < 2**64 and "
            "raise ValueError",
            ("wrong-type-accepted", "out-of-range-accepted"),
            ("C7",),
        ),
        Cause(
            "validates-late",
            "the store writes before it validates: a call that then raises has already changed "
            "what is stored",
            "validate every argument (of a batch: every entry) first, then write",
            ("refused-call-changed-state",),
            ("C7", "B1"),
        ),
        Cause(
            "close-does-nothing",
            "close() does nothing: the handle keeps working after it was closed",
            "mark the handle closed and release what it holds in close(); make every later "
            "load, save, delete and list_all raise (a second close may return quietly)",
            ("closed-handle-works",),
            ("C8",),
        ),
        Cause(
            "hooks-on-other-calls",
            "post-commit hooks run on calls that commit nothing (a delete, a load)",
            "call post-commit hooks only after a save committed",
            ("hook-on-non-save",),
            ("H1",),
        ),
        Cause(
            "previous-from-handle",
            "previous_offset comes from what this handle remembers, not from what the store held "
            "(wrong after another handle's save, a delete or a reopen)",
            "read the stored value under the save's lock, before writing, and pass that",
            ("previous-offset-wrong",),
            ("H2",),
        ),
        Cause(
            "hook-on-failed-save",
            "hooks run for a save that failed (in a finally block, or before the error)",
            "call hooks only once the save succeeded",
            ("hook-on-failed-save",),
            ("H3",),
        ),
        Cause(
            "hook-before-commit",
            "post-commit hooks run before the write is committed, announcing an offset another "
            "handle cannot read yet",
            "call hooks after the save is committed (and durable)",
            ("hook-before-commit",),
            ("H3",),
        ),
        Cause(
            "hook-failure-handling",
            "a failing hook's exception escapes as it is (or is swallowed): later hooks are "
            "skipped, and the caller cannot tell that the offset was committed",
            "run every hook; if any failed, raise one error that carries the CommitInfo (as "
            "lance_offsets.HookError does)",
            ("hook-failure-mishandled",),
            ("H3",),
        ),
        Cause(
            "absent-as-default",
            "a key that holds nothing loads as a default value (0) instead of None, so a "
            "consumer cannot tell 'never ran' from 'start of the stream'",
            "return None when nothing is stored, and leave the default to the caller",
            ("absent-read-as-value",),
            ("C2",),
        ),
        Cause(
            "lower-save-ignored",
            "a save lower than the stored offset is ignored ('offsets only grow'), though a "
            "reset to a lower offset is legitimate",
            "store whatever offset save is given",
            ("lower-save-ignored",),
            ("C3",),
        ),
        Cause(
            "delete-absent-raises",
            "deleting a key that holds nothing raises (a missing file's FileNotFoundError escapes)",
            "treat a missing file as already deleted (contextlib.suppress(FileNotFoundError))",
            ("delete-absent-raised",),
            ("C4",),
        ),
        Cause(
            "listing-shared",
            "list_all hands out the store's own dict (its cache), so a caller's change to the "
            "result changes the store, and two calls return the same object",
            "return a new dict from every list_all (dict(self._cache))",
            ("listing-shared",),
            ("C6",),
        ),
        Cause(
            "commits-not-reopened",
            "a new handle does not see what an earlier one committed: saves wait in memory and "
            "close does not write them, or they go where a new handle does not read",
            "write (and fsync) in save, or at the latest in close, where every handle reads",
            ("reopen-misses-commit",),
            ("P1",),
        ),
        Cause(
            "unsafe-names",
            "consumer names are joined to paths before (or without) being checked, so '..', a "
            "separator or a device name reaches the file system",
            "check the name first (no separators, '.', '..', NUL, ':', empty or device names) "
            "and raise ValueError before creating anything",
            ("unsafe-name-used",),
            ("S1",),
        ),
        Cause(
            "batch-not-atomic",
            "save_many commits its keys one by one (each renamed separately, no journal), so a "
            "kill or a power cut between them leaves a batch half done",
            "commit a batch in one atomic step (one file, a journal, a database transaction), "
            "or do not declare batch_atomic",
            ("batch-split",),
            ("B1",),
        ),
    )
}

#: Every fact a check may record, and the cause it demonstrates.
FACTS: Final[dict[str, str]] = {fact: c.id for c in CAUSES.values() for fact in c.facts}


def finding(fact: str, shown: str) -> dict[str, str]:
    """One finding as a check records it: the fact, and the line of evidence that shows it.

    :raises ValueError: for a fact :data:`FACTS` does not know (a check's typo).
    """
    if fact not in FACTS:
        raise ValueError(f"unknown finding {fact!r}; known: {', '.join(sorted(FACTS))}")
    line = shown.strip().split("\n", 1)[0]
    if len(line) > _SHOWN_CHARS:
        line = line[: _SHOWN_CHARS - 3] + "..."
    return {"fact": fact, "shown": line}


def findings_of(result: PropertyResult) -> list[tuple[str, str]]:
    """The findings ``result`` records, as ``(fact, shown)``; unknown facts are left out.

    A verdict read back from a JSON file written by another version may name facts this one does
    not know: they give no diagnosis here rather than a wrong one.
    """
    found = result.artifacts.get(FINDINGS) or ()
    return [
        (str(item["fact"]), str(item.get("shown", "")))
        for item in found
        if isinstance(item, Mapping) and item.get("fact") in FACTS
    ]


@dataclass(frozen=True)
class Likely:
    """One likely cause of one property's failure.

    :ivar shown: the property's own evidence for it.
    :ivar root: the failed property that leads this cause in the run (maybe this one).
    """

    cause: Cause
    shown: str
    root: str


@dataclass(frozen=True)
class Diagnosis:
    """The likely causes of one failed property, the one its evidence shows most first."""

    pid: str
    likely: tuple[Likely, ...]

    @property
    def consequence_of(self) -> str | None:
        """The property whose cause this failure follows from, or None when it leads its own."""
        root = self.likely[0].root
        return None if root == self.pid else root


@dataclass(frozen=True)
class RootCause:
    """A cause shown by one or more failures: the root that shows it best, and the rest.

    :ivar consequences: failed properties whose first likely cause it is, besides the root.
    :ivar also: failed properties that show it besides a first cause of their own.
    """

    cause: Cause
    root: str
    shown: str
    consequences: tuple[str, ...]
    also: tuple[str, ...]

    def follows(self) -> list[str]:
        """``["consequences: M1, M2", "also seen in: D3"]``: what else it explains, in words."""
        words = []
        if self.consequences:
            words.append(f"consequences: {', '.join(self.consequences)}")
        if self.also:
            words.append(f"also seen in: {', '.join(self.also)}")
        return words

    def label(self) -> str:
        """``"root cause, shown by"`` when it explains other failures, else ``"shown by"``."""
        return "root cause, shown by" if self.follows() else "shown by"


def _catalog_index(pid: str) -> int:
    order = list(PROPERTIES)
    return order.index(pid) if pid in order else len(order)


def _own_causes(result: PropertyResult) -> list[tuple[Cause, str]]:
    """The causes ``result``'s findings demonstrate, in the order of first finding, once each."""
    seen: dict[str, tuple[Cause, str]] = {}
    for fact, shown in findings_of(result):
        cause = CAUSES[FACTS[fact]]
        seen.setdefault(cause.id, (cause, shown))
    return list(seen.values())


def _root(cause: Cause, owners: dict[str, list[tuple[Cause, str]]]) -> str:
    """The property that leads ``cause``: one whose first cause it is, the most direct first."""
    showing = [pid for pid, causes in owners.items() if any(c is cause for c, _ in causes)]

    def rank(pid: str) -> tuple[int, int, int]:
        first = 0 if owners[pid][0][0] is cause else 1
        direct = cause.explains.index(pid) if pid in cause.explains else len(cause.explains)
        return first, direct, _catalog_index(pid)

    return min(showing, key=rank)


def diagnose(results: Sequence[PropertyResult]) -> dict[str, Diagnosis]:
    """A diagnosis for each failed property whose check recorded findings, by property ID."""
    owners = {r.id: causes for r in results if r.outcome == "failed" if (causes := _own_causes(r))}
    roots = {c.id: _root(c, owners) for causes in owners.values() for c, _ in causes}
    return {
        pid: Diagnosis(pid, tuple(Likely(c, shown, roots[c.id]) for c, shown in causes))
        for pid, causes in owners.items()
    }


def root_causes(diagnoses: Mapping[str, Diagnosis]) -> list[RootCause]:
    """Every cause the diagnoses show, the one explaining most failures first."""
    by_cause: dict[str, RootCause] = {}
    for diagnosis in diagnoses.values():
        for n, likely in enumerate(diagnosis.likely):
            known = by_cause.get(likely.cause.id)
            if known is None:
                root = diagnoses[likely.root]
                shown = next(x.shown for x in root.likely if x.cause is likely.cause)
                known = RootCause(likely.cause, likely.root, shown, (), ())
            if diagnosis.pid != likely.root:
                if n == 0:
                    known = replace(known, consequences=(*known.consequences, diagnosis.pid))
                else:
                    known = replace(known, also=(*known.also, diagnosis.pid))
            by_cause[likely.cause.id] = known
    found = [
        replace(
            r,
            consequences=tuple(sorted(r.consequences, key=_catalog_index)),
            also=tuple(sorted(r.also, key=_catalog_index)),
        )
        for r in by_cause.values()
    ]
    return sorted(
        found,
        key=lambda r: (-len(r.consequences) - len(r.also), _catalog_index(r.root)),
    )


def failure_order(
    results: Sequence[PropertyResult], diagnoses: Mapping[str, Diagnosis]
) -> list[PropertyResult]:
    """The failed results, each root before its consequences, the widest cause first.

    Failures with no diagnosis follow, in catalog order.
    """
    failed = {r.id: r for r in results if r.outcome == "failed"}
    order: list[str] = []
    for root in root_causes(diagnoses):
        if diagnoses[root.root].consequence_of is not None:
            continue  # shows this cause only besides its own: it leads its own group
        for pid in (root.root, *root.consequences):
            if pid not in order:
                order.append(pid)
    order += [pid for pid in failed if pid not in order]
    return [failed[pid] for pid in order if pid in failed]


def explain(diagnosis: Diagnosis) -> list[str]:
    """The lines a report shows under a failure: likely cause, usual remedy, what it follows."""
    first, *others = diagnosis.likely
    lines = []
    if diagnosis.consequence_of is not None:
        lines.append(f"consequence of {first.root}'s cause; likely cause: {first.cause.cause}")
    else:
        lines.append(f"likely cause: {first.cause.cause}")
    lines.append(f"usual remedy: {first.cause.remedy}")
    for likely in others:
        if likely.root == diagnosis.pid:
            lines.append(f"also likely: {likely.cause.cause}")
            lines.append(f"  seen here: {likely.shown}")
            lines.append(f"usual remedy: {likely.cause.remedy}")
        else:  # the remedy is said under the root's failure
            lines.append(f"also likely, as {likely.root} shows: {likely.cause.cause}")
            lines.append(f"  seen here: {likely.shown}")
    return lines


def diagnosis_json(diagnosis: Diagnosis | None) -> dict[str, Any] | None:
    """A property's diagnosis in the JSON report (docs/conformance.md, "The JSON file")."""
    if diagnosis is None:
        return None
    return {
        "consequence_of": diagnosis.consequence_of,
        "causes": [
            {
                "cause": likely.cause.id,
                "likely_cause": likely.cause.cause,
                "remedy": likely.cause.remedy,
                "shown": likely.shown,
                "root": likely.root,
            }
            for likely in diagnosis.likely
        ],
    }


def root_causes_json(diagnoses: Mapping[str, Diagnosis]) -> list[dict[str, Any]]:
    """The run's causes in the JSON report, the one explaining most failures first."""
    return [
        {
            "cause": r.cause.id,
            "likely_cause": r.cause.cause,
            "remedy": r.cause.remedy,
            "root": r.root,
            "shown": r.shown,
            "consequences": list(r.consequences),
            "also_shown_by": list(r.also),
        }
        for r in root_causes(diagnoses)
    ]
