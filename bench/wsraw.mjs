// Minimal RFC 6455 WebSocket endpoints for the benchmark harness, on bare `net` sockets.
//
// Owns: just enough WebSocket for bench/loadgen.mjs and bench/echo_upstream.mjs to be much
// cheaper per message than the relay they measure — handshake (client and server), frame
// parsing (fragments, masks, 16/64-bit lengths), ping → pong, the close handshake, and
// pre-framed text sends that go to the socket as one buffer. Measured here: the `ws`
// package spends about twice the user CPU per message (its Receiver/Sender streams), and on
// a shared core that alone made the harness, not the relay, the bottleneck.
// Refuses: extensions (no permessage-deflate, never negotiated), binary payload handling
// beyond passing bytes through, TLS. Loopback benchmarking only; never product code.
//
// Client frames use an all-zero masking key, so the payload goes out unmodified (the mask
// bit is still set, as RFC 6455 §5.3 requires of clients). The RFC asks for an unpredictable
// key to protect intermediaries; on loopback there are none, and `ws` allows the same via
// its generateMask option.

import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;
const MAX_MESSAGE_BYTES = 16 << 20;
const MAX_HANDSHAKE_BYTES = 16 << 10;
const CLOSE_WAIT_MS = 2000;
const SHARED_READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

