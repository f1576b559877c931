"""The agent page in headless Chromium, through real relays, to the simulated model."""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Page

from tests.conftest import ROOT, TIMEOUT
from tests.e2e.conftest import (
    ARTIFACTS,
    SAMPLE_RATE,
    WAV_SECONDS,
    MeetingAudio,
    Stack,
    SwitchableProxy,
    agent_stats,
    mint,
    poll,
)

pytestmark = pytest.mark.e2e

FRAME = SAMPLE_RATE // 100  # 10 ms envelope frames


def envelope(pcm: np.ndarray) -> np.ndarray:
    """10 ms RMS frames, in dB above a floor, so quiet and speech both count."""
    frames = pcm[: len(pcm) // FRAME * FRAME].reshape(-1, FRAME)
    rms = np.sqrt((frames**2).mean(axis=1))
    db: np.ndarray = np.maximum(20 * np.log10(np.maximum(rms, 1.0)), 20.0)
    return db


def best_match(received: np.ndarray, loop: np.ndarray) -> tuple[float, float]:
    """The time scale (1.0 = same duration) and correlation that best map the looping WAV's
    envelope onto the last stretch of received audio, over every circular offset."""
    rx = envelope(received)
    best = (0.0, -1.0)
    for scale in np.arange(0.8, 1.21, 0.01):
        stretched = envelope(
            np.interp(np.arange(int(len(loop) * scale)) / scale, np.arange(len(loop)), loop)
        )
        period = len(stretched)
        assert len(rx) > period, "not enough audio received"
        window = rx[-period:] - rx[-period:].mean()
        reference = stretched - stretched.mean()
        # Circular cross-correlation of the window with the looping reference, by FFT.
        cross = np.fft.irfft(np.conj(np.fft.rfft(window)) * np.fft.rfft(reference), period)
        corr = float(cross.max() / (np.linalg.norm(window) * np.linalg.norm(reference)))
        if corr > best[1]:
            best = (float(scale), corr)
    return best


def tile_text(page: Page, element: str) -> str:
    return page.locator(f"#{element}").inner_text()


def open_page(page: Page, base: str, token: str, extra: str = "") -> None:
    # As the CLI builds it: options in the query, the token only in the fragment.
    query = f"?{extra.lstrip('&')}" if extra else ""
    page.goto(f"{base}/{query}#token={token}")


def responses_done(sessions: list[dict[str, Any]], index: int = 0) -> list[dict[str, Any]]:
    if len(sessions) <= index:
        return []
    return [r for r in sessions[index]["responses"] if r["status"] != "in_progress"]


def test_conversation_through_the_relay(stack: Stack, page: Page, meeting_audio: MeetingAudio):
    """The meeting's speech reaches the model as 24 kHz PCM16 and the spoken reply is played."""
    sim = stack.simulator("--reply-ms", "1500")
    relay = stack.relay(sim)
    open_page(page, relay.http, mint())
    # The first screen says what to do (the first transcript replaces it seconds later).
    assert tile_text(page, "heard-text") == "Speak, then pause: the agent answers when you stop."

    # More than a loop of the fake microphone (at the longest scale tried), a reply in full.
    poll(
        lambda: sim.session(0).get("audio_ms_received", 0) > 1.6 * WAV_SECONDS * 1000,
        "a loop and a half of meeting audio at the model",
    )
    done = poll(lambda: responses_done(sim.sessions()), "a completed reply")
    assert [r["status"] for r in done] == ["completed"] * len(done)
    sent_ms = sum(r["audio_ms_sent"] for r in done)
    poll(lambda: agent_stats(page)["audioMsPlayed"] >= sent_ms - 50, "the reply played")
    # The screenshot: mid-conversation, while the agent speaks, captions on.
    poll(
        lambda: (
            page.locator("#tile[data-agent=speaking]").count()
            and len(tile_text(page, "says-text")) > 25
        ),
        "the agent speaking with captions",
    )
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "agent-page.png"
    page.screenshot(path=str(shot))
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        shutil.copyfile(shot, ROOT / "docs" / "agent-page.png")
    assert tile_text(page, "heard-text").startswith("(heard ")

    session = sim.sessions()[0]
    assert session["auth"] == "bearer"  # the relay's key upstream, not the page's token
    assert session["session_updates"][0]["type"] == "realtime"
    stats = agent_stats(page)
    # Nothing lost on the way: what the model got is what the page sent, but for frames in
    # flight while the two were read.
    assert session["audio_ms_received"] <= stats["audioMsSent"] < session["audio_ms_received"] + 500
    assert stats["audioMsReceived"] >= sent_ms
    assert stats["truncatesSent"] == 0

    received = sim.audio(0)
    scale, corr = best_match(received, meeting_audio.pcm24k)
    assert scale == pytest.approx(1.0, abs=0.1), "received audio is not 24 kHz"
    assert corr > 0.8, f"received envelope does not follow the WAV (r={corr:.2f})"
    assert page.viewport_size == {"width": 1280, "height": 720}
    # window.agentStats is read-only: writes to it or through it change nothing.
    assert page.evaluate(
        """() => {
            const before = window.agentStats.truncatesSent;
            try { window.agentStats.truncatesSent = 99; } catch (e) {}
            try { window.agentStats = null; } catch (e) {}
            return window.agentStats !== null && window.agentStats.truncatesSent === before;
        }"""
    )
    assert tile_text(page, "state") == "Connected"


def test_barge_in_stops_playback_and_truncates(stack: Stack, page: Page):
    """Meeting speech over a long reply stops playback at once and truncates at what was heard."""
    # The reply arrives four times faster than real time, so a page that kept playing its
    # buffer after the barge-in would go on for seconds.
    sim = stack.simulator("--reply-ms", "8000", "--pace", "0.25")
    relay = stack.relay(sim)
    open_page(page, relay.http, mint())

    truncate = poll(lambda: sim.session(0).get("truncates"), "a truncate at the model")[0]
    assert page.locator("#tile[data-agent=quiet]").count() == 1
    stats = agent_stats(page)
    assert stats["truncatesSent"] == 1
    assert stats["lastTruncate"]["itemId"] == truncate["item_id"]
    assert stats["lastTruncate"]["audioEndMs"] == truncate["audio_end_ms"]
    # Plausible: the reply started after the sentence and was cut by the next loop's,
    # a few seconds in, well before its 8 s end.
    assert 1000 < truncate["audio_end_ms"] < 6000
    assert truncate["audio_end_ms"] < truncate["audio_ms_sent"]
    assert "invalid_value" not in sim.sessions()[0]["errors_sent"]

    # Nothing more of the cut item plays, though the page had seconds of it buffered.
    speech_so_far = len(sim.sessions()[0]["speech"])
    poll(lambda: len(sim.sessions()[0]["speech"]) > speech_so_far, "the interruption to end")
    played = agent_stats(page)["playedMsByItem"][truncate["item_id"]]
    assert played == pytest.approx(truncate["audio_end_ms"], abs=5)


@pytest.mark.parametrize(
    ("stop", "close_code"), [("drain", 1001), ("crash", 1006)], ids=["sigterm-drain", "sigkill"]
)
def test_reconnects_to_another_relay(stack: Stack, page: Page, stop: str, close_code: int):
    """When its relay drains or dies, the page reconnects to another one and keeps streaming."""
    sim = stack.simulator("--reply-ms", "1500")
    first, second = stack.relay(sim), stack.relay(sim)
    with SwitchableProxy(first.port) as balancer:
        # Recall's demo convention: the page names its relay with ?wss= (a bare host here).
        token = mint()
        open_page(page, first.http, token, f"&wss=ws://127.0.0.1:{balancer.port}&lang=en")
        poll(lambda: tile_text(page, "state") == "Connected", "connected")
        assert token not in page.evaluate("location.href")
        assert page.evaluate("location.search") == "?lang=en"
        assert page.evaluate("sessionStorage.getItem('relay.token')") == token
        poll(lambda: sim.session(0).get("audio_ms_received", 0) > 1000, "audio via the first")

        # The balancer sends new connections elsewhere, then ECS stops the task (or it dies).
        balancer.target_port = second.port
        if stop == "drain":
            assert first.drain() == 0
        else:
            first.proc.kill()
            first.proc.wait(TIMEOUT)

        poll(lambda: len(sim.sessions()) == 2, "a second upstream session")
        poll(lambda: sim.session(1).get("audio_ms_received", 0) > 2000, "audio via the second")
        stats = agent_stats(page)
        assert stats["reconnects"] == 1
        assert stats["lastCloseCode"] == close_code
        assert sim.sessions()[0]["closed"]
        assert tile_text(page, "state") == "Connected"
        assert not page.locator("#error").is_visible()


def test_network_blip_reattaches_to_the_same_model_session(stack: Stack, page: Page):
    """After a dropped connection the page comes back to the same model session, live again."""
    sim = stack.simulator()
    relay = stack.relay(sim)
    with SwitchableProxy(relay.port) as balancer:
        # The form `voicebot bot create` uses: the token in the fragment, never sent to a
        # server (so in no access log), and gone from the address once the page has it.
        token = mint()
        page.goto(f"http://127.0.0.1:{balancer.port}/#token={token}")
        poll(lambda: tile_text(page, "detail") == "listening", "a live model session")
        assert token not in page.evaluate("location.href")
        assert page.evaluate("location.hash") == ""
        poll(lambda: sim.session(0).get("audio_ms_received", 0) > 1000, "audio before the blip")

        balancer.cut()

        poll(lambda: agent_stats(page)["reconnects"] == 1, "the page to reconnect")
        before = sim.session(0)["audio_ms_received"]
        poll(lambda: sim.session(0)["audio_ms_received"] > before + 1000, "audio after the blip")
        # Re-attached, not resumed: the model never saw a second session, and the tile,
        # which got no new session.created, still says the link is live again.
        assert len(sim.sessions()) == 1
        assert not sim.sessions()[0]["closed"]
        assert agent_stats(page)["lastCloseCode"] == 1006
        poll(lambda: tile_text(page, "detail") != "waiting for the model…", "a live tile")
        assert tile_text(page, "state") == "Connected"


@pytest.mark.parametrize(
    ("make_token", "shown"),
    [
        (lambda: mint(secret="a-different-secret-0123456789abcdef"), "relay refused token"),
        (lambda: mint(ttl=60, now=time.time() - 3600), "relay token expired"),
        (lambda: "", "no relay token"),
    ],
    ids=["forged", "expired", "missing"],
)
def test_refused_token_is_shown_and_not_retried(stack: Stack, page: Page, make_token, shown):
    """A token the relay refuses is shown plainly on the tile, and the page stops trying."""
    sim = stack.simulator()
    relay = stack.relay(sim)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    open_page(page, relay.http, make_token())

    poll(lambda: page.locator("#error").is_visible(), "an error on the tile")
    assert shown in tile_text(page, "error")
    assert agent_stats(page)["state"] == "failed"
    attempts = len(sockets)
    assert attempts <= 1
    # Absence can only be observed over time: longer than the first two backoff delays.
    page.wait_for_timeout(1600)
    assert len(sockets) == attempts
    assert sim.sessions() == []


def test_a_query_token_is_never_read(stack: Stack, page: Page):
    """A page opened with ?token= (the old form) does not use it: it asks for #token= and
    takes the token out of its address."""
    sim = stack.simulator()
    relay = stack.relay(sim)
    token = mint()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(f"{relay.http}/?token={token}")

    poll(lambda: page.locator("#error").is_visible(), "an error on the tile")
    assert "no relay token" in tile_text(page, "error")
    assert token not in page.evaluate("location.href")
    assert sockets == []
    assert sim.sessions() == []


def test_policy_close_is_shown_and_not_retried(stack: Stack, page: Page):
    """When the relay ends a session by policy (1008: its session cap), the page says why, once."""
    sim = stack.simulator()
    relay = stack.relay(sim, RELAY_MAX_SESSION_SECONDS="2")
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    open_page(page, relay.http, mint())

    poll(lambda: page.locator("#error").is_visible(), "an error on the tile")
    assert "relay ended the session" in tile_text(page, "error")
    assert "limit of 2 s" in tile_text(page, "error")
    stats = agent_stats(page)
    assert stats["lastCloseCode"] == 1008
    assert stats["framesSent"] > 0
    # Absence can only be observed over time: longer than the first two backoff delays.
    page.wait_for_timeout(1600)
    assert len(sockets) == 1
    assert len(sim.sessions()) == 1
