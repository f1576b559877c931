// Load generator for the relay benchmark: N Realtime sessions streaming 20 ms audio chunks.
//
// Owns: one step of the ramp driven by bench/relay_load.py. It opens `sessions` WebSocket
// sessions (relay token as `Authorization: Bearer`), waits for each `session.created`,
// then every session sends one `input_audio_buffer.append` (960 bytes of PCM16 24 kHz,
// base64) every 20 ms, start times spread evenly over the 20 ms period (in `slot_ms` slots). The append's
// `event_id` is `b<session>.<seq>.<send time µs>`; the echo upstream puts it on the
// `response.output_audio.delta` it answers with, so the round trip is measured without
// any per-message state. It refuses to pace itself beyond 50/s: a stalled loop skips slots
// (counted as `late_skips`) rather than bursting, and a socket with a send backlog above
// 256 KiB skips its frame (counted as `stalled`), so a slow relay shows up as loss.
//
// Input: one JSON object on stdin
//   {url, tokens: [..]|null, sessions, seconds, warmup_seconds, grace_seconds,
//    connect_timeout_seconds, connect_concurrency, slot_ms}
// Output: JSON lines on stdout, in order:
//   {"event":"connected",...}  {"event":"streaming"}  {"event":"stopped"}  {"event":"result",...}
// Every wait is bounded; the process exits by itself once the result is written.

import { performance } from 'node:perf_hooks';
import { connect, encodeTextParts } from './wsraw.mjs';

const PERIOD_MS = 20;
const AUDIO_B64 = (() => {
  // 480 samples of a 440 Hz tone: content is irrelevant to a relay, size is what matters.
  const pcm = Buffer.alloc(960);
  for (let i = 0; i < 480; i += 1) {
    pcm.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 24000)), 2 * i);
  }
  return pcm.toString('base64');
})();
const APPEND_HEAD = Buffer.from('{"type":"input_audio_buffer.append","event_id":"');
const APPEND_TAIL = Buffer.from(`","audio":"${AUDIO_B64}"}`);
const DELTA_HEAD = Buffer.from('{"type":"response.output_audio.delta","event_id":"b');
const QUOTE = 0x22;
const MAX_BACKLOG_BYTES = 256 * 1024;
const MAX_SAMPLES = 4_000_000;

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on('data', (chunk) => chunks.push(chunk));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function nowUs() {
  return Math.round(performance.now() * 1000);
}

