"""One run over N machines: the split of ``check --shard K/N``, and ``report merge``'s refusals.

The split is tested directly over every shard count from 1 to past the number of properties;
the CLI parts run ``lance-offsets`` in subprocesses on the in-memory reference store (single
process, about a second a run). tests/slow/test_sharded_check.py merges real shard runs of a
broken store with crash-campaign properties and compares them with one unsharded run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lance_offsets.conformance._catalog import PROPERTIES, property_ids
from lance_offsets.conformance._report import SCHEMA
from lance_offsets.conformance._shards import GROUPS, Shard, parse_shard, share, split, units
from lance_offsets.conformance._verdict_file import read_verdict

from lance_offsets._cli import main

MEMORY = "lance_offsets.conformance.reference:memory"
#: A selection the in-memory store runs in about a second; D1 and M1 are not applicable to it.
SELECTION = "C1,C2,C8,H1,M1,D1"
#: The same, in catalog order (the order of every verdict).
ORDERED = [p for p in property_ids() if p in SELECTION.split(",")]
SEED = 3


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lance_offsets", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        cwd=cwd,  # not the checkout: `-m` would import the source folder over the install
    )


def _merge(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """``report merge`` through the real main(), in this process: refusals need no new one."""
    capsys.readouterr()
    code = main(["report", "merge", *args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


# --- the split --------------------------------------------------------------------------------

CASES = [(p, s) for p in ("smoke", "quick", "ci", "thorough") for s in (False, True)]


@pytest.mark.parametrize(("profile", "stress"), CASES)
def test_every_count_splits_everything_once_keeping_campaigns_together(
    profile: str, stress: bool
) -> None:
    everything = property_ids()
    for count in range(1, len(PROPERTIES) + 6):
        shards = split(everything, count, profile=profile, stress=stress)
        assert len(shards) == count
        flat = [p for shard in shards for p in shard]
        assert sorted(flat) == sorted(everything), count  # each property once
        for shard in shards:
            assert shard == [p for p in everything if p in shard]  # catalog order
            for group in GROUPS:
                # a campaign's properties are all in this shard or none of them are
                assert group <= set(shard) or not group & set(shard), (count, shard)
        assert split(everything, count, profile=profile, stress=stress) == shards  # same again
        if count > len(units(everything)):
            assert [] in shards  # more shards than units: some have nothing to run


def test_a_selection_splits_among_its_own_properties() -> None:
    chosen = ["C8", "D2", "F2", "M1", "C1"]
    shards = split(chosen, 3, profile="quick", stress=False)
    assert sorted(p for s in shards for p in s) == sorted(chosen)
    (holder,) = [s for s in shards if "D2" in s]
    assert "F2" in holder  # F2 plans its faults from the crash campaign's counted save
    assert share(chosen, Shard(2, 3), profile="quick", stress=False) == shards[1]


def test_the_split_balances_expected_cost() -> None:
    # With --stress, M1 and M2 (a minute each) and the crash campaign dominate: four shards give
    # each of them a shard of its own, and the rest share the fourth.
    shards = split(property_ids(), 4, profile="ci", stress=True)
    assert ["M1"] in shards
    assert ["M2"] in shards
    assert ["D1", "D2", "D4", "D5", "F2"] in shards


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "3", "1/2/3", "a/b", "-1/2", " 1/2", ""])
def test_bad_shard_values_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


def test_shard_values_parse() -> None:
    assert parse_shard("2/3") == Shard(2, 3)
    assert str(Shard(1, 1)) == "1/1"


# --- check --shard ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "said"),
    [("0/2", "K must be from 1 to N"), ("3/2", "K must be from 1 to N"), ("x", "expected K/N")],
)
def test_a_bad_shard_is_a_usage_error_before_any_work(
    tmp_path: Path, value: str, said: str
) -> None:
    done = _cli(tmp_path, "check", MEMORY, "--shard", value, "--json", "v.json")
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"lance-offsets: error: check: --shard {value!r}: "), line
    assert said in line
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def _shard_runs(where: Path, count: int, *extra: str, only: str = SELECTION) -> list[Path]:
    where.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(1, count + 1):
        out = where / f"shard-{k}.json"
        done = _cli(
            where,
            "check",
            MEMORY,
            "--profile",
            "smoke",
            "--only",
            only,
            "--seed",
            str(SEED),
            "--shard",
            f"{k}/{count}",
            "--json",
            str(out),
            *extra,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        files.append(out)
    return files


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real verdicts of shards 1/2 and 2/2 of one run on the in-memory store."""
    print(f"seed {SEED}")
    return _shard_runs(tmp_path_factory.mktemp("shards"), 2)


