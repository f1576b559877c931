// Echo upstream for the relay benchmark: the cheapest GA-Realtime-shaped server we can write.
//
// Owns: speaking just enough of the OpenAI Realtime GA protocol for bench/relay_load.py —
// `session.created` on connect, `session.updated` for each `session.update`, and one
// `response.output_audio.delta` (same base64 size as a 20 ms PCM16 24 kHz chunk) for each
// `input_audio_buffer.append`, carrying the append's `event_id` so the load generator can
// match the round trip. Refuses to do anything else: no VAD, no responses, no auth (it is
// loopback only and never sees a real key). GET /healthz answers 200.
//
// Hot path: appends whose JSON starts `{"type":"input_audio_buffer.append","event_id":"`
// (what bench/loadgen.mjs sends, forwarded unchanged by a relay) are answered from the raw
// bytes with one pre-framed write, without JSON.parse; anything else is parsed.
//
// Usage: node bench/echo_upstream.mjs [--host 127.0.0.1] [--port 0]
// Prints exactly one line `echo upstream listening on ws://HOST:PORT/v1/realtime` when ready,
// and exits on SIGTERM/SIGINT or when its stdin closes (the harness holds it).

import { encodeTextParts, listen } from './wsraw.mjs';

const args = process.argv.slice(2);
function option(name, fallback) {
  const index = args.indexOf(name);
  return index >= 0 && index + 1 < args.length ? args[index + 1] : fallback;
}
const host = option('--host', '127.0.0.1');
const port = Number(option('--port', '0'));

// 20 ms of PCM16 at 24 kHz = 480 samples = 960 bytes = 1280 base64 characters.
const DELTA_B64 = Buffer.alloc(960, 7).toString('base64');
const APPEND_PREFIX = Buffer.from('{"type":"input_audio_buffer.append","event_id":"');
const QUOTE = 0x22;
const MAX_EVENT_ID = 200;
const DELTA_HEAD = Buffer.from('{"type":"response.output_audio.delta","event_id":"');
const DELTA_TAIL = Buffer.from(
  '","response_id":"resp_bench","item_id":"item_bench","output_index":0,"content_index":0,' +
    `"delta":"${DELTA_B64}"}`,
);

let eventCounter = 0;
function serverEventId() {
  eventCounter += 1;
  return `event_bench${eventCounter}`;
}

function sessionObject(overrides) {
  return {
    type: 'realtime',
    object: 'realtime.session',
    id: 'sess_bench',
    model: 'bench-echo',
    output_modalities: ['audio'],
    audio: {
      input: { format: { type: 'audio/pcm', rate: 24000 }, turn_detection: null },
      output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'marin' },
    },
    ...overrides,
  };
}

function answerParsed(ws, raw) {
  let event;
  try {
    event = JSON.parse(raw.toString('utf8'));
  } catch {
    ws.sendText(
      JSON.stringify({
        type: 'error',
        event_id: serverEventId(),
        error: { type: 'invalid_request_error', code: 'invalid_json', message: 'bad JSON' },
      }),
    );
    return;
  }
  if (event === null || typeof event !== 'object') return;
  if (event.type === 'session.update') {
    const session = event.session && typeof event.session === 'object' ? event.session : {};
    ws.sendText(
      JSON.stringify({
        type: 'session.updated',
        event_id: serverEventId(),
        session: sessionObject(session),
      }),
    );
  } else if (event.type === 'input_audio_buffer.append') {
    const id = typeof event.event_id === 'string' ? event.event_id.slice(0, MAX_EVENT_ID) : '';
    ws.writeFrame(encodeTextParts([DELTA_HEAD, Buffer.from(id), DELTA_TAIL], false));
  }
  // Every other client event is accepted silently: the bench needs nothing else.
}

function onSession(ws) {
  ws.sendText(
    JSON.stringify({ type: 'session.created', event_id: serverEventId(), session: sessionObject({}) }),
  );
  ws.onText = (raw) => {
    if (
      raw.length > APPEND_PREFIX.length &&
      raw.compare(APPEND_PREFIX, 0, APPEND_PREFIX.length, 0, APPEND_PREFIX.length) === 0
    ) {
      const start = APPEND_PREFIX.length;
      const end = raw.indexOf(QUOTE, start);
      if (end > start && end - start <= MAX_EVENT_ID) {
        ws.writeFrame(encodeTextParts([DELTA_HEAD, raw.subarray(start, end), DELTA_TAIL], false));
        return;
      }
    }
    answerParsed(ws, raw);
  };
}

const server = await listen({ host, port, path: '/v1/realtime', onSession });
const address = server.address();
process.stdout.write(`echo upstream listening on ws://${address.address}:${address.port}/v1/realtime\n`);

function shutdown() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.on('error', shutdown);
process.stdin.resume();
