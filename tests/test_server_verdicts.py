"""How a server store's D2 and F2 join their client part and their server campaign.

For a store that keeps its offsets in a server, client kills and file faults prove nothing about
what the server kept: the server campaign decides, a failure of either part fails.
"""

from __future__ import annotations

import pytest
from lance_offsets.conformance._results import Outcome, PropertyResult
from lance_offsets.stress.servers._verdict import combine


def _client(outcome: Outcome) -> PropertyResult:
    return PropertyResult("D2", outcome, 2.0, f"client part {outcome}", {"random kills": 8})


def _server(outcome: Outcome) -> PropertyResult:
    evidence: dict[str, int | float | str] = {
        "fault": "server killed",
        "random kills": 0,
        "server kills": 3,
    }
    return PropertyResult("D2", outcome, 3.0, f"server part {outcome}", evidence)


@pytest.mark.parametrize(
    ("client", "server", "joined", "lead"),
    [
        ("passed", "unverified", "unverified", "server"),  # never a pass from client kills alone
        ("unverified", "passed", "passed", "server"),
        ("passed", "passed", "passed", "server"),
        ("unverified", "unverified", "unverified", "server"),
        ("passed", "failed", "failed", "server"),
        ("failed", "passed", "failed", "client"),
        ("failed", "unverified", "failed", "client"),
        ("unverified", "failed", "failed", "server"),
        ("passed", "not-applicable", "passed", "client"),
    ],
)
def test_the_server_part_decides_unless_a_part_failed(
    client: Outcome, server: Outcome, joined: Outcome, lead: str
) -> None:
    result = combine(_client(client), _server(server))
    assert result.outcome == joined
    assert result.details.startswith(f"{lead} part"), result.details
    assert "client part" in result.details
    assert "server part" in result.details
    assert result.seconds == 5.0
    # Both parts' evidence is kept; a name both use is the server's under a prefix.
    assert result.evidence["random kills"] == 8
    assert result.evidence["server faults: random kills"] == 0
    assert result.evidence["server kills"] == 3
