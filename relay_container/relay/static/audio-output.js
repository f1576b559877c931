// The page's audio output buffer: which `latencyHint` its AudioContext asks for (the
// product's default, or `?latencyHint=` on the page URL), and what the browser reports of
// that buffer's size and of its underruns (docs/latency.md, "The output buffer").

// The safe buffer (~40 ms in Chromium on Linux): 0 (~12 ms) meets the latency target but
// underran on a busy machine where this did not, or less (docs/latency.md, "The output
// buffer"; bench/README.md). An operator can still ask for 0 with ?latencyHint=0.
export const DEFAULT_LATENCY_HINT = "interactive";
export const LATENCY_HINT_PARAM = "latencyHint";
const NAMED_HINTS = new Set(["interactive", "balanced", "playback"]);
// Seconds a numeric hint may ask for: 0 (the smallest buffer the browser gives) to 0.5 s
// (past any sane voice buffer; a typo such as 20 for 0.02 is refused, not obeyed).
const MAX_HINT_SECONDS = 0.5;
const NUMBER = /^(?:0|[1-9]\d*)?(?:\.\d{1,6})?$/;

/**
 * The latencyHint a `?latencyHint=` value asks for: "interactive", "balanced", "playback",
 * or seconds (0 to 0.5, plain decimal: "0", "0.01", ".02"). Absent → the default with no
 * warning; anything else → the default and a warning naming what was refused.
 * @returns {{hint: string | number, source: "default" | "url", warning: string | null}}
 */
export function parseLatencyHint(raw) {
  if (raw === null || raw === undefined) {
    return { hint: DEFAULT_LATENCY_HINT, source: "default", warning: null };
  }
  const text = String(raw).trim();
  if (NAMED_HINTS.has(text)) return { hint: text, source: "url", warning: null };
  if (text !== "" && text !== "." && text.length <= 12 && NUMBER.test(text)) {
    const seconds = Number(text);
    if (Number.isFinite(seconds) && seconds >= 0 && seconds <= MAX_HINT_SECONDS) {
      return { hint: seconds, source: "url", warning: null };
    }
  }
  const shown = text.length > 40 ? `${text.slice(0, 40)}…` : text;
  return {
    hint: DEFAULT_LATENCY_HINT,
    source: "default",
    warning:
      `?${LATENCY_HINT_PARAM}=${JSON.stringify(shown)} ignored: use interactive, balanced, ` +
      `playback or seconds from 0 to ${MAX_HINT_SECONDS}; using ${JSON.stringify(DEFAULT_LATENCY_HINT)}`,
  };
}

/** The hint the page at `href` asks for (see parseLatencyHint). */
export function latencyHintFromUrl(href) {
  return parseLatencyHint(new URL(href).searchParams.get(LATENCY_HINT_PARAM));
}

const ms = (seconds) => (typeof seconds === "number" ? Math.round(seconds * 1e6) / 1e3 : null);

/**
 * What the browser says of the context's output: buffer sizes, and underruns where it
 * offers `AudioContext.playbackStats` (Chromium does; its values refresh once a second).
 * `underruns` is null where the browser has no such counter.
 */
export function outputReport(context) {
  if (!context) {
    return { sampleRate: null, baseLatencyMs: null, outputLatencyMs: null, underruns: null };
  }
  const stats = "playbackStats" in context ? context.playbackStats : null;
  return {
    sampleRate: context.sampleRate,
    baseLatencyMs: ms(context.baseLatency),
    outputLatencyMs: ms(context.outputLatency),
    underruns: stats
      ? {
          events: stats.underrunEvents,
          ms: ms(stats.underrunDuration),
          playedMs: ms(stats.totalDuration),
          averageLatencyMs: ms(stats.averageLatency),
          maximumLatencyMs: ms(stats.maximumLatency),
        }
      : null,
  };
}
