// The agent page's logic: relay token handling, meeting audio up, agent audio down,
// barge-in, reconnection, and the tile. No framework, no build step.
//
// Order matters and is deliberate:
//   1. take the token out of the URL (sessionStorage + history.replaceState) before any
//      network use, so it never lingers in location.href, history or a Referer;
//   2. getUserMedia first: Recall's bot browser allows playback only after it;
//   3. one AudioContext, a capture worklet (-> 24 kHz PCM16, 20 ms chunks) and a playback
//      worklet whose node is the page's one and only output path (no <audio>, no echo);
//   4. connect to the relay, authenticating with the subprotocols a browser can send.
//
// agentStats.latency times each turn (turn-latency.js, docs/latency.md); agentStats.output
// says which output buffer the page asked for (?latencyHint=) and its underruns.

import { latencyHintFromUrl, outputReport } from "./audio-output.js";
import { TurnLatency } from "./turn-latency.js";

const TOKEN_KEY = "relay.token";
const URL_KEY = "relay.url";
const REALTIME_PATH = "/v1/realtime";
// Close codes worth retrying (going away, abnormal, internal error, restart, try again,
// no status). 1008 (token/policy) and everything else are final.
const RETRY_CODES = new Set([1001, 1005, 1006, 1011, 1012, 1013]);
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
// Past this much unsent data the link is stalled: drop fresh audio rather than pile it up.
const MAX_BUFFERED_BYTES = 256 * 1024;
const CHUNK_MS = 20;
// Tokens expire on the relay's clock with this leeway (relay.tokens.LEEWAY_SECONDS).
const TOKEN_LEEWAY_SECONDS = 30;

// Stats: read-only for tests and debugging -------------------------------------------------

const stats = {
  state: "starting",
  framesSent: 0,
  framesDropped: 0,
  audioMsSent: 0,
  audioMsReceived: 0,
  audioMsPlayed: 0,
  playedMsByItem: {}, // recent assistant items: ms of each actually played
  truncatesSent: 0,
  lastTruncate: null,
  bargeIns: 0,
  connects: 0,
  reconnects: 0,
  sessions: 0,
  lastCloseCode: null,
  lastError: null,
  errorEvents: 0,
  contextSampleRate: null,
  playbackOverflowMs: 0,
  playbackGaps: 0, // the playback worklet ran out of an item's audio before its next delta
  playbackGapMs: 0,
};
// Read once, before the token is taken out of the URL (it keeps ?latencyHint=).
const LATENCY_HINT = latencyHintFromUrl(location.href);
if (LATENCY_HINT.warning) console.warn(LATENCY_HINT.warning);
// ?latency=1 also asks the relay for its side of each turn (one small message a turn).
const latency = new TurnLatency({
  chunkMs: CHUNK_MS,
  askRelay: () => askRelayLatency(),
});
const ASK_RELAY_LATENCY = new URL(location.href).searchParams.get("latency") === "1";
Object.defineProperty(window, "agentStats", {
  get: () => Object.freeze({ ...stats, latency: latency.stats(), output: outputStats() }),
  enumerable: true,
});

function outputStats() {
  return {
    latencyHint: LATENCY_HINT.hint,
    latencyHintSource: LATENCY_HINT.source,
    ...outputReport(audio.context),
    gaps: stats.playbackGaps,
    gapMs: stats.playbackGapMs,
  };
}

// The tile ---------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const tile = {
  set(state, text, detail = "") {
    // state is one of: starting, connecting, live, reconnecting, failed
    stats.state = state;
    $("tile").dataset.state = state;
    $("state").textContent = text;
    $("detail").textContent = detail;
  },
  detail(text) {
    $("detail").textContent = text;
  },
  error(text) {
    $("error").textContent = text;
    $("error").hidden = !text;
  },
  level(which, rms, previous) {
    // rms -> 0..100 % on a -60..0 dBFS scale, falling smoothly.
    const db = 20 * Math.log10(Math.max(rms, 1e-6));
    const target = Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
    const shown = Math.max(target, previous * 0.9);
    $(`${which}-level`).style.width = `${shown.toFixed(1)}%`;
    return shown;
  },
  speaking(which, yes) {
    $(which).dataset.speaking = String(yes);
    if (which === "agent") $("tile").dataset.agent = yes ? "speaking" : "quiet";
  },
  heard(text) {
    $("heard-text").textContent = text;
  },
  says(text) {
    $("says-text").textContent = text;
  },
};

function fail(message) {
  stats.lastError = message;
  tile.set("failed", "Stopped", "");
  tile.error(message);
}

