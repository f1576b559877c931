"""The agent page's turn latency (agentStats.latency) in headless Chromium, via the relay."""

from __future__ import annotations

import math
from typing import Any

import pytest
from playwright.sync_api import Page

from bench.percentiles import nearest_rank
from tests.e2e.conftest import Stack, agent_stats, mint, poll

pytestmark = pytest.mark.e2e

PAGE_LEGS = (
    "captureMs",
    "vadRoundTripMs",
    "firstAudioMs",
    "playbackMs",
    "outputMs",
    "addedMs",
    "endToEndMs",
)
RELAY_LEGS = ("pageToRelayMs", "relayToModelMs", "modelMs", "modelToPageMs")


def latency(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] = agent_stats(page)["latency"]
    return stats


def answered(sim_session: dict[str, Any]) -> int:
    return sum(1 for r in sim_session.get("responses", ()) if r["audio_ms_sent"] > 0)


@pytest.mark.parametrize("ask_relay", [False, True], ids=["page-only", "with-relay"])
def test_agent_stats_time_each_turn_by_leg(stack: Stack, page: Page, ask_relay: bool):
    """Each answered turn shows up in agentStats.latency with non-negative legs and
    percentiles over exactly those turns; the relay's legs only when the page asks for them."""
    sim = stack.simulator("--reply-ms", "400")
    relay = stack.relay(sim)
    query = "?latency=1" if ask_relay else ""
    page.goto(f"{relay.http}/{query}#token={mint()}")

    stats = poll(lambda: (s := latency(page))["turns"] >= 2 and s, "two timed turns")
    if ask_relay:
        stats = poll(
            lambda: (s := latency(page))["legs"]["modelMs"]["n"] >= 2 and s, "the relay's word"
        )

    # Every timed turn was answered by the model, and the model heard at least as many.
    session = sim.session(0)
    assert stats["turns"] <= answered(session)
    assert stats["heard"] >= stats["turns"]
    assert stats["silenceMs"] == 500  # the simulator's default server VAD
    recent = stats["recent"]
    assert len(recent) == stats["turns"]
    legs = PAGE_LEGS + RELAY_LEGS if ask_relay else PAGE_LEGS
    for turn in recent:
        assert isinstance(turn["itemId"], str)
        for leg in legs:
            value = turn.get(leg)
            assert isinstance(value, (int, float)), (leg, turn)
            assert math.isfinite(value), (leg, turn)
            assert value >= 0, (leg, turn)
        # The whole is the sum of its parts (the relay's model time taken out of "added").
        assert turn["endToEndMs"] == pytest.approx(
            turn["captureMs"] + turn["vadRoundTripMs"] + turn["firstAudioMs"] + turn["playbackMs"],
            abs=0.01,
        )
    if not ask_relay:
        assert stats["relayReplies"] == 0
        assert all(turn.get("modelMs") is None for turn in recent)
    # The page's percentiles are nearest-rank ones over the turns it lists.
    for leg in legs:
        values = [turn[leg] for turn in recent if isinstance(turn.get(leg), (int, float))]
        summary = stats["legs"][leg]
        assert summary["n"] == len(values)
        assert summary["p50"] == nearest_rank(values, 50)
        assert summary["p99"] == nearest_rank(values, 99)


def test_relay_latency_request_is_never_forwarded(stack: Stack, page: Page):
    """The relay answers relay.latency.get itself: the model never sees it."""
    sim = stack.simulator("--reply-ms", "400")
    relay = stack.relay(sim)
    page.goto(f"{relay.http}/?latency=1#token={mint()}")
    poll(lambda: latency(page)["relayReplies"] >= 1, "a relay.latency reply")
    events = [kind for kind, _ in sim.session(0)["client_events"]]
    assert "relay.latency.get" not in events
    assert agent_stats(page)["errorEvents"] == 0