function cpuSeconds() {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

const config = JSON.parse(await readStdin());
const sessionCount = config.sessions;
const seconds = config.seconds;
const warmupSeconds = config.warmup_seconds ?? 1;
const graceSeconds = config.grace_seconds ?? 2;
const connectTimeoutMs = (config.connect_timeout_seconds ?? 10) * 1000;
const concurrency = Math.max(1, config.connect_concurrency ?? 32);
const slotMs = [1, 2, 4, 5, 10, 20].includes(config.slot_ms) ? config.slot_ms : 2;

const sessions = [];
const samples = new Float64Array(Math.min(MAX_SAMPLES, sessionCount * 50 * (seconds + 2) + 1000));
let sampleCount = 0;
let measureFromUs = Infinity;
let streaming = false;
let totalSent = 0;
let totalReceived = 0;
let stalled = 0;
let lateSkips = 0;
let reorders = 0;
let unmatched = 0;
let errorEvents = 0;
let firstError = null;
let closedWhileStreaming = 0;
const closeCodes = {};

function onDelta(session, raw) {
  // raw starts with DELTA_HEAD; the id runs to the next quote: <session>.<seq>.<us>
  const start = DELTA_HEAD.length;
  const end = raw.indexOf(QUOTE, start);
  if (end < 0 || end - start > 64) {
    unmatched += 1;
    return;
  }
  const id = raw.toString('latin1', start, end);
  const firstDot = id.indexOf('.');
  const secondDot = id.indexOf('.', firstDot + 1);
  const seq = Number(id.slice(firstDot + 1, secondDot));
  const sentUs = Number(id.slice(secondDot + 1));
  if (firstDot < 0 || secondDot < 0 || !Number.isFinite(seq) || !Number.isFinite(sentUs)) {
    unmatched += 1;
    return;
  }
  const rttMs = (nowUs() - sentUs) / 1000;
  session.received += 1;
  totalReceived += 1;
  if (seq <= session.lastSeq) reorders += 1;
  session.lastSeq = seq;
  if (sentUs >= measureFromUs && sampleCount < samples.length) {
    samples[sampleCount] = rttMs;
    sampleCount += 1;
  }
}

function onOther(session, raw) {
  let event;
  try {
    event = JSON.parse(raw.toString('utf8'));
  } catch {
    unmatched += 1;
    return;
  }
  if (event.type === 'session.created') {
    session.onReady?.();
  } else if (event.type === 'error') {
    errorEvents += 1;
    if (firstError === null) firstError = event.error ?? event;
  } else if (event.type === 'response.output_audio.delta') {
    unmatched += 1; // an echo that lost our id: cannot be matched to a send
  }
}

function openSession(index) {
  const session = {
    index,
    ws: null,
    ready: false,
    closed: false,
    sent: 0,
    received: 0,
    lastSeq: -1,
    seq: 0,
    onReady: null,
    error: null,
  };
  sessions.push(session);
  const token = config.tokens ? config.tokens[index] : null;
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  return new Promise((resolve) => {
    let settled = false;
    const finish = (ok, reason) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!ok) {
        session.error = reason;
        session.closed = true;
        session.ws?.socket.destroy();
      }
      resolve(ok);
    };
    const timer = setTimeout(
      () => finish(false, 'timeout waiting for session.created'),
      connectTimeoutMs,
    );
    session.onReady = () => {
      session.ready = true;
      session.onReady = null;
      finish(true);
    };
    connect(config.url, { headers, timeoutMs: connectTimeoutMs }).then(
      (ws) => {
        session.ws = ws;
        if (settled) {
          ws.socket.destroy();
          return;
        }
        ws.onClose = (code) => {
          session.closed = true;
          closeCodes[code] = (closeCodes[code] ?? 0) + 1;
          if (streaming) closedWhileStreaming += 1;
          finish(false, `closed ${code}`);
        };
        ws.onBinary = () => {
          unmatched += 1;
        };
        ws.onText = (raw) => {
          if (
            raw.length > DELTA_HEAD.length &&
            raw.compare(DELTA_HEAD, 0, DELTA_HEAD.length, 0, DELTA_HEAD.length) === 0
          ) {
            onDelta(session, raw);
          } else {
            onOther(session, raw);
          }
        };
      },
      (error) => finish(false, String(error.message ?? error)),
    );
  });
}

async function connectAll() {
  let next = 0;
  let failures = 0;
  let firstFailure = null;
  const worker = async () => {
    while (next < sessionCount) {
      const index = next;
      next += 1;
      const ok = await openSession(index);
      if (!ok) {
        failures += 1;
        if (firstFailure === null) firstFailure = sessions[index].error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, sessionCount) }, worker));
  return { failures, firstFailure };
}

// Hot path: the append goes out as one pre-framed client text frame (wsraw.mjs: zero
// masking key, one buffer, one syscall).
function sendOne(session) {
  if (session.closed || !session.ws.open) return;
  if (session.ws.backlog > MAX_BACKLOG_BYTES) {
    stalled += 1;
    return;
  }
  const id = `b${session.index}.${session.seq}.${nowUs()}`;
  session.seq += 1;
  session.ws.writeFrame(encodeTextParts([APPEND_HEAD, id, APPEND_TAIL], true));
  session.sent += 1;
  totalSent += 1;
}