// 1. Credentials ---------------------------------------------------------------------------

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    const memory = new Map();
    return { getItem: (k) => memory.get(k) ?? null, setItem: (k, v) => memory.set(k, v) };
  }
}

function defaultRelayUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${REALTIME_PATH}`;
}

function normalizeRelayUrl(raw) {
  // ?wss= follows Recall's demo convention: a full relay URL (a bare host means our path).
  const url = new URL(raw);
  if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol !== "wss:" && url.protocol !== "ws:") throw new Error("not a ws(s) URL");
  if (url.pathname === "/" || url.pathname === "") url.pathname = REALTIME_PATH;
  return url;
}

function takeCredentials() {
  const store = storage();
  const page = new URL(location.href);
  // The token comes only in the fragment (#token=…): browsers never send a fragment to a
  // server, so it reaches no access log. A ?token= is never read (the relay refuses it);
  // it is still taken out of the address below.
  const fragment = new URLSearchParams(page.hash.slice(1));
  const token = fragment.get("token");
  let relayUrl = null;
  const wss = page.searchParams.get("wss");
  if (wss) {
    try {
      const url = normalizeRelayUrl(wss);
      // A token inside the relay URL is dropped, unread: we authenticate by subprotocol.
      url.searchParams.delete("token");
      relayUrl = url.toString();
    } catch {
      relayUrl = "invalid";
    }
  }
  if (page.searchParams.has("token") || page.searchParams.has("wss") || fragment.has("token")) {
    page.searchParams.delete("token");
    page.searchParams.delete("wss");
    fragment.delete("token");
    const hash = fragment.toString() ? `#${fragment}` : "";
    history.replaceState(history.state, "", page.pathname + page.search + hash);
  }
  if (token) store.setItem(TOKEN_KEY, token);
  if (relayUrl) store.setItem(URL_KEY, relayUrl);
  return {
    token: store.getItem(TOKEN_KEY),
    relayUrl: store.getItem(URL_KEY) || defaultRelayUrl(),
  };
}

function tokenExpiry(token) {
  // Reads `exp` without verifying (the relay verifies): only to fail fast and say why.
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part));
    return typeof claims.exp === "number" ? claims.exp : null;
  } catch {
    return null;
  }
}

// 2-3. Audio -----------------------------------------------------------------------------

const audio = {
  context: null,
  playback: null,
  meetingLevel: 0,
  agentLevel: 0,
  speaking: false, // the agent: audio queued or playing
  responding: false, // a response is in progress (more audio may still come)
  lastPushedItem: null,
  pushes: 0, // sent to the playback worklet; a "drained" counts those it had
  truncated: new Set(), // assistant items cut by a barge-in: their late deltas are dropped
};