function acceptKey(key) {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/** One frame, FIN set. `mask` = client frame with the all-zero key. */
export function encodeFrame(opcode, payload, mask) {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length <= 0xffff ? 2 : 8;
  const header = 2 + lengthBytes + (mask ? 4 : 0);
  const frame = Buffer.allocUnsafe(header + length);
  frame[0] = 0x80 | opcode;
  const maskBit = mask ? 0x80 : 0;
  if (lengthBytes === 0) {
    frame[1] = maskBit | length;
  } else if (lengthBytes === 2) {
    frame[1] = maskBit | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = maskBit | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  if (mask) frame.writeUInt32BE(0, 2 + lengthBytes);
  payload.copy(frame, header);
  return frame;
}

/**
 * Build a text frame from parts without an intermediate copy: header + parts[0] + ...
 * Parts are Buffers, except strings, which are written as latin1 (ASCII ids).
 */
export function encodeTextParts(parts, mask) {
  let length = 0;
  for (const part of parts) length += part.length;
  const lengthBytes = length < 126 ? 0 : length <= 0xffff ? 2 : 8;
  const header = 2 + lengthBytes + (mask ? 4 : 0);
  const frame = Buffer.allocUnsafe(header + length);
  frame[0] = 0x80 | OP_TEXT;
  const maskBit = mask ? 0x80 : 0;
  if (lengthBytes === 0) {
    frame[1] = maskBit | length;
  } else if (lengthBytes === 2) {
    frame[1] = maskBit | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = maskBit | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  if (mask) frame.writeUInt32BE(0, 2 + lengthBytes);
  let offset = header;
  for (const part of parts) {
    offset += typeof part === 'string' ? frame.write(part, offset, 'latin1') : part.copy(frame, offset);
  }
  return frame;
}

function unmask(payload, key) {
  const k0 = key[0];
  const k1 = key[1];
  const k2 = key[2];
  const k3 = key[3];
  if ((k0 | k1 | k2 | k3) === 0) return;
  const n = payload.length;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    payload[i] ^= k0;
    payload[i + 1] ^= k1;
    payload[i + 2] ^= k2;
    payload[i + 3] ^= k3;
  }
  for (; i < n; i += 1) payload[i] ^= key[i & 3];
}

/**
 * One WebSocket over a net.Socket after the handshake.
 * Callbacks: onText(buffer), onBinary(buffer), onClose(code, reason).
 */
export class RawWebSocket {
  constructor(socket, isClient) {
    this.socket = socket;
    this.isClient = isClient;
    this.pending = null;
    this.fragments = null;
    this.fragmentOpcode = 0;
    this.fragmentBytes = 0;
    this.closeSent = false;
    this.closed = false;
    this.closeCode = 1006;
    this.closeReason = '';
    this.onText = () => {};
    this.onBinary = () => {};
    this.onClose = () => {};
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.receive(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.closed) return;
      this.closed = true;
      this.onClose(this.closeCode, this.closeReason);
    });
  }

  get open() {
    return !this.closed && !this.closeSent;
  }

  /** Bytes written but not yet taken by the kernel. */
  get backlog() {
    return this.socket.writableLength;
  }

  /** Write a frame built with encodeFrame/encodeTextParts (one buffer, one syscall). */
  writeFrame(frame) {
    if (this.open) this.socket.write(frame);
  }

  sendText(text) {
    this.writeFrame(encodeFrame(OP_TEXT, Buffer.from(text, 'utf8'), this.isClient));
  }

  close(code = 1000, reason = '') {
    if (this.closed || this.closeSent) return;
    this.closeSent = true;
    const reasonBytes = Buffer.from(reason, 'utf8').subarray(0, 123);
    const payload = Buffer.allocUnsafe(2 + reasonBytes.length);
    payload.writeUInt16BE(code, 0);
    reasonBytes.copy(payload, 2);
    this.socket.write(encodeFrame(OP_CLOSE, payload, this.isClient));
    // The peer answers with its close frame; give it a bounded time, then drop the socket.
    setTimeout(() => this.socket.destroy(), CLOSE_WAIT_MS).unref();
  }

  fail(code, reason) {
    this.close(code, reason);
    this.socket.destroy();
  }

  receive(chunk) {
    let buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = null;
    let pos = 0;
    while (buf.length - pos >= 2) {
      const b0 = buf[pos];
      const b1 = buf[pos + 1];
      let length = b1 & 0x7f;
      let header = 2;
      if (length === 126) {
        if (buf.length - pos < 4) break;
        length = buf.readUInt16BE(pos + 2);
        header = 4;
      } else if (length === 127) {
        if (buf.length - pos < 10) break;
        const big = buf.readBigUInt64BE(pos + 2);
        if (big > BigInt(MAX_MESSAGE_BYTES)) {
          this.fail(1009, 'frame too big');
          return;
        }
        length = Number(big);
        header = 10;
      }
      const masked = (b1 & 0x80) !== 0;
      const keyAt = pos + header;
      if (masked) header += 4;
      if (buf.length - pos < header + length) break;
      const payload = buf.subarray(pos + header, pos + header + length);
      if (masked) unmask(payload, buf.subarray(keyAt, keyAt + 4));
      pos += header + length;
      if (!this.frame(b0, payload)) return;
    }
    if (pos < buf.length) {
      // Copy: the chunk's memory must not be pinned by a small leftover.
      this.pending = Buffer.from(buf.subarray(pos));
    }
  }

  frame(b0, payload) {
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if (opcode >= 0x8) {
      if (opcode === OP_PING) {
        if (this.open) this.socket.write(encodeFrame(OP_PONG, payload, this.isClient));
      } else if (opcode === OP_CLOSE) {
        this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.closeReason = payload.length > 2 ? payload.toString('utf8', 2) : '';
        if (!this.closeSent) {
          this.closeSent = true;
          const echo = payload.length >= 2 ? payload.subarray(0, 2) : Buffer.alloc(0);
          this.socket.write(encodeFrame(OP_CLOSE, echo, this.isClient));
        }
        this.socket.end();
        return false;
      }
      return true; // pong: nothing to do
    }
    if (opcode === OP_CONTINUATION) {
      if (this.fragments === null) {
        this.fail(1002, 'unexpected continuation');
        return false;
      }
      this.fragments.push(Buffer.from(payload));
      this.fragmentBytes += payload.length;
      if (this.fragmentBytes > MAX_MESSAGE_BYTES) {
        this.fail(1009, 'message too big');
        return false;
      }
      if (!fin) return true;
      const message = Buffer.concat(this.fragments);
      const messageOpcode = this.fragmentOpcode;
      this.fragments = null;
      this.deliver(messageOpcode, message);
      return true;
    }
    if (!fin) {
      this.fragments = [Buffer.from(payload)];
      this.fragmentOpcode = opcode;
      this.fragmentBytes = payload.length;
      return true;
    }
    this.deliver(opcode, payload);
    return true;
  }

  deliver(opcode, message) {
    if (opcode === OP_TEXT) this.onText(message);
    else if (opcode === OP_BINARY) this.onBinary(message);
  }
}