function stream(live) {
  // The 20 ms period is cut into slots of `slotMs`; session k of the n live ones sends in
  // slot floor(k * slots / n) of every period, so sends are spread evenly. One timer tick
  // per slot: on this VM a timer wake-up costs ~0.1 ms of CPU, so 1 ms slots would spend
  // 10 % of the harness core on ticks alone; 2 ms slots keep bursts small (n / 10).
  const slots = PERIOD_MS / slotMs;
  const buckets = Array.from({ length: slots }, () => []);
  live.forEach((session, k) => buckets[Math.floor((k * slots) / live.length)].push(session));
  const durationSlots = Math.round((seconds * 1000) / slotMs);
  const t0 = performance.now();
  measureFromUs = Math.round((t0 + warmupSeconds * 1000) * 1000);
  streaming = true;
  let nextSlot = 0;
  let maxLagMs = 0;
  let lastTick = t0;
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      maxLagMs = Math.max(maxLagMs, now - lastTick);
      lastTick = now;
      const endSlot = Math.min(Math.floor((now - t0) / slotMs), durationSlots - 1);
      if (endSlot - nextSlot >= slots) {
        // The loop stalled for more than a period: skip the missed slots rather than burst.
        for (let slot = nextSlot; slot <= endSlot - slots; slot += 1) {
          lateSkips += buckets[slot % slots].length;
        }
        nextSlot = endSlot - slots + 1;
      }
      for (; nextSlot <= endSlot; nextSlot += 1) {
        for (const session of buckets[nextSlot % slots]) sendOne(session);
      }
      if (nextSlot >= durationSlots) {
        clearInterval(timer);
        resolve({ maxLagMs, elapsed: (performance.now() - t0) / 1000 });
      }
    }, slotMs);
  });
}

async function closeAll() {
  for (const session of sessions) {
    if (session.ws && !session.closed) session.ws.close(1000, 'bench done');
  }
  const deadline = performance.now() + 3000;
  while (sessions.some((s) => s.ws && !s.ws.closed)) {
    if (performance.now() > deadline) break;
    await sleep(20);
  }
  for (const session of sessions) session.ws?.socket.destroy();
}

const connectStart = performance.now();
const { failures, firstFailure } = await connectAll();
const live = sessions.filter((s) => s.ready && !s.closed);
emit({
  event: 'connected',
  connected: live.length,
  connect_failures: failures,
  first_connect_failure: firstFailure,
  connect_seconds: (performance.now() - connectStart) / 1000,
});

let streamResult = { maxLagMs: 0, elapsed: 0 };
let cpuStreaming = 0;
if (live.length > 0) {
  emit({ event: 'streaming' });
  const cpuStart = cpuSeconds();
  streamResult = await stream(live);
  cpuStreaming = cpuSeconds() - cpuStart;
  streaming = false;
  emit({ event: 'stopped' });
  const graceDeadline = performance.now() + graceSeconds * 1000;
  while (totalReceived < totalSent && performance.now() < graceDeadline) await sleep(10);
}

const sorted = samples.subarray(0, sampleCount).sort();
emit({
  event: 'result',
  sessions: sessionCount,
  connected: live.length,
  connect_failures: failures,
  first_connect_failure: firstFailure,
  stream_seconds: streamResult.elapsed,
  sent: totalSent,
  received: totalReceived,
  expected: live.length * 50 * seconds,
  stalled,
  late_skips: lateSkips,
  reorders,
  unmatched,
  error_events: errorEvents,
  first_error: firstError,
  closed_while_streaming: closedWhileStreaming,
  close_codes: closeCodes,
  samples: sampleCount,
  rtt_ms: {
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    p999: percentile(sorted, 0.999),
    max: sampleCount ? sorted[sampleCount - 1] : null,
  },
  loop_max_lag_ms: streamResult.maxLagMs,
  cpu_seconds_streaming: cpuStreaming,
});
await closeAll();
process.exit(0);
