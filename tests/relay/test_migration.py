"""A leaving relay moves its sessions to another (issue 13): none lost, each resumed.

``bench.migration`` runs the whole path on loopback (moto, the simulated model, relays A
and B, page-like clients): A is told to leave once every session has been answered; each
session is handed over at its next turn boundary and resumes on B, seeded from the table.
"""

from __future__ import annotations

from bench.migration import measure


async def test_every_session_moves_to_the_other_relay_with_its_conversation() -> None:
    summary = await measure(sessions=3, drain_seconds=30.0)
    assert summary["lost"] == 0, summary["errors"]
    assert summary["seeded_on_b"] == 3  # each resumed with its conversation
    assert summary["a_empty_s"] < 30.0  # A held nothing before its drain deadline
