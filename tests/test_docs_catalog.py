"""What the docs repeat from the catalog is the catalog's: IDs, titles, needs, counts, profiles.

``conformance/_catalog.py`` (PROPERTIES) and ``conformance/_profiles.py`` (PROFILES) are the one
place a property or a profile is defined; README.md and docs/*.md repeat parts of them for readers.
Every such place is checked here, so a property or profile added to the code and not to the docs
(or renamed in one and not the other) fails this file, naming the document and what differs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lance_offsets.conformance._catalog import PROPERTIES
from lance_offsets.conformance._profiles import DEFAULT_PROFILE, PROFILES

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
EVERY_DOC = [README, *sorted(DOCS.glob("*.md"))]

_LETTERS = "".join(sorted({pid[0] for pid in PROPERTIES}))
# "C1", and ranges such as "D1-D5" or "H1-3".
_ID = re.compile(rf"\b([{_LETTERS}])(\d+)(?:-\1?(\d+))?\b")
_SEPARATOR = re.compile(r":?-+:?")


def ids_in(text: str) -> list[str]:
    """The property IDs a piece of text names, ranges expanded, in order."""
    found = []
    for letter, first, last in _ID.findall(text):
        found += [f"{letter}{n}" for n in range(int(first), int(last or first) + 1)]
    return found


def _cells(line: str) -> list[str]:
    # Split on the pipes outside `code`: a cell may show a pipe inside backticks.
    cells, current, in_code = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += char
    return [*cells, current.strip()]


def table_rows(path: Path, header: list[str]) -> list[list[str]]:
    """The body rows of every Markdown table in ``path`` whose header is ``header``."""
    rows: list[list[str]] = []
    current: list[list[str]] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = _cells(line)
        if current is None:
            current = rows if cells == header else []
        elif not all(_SEPARATOR.fullmatch(cell) for cell in cells):
            current.append(cells)
    assert rows, f"{path.name} has no table headed {header}"
    return rows


def names_its_title(cell: str, pid: str) -> bool:
    """A doc's title cell is the catalog's title, optionally followed by a parenthesis."""
    title = PROPERTIES[pid].title
    return cell == title or (cell.startswith(f"{title} (") and cell.endswith(")"))


def test_the_readme_table_is_the_catalog_in_order() -> None:
    rows = table_rows(README, ["ID", "property", "ID", "property"])
    # The left half of the table, then the right half: catalog order.
    pairs = [(r[0], r[1]) for r in rows] + [(r[2], r[3]) for r in rows if r[2]]
    assert [pid for pid, _ in pairs] == list(PROPERTIES)
    wrong = [(pid, cell) for pid, cell in pairs if not names_its_title(cell, pid)]
    assert wrong == [], "README titles that are not the catalog's: " + repr(wrong)


def test_the_contract_states_every_property_once_under_its_title() -> None:
    rows = table_rows(DOCS / "contract.md", ["ID", "property", "the rule"])
    assert [row[0] for row in rows] == list(PROPERTIES)
    wrong = [(row[0], row[1]) for row in rows if not names_its_title(row[1], row[0])]
    assert wrong == [], "contract.md titles that are not the catalog's: " + repr(wrong)


def test_the_guide_says_once_what_checks_each_property() -> None:
    rows = table_rows(DOCS / "conformance.md", ["ID", "checked by", "what fails it"])
    named = [pid for row in rows for pid in ids_in(row[0])]
    assert sorted(named) == sorted(PROPERTIES), "conformance.md section 2 differs from the catalog"
    for row in rows:
        by_stress_kit = "stress suite" in row[1]
        for pid in ids_in(row[0]):
            # The catalog's suite says which part of the kit checks it; stress and power loss
            # are both the stress kit's.
            assert by_stress_kit == (PROPERTIES[pid].suite != "conformance"), (pid, row[1])


def _needing(capability: str) -> set[str]:
    return {p.id for p in PROPERTIES.values() if capability in p.needs}


CAPABILITIES = sorted({need for p in PROPERTIES.values() for need in p.needs})


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_each_capability_lists_every_property_that_needs_it(capability: str) -> None:
    # The attribute a factory declares; "named" is claimed by giving open_named.
    attribute = "open_named" if capability == "named" else capability
    rows = table_rows(DOCS / "conformance.md", ["attribute", "default", "meaning"])
    (row,) = [r for r in rows if r[0] == f"`{attribute}`"]
    missing = _needing(capability) - set(ids_in(row[2]))
    assert not missing, f"conformance.md's `{attribute}` row does not name {sorted(missing)}"
    # The contract's "Claims" says the same in a sentence: `persistent` (P1, P2, F1, F2), ...
    claims = (DOCS / "contract.md").read_text(encoding="utf-8").split("## Claims", 1)[1]
    where = "consumer names" if capability == "named" else f"`{attribute}`"
    pattern = rf"{where}\s+\(([^)]*)\)"
    match = re.search(pattern, claims)
    assert match is not None, f"contract.md's Claims does not list what {capability} covers"
    missing = _needing(capability) - set(ids_in(match[1]))
    assert not missing, f"contract.md's Claims: {capability} does not name {sorted(missing)}"


def test_every_count_of_properties_is_the_catalogs() -> None:
    counts = [
        (path.name, int(match[1]))
        for path in EVERY_DOC
        for match in re.finditer(
            r"\b(\d+) (?:[A-Za-z'-]+ ){0,3}properties\b", path.read_text(encoding="utf-8")
        )
    ]
    assert counts, "no document states the number of properties any more"
    wrong = [(name, n) for name, n in counts if n != len(PROPERTIES)]
    assert wrong == [], f"the catalog has {len(PROPERTIES)} properties; the docs say {wrong}"


def test_every_list_of_profiles_is_the_catalogs() -> None:
    lists = [
        (path.name, match[1])
        for path in EVERY_DOC
        for match in re.finditer(r"--profile ([a-z]+(?:\|[a-z]+)+)", path.read_text("utf-8"))
    ]
    assert len(lists) >= 2, "README and docs/cli.md both show check's --profile choices"
    wrong = [(name, text) for name, text in lists if text != "|".join(PROFILES)]
    assert wrong == [], f"the profiles are {'|'.join(PROFILES)}; the docs say {wrong}"


def test_the_profile_table_states_each_profile_as_it_is_configured() -> None:
    rows = table_rows(DOCS / "conformance.md", ["profile", "examples x steps", "use"])
    names = [row[0].replace(" (default)", "").strip("`") for row in rows]
    assert names == list(PROFILES)
    for row, name in zip(rows, names, strict=True):
        chosen = PROFILES[name]
        assert row[0].endswith("(default)") == (name == DEFAULT_PROFILE), row[0]
        assert row[1].startswith(f"{chosen.max_examples} x {chosen.stateful_step_count}"), row
        assert ("derandomized" in row[1]) == chosen.derandomize, row
        assert ("reproduction blobs" in row[1]) == chosen.print_blob, row


def test_the_derandomized_profiles_named_in_the_guide_are_the_catalogs() -> None:
    text = (DOCS / "conformance.md").read_text(encoding="utf-8")
    derandomized = {name for name, chosen in PROFILES.items() if chosen.derandomize}
    seeds = re.search(r"derandomized\s+profiles \(([^)]*)\)", text)
    database = re.search(r"Not for ((?:`\w+`/?)+) \(derandomized", text)
    assert seeds is not None, "the sentence on seeds and derandomized profiles moved"
    assert database is not None, "the sentence on example databases moved"
    for sentence in (seeds[1], database[1]):
        assert set(re.findall(r"`(\w+)`", sentence)) == derandomized, sentence