def test_a_shard_verdict_says_which_shard_and_replays_it(shards: list[Path]) -> None:
    documents = [json.loads(p.read_text()) for p in shards]
    assert [d["shard"] for d in documents] == [{"index": 1, "count": 2}, {"index": 2, "count": 2}]
    assert all(d["merged_shards"] is None for d in documents)
    assert documents[1]["replay"].endswith(f"--seed {SEED} --shard 2/2")
    held = [list(d["properties"]) for d in documents]
    expected = split(SELECTION.split(","), 2, profile="smoke", stress=False)
    assert held == expected


def test_more_shards_than_properties_leave_empty_shards_that_pass(tmp_path: Path) -> None:
    files = _shard_runs(tmp_path / "many", 4, only="C8,H1")
    empty = [f for f in files if not json.loads(f.read_text())["properties"]]
    assert len(empty) == 2
    document = json.loads(empty[0].read_text())
    assert document["schema"] == SCHEMA
    assert document["counts"] == {"failed": 0, "unverified": 0, "passed": 0, "not-applicable": 0}
    assert read_verdict(str(empty[0])).verdict.results == []
    merged = _cli(tmp_path, "report", "merge", *map(str, files), "--json", "merged.json")
    assert merged.returncode == 0, merged.stdout + merged.stderr
    properties = json.loads((tmp_path / "merged.json").read_text())["properties"]
    assert list(properties) == ["C8", "H1"]


# --- report merge -----------------------------------------------------------------------------


def test_merge_writes_every_report_and_replays_the_whole_run(
    tmp_path: Path, shards: list[Path]
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    done = _cli(
        tmp_path,
        "report",
        "merge",
        *map(str, shards),
        "--json",
        "m.json",
        "--markdown",
        str(summary),
        "--junit",
        "m.xml",
        "--html",
        "m.html",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads((tmp_path / "m.json").read_text())
    replay = f"lance-offsets check {MEMORY} --only {SELECTION} --profile smoke --seed {SEED}"
    assert document["replay"] == replay
    assert document["shard"] is None
    assert document["merged_shards"] == 2
    assert list(document["properties"]) == ORDERED
    assert document["counts"]["passed"] == 4
    assert document["counts"]["not-applicable"] == 2
    assert f"replay: {replay})" in done.stdout  # check's closing line
    assert "4 passed, 0 failed, 0 unverified, 2 not applicable" in done.stdout
    rows = [line.split()[0] for line in done.stdout.splitlines() if line[:2] in ORDERED]
    assert rows == ORDERED  # the table check prints, in catalog order
    markdown = summary.read_text()
    assert markdown.startswith("earlier step\n## lance-offsets check")  # appended
    assert f"`{replay}`" in markdown
    assert (tmp_path / "m.xml").read_bytes().count(b"<testcase ") == 6
    assert "C8" in (tmp_path / "m.html").read_text()


def _edited(source: Path, target: Path, change: dict[str, Any]) -> Path:
    document = json.loads(source.read_text())
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key].update(value)
        else:
            document[key] = value
    target.write_text(json.dumps(document))
    return target


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"store": "other.module:factory"}, "store 'other.module:factory', but"),
        ({"profile": "quick"}, "profile 'quick', but"),
        ({"stress": True}, "--stress True, but"),
        ({"strict": True}, "--strict True, but"),
        ({"seed": SEED + 1}, f"seed {SEED + 1}, but"),
        ({"only": ["C1", "C2"]}, "--only 'C1,C2', but"),
        ({"python": "2.7.18"}, "Python '2.7', but"),
        ({"platform": "darwin arm64 (macOS-14)"}, "machine 'darwin arm64', but"),
        ({"package": {"version": "0.0.1"}}, "written by lance-offsets 0.0.1"),
        ({"shard": None}, "not a shard's verdict"),
        ({"shard": {"index": 2, "count": 3}}, "shard count 3, but"),
        ({"schema": "lance-offsets-check/9"}, "schema 'lance-offsets-check/9'"),
        ({"seed": "3"}, "'seed' is \"3\", not an integer"),
        ({"properties": {"C1": "fine"}}, "C1 has outcome 'fine'"),
    ],
)
def test_merge_refuses_shards_of_different_runs(
    tmp_path: Path,
    shards: list[Path],
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    said: str,
) -> None:
    other = _edited(shards[1], tmp_path / "other.json", change)
    done = _merge(capsys, str(shards[0]), str(other), "--json", str(tmp_path / "m.json"))
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"lance-offsets: error: report merge: {other}: "), line
    assert said in line
    assert not (tmp_path / "m.json").exists()  # nothing written
    assert done.stdout == ""