async function startAudio() {
  const stream = await navigator.mediaDevices.getUserMedia({
    // The meeting's mix already excludes the bot's voice; browser processing would only
    // distort it (and AGC would fight the model's VAD).
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const context = new AudioContext({ latencyHint: LATENCY_HINT.hint });
  stats.contextSampleRate = context.sampleRate;
  await context.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
  await context.audioWorklet.addModule(new URL("./playback-worklet.js", import.meta.url));
  const source = context.createMediaStreamSource(stream);
  // No outputs: capture is pulled by the graph but never reaches the speakers.
  const capture = new AudioWorkletNode(context, "capture-processor", {
    numberOfInputs: 1,
    numberOfOutputs: 0,
  });
  source.connect(capture);
  const playback = new AudioWorkletNode(context, "playback-processor", {
    numberOfInputs: 0,
    numberOfOutputs: 1,
    outputChannelCount: [1],
  });
  playback.connect(context.destination); // the one output path
  capture.port.onmessage = (event) => onCaptured(event.data);
  playback.port.onmessage = (event) => onPlayback(event.data);
  audio.context = context;
  audio.playback = playback;
  try {
    await context.resume();
  } catch {
    // Reported just below.
  }
  if (context.state !== "running") tile.detail("audio output blocked by the browser");
}

function onCaptured({ pcm, rms, frame }) {
  const receivedAt = performance.now();
  latency.mapAudioClock(audio.context, receivedAt);
  audio.meetingLevel = tile.level("meeting", rms, audio.meetingLevel);
  if (!link.socket || link.socket.readyState !== WebSocket.OPEN) return;
  if (link.socket.bufferedAmount > MAX_BUFFERED_BYTES) {
    stats.framesDropped++;
    return;
  }
  link.socket.send(JSON.stringify({ type: "input_audio_buffer.append", audio: toBase64(pcm) }));
  latency.chunkSent(frame, audio.context.sampleRate, receivedAt, performance.now());
  stats.framesSent++;
  stats.audioMsSent += CHUNK_MS;
}

function onPlayback(message) {
  if (message.type === "progress") {
    stats.audioMsPlayed = message.playedMs;
    stats.playedMsByItem = message.items;
    stats.playbackOverflowMs = message.overflowMs;
    stats.playbackGaps = message.gaps;
    stats.playbackGapMs = message.gapMs;
    audio.agentLevel = tile.level("agent", message.rms, audio.agentLevel);
  } else if (message.type === "drained") {
    // Stale if audio was pushed after the worklet ran dry.
    if (message.pushes === audio.pushes) setAgentSpeaking(false);
  } else if (message.type === "cleared") {
    sendTruncate(message.itemId, message.itemPlayedMs);
  } else if (message.type === "started") {
    latency.playbackStarted(message.frame, audio.context.sampleRate);
  }
}

function play(itemId, base64) {
  if (audio.truncated.has(itemId) || !audio.playback) return;
  const pcm = fromBase64(base64);
  stats.audioMsReceived += pcm.byteLength / 48; // 24 kHz * 2 bytes = 48 bytes per ms
  audio.lastPushedItem = itemId;
  audio.pushes++;
  audio.playback.port.postMessage({ type: "push", itemId, pcm }, [pcm]);
  setAgentSpeaking(true);
}

function setAgentSpeaking(yes) {
  audio.speaking = yes;
  tile.speaking("agent", yes);
}

function bargeIn() {
  // The meeting speaks over the agent: stop at once, then tell the model what was heard.
  // Also while a response is still streaming into an empty buffer (an underrun).
  if (!(audio.speaking || audio.responding) || !audio.lastPushedItem || !audio.playback) return;
  if (audio.truncated.has(audio.lastPushedItem)) return; // cut already
  stats.bargeIns++;
  audio.truncated.add(audio.lastPushedItem);
  audio.playback.port.postMessage({ type: "clear", itemId: audio.lastPushedItem }); // -> "cleared"
  setAgentSpeaking(false);
}

function askRelayLatency() {
  if (!ASK_RELAY_LATENCY || !link.socket || link.socket.readyState !== WebSocket.OPEN) {
    return false;
  }
  link.socket.send(JSON.stringify({ type: "relay.latency.get" }));
  return true;
}

function sendTruncate(itemId, playedMs) {
  // Only items this session's barge-in cut (a reset's "cleared" belongs to a closed session).
  if (!audio.truncated.has(itemId)) return;
  if (!link.socket || link.socket.readyState !== WebSocket.OPEN) return;
  const audioEndMs = Math.floor(playedMs);
  link.socket.send(
    JSON.stringify({
      type: "conversation.item.truncate",
      item_id: itemId,
      content_index: 0,
      audio_end_ms: audioEndMs,
    }),
  );
  stats.truncatesSent++;
  stats.lastTruncate = { itemId, audioEndMs };
}

function resetPlayback() {
  // Items belong to the session that just ended; nothing of it should keep playing.
  if (audio.playback && audio.speaking) {
    audio.playback.port.postMessage({ type: "clear", itemId: null });
  }
  audio.truncated.clear();
  audio.lastPushedItem = null;
  audio.responding = false;
  setAgentSpeaking(false);
  tile.speaking("meeting", false);
}

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length - (binary.length % 2));
  for (let i = 0; i < bytes.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

// 4. The relay link ------------------------------------------------------------------------

const link = {
  token: null,
  url: null,
  socket: null,
  attempt: 0, // consecutive failed attempts, for the backoff
  modelLive: false, // a model event (not an error) arrived on the current socket
  everOpened: false,
  retryTimer: null,
  stopped: false,
};

function connect() {
  link.retryTimer = null;
  if (link.stopped) return;
  if (!link.everOpened) tile.set("connecting", "Connecting…");
  let socket;
  try {
    socket = new WebSocket(link.url, ["realtime", `openai-insecure-api-key.${link.token}`]);
  } catch {
    fail("invalid relay URL");
    return;
  }
  let opened = false;
  socket.onopen = () => {
    opened = true;
    stats.connects++;
    if (link.everOpened) stats.reconnects++;
    link.everOpened = true;
    link.modelLive = false;
    latency.reset();
    tile.set("live", "Connected", "waiting for the model…");
    tile.error("");
  };
  socket.onmessage = (event) => onServerEvent(event.data);
  socket.onclose = (event) => onClose(socket, event, opened);
  link.socket = socket;
}

async function onClose(socket, event, opened) {
  if (link.socket !== socket) return;
  link.socket = null;
  stats.lastCloseCode = event.code;
  resetPlayback();
  if (link.stopped) return;
  if (event.code === 1008) {
    // Policy: never retried. The relay also uses 1008 for limits (session length, queue),
    // so say "token" only when it is about the token.
    link.stopped = true;
    const reason = event.reason || "";
    if (!reason || /token/i.test(reason)) {
      fail(reason ? `relay refused token: ${reason}` : "relay refused token");
    } else {
      fail(`relay ended the session: ${reason}`);
    }
    return;
  }
  if (!opened && event.code === 1006) {
    // A refused handshake looks like any network failure to a page (1006, no status).
    const refusal = await probeRefusal();
    if (refusal) {
      link.stopped = true;
      fail(refusal);
      return;
    }
  }
  if (!RETRY_CODES.has(event.code)) {
    link.stopped = true;
    fail(`relay closed the session (${event.code}${event.reason ? `: ${event.reason}` : ""})`);
    return;
  }
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** link.attempt);
  const delay = ceiling / 2 + (Math.random() * ceiling) / 2; // jitter: no thundering herd
  link.attempt++;
  const why = event.code === 1001 ? "relay going away" : `connection lost (${event.code})`;
  tile.set("reconnecting", "Reconnecting…", `${why}; retry in ${(delay / 1000).toFixed(1)} s`);
  link.retryTimer = setTimeout(connect, delay);
}

async function probeRefusal() {
  // Ask the relay once, with the token in a header (never the URL), why the handshake
  // failed: 401/403 mean the token is refused and retrying cannot help. Network errors,
  // CORS (a cross-origin ?wss=) and anything else mean "retry with backoff".
  const url = link.url.replace(/^ws/, "http");
  try {
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${link.token}` },
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
      signal: AbortSignal.timeout(5000),
    });
    if (response.status === 401) return "relay refused token";
    if (response.status === 403) return "relay refused token (not allowed)";
  } catch {
    // Not reachable or not readable: treat as a network failure.
  }
  return null;
}

function onServerEvent(data) {
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    return;
  }
  if (!link.modelLive && event.type !== "error") {
    // The first model event on this socket: a fresh session.created, or, when the relay
    // re-attached us to the session we had, whatever the model says next. Either way the
    // link is healthy again.
    link.modelLive = true;
    link.attempt = 0;
    tile.set("live", "Connected", "listening");
  }
  switch (event.type) {
    case "session.created":
      stats.sessions++;
      latency.session(event.session);
      break;
    case "session.updated":
      latency.session(event.session);
      break;
    case "relay.latency":
      latency.relayReport(event, performance.now());
      break;
    case "input_audio_buffer.speech_started":
      tile.speaking("meeting", true);
      bargeIn();
      break;
    case "input_audio_buffer.speech_stopped":
      latency.speechStopped(event, performance.now());
      tile.speaking("meeting", false);
      break;
    case "conversation.item.input_audio_transcription.delta":
      tile.heard(event.delta || "");
      break;
    case "conversation.item.input_audio_transcription.completed":
      tile.heard(event.transcript || "");
      break;
    case "response.created":
      audio.responding = true;
      tile.says("");
      tile.detail("answering");
      break;
    case "response.output_audio.delta":
      latency.audioDelta();
      play(event.item_id, event.delta);
      break;
    case "response.output_audio_transcript.delta":
      if (!audio.truncated.has(event.item_id)) {
        tile.says($("says-text").textContent + (event.delta || ""));
      }
      break;
    case "response.done":
      audio.responding = false;
      tile.detail("listening");
      break;
    case "error":
      stats.errorEvents++;
      tile.detail(`model error: ${(event.error && event.error.code) || "unknown"}`);
      break;
    default:
      break;
  }
}

// Start ------------------------------------------------------------------------------------

async function main() {
  const { token, relayUrl } = takeCredentials();
  if (!token) {
    fail("no relay token: open this page with #token=…");
    return;
  }
  if (relayUrl === "invalid") {
    fail("invalid relay URL in ?wss=");
    return;
  }
  const exp = tokenExpiry(token);
  if (exp !== null && exp + TOKEN_LEEWAY_SECONDS < Date.now() / 1000) {
    fail("relay token expired");
    return;
  }
  link.token = token;
  link.url = relayUrl;
  tile.set("starting", "Starting…", "waiting for meeting audio");
  try {
    await startAudio();
  } catch (error) {
    fail(`no meeting audio: ${error.name || error}`);
    return;
  }
  connect();
}

window.addEventListener("pagehide", () => {
  link.stopped = true;
  if (link.socket) link.socket.close(1000, "page closed");
});

main();
