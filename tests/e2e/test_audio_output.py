"""The agent page's output buffer in headless Chromium: ``?latencyHint=`` reaches the
AudioContext (invalid values fall back, with a console warning), and the underruns the page
can see are in ``agentStats.output`` (Chromium's playbackStats, the playback worklet's gaps).

Structure only: whether a run underruns depends on the machine, so no test asserts a count
of underruns or a buffer size.
"""

from __future__ import annotations

import math
from typing import Any, Final
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import Page, Route

from tests.conftest import ROOT
from tests.e2e.conftest import Stack, agent_stats, mint, poll

pytestmark = pytest.mark.e2e

STATIC: Final = ROOT / "relay_container" / "relay" / "static"
#: Routed by Playwright, never reached: localhost so that the page is a secure context (the
#: AudioWorklet needs one); port 9 (discard) so the page's relay socket finds nothing there.
ORIGIN: Final = "http://localhost:9"
#: Records the options every AudioContext is built with, before the page's scripts run.
RECORD_CONTEXTS: Final = """
window.__contextOptions = [];
const NativeAudioContext = window.AudioContext;
window.AudioContext = class extends NativeAudioContext {
  constructor(options) {
    window.__contextOptions.push(options === undefined ? null : { ...options });
    super(options);
  }
};
"""


def serve_static(route: Route) -> None:
    """The agent page's files at ORIGIN, as the relay serves them (no relay behind it)."""
    path = urlsplit(route.request.url).path
    if path == "/":
        route.fulfill(path=STATIC / "index.html", content_type="text/html")
    elif path == "/blank":
        route.fulfill(body="<!doctype html><title>blank</title>", content_type="text/html")
    elif path.startswith("/static/") and (STATIC / path.removeprefix("/static/")).is_file():
        route.fulfill(path=STATIC / path.removeprefix("/static/"), content_type="text/javascript")
    else:
        route.fulfill(status=404, body="")


@pytest.fixture
def static_page(page: Page) -> Page:
    """A page whose ORIGIN serves the agent page's files, recording AudioContext options."""
    page.route(f"{ORIGIN}/**", serve_static)
    page.add_init_script(RECORD_CONTEXTS)
    return page


def import_output_module(page: Page) -> None:
    page.goto(f"{ORIGIN}/blank")
    page.evaluate("async () => { window.output = await import('/static/audio-output.js'); }")


def default_hint(page: Page) -> object:
    return page.evaluate(
        "async () => (await import('/static/audio-output.js')).DEFAULT_LATENCY_HINT"
    )


def parse(page: Page, raw: str | None) -> dict[str, Any]:
    return page.evaluate("(raw) => window.output.parseLatencyHint(raw)", raw)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("interactive", "interactive"),
        ("balanced", "balanced"),
        ("playback", "playback"),
        ("0", 0),
        ("0.01", 0.01),
        (".02", 0.02),
        ("0.5", 0.5),
        (" 0.01 ", 0.01),  # a stray space (a `+` in a query) is not an error
    ],
)
def test_latency_hint_accepts_names_and_seconds(static_page: Page, raw: str, hint: object):
    import_output_module(static_page)
    assert parse(static_page, raw) == {"hint": hint, "source": "url", "warning": None}


@pytest.mark.parametrize(
    "raw",
    [
        "",
        ".",
        "Interactive",  # the AudioContext's enum is case-sensitive
        "fast",
        "-0.01",
        "0.51",
        "20",  # 20 s, surely meant 20 ms: refused, not obeyed
        "1e-2",
        "0x10",
        "NaN",
        "Infinity",
        "0.0000001",
        "0.01; DROP",
        "<script>alert(1)</script>",
        "9" * 10_000,
    ],
)
def test_latency_hint_refuses_anything_else_with_a_bounded_warning(static_page: Page, raw: str):
    import_output_module(static_page)
    default = parse(static_page, None)
    assert default["source"] == "default"
    assert default["warning"] is None

    result = parse(static_page, raw)

    assert result["hint"] == default["hint"]
    assert result["source"] == "default"
    assert "latencyHint" in result["warning"]
    assert len(result["warning"]) < 300


@pytest.mark.parametrize(
    ("query", "expected", "source"),
    [
        ("latencyHint=0", 0, "url"),
        ("latencyHint=balanced", "balanced", "url"),
        ("", None, "default"),
    ],
)
def test_the_url_option_reaches_the_audio_context(
    static_page: Page, query: str, expected: object, source: str
):
    """What ?latencyHint= asks for is what the page's one AudioContext is built with, and
    agentStats.output says so (no option: the module's default)."""
    static_page.goto(f"{ORIGIN}/?{query}#token=a.b.c")
    options = poll(lambda: static_page.evaluate("window.__contextOptions"), "an AudioContext")
    output = agent_stats(static_page)["output"]
    if expected is None:
        expected = default_hint(static_page)
    assert options == [{"latencyHint": expected}]
    assert output["latencyHint"] == expected
    assert output["latencyHintSource"] == source


