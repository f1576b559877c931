"""How long a stall each AudioContext output buffer survives, in headless Chromium.

For each ``latencyHint``, an AudioWorklet holds the render thread busy for ``stall`` ms
once every 50 render quanta (as a page, a garbage collection or a busy machine would hold
it) and the run reads ``AudioContext.playbackStats`` after a few seconds: the underruns
Chromium counted, i.e. the output played silence because rendering was late. A buffer
survives a stall when none are counted. It shows the headroom a hint buys, apart from
the turn's latency (bench/turn_latency.py) and from whatever else loads the machine.

Run: ``.venv/bin/python -m bench.output_stall [--hints interactive,0,0.02]
[--stalls 2,4,8,16,32] [--seconds 2]``. Loopback only: the page is served by Playwright.
"""

from __future__ import annotations

import argparse
import json
import shutil
from typing import Any, Final

from playwright.sync_api import sync_playwright

ORIGIN: Final = "http://localhost:9"
STALLER: Final = """
class Staller extends AudioWorkletProcessor {
  constructor(options) { super(); this.stallMs = options.processorOptions.stallMs; this.n = 0; }
  process(_inputs, outputs) {
    if (++this.n % 50 === 0) {
      const end = Date.now() + this.stallMs;
      while (Date.now() < end) {}
    }
    outputs[0][0].fill(0.1);
    return true;
  }
}
registerProcessor('staller', Staller);
"""
MEASURE: Final = """async ([source, hint, stallMs, seconds]) => {
  const url = URL.createObjectURL(new Blob([source], {type: 'text/javascript'}));
  const context = new AudioContext({latencyHint: hint});
  await context.audioWorklet.addModule(url);
  new AudioWorkletNode(context, 'staller', {processorOptions: {stallMs}})
    .connect(context.destination);
  await context.resume();
  await new Promise((done) => setTimeout(done, seconds * 1000 + 1200));  // stats: 1/s
  const stats = context.playbackStats;
  const result = {
    bufferMs: (context.baseLatency + context.outputLatency) * 1000,
    events: stats.underrunEvents,
    underrunMs: stats.underrunDuration * 1000,
    playedMs: stats.totalDuration * 1000,
  };
  await context.close();
  return result;
}"""


def parse_hint(text: str) -> str | float:
    return text if text in ("interactive", "balanced", "playback") else float(text)


def measure(hints: list[str], stalls: list[float], seconds: float) -> list[dict[str, Any]]:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium not installed (apt-get install chromium)")
    rows = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            page = browser.new_page()
            # A secure context (localhost) for the AudioWorklet; nothing listens on port 9.
            page.route(
                f"{ORIGIN}/**", lambda route: route.fulfill(body="", content_type="text/html")
            )
            page.goto(f"{ORIGIN}/")
            for hint in hints:
                for stall in stalls:
                    result = page.evaluate(MEASURE, [STALLER, parse_hint(hint), stall, seconds])
                    rows.append({"hint": hint, "stallMs": stall, **result})
        finally:
            browser.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hints", default="interactive,0,0.02")
    parser.add_argument("--stalls", default="2,4,6,8,12,16,24,32,48")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    stalls = [float(s) for s in args.stalls.split(",")]
    if not all(0 <= s <= 200 for s in stalls) or not 0.5 <= args.seconds <= 30:
        parser.error("stalls must be 0..200 ms and --seconds 0.5..30")
    rows = measure(args.hints.split(","), stalls, args.seconds)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'hint':<12} {'buffer ms':>9} {'stall ms':>8} {'underruns':>9} {'silence ms':>10}")
    for row in rows:
        print(
            f"{row['hint']:<12} {row['bufferMs']:>9.1f} {row['stallMs']:>8.0f} "
            f"{row['events']:>9} {row['underrunMs']:>10.1f}"
        )


if __name__ == "__main__":
    main()