def test_shards_on_another_patch_release_merge(
    tmp_path: Path, shards: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    python = json.loads(shards[0].read_text())["python"]
    release = ".".join(python.split(".")[:2])
    other = _edited(shards[1], tmp_path / "other.json", {"python": f"{release}.99"})
    done = _merge(capsys, str(shards[0]), str(other), "--json", str(tmp_path / "m.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["python"] == f"{python}; {release}.99"


def test_merge_refuses_a_real_shard_of_another_seed(
    tmp_path: Path, shards: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (other,) = _shard_runs(tmp_path / "other", 1, "--seed", str(SEED + 1))
    # Shard 1/1 of another seed: refused for the seed before the shard count.
    done = _merge(capsys, str(shards[0]), str(other))
    assert done.returncode == 2
    assert f"{other}: seed {SEED + 1}, but {shards[0]} has {SEED}" in done.stderr


def test_merge_refuses_a_missing_shard(
    tmp_path: Path, shards: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    done = _merge(capsys, str(shards[1]))
    assert done.returncode == 2
    assert done.stderr == (
        f"lance-offsets: error: report merge: shard 1/2 missing: the files given are {shards[1]}\n"
    )


def test_merge_refuses_a_shard_given_twice(
    tmp_path: Path, shards: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy.json"
    shutil.copy(shards[0], copy)
    done = _merge(capsys, str(shards[0]), str(copy), str(shards[1]))
    assert done.returncode == 2
    assert f"{copy}: shard 1/2 again (also {shards[0]})" in done.stderr


def test_merge_refuses_a_property_twice_or_out_of_its_shard(
    tmp_path: Path, shards: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    first = json.loads(shards[0].read_text())
    pid = next(iter(first["properties"]))
    second = json.loads(shards[1].read_text())
    second["properties"][pid] = first["properties"][pid]
    second["details"][pid] = first["details"][pid]
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps(second))
    done = _merge(capsys, str(shards[0]), str(twice))
    assert done.returncode == 2
    assert f"{twice}: {pid} is also in {shards[0]}" in done.stderr
    # Moved rather than copied: no property twice, but shard 2 holds what shard 1 runs.
    del first["properties"][pid], first["details"][pid]
    lacking = tmp_path / "lacking.json"
    lacking.write_text(json.dumps(first))
    done = _merge(capsys, str(lacking), str(twice))
    assert done.returncode == 2
    assert f"{lacking}: shard 1/2 of this run checks" in done.stderr
    assert f"but the file lacks {pid}" in done.stderr


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "no such file"),
        ("{not json", "not JSON"),
        ("[1, 2]", "not a lance-offsets check verdict"),
    ],
)
def test_merge_refuses_what_is_not_a_verdict(
    tmp_path: Path,
    shards: list[Path],
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    said: str,
) -> None:
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    done = _merge(capsys, str(shards[0]), str(bad))
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"lance-offsets: error: report merge: {bad}: {said}"), line


def test_merge_checks_its_report_files_first(
    tmp_path: Path, shards: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    done = _merge(capsys, *map(str, shards), "--junit", "/no/such/dir/m.xml")
    assert done.returncode == 2
    assert "report merge: --junit /no/such/dir/m.xml: no such directory /no/such/dir" in (
        done.stderr
    )


def test_an_interrupted_shard_stays_visible(
    tmp_path: Path, shards: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # What an interrupted check writes: the properties it finished, the signal, the rest not run.
    document = json.loads(shards[1].read_text())
    cut = list(document["properties"])[-1]
    del document["properties"][cut], document["details"][cut]
    document.update(interrupted="SIGTERM", not_run=[cut])
    stopped = tmp_path / "stopped.json"
    stopped.write_text(json.dumps(document))
    done = _merge(capsys, str(shards[0]), str(stopped), "--json", str(tmp_path / "m.json"))
    assert done.returncode == 143, done.stdout + done.stderr  # as check exits after SIGTERM
    assert f"shard 2/2 ({stopped}) was interrupted by SIGTERM; not run: {cut}" in done.stdout
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["interrupted"] == "SIGTERM"
    assert merged["not_run"] == [cut]
    assert cut not in merged["properties"]


def test_report_needs_an_action(tmp_path: Path) -> None:
    done = _cli(tmp_path, "report")
    assert done.returncode == 2
    assert "ACTION" in done.stderr
