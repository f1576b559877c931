// A turn's latency budget, on the page's own clock (docs/latency.md): from the end of the
// meeting's speech to the first sample of the agent's answer leaving the playback worklet.
//
// The page times what it sees: each 20 ms chunk's trip from the capture worklet to
// socket.send (two stores a chunk in a ring, no extra message), the model's
// `speech_stopped` (whose `audio_end_ms` + the session's `silence_duration_ms` name the
// chunk that ended the turn), the answer's first audio delta, and the playback worklet's
// "started". Optionally (`?latency=1` on the page URL) it asks the relay once a turn with
// the relay-only `relay.latency.get` for the relay's own offsets (ms since speech_stopped
// on the relay's clock), which split the network round trip into its legs without any
// shared clock. Off by default: it is one more message a turn, and a relay that predates
// it would forward it to the model (which answers with an error).

const RING = 512; // chunks remembered: 10.24 s, more than any silence_duration_ms
const KEPT_TURNS = 200; // turns the percentiles are computed over
const RECENT_TURNS = 20; // turns listed one by one in agentStats.latency.recent
export const LEGS = [
  "captureMs", // end of speech (+ the VAD's silence) → its chunk sent: fill + worklet hop + send
  "pageToRelayMs", // ½ the page↔relay round trip (relay stats only)
  "relayToModelMs", // ½ (the VAD round trip − the page↔relay round trip) (relay stats only)
  "modelMs", // the model's own time: speech_stopped → first audio delta, at the relay
  "modelToPageMs", // the first audio delta, model → relay → page (relay stats only)
  "playbackMs", // first audio delta received → its first sample at the output (incl. outputMs)
  "outputMs", // the browser's output buffering (baseLatency + outputLatency), within playbackMs
  "vadRoundTripMs", // the turn's last chunk sent → speech_stopped received (page clock)
  "firstAudioMs", // speech_stopped → first audio delta received (page clock; includes the model)
  "addedMs", // what the page and the relay add: everything above but the model's own time
  "endToEndMs", // end of speech (+ silence) → playback start: addedMs + modelMs
];

/** Nearest-rank percentile of numbers (p in 0..100); null when there are none. */
export function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

/** {leg: {p50, p99, n}} over the turns that have that leg. */
export function summarize(turns) {
  const legs = {};
  for (const leg of LEGS) {
    const values = turns.map((turn) => turn[leg]).filter((v) => typeof v === "number");
    legs[leg] = { p50: percentile(values, 50), p99: percentile(values, 99), n: values.length };
  }
  return legs;
}

const round = (ms) => Math.round(ms * 1000) / 1000;

export class TurnLatency {
  constructor({ chunkMs, askRelay }) {
    this.chunkMs = chunkMs;
    this.askRelay = askRelay; // () => bool: sends relay.latency.get, when enabled
    this.sentAt = new Float64Array(RING); // page clock, when chunk k went out
    this.readyMs = new Float64Array(RING); // chunk k: worklet hop + send, ms
    this.turns = [];
    this.heard = 0; // speech_stopped seen
    this.relayReplies = 0;
    this.summary = summarize([]);
    // The audio clock on the page's clock: a context time is presented (leaves the
    // browser's output) at contextMs + presentOffset; refreshed once a second at most.
    this.presentOffset = null;
    this.outputMs = 0; // the browser's own output buffering: baseLatency + outputLatency
    this.mappedAt = -Infinity;
    this.reset();
  }

  /** Maps the audio clock onto the page's (AudioContext.getOutputTimestamp). */
  mapAudioClock(context, now) {
    if (now - this.mappedAt < 1000) return;
    const stamp = context.getOutputTimestamp();
    if (!(stamp.performanceTime > 0)) return; // not playing yet
    this.presentOffset = stamp.performanceTime - stamp.contextTime * 1000;
    this.outputMs = ((context.baseLatency || 0) + (context.outputLatency || 0)) * 1000;
    this.mappedAt = now;
  }

  /** Page time at which the context frame is presented at the output (null: unmapped). */
  presentedAt(frame, sampleRate) {
    return this.presentOffset === null ? null : (frame / sampleRate) * 1000 + this.presentOffset;
  }

  /** A new socket: its chunks count from 0 again (the model's audio_end_ms does too). */
  reset() {
    this.chunks = 0;
    this.silenceMs = null;
    this.open = null;
    this.asked = null;
  }

  /** The session's server VAD silence (session.created / session.updated). */
  session(session) {
    const detection = session && session.audio && session.audio.input;
    const vad = detection && detection.turn_detection;
    this.silenceMs = vad && typeof vad.silence_duration_ms === "number" ? vad.silence_duration_ms : null;
  }

