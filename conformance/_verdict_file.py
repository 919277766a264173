"""A JSON verdict read back: the layout ``json_document`` writes, as a :class:`Verdict` again.

The inverse of :func:`._report.json_document`, for ``lance-offsets report merge``. Fields added to
the layout after a file was written are absent from it and take their defaults; anything present
must have the type the writer gives it, and a file that is not a verdict is refused with one line
naming the file and the field.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from ._catalog import PROPERTIES
from ._report import SCHEMA, Verdict
from ._results import OUTCOMES, Outcome, PropertyResult

__all__ = ["VerdictFile", "VerdictFileError", "read_verdict", "verdict_from_document"]

#: Python types a JSON value of each described kind may have (bool is not a number here).
_KINDS: Final[dict[str, tuple[type, ...]]] = {
    "a string": (str,),
    "a number": (int, float),
    "an integer": (int,),
    "true or false": (bool,),
    "an object": (dict,),
    "a list": (list,),
}


class VerdictFileError(ValueError):
    """A file that is not a readable verdict; the message names the file and what is wrong."""


@dataclass(frozen=True)
class VerdictFile:
    """One verdict read from ``path``, with the version of the kit that wrote it."""

    path: str
    verdict: Verdict
    version: str


def _get(
    document: Mapping[str, Any], key: str, kind: str, *, where: str, optional: bool = False
) -> Any:
    """``document[key]`` when it is of ``kind`` (None allowed when ``optional``); else raise."""
    if key not in document:
        if optional:
            return None
        raise VerdictFileError(f"{where}no {key!r}")
    value = document[key]
    if value is None and optional:
        return None
    types = _KINDS[kind]
    wrong_bool = isinstance(value, bool) and bool not in types
    if not isinstance(value, types) or wrong_bool:
        raise VerdictFileError(f"{where}{key!r} is {json.dumps(value)[:60]}, not {kind}")
    return value


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise VerdictFileError(f"{what} is not a list of property IDs")
    unknown = [v for v in value if v not in PROPERTIES]
    if unknown:
        raise VerdictFileError(f"{what} names unknown properties {unknown}")
    return tuple(value)


def _result(pid: str, outcome: Any, entry: Any) -> PropertyResult:
    where = f"details of {pid}: "
    if pid not in PROPERTIES:
        raise VerdictFileError(f"unknown property {pid!r}")
    if outcome not in OUTCOMES:
        raise VerdictFileError(f"{pid} has outcome {outcome!r}, not one of {', '.join(OUTCOMES)}")
    if not isinstance(entry, dict):
        raise VerdictFileError(f"{pid} has no entry under 'details'")
    if entry.get("outcome") != outcome:
        raise VerdictFileError(
            f"{pid} is {outcome!r} under 'properties' but {entry.get('outcome')!r} under 'details'"
        )
    evidence = _get(entry, "evidence", "an object", where=where, optional=True) or {}
    for name, value in evidence.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise VerdictFileError(f"{where}evidence {name!r} is not a number or a string")
    return PropertyResult(
        pid,
        cast(Outcome, outcome),
        float(_get(entry, "seconds", "a number", where=where)),
        _get(entry, "details", "a string", where=where),
        evidence,
        _get(entry, "artifacts", "an object", where=where, optional=True) or {},
    )


def _shard(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise VerdictFileError("'shard' is not an object with 'index' and 'count'")
    index = _get(value, "index", "an integer", where="shard: ")
    count = _get(value, "count", "an integer", where="shard: ")
    if not 1 <= index <= count:
        raise VerdictFileError(f"'shard' is {index} of {count}")
    return index, count


def verdict_from_document(document: Any) -> tuple[Verdict, str]:
    """The verdict a JSON document holds, and the kit version that wrote it.

    :raises VerdictFileError: naming the field that is missing or wrong (not the file).
    """
    if not isinstance(document, dict) or "schema" not in document:
        raise VerdictFileError(f"not a lance-offsets check verdict (no {SCHEMA!r} schema)")
    if document["schema"] != SCHEMA:
        raise VerdictFileError(f"schema {document['schema']!r}, this kit reads {SCHEMA!r}")
    package = _get(document, "package", "an object", where="")
    version = _get(package, "version", "a string", where="package: ")
    outcomes = _get(document, "properties", "an object", where="")
    details = _get(document, "details", "an object", where="")
    results = [_result(pid, outcome, details.get(pid)) for pid, outcome in outcomes.items()]
    ended_text = _get(document, "ended", "a string", where="")
    try:
        ended = datetime.datetime.fromisoformat(ended_text)
    except ValueError:
        raise VerdictFileError(f"'ended' is {ended_text!r}, not an ISO 8601 time") from None
    only = document.get("only")
    verdict = Verdict(
        store=_get(document, "store", "a string", where=""),
        results=results,
        seconds=float(_get(document, "seconds", "a number", where="")),
        seed=_get(document, "seed", "an integer", where="", optional=True),
        profile=_get(document, "profile", "a string", where="", optional=True),
        stress=_get(document, "stress", "true or false", where=""),
        strict=_get(document, "strict", "true or false", where=""),
        ended=ended,
        only=None if only is None else _strings(only, "'only'"),
        workers=_get(document, "workers", "an integer", where="", optional=True) or 1,
        # Older files have none: they were made before the option, with byte-level tears.
        tear_size=_get(document, "tear_size", "an integer", where="", optional=True) or 1,
        interrupted=_get(document, "interrupted", "a string", where="", optional=True),
        not_run=_strings(document.get("not_run", []), "'not_run'"),
        shard=_shard(document.get("shard")),
        merged_shards=_get(document, "merged_shards", "an integer", where="", optional=True),
        python=_get(document, "python", "a string", where=""),
        platform=_get(document, "platform", "a string", where=""),
    )
    return verdict, version


def read_verdict(path: str) -> VerdictFile:
    """The verdict in the JSON file ``path``; :class:`VerdictFileError` naming it if none."""
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except FileNotFoundError:
        raise VerdictFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise VerdictFileError(f"{path}: is a directory") from None
    except OSError as exc:
        raise VerdictFileError(f"{path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VerdictFileError(f"{path}: not JSON ({exc})") from None
    try:
        verdict, version = verdict_from_document(document)
    except VerdictFileError as exc:
        raise VerdictFileError(f"{path}: {exc}") from None
    return VerdictFile(path, verdict, version)