def test_an_invalid_url_option_falls_back_with_a_console_warning(static_page: Page):
    warnings: list[str] = []
    static_page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    static_page.goto(f"{ORIGIN}/?latencyHint={quote('0.01s')}#token=a.b.c")
    options = poll(lambda: static_page.evaluate("window.__contextOptions"), "an AudioContext")
    default = default_hint(static_page)
    assert options == [{"latencyHint": default}]
    assert agent_stats(static_page)["output"]["latencyHintSource"] == "default"
    assert any("latencyHint" in text and "0.01s" in text for text in warnings), warnings


HARNESS: Final = """async () => {
  const context = new AudioContext();
  // Worklet module requests bypass Playwright's routes: load the worklet's text as a blob.
  const source = await (await fetch('/static/playback-worklet.js')).text();
  const blob = new Blob([source], {type: 'text/javascript'});
  await context.audioWorklet.addModule(URL.createObjectURL(blob));
  const node = new AudioWorkletNode(context, 'playback-processor',
    {numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1]});
  node.connect(context.destination);
  window.worklet = {drained: 0, progress: null};
  node.port.onmessage = ({data}) => {
    if (data.type === 'drained') worklet.drained++;
    if (data.type === 'progress') worklet.progress = data;
  };
  window.push = (itemId, ms) => {
    const pcm = new Int16Array(24 * ms).fill(3000);
    node.port.postMessage({type: 'push', itemId, pcm: pcm.buffer}, [pcm.buffer]);
  };
  window.clearItem = (itemId) => node.port.postMessage({type: 'clear', itemId});
  await context.resume();
}"""


def test_playback_worklet_counts_silence_inside_an_item_only(static_page: Page):
    """An item that runs dry and then gets more audio is a gap (an underrun the listener
    hears); a new item after silence, or audio after a barge-in's clear, is not."""
    static_page.goto(f"{ORIGIN}/blank")
    static_page.evaluate(HARNESS)

    def drained(n: int) -> dict[str, Any]:
        return poll(
            lambda: static_page.evaluate(
                f"worklet.drained >= {n} && worklet.progress.bufferedMs === 0 && worklet.progress"
            ),
            f"the worklet drained {n} times",
        )

    static_page.evaluate("push('item_a', 40)")
    assert drained(1)["gaps"] == 0
    static_page.evaluate("push('item_a', 40)")  # the rest of item_a, late: a gap
    after_gap = drained(2)
    assert after_gap["gaps"] == 1
    assert after_gap["gapMs"] > 0
    static_page.evaluate("push('item_b', 40)")  # the next item: not a gap
    assert drained(3)["gaps"] == 1
    static_page.evaluate("push('item_c', 2000); clearItem('item_c'); push('item_c', 40)")
    assert drained(4)["gaps"] == 1  # a cut, then audio: not an underrun


def test_agent_stats_report_the_output_and_its_underruns(stack: Stack, page: Page):
    """Through the relay, with an answered turn: agentStats.output names the hint in use
    and carries the browser's buffer sizes, its underrun counters and the worklet's gaps,
    all finite and non-negative (their values depend on the machine)."""
    sim = stack.simulator("--reply-ms", "400")
    relay = stack.relay(sim)
    page.goto(f"{relay.http}/?latencyHint=0.01#token={mint()}")
    poll(lambda: agent_stats(page)["audioMsPlayed"] > 0, "an answer played")
    output = poll(
        lambda: (
            (o := agent_stats(page)["output"])["underruns"] and o["underruns"]["playedMs"] > 0 and o
        ),
        "playbackStats refreshed",
    )
    assert output["latencyHint"] == 0.01
    assert output["latencyHintSource"] == "url"
    assert output["sampleRate"] > 0
    underruns = output["underruns"]
    assert isinstance(underruns["events"], int)
    assert isinstance(output["gaps"], int)
    numbers = {
        **{key: output[key] for key in ("baseLatencyMs", "outputLatencyMs", "gaps", "gapMs")},
        **{f"underruns.{key}": value for key, value in underruns.items()},
    }
    for key, value in numbers.items():
        assert isinstance(value, (int, float)), key
        assert math.isfinite(value), key
        assert value >= 0, key