  /** A chunk went out at `now`: the worklet rendered its last sample at context `frame`
   * (rendering runs outputMs ahead of presentation), the page got it at `receivedAt`. */
  chunkSent(frame, sampleRate, receivedAt, now) {
    const slot = this.chunks % RING;
    const presented = this.presentedAt(frame, sampleRate);
    const hopMs = presented === null ? 0 : Math.max(0, receivedAt - (presented - this.outputMs));
    this.sentAt[slot] = now;
    this.readyMs[slot] = hopMs + (now - receivedAt);
    this.chunks++;
  }

  speechStopped(event, now) {
    this.heard++;
    this.open = { itemId: event.item_id, stoppedAt: now, firstDeltaAt: null };
    if (this.silenceMs === null || typeof event.audio_end_ms !== "number") return;
    // The chunk holding the VAD's last silent sample: it is what ended the turn.
    const endMs = event.audio_end_ms + this.silenceMs;
    const k = Math.ceil(endMs / this.chunkMs) - 1;
    if (k < 0 || k >= this.chunks || k < this.chunks - RING) return;
    const fillMs = (k + 1) * this.chunkMs - endMs;
    this.open.captureMs = round(fillMs + this.readyMs[k % RING]);
    this.open.vadRoundTripMs = round(now - this.sentAt[k % RING]);
  }

  /** An audio delta arrived: the open turn's first one is timed. */
  audioDelta() {
    if (this.open && this.open.firstDeltaAt === null) this.open.firstDeltaAt = performance.now();
  }

  /** The playback worklet started output at context `frame`. */
  playbackStarted(frame, sampleRate) {
    const turn = this.open;
    const presented = this.presentedAt(frame, sampleRate);
    if (!turn || turn.firstDeltaAt === null || presented === null) return;
    this.open = null;
    const done = {
      itemId: turn.itemId,
      captureMs: turn.captureMs,
      vadRoundTripMs: turn.vadRoundTripMs,
      firstAudioMs: round(turn.firstDeltaAt - turn.stoppedAt),
      playbackMs: round(Math.max(0, presented - turn.firstDeltaAt)),
      outputMs: round(this.outputMs),
    };
    this.complete(done);
    this.turns.push(done);
    if (this.turns.length > KEPT_TURNS) this.turns.shift();
    this.summary = summarize(this.turns);
    if (this.asked === null && this.askRelay()) this.asked = { at: performance.now(), turn: done };
  }

  /** The relay's answer: its offsets split the round trip and name the model's time. */
  relayReport(event, now) {
    const asked = this.asked;
    this.asked = null;
    if (!asked || !Array.isArray(event.turns)) return;
    this.relayReplies++;
    const turn = asked.turn;
    const relay = event.turns.find((t) => t && t.item_id === turn.itemId);
    if (!relay || typeof relay.first_audio_ms !== "number") return;
    const rttMs = now - asked.at;
    turn.pageToRelayMs = round(rttMs / 2);
    turn.modelMs = round(relay.first_audio_ms);
    // The relay's own offsets (ms after speech_stopped): in an `addressed` session the
    // final transcript and the relay's response.create come before the model's answer.
    turn.relay = {
      transcriptMs: relay.transcript_ms,
      answerRequestedMs: relay.answer_requested_ms,
      responseCreatedMs: relay.response_created_ms,
    };
    if (typeof turn.vadRoundTripMs === "number") {
      turn.relayToModelMs = round(Math.max(0, turn.vadRoundTripMs - rttMs) / 2);
      // The delta left the model as speech_stopped did, and came back the same way. The
      // page's and the relay's intervals are timed apart, so a busy page can make their
      // difference negative: jitter, not time, so it counts as none.
      turn.modelToPageMs = round(
        turn.relayToModelMs + turn.pageToRelayMs + Math.max(0, turn.firstAudioMs - turn.modelMs),
      );
    }
    this.complete(turn);
    this.summary = summarize(this.turns);
  }

  complete(turn) {
    if (typeof turn.captureMs !== "number") return;
    // Without the relay's word the model's time is unknown: count it as added (an upper bound).
    const modelMs = typeof turn.modelMs === "number" ? turn.modelMs : 0;
    turn.addedMs = round(
      turn.captureMs + turn.vadRoundTripMs + (turn.firstAudioMs - modelMs) + turn.playbackMs,
    );
    turn.endToEndMs = round(
      turn.captureMs + turn.vadRoundTripMs + turn.firstAudioMs + turn.playbackMs,
    );
  }

  stats() {
    return {
      heard: this.heard,
      turns: this.turns.length,
      relayReplies: this.relayReplies,
      silenceMs: this.silenceMs,
      legs: this.summary,
      recent: this.turns.slice(-RECENT_TURNS).map((turn) => ({ ...turn })),
    };
  }
}