/**
 * Open a client WebSocket. Resolves to a RawWebSocket; rejects with an Error whose
 * `status` is the HTTP status when the server refused the upgrade.
 */
export function connect(url, { headers = {}, timeoutMs = 10000 } = {}) {
  const target = new URL(url);
  if (target.protocol !== 'ws:') throw new Error('only ws:// is supported');
  const key = randomBytes(16).toString('base64');
  const lines = [
    `GET ${target.pathname}${target.search} HTTP/1.1`,
    `Host: ${target.host}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${key}`,
    'Sec-WebSocket-Version: 13',
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  const request = `${lines.join('\r\n')}\r\n\r\n`;
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    let done = false;
    let ws = null;
    // Reads bypass the stream machinery (net's `onread`, into one buffer shared by every
    // client socket: each chunk is consumed synchronously, leftovers are copied).
    const socket = net.connect({
      host: target.hostname,
      port: Number(target.port || 80),
      onread: {
        buffer: SHARED_READ_BUFFER,
        callback: (nread, buffer) => {
          const chunk = buffer.subarray(0, nread);
          if (ws !== null) ws.receive(chunk);
          else onHandshakeData(chunk);
        },
      },
    });
    const finish = (error, opened) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (error) {
        socket.destroy();
        reject(error);
      } else {
        resolve(opened);
      }
    };
    const timer = setTimeout(() => finish(new Error('handshake timeout')), timeoutMs);
    const onHandshakeData = (chunk) => {
      if (done) return;
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_HANDSHAKE_BYTES) finish(new Error('handshake response too long'));
        return;
      }
      const text = head.toString('latin1', 0, end);
      const [statusLine, ...headerLines] = text.split('\r\n');
      const status = Number(statusLine.split(' ')[1]);
      if (status !== 101) {
        const error = new Error(`HTTP ${status}`);
        error.status = status;
        finish(error);
        return;
      }
      const accept = headerLines
        .map((line) => line.split(/:\s*/, 2))
        .find(([name]) => name.toLowerCase() === 'sec-websocket-accept');
      if (!accept || accept[1].trim() !== acceptKey(key)) {
        finish(new Error('bad Sec-WebSocket-Accept'));
        return;
      }
      const rest = Buffer.from(head.subarray(end + 4));
      ws = new RawWebSocket(socket, true);
      finish(null, ws);
      // After the caller's `.then` has attached its callbacks (queued before this), and
      // before any later socket data (I/O runs only after the microtask queue drains).
      if (rest.length) queueMicrotask(() => ws.receive(rest));
    };
    socket.on('error', (error) => finish(error));
    socket.on('close', () => finish(new Error('closed during handshake')));
    socket.on('connect', () => socket.write(request));
  });
}

/**
 * Serve WebSocket upgrades on `path` (anything else: 404; GET /healthz: 200).
 * `onSession(ws, request)` is called with each RawWebSocket. Resolves to the http.Server.
 */
export function listen({ host, port, path, onSession }) {
  const server = http.createServer((req, res) => {
    const status = req.url === '/healthz' ? 200 : 404;
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(status === 200 ? 'ok\n' : 'not found\n');
  });
  server.on('upgrade', (req, socket, head) => {
    const key = req.headers['sec-websocket-key'];
    const pathname = new URL(req.url, 'http://bench').pathname;
    if (!key || pathname !== path || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`,
    );
    const ws = new RawWebSocket(socket, false);
    onSession(ws, req);
    if (head.length) ws.receive(Buffer.from(head));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
