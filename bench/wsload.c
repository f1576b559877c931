/* wsload: the relay benchmark's load generator and echo upstream in one C11 file.
 *
 * Owns: the two harness processes of bench/relay_load.py, written in C so that one core can
 * offer about three times the sessions the Node harness it replaced did (bench/README.md,
 * "C harness"); it speaks the same frames and prints the same lines. libc + Linux only (epoll, timerfd,
 * signalfd, nonblocking sockets, CLOCK_MONOTONIC); one epoll loop per process; no threads.
 * Loopback benchmarking only; never product code. Built at run time by relay_load.py:
 *     cc -O2 -std=c11 -Wall -Wextra -Werror -o WORKDIR/wsload bench/wsload.c
 *
 * wsload echo [--host 127.0.0.1] [--port 0]
 *   On each WebSocket at /v1/realtime, `session.created`;
 *   `session.updated` per `session.update` (default session object with the client's
 *   `session` members spread over it); one `response.output_audio.delta` (1,280 base64
 *   characters) per `input_audio_buffer.append`, carrying the append's `event_id` (its first
 *   200 characters, JSON-escaped again); a JSON `error` event (code invalid_json) for a text
 *   frame that is not JSON; ping -> pong; the close handshake. GET /healthz answers 200
 *   "ok\n", any other plain request 404, a bad upgrade 400. Prints exactly one line
 *   `echo upstream listening on ws://HOST:PORT/v1/realtime` and exits on SIGTERM/SIGINT or
 *   when stdin reaches EOF. Accepts masked frames with any key (and unmasked ones)
 *   up to 1 MiB; a larger frame is refused with close 1009, a fragmented message with 1003
 *   (nothing in the bench fragments).
 *   Deliberate limits: plain HTTP answers close the connection
 *   (no keep-alive); a request head must arrive within 10 s and 16 KiB (else 408/431);
 *   JSON copied from the client into session.updated keeps the client's spelling of
 *   strings and numbers (whitespace removed), never re-spelled;
 *   a connection whose unsent output passes 8 MiB is dropped.
 *
 * wsload loadgen
 *   Paced sessions, reported as JSON lines on stdout:
 *   {"event":"connected",...} {"event":"streaming"} {"event":"stopped"} {"event":"result",...}
 *   Input on stdin is NOT JSON (relay_load.py writes it): one `key value` per line,
 *       url ws://127.0.0.1:8080/v1/realtime
 *       sessions 600
 *       seconds 8
 *       warmup_seconds 1
 *       grace_seconds 2
 *       connect_timeout_seconds 10
 *       connect_concurrency 32
 *       slot_ms 2
 *       token <relay token>        (none, or one per session, in session order)
 *   Each session sends `Authorization: Bearer <token>` when tokens are given, checks the
 *   101 and Sec-WebSocket-Accept (SHA-1 below), waits for session.created, then sends one
 *   masked (all-zero key: cheap, and any key is valid) input_audio_buffer.append every 20 ms in its slot.
 *
 * Event loop rules kept here: every fd is nonblocking; sockets are registered once,
 * edge-triggered, for EPOLLIN | EPOLLOUT (a level-triggered socket is polled again on the
 * next epoll_wait, which cost a few per cent at 600 sessions). A socket is read until a
 * read comes back short or EAGAIN: a short read means its queue was empty at that instant,
 * and the kernel queues a new edge for every later arrival, so one more read to see EAGAIN
 * would only cost a syscall per wake-up. Every frame is one send() (write() semantics
 * without the VFS layer); what the kernel does not take waits in a bounded per-socket
 * backlog flushed on EPOLLOUT (loadgen: sends skip above 256 KiB as `stalled`, the socket
 * is dropped above 512 KiB; echo: dropped above 8 MiB). Every wait has a deadline; the
 * send schedule is a timerfd on absolute slot times, so there is no busy loop and no drift.
 * Harness sockets use Reno (cheaper per ACK than this VM's default BBR) and a fixed
 * receive buffer; neither changes a byte on the wire.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME_BYTES (1u << 20)       /* largest frame payload either mode accepts */
#define MAX_HEAD_BYTES (16u << 10)       /* HTTP request/response head */
#define READ_CHUNK 16384u                /* initial per-socket read buffer */
#define ECHO_MAX_BACKLOG (8u << 20)      /* echo: unsent bytes before a socket is dropped */
#define LOADGEN_STALL_BACKLOG (256u << 10) /* loadgen: skip the append above this */
#define LOADGEN_MAX_BACKLOG (512u << 10) /* loadgen: hard bound (control frames on top) */
#define HEAD_TIMEOUT_US 10000000LL
#define CLOSE_WAIT_US 2000000LL          /* how long a close handshake may take */
#define PERIOD_MS 20
#define MAX_EVENT_ID 200
#define MAX_SAMPLES 4000000u
#define MAX_EVENTS 1024
#define RCVBUF_BYTES (512 << 10)  /* fixed: no receive-buffer autotuning work per read */

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ---------------------------------------------------------------- small utilities */

static int64_t g_t_origin_ns;

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Microseconds since the process started, like Math.round(performance.now() * 1000). */
static int64_t now_us(void) { return (mono_ns() - g_t_origin_ns + 500) / 1000; }

static void die(const char *what) {
    fprintf(stderr, "wsload: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "wsload: out of memory\n");
        exit(2);
    }
    return q;
}

/* A growable byte string for building events and output lines. */
typedef struct {
    char *p;
    size_t len, cap;
} Str;

static void str_reserve(Str *s, size_t extra) {
    if (s->len + extra + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + extra + 1) cap *= 2;
        s->p = xrealloc(s->p, cap);
        s->cap = cap;
    }
}

static void str_add(Str *s, const void *data, size_t n) {
    str_reserve(s, n);
    memcpy(s->p + s->len, data, n);
    s->len += n;
    s->p[s->len] = 0;
}

static void str_cat(Str *s, const char *text) { str_add(s, text, strlen(text)); }

static void str_printf(Str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void str_printf(Str *s, const char *fmt, ...) {
    str_reserve(s, 128);
    size_t room = s->cap - s->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->p + s->len, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        s->p[s->len] = 0;
        return;
    }
    if ((size_t)n >= room) { /* did not fit: grow, format again */
        str_reserve(s, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    s->len += (size_t)n;
}

/* A JSON string literal for our own ASCII-ish messages. */
static void str_json_string(Str *s, const char *text, size_t n) {
    str_add(s, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            str_add(s, esc, 2);
        } else if (ch < 0x20) {
            str_printf(s, "\\u%04x", ch);
        } else {
            str_add(s, &text[i], 1);
        }
    }
    str_add(s, "\"", 1);
}

/* One line on stdout, written whole (the harness reads JSON lines). */
static void emit_line(Str *s) {
    str_add(s, "\n", 1);
    size_t off = 0;
    while (off < s->len) {
        ssize_t n = write(STDOUT_FILENO, s->p + off, s->len - off);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            exit(3);
        }
        off += (size_t)n;
    }
    s->len = 0;
}

/* ---------------------------------------------------------------- SHA-1 and base64 */

static uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
    for (int t = 16; t < 80; t++) w[t] = rol32(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int t = 0; t < 80; t++) {
        uint32_t f, k;
        if (t < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (t < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (t < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t temp = rol32(a, 5) + f + e + k + w[t];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = temp;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

/* FIPS 180-4 SHA-1 (the only use is RFC 6455 §4.2.2's Sec-WebSocket-Accept). */
static void sha1(const uint8_t *data, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t i = 0;
    for (; i + 64 <= len; i += 64) sha1_block(h, data + i);
    uint8_t block[64];
    size_t rem = len - i;
    memset(block, 0, sizeof block);
    memcpy(block, data + i, rem);
    block[rem] = 0x80;
    if (rem >= 56) {
        sha1_block(h, block);
        memset(block, 0, sizeof block);
    }
    uint64_t bits = (uint64_t)len * 8;
    for (int k = 0; k < 8; k++) block[63 - k] = (uint8_t)(bits >> (8 * k));
    sha1_block(h, block);
    for (int k = 0; k < 5; k++) {
        out[4 * k] = (uint8_t)(h[k] >> 24);
        out[4 * k + 1] = (uint8_t)(h[k] >> 16);
        out[4 * k + 2] = (uint8_t)(h[k] >> 8);
        out[4 * k + 3] = (uint8_t)h[k];
    }
}

static size_t base64_encode(const uint8_t *in, size_t n, char *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = 0;
    return o;
}

/* base64(SHA-1(key + GUID)) into out[29]. */
static void accept_key(const char *key, size_t key_len, char out[29]) {
    uint8_t buf[256 + sizeof GUID];
    if (key_len > 256) key_len = 256;
    memcpy(buf, key, key_len);
    memcpy(buf + key_len, GUID, sizeof GUID - 1);
    uint8_t digest[20];
    sha1(buf, key_len + sizeof GUID - 1, digest);
    base64_encode(digest, 20, out);
}

/* ---------------------------------------------------------------- JSON (validate, walk) */
/* Enough of RFC 8259 to answer what JSON.parse would: is this text JSON, and what are the
 * members of the top-level object. Iterative (one byte of stack per nesting level, sized
 * by the frame), so no input can overflow the C stack. */

static uint8_t *g_json_stack;
static size_t g_json_stack_cap;

static const uint8_t *json_ws(const uint8_t *p, const uint8_t *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static int hexval(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* p at the opening quote; returns the byte after the closing quote, or NULL. */
static const uint8_t *json_string_end(const uint8_t *p, const uint8_t *e) {
    if (p >= e || *p != '"') return NULL;
    p++;
    while (p < e) {
        uint8_t c = *p;
        if (c == '"') return p + 1;
        if (c < 0x20) return NULL;
        if (c == '\\') {
            if (p + 1 >= e) return NULL;
            uint8_t x = p[1];
            if (x == 'u') {
                if (p + 6 > e) return NULL;
                for (int k = 2; k < 6; k++)
                    if (hexval(p[k]) < 0) return NULL;
                p += 6;
            } else if (x == '"' || x == '\\' || x == '/' || x == 'b' || x == 'f' || x == 'n' ||
                       x == 'r' || x == 't') {
                p += 2;
            } else {
                return NULL;
            }
        } else {
            p++;
        }
    }
    return NULL;
}

static const uint8_t *json_number_end(const uint8_t *p, const uint8_t *e) {
    if (p < e && *p == '-') p++;
    if (p >= e) return NULL;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < e && *p >= '0' && *p <= '9') p++;
    } else {
        return NULL;
    }
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9') return NULL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return NULL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    return p;
}

/* p at a value (no leading whitespace); returns the byte after it, or NULL if invalid. */
static const uint8_t *json_value_end(const uint8_t *p, const uint8_t *e) {
    size_t need = (size_t)(e - p) + 1;
    if (need > g_json_stack_cap) {
        g_json_stack = xrealloc(g_json_stack, need);
        g_json_stack_cap = need;
    }
    size_t depth = 0;
    for (;;) {
        /* a value */
        p = json_ws(p, e);
        if (p >= e) return NULL;
        uint8_t c = *p;
        if (c == '{') {
            p = json_ws(p + 1, e);
            if (p < e && *p == '}') {
                p++;
            } else {
                g_json_stack[depth++] = '{';
                p = json_string_end(p, e);
                if (!p) return NULL;
                p = json_ws(p, e);
                if (p >= e || *p != ':') return NULL;
                p++;
                continue;
            }
        } else if (c == '[') {
            p = json_ws(p + 1, e);
            if (p < e && *p == ']') {
                p++;
            } else {
                g_json_stack[depth++] = '[';
                continue;
            }
        } else if (c == '"') {
            p = json_string_end(p, e);
        } else if (c == 't') {
            p = (e - p >= 4 && memcmp(p, "true", 4) == 0) ? p + 4 : NULL;
        } else if (c == 'f') {
            p = (e - p >= 5 && memcmp(p, "false", 5) == 0) ? p + 5 : NULL;
        } else if (c == 'n') {
            p = (e - p >= 4 && memcmp(p, "null", 4) == 0) ? p + 4 : NULL;
        } else {
            p = json_number_end(p, e);
        }
        if (!p) return NULL;
        /* after a value: close containers or move to the next element */
        for (;;) {
            if (depth == 0) return p;
            p = json_ws(p, e);
            if (p >= e) return NULL;
            uint8_t top = g_json_stack[depth - 1];
            if (*p == ',') {
                p = json_ws(p + 1, e);
                if (top == '{') {
                    p = json_string_end(p, e);
                    if (!p) return NULL;
                    p = json_ws(p, e);
                    if (p >= e || *p != ':') return NULL;
                    p++;
                }
                break; /* parse the next value */
            }
            if ((top == '{' && *p == '}') || (top == '[' && *p == ']')) {
                depth--;
                p++;
                continue;
            }
            return NULL;
        }
    }
}

/* The whole text is one JSON value (what JSON.parse accepts). */
static bool json_valid(const uint8_t *p, const uint8_t *e) {
    p = json_ws(p, e);
    const uint8_t *end = json_value_end(p, e);
    return end && json_ws(end, e) == e;
}

typedef struct {
    const uint8_t *key, *key_end; /* the key literal, quotes included */
    const uint8_t *val, *val_end; /* the value's bytes */
} Member;

/* Members of a valid object (p at '{'), into a malloc'ed array; returns the count. */
static size_t json_members(const uint8_t *p, const uint8_t *e, Member **out) {
    size_t n = 0, cap = 0;
    Member *m = NULL;
    p = json_ws(p + 1, e);
    if (p < e && *p == '}') {
        *out = NULL;
        return 0;
    }
    for (;;) {
        p = json_ws(p, e);
        Member item;
        item.key = p;
        item.key_end = json_string_end(p, e);
        p = json_ws(item.key_end, e) + 1; /* ':' */
        p = json_ws(p, e);
        item.val = p;
        item.val_end = json_value_end(p, e);
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            m = xrealloc(m, cap * sizeof *m);
        }
        m[n++] = item;
        p = json_ws(item.val_end, e);
        if (*p == '}') break;
        p++; /* ',' */
    }
    *out = m;
    return n;
}

static void put_utf8(Str *s, uint32_t cp) {
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 63));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 63));
        b[2] = (char)(0x80 | (cp & 63));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 63));
        b[2] = (char)(0x80 | ((cp >> 6) & 63));
        b[3] = (char)(0x80 | (cp & 63));
        n = 4;
    }
    str_add(s, b, n);
}

/* Next code point of UTF-8 text, decoded as Buffer.toString('utf8') does (a bad sequence
 * is one U+FFFD per maximal invalid prefix, approximated here as per byte). */
static uint32_t utf8_next(const uint8_t **pp, const uint8_t *e) {
    const uint8_t *p = *pp;
    uint8_t c = *p;
    uint32_t cp;
    size_t n;
    if (c < 0x80) {
        *pp = p + 1;
        return c;
    } else if (c >= 0xC2 && c < 0xE0) {
        cp = c & 0x1F;
        n = 1;
    } else if (c >= 0xE0 && c < 0xF0) {
        cp = c & 0x0F;
        n = 2;
    } else if (c >= 0xF0 && c < 0xF5) {
        cp = c & 0x07;
        n = 3;
    } else {
        *pp = p + 1;
        return 0xFFFD;
    }
    if ((size_t)(e - p) < n + 1) {
        *pp = p + 1;
        return 0xFFFD;
    }
    for (size_t k = 1; k <= n; k++) {
        if ((p[k] & 0xC0) != 0x80) {
            *pp = p + 1;
            return 0xFFFD;
        }
        cp = cp << 6 | (p[k] & 0x3F);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10FFFF))) {
        *pp = p + 1;
        return 0xFFFD;
    }
    *pp = p + n + 1;
    return cp;
}

/* Decode a valid string literal (quotes included) to UTF-8, keeping at most max_units
 * UTF-16 code units (String.prototype.slice(0, max_units)); a lone surrogate becomes
 * U+FFFD, as Buffer.from(string) writes it. */
static void json_decode_string(const uint8_t *p, const uint8_t *e, size_t max_units, Str *out) {
    p++;
    e--; /* inside the quotes */
    size_t units = 0;
    while (p < e && units < max_units) {
        uint32_t cp;
        if (*p == '\\') {
            uint8_t x = p[1];
            if (x == 'u') {
                cp = (uint32_t)(hexval(p[2]) << 12 | hexval(p[3]) << 8 | hexval(p[4]) << 4 |
                                hexval(p[5]));
                p += 6;
                if (cp >= 0xD800 && cp < 0xDC00 && e - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                    uint32_t lo = (uint32_t)(hexval(p[2]) << 12 | hexval(p[3]) << 8 |
                                             hexval(p[4]) << 4 | hexval(p[5]));
                    if (lo >= 0xDC00 && lo < 0xE000) {
                        if (units + 2 > max_units) { /* slice cuts the pair: lone high half */
                            put_utf8(out, 0xFFFD);
                            return;
                        }
                        p += 6;
                        put_utf8(out, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
                        units += 2;
                        continue;
                    }
                }
                if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;
            } else {
                cp = x == 'b' ? 8 : x == 'f' ? 12 : x == 'n' ? 10 : x == 'r' ? 13 : x == 't' ? 9 : x;
                p += 2;
            }
        } else {
            cp = utf8_next(&p, e);
        }
        if (cp >= 0x10000) {
            if (units + 2 > max_units) {
                put_utf8(out, 0xFFFD);
                return;
            }
            units += 2;
        } else {
            units += 1;
        }
        put_utf8(out, cp);
    }
}

/* Is the string literal [p, e) equal to text once decoded? */
static bool json_string_is(const uint8_t *p, const uint8_t *e, const char *text) {
    size_t n = strlen(text);
    if ((size_t)(e - p) == n + 2 && memcmp(p + 1, text, n) == 0) return true;
    if (memchr(p, '\\', (size_t)(e - p)) == NULL) return false;
    Str s = {0};
    json_decode_string(p, e, SIZE_MAX, &s);
    bool same = s.len == n && memcmp(s.p, text, n) == 0;
    free(s.p);
    return same;
}

/* The value's text without whitespace outside strings (JSON.stringify's layout). */
static void json_compact(Str *out, const uint8_t *p, const uint8_t *e) {
    while (p < e) {
        if (*p == '"') {
            const uint8_t *end = json_string_end(p, e);
            str_add(out, p, (size_t)(end - p));
            p = end;
        } else {
            if (!(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) str_add(out, p, 1);
            p++;
        }
    }
}

/* The last member named `name` of an object (JSON.parse keeps the last duplicate). */
static const Member *member_named(const Member *m, size_t n, const char *name) {
    for (size_t i = n; i-- > 0;)
        if (json_string_is(m[i].key, m[i].key_end, name)) return &m[i];
    return NULL;
}

/* ---------------------------------------------------------------- connections and frames */

enum { H_CONN, H_LISTEN, H_STDIN, H_SIGNAL, H_TIMER };
enum { P_CONNECTING, P_HEAD, P_WS, P_CLOSED };
enum { OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

typedef struct {
    int kind;
} Handle;

typedef struct Conn {
    Handle h;
    int fd;
    int phase;
    bool is_client;
    bool close_sent;     /* our close frame is out */
    bool end_after_flush; /* shutdown(SHUT_WR) once the backlog drains (socket.end()) */
    bool close_after_flush;
    uint16_t close_code; /* from the peer's close frame; 1006 until one arrives */
    uint8_t *rbuf;
    size_t rlen, rcap;
    uint8_t *wbuf;
    size_t woff, wlen, wcap;
    int64_t deadline_us; /* head or closing deadline; 0 = none */
    /* loadgen only */
    int index;
    bool upgraded, ready, closed, settled;
    int64_t last_seq, seq, start_us;
    char key[32];
    char *error;
} Conn;

static int g_epoll;
static bool g_is_echo;
static size_t g_max_backlog;

static void conn_closed(Conn *c); /* mode hook: the socket is gone */
static void on_message(Conn *c, int opcode, uint8_t *payload, size_t len);
static void on_head(Conn *c);

/* Drop the socket now (socket.destroy()). */
static void conn_destroy(Conn *c) {
    if (c->fd < 0) return;
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->phase = P_CLOSED;
    free(c->rbuf);
    free(c->wbuf);
    c->rbuf = c->wbuf = NULL;
    c->rlen = c->rcap = c->woff = c->wlen = c->wcap = 0;
    conn_closed(c);
}

static size_t conn_backlog(const Conn *c) { return c->wlen - c->woff; }

static void conn_after_drain(Conn *c) {
    if (c->close_after_flush) {
        conn_destroy(c);
    } else if (c->end_after_flush) {
        c->end_after_flush = false;
        shutdown(c->fd, SHUT_WR);
    }
}

static void conn_flush(Conn *c) {
    while (c->fd >= 0 && conn_backlog(c) > 0) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, conn_backlog(c), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            conn_destroy(c);
            return;
        }
        c->woff += (size_t)n;
    }
    if (c->fd >= 0) {
        c->woff = c->wlen = 0;
        conn_after_drain(c);
    }
}

/* Queue bytes behind a backlog; past the bound the peer is not reading: drop it. */
static void conn_queue(Conn *c, const uint8_t *data, size_t len) {
    if (conn_backlog(c) + len > g_max_backlog) {
        conn_destroy(c);
        return;
    }
    if (c->woff > 0) {
        memmove(c->wbuf, c->wbuf + c->woff, conn_backlog(c));
        c->wlen -= c->woff;
        c->woff = 0;
    }
    if (c->wlen + len > c->wcap) {
        size_t cap = c->wcap ? c->wcap : 16384;
        while (cap < c->wlen + len) cap *= 2;
        c->wbuf = xrealloc(c->wbuf, cap);
        c->wcap = cap;
    }
    memcpy(c->wbuf + c->wlen, data, len);
    c->wlen += len; /* EPOLLOUT (edge-triggered, always registered) flushes it */
}

/* One send() (a write() that skips the VFS layer: measurably cheaper here) for the whole
 * buffer; what the kernel does not take waits for EPOLLOUT. */
static void conn_write(Conn *c, const uint8_t *data, size_t len) {
    if (c->fd < 0) return;
    if (conn_backlog(c) > 0) {
        conn_queue(c, data, len);
        return;
    }
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n == (ssize_t)len) return;
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            conn_destroy(c);
            return;
        }
        n = 0;
    }
    conn_queue(c, data + n, len - (size_t)n);
}

/* Frame header (FIN set) into h; a client frame gets the mask bit and an all-zero key. */
static size_t frame_header(uint8_t *h, int opcode, size_t len, bool mask) {
    size_t n;
    h[0] = (uint8_t)(0x80 | opcode);
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        h[1] = (uint8_t)(m | len);
        n = 2;
    } else if (len <= 0xFFFF) {
        h[1] = m | 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = m | 127;
        for (int k = 0; k < 8; k++) h[2 + k] = (uint8_t)((uint64_t)len >> (56 - 8 * k));
        n = 10;
    }
    if (mask) {
        memset(h + n, 0, 4);
        n += 4;
    }
    return n;
}

static uint8_t *g_frame;
static size_t g_frame_cap;

/* Send one frame built from parts (header + parts in one buffer, one write). */
static void send_parts(Conn *c, int opcode, const void *const *parts, const size_t *lens,
                       size_t count) {
    if (c->fd < 0 || c->close_sent) return;
    size_t len = 0;
    for (size_t i = 0; i < count; i++) len += lens[i];
    if (len + 14 > g_frame_cap) {
        g_frame_cap = len + 14;
        g_frame = xrealloc(g_frame, g_frame_cap);
    }
    size_t off = frame_header(g_frame, opcode, len, c->is_client);
    for (size_t i = 0; i < count; i++) {
        memcpy(g_frame + off, parts[i], lens[i]);
        off += lens[i];
    }
    conn_write(c, g_frame, off);
}

static void send_frame(Conn *c, int opcode, const void *payload, size_t len) {
    const void *parts[1] = {payload};
    size_t lens[1] = {len};
    send_parts(c, opcode, parts, lens, 1);
}

/* Start the close handshake: our close frame, then a bounded wait. */
static void conn_close(Conn *c, uint16_t code, const char *reason) {
    if (c->fd < 0 || c->close_sent) return;
    uint8_t payload[125];
    size_t rlen = strlen(reason);
    if (rlen > 123) rlen = 123;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    memcpy(payload + 2, reason, rlen);
    send_frame(c, OP_CLOSE, payload, 2 + rlen);
    c->close_sent = true;
    c->deadline_us = now_us() + CLOSE_WAIT_US;
}

/* Fail a connection: close frame with a code, then drop the socket. */
static void conn_fail(Conn *c, uint16_t code, const char *reason) {
    conn_close(c, code, reason);
    conn_destroy(c);
}

static void unmask(uint8_t *p, size_t n, const uint8_t key[4]) {
    uint32_t k;
    memcpy(&k, key, 4);
    if (k == 0) return;
    uint64_t k8 = (uint64_t)k << 32 | k;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= k8;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) p[i] ^= key[i & 3];
}

/* Handle one frame; false when the connection is done with. */
static bool on_frame(Conn *c, uint8_t b0, uint8_t *payload, size_t len) {
    int opcode = b0 & 0x0F;
    bool fin = (b0 & 0x80) != 0;
    if (opcode >= 8) {
        if (opcode == OP_PING) {
            send_frame(c, OP_PONG, payload, len);
        } else if (opcode == OP_CLOSE) {
            c->close_code = len >= 2 ? (uint16_t)(payload[0] << 8 | payload[1]) : 1005;
            if (!c->close_sent) {
                send_frame(c, OP_CLOSE, payload, len >= 2 ? 2 : 0);
                c->close_sent = true;
            }
            c->deadline_us = now_us() + CLOSE_WAIT_US;
            /* socket.end(): FIN once our close frame is out; the peer then closes */
            if (c->fd >= 0) {
                if (conn_backlog(c) > 0)
                    c->end_after_flush = true;
                else
                    shutdown(c->fd, SHUT_WR);
            }
            return false;
        }
        return true; /* pong */
    }
    if (!fin || opcode == OP_CONT) {
        /* RFC 6455 §5.4 fragments: nothing in the bench sends them; refuse, never guess */
        conn_fail(c, 1003, "fragmented messages not supported");
        return false;
    }
    if (opcode == OP_TEXT || opcode == OP_BINARY) on_message(c, opcode, payload, len);
    return c->fd >= 0;
}

/* Parse every complete frame in the read buffer; keep the rest. */
static void parse_frames(Conn *c) {
    size_t pos = 0;
    while (c->fd >= 0 && c->phase == P_WS && c->rlen - pos >= 2) {
        uint8_t *b = c->rbuf + pos;
        size_t avail = c->rlen - pos;
        uint64_t len = b[1] & 0x7F;
        size_t head = 2;
        if (len == 126) {
            if (avail < 4) break;
            len = (uint64_t)b[2] << 8 | b[3];
            head = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int k = 0; k < 8; k++) len = len << 8 | b[2 + k];
            head = 10;
        }
        if (len > MAX_FRAME_BYTES) {
            conn_fail(c, 1009, "frame too big");
            return;
        }
        bool masked = (b[1] & 0x80) != 0;
        size_t key_at = head;
        if (masked) head += 4;
        if (avail < head + len) {
            if (head + len > c->rcap) { /* make room for this frame (bounded above) */
                if (pos > 0) {
                    memmove(c->rbuf, c->rbuf + pos, avail);
                    c->rlen = avail;
                    pos = 0;
                }
                c->rcap = head + (size_t)len;
                c->rbuf = xrealloc(c->rbuf, c->rcap);
            }
            break;
        }
        uint8_t *payload = b + head;
        if (masked) unmask(payload, (size_t)len, b + key_at);
        pos += head + (size_t)len;
        if (c->close_sent && (b[0] & 0x0F) != OP_CLOSE) continue; /* closing: drain */
        if (!on_frame(c, b[0], payload, (size_t)len)) {
            if (c->fd >= 0) c->phase = P_CLOSED;
            break;
        }
    }
    if (c->fd < 0) return;
    if (c->phase == P_CLOSED) {
        c->rlen = 0;
        return;
    }
    if (pos > 0) {
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= pos;
    }
    if (c->rlen == 0 && c->rcap > 4 * READ_CHUNK) { /* give back a big frame's buffer */
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
}

static void conn_readable(Conn *c) {
    for (;;) {
        if (c->fd < 0) return;
        if (c->rcap == 0) {
            c->rcap = READ_CHUNK;
            c->rbuf = xrealloc(c->rbuf, c->rcap);
        }
        if (c->rlen == c->rcap) {
            /* a head or frame prefix fills the buffer: parsing decides how much more */
            if (c->phase != P_WS || c->rcap >= MAX_FRAME_BYTES + 14) {
                conn_destroy(c);
                return;
            }
            c->rcap *= 2;
            c->rbuf = xrealloc(c->rbuf, c->rcap);
        }
        size_t room = c->rcap - c->rlen;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, room, 0);
        if (n == 0) {
            conn_destroy(c);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            conn_destroy(c);
            return;
        }
        if (c->phase == P_CLOSED) { /* after the close frame: discard until EOF */
            c->rlen = 0;
        } else {
            c->rlen += (size_t)n;
            if (c->phase == P_HEAD) on_head(c);
            if (c->fd >= 0 && c->phase == P_WS) parse_frames(c);
        }
        if ((size_t)n < room) return; /* queue drained; level-triggered epoll re-reports */
    }
}

static void conn_event(Conn *c, uint32_t events);

static Conn *conn_new(int fd, bool is_client) {
    Conn *c = calloc(1, sizeof *c);
    if (!c) die("calloc");
    c->h.kind = H_CONN;
    c->fd = fd;
    c->is_client = is_client;
    c->close_code = 1006;
    return c;
}

static void epoll_add(int fd, uint32_t events, void *ptr) {
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(g_epoll, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
}

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Per-socket TCP settings that make the harness cheaper per message, never the wire
 * different: Reno instead of the system default (BBR here) does less work per ACK, and
 * loopback has no congestion to model. Best effort: a kernel without Reno keeps its own. */
static void tune_socket(int fd) {
    static const char reno[] = "reno";
    setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, reno, sizeof reno - 1);
    int rcvbuf = RCVBUF_BYTES;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
}

/* Find "\r\n\r\n" in the head buffer; returns its offset or -1. */
static long head_end(const Conn *c) {
    if (c->rlen < 4) return -1;
    const uint8_t *p = c->rbuf;
    for (size_t i = 0; i + 3 < c->rlen; i++)
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n')
            return (long)i;
    return -1;
}

/* Value of header `name` (case-insensitive) in the head text, trimmed; NULL if absent. */
static const char *header_value(const char *head, size_t head_len, const char *name,
                                size_t *vlen) {
    size_t nlen = strlen(name);
    const char *p = memchr(head, '\n', head_len);
    const char *e = head + head_len;
    while (p && p < e) {
        p++;
        const char *eol = memchr(p, '\n', (size_t)(e - p));
        if (!eol) eol = e;
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            const char *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

/* Does a comma list header value contain `token` (case-insensitive)? */
static bool has_token(const char *v, size_t vlen, const char *token) {
    size_t tlen = strlen(token);
    const char *e = v + vlen;
    while (v < e) {
        while (v < e && (*v == ' ' || *v == ',')) v++;
        const char *s = v;
        while (v < e && *v != ',') v++;
        const char *te = v;
        while (te > s && te[-1] == ' ') te--;
        if ((size_t)(te - s) == tlen && strncasecmp(s, token, tlen) == 0) return true;
    }
    return false;
}

/* ================================================================ echo mode */

static const char APPEND_PREFIX[] = "{\"type\":\"input_audio_buffer.append\",\"event_id\":\"";
static const char ECHO_DELTA_HEAD[] = "{\"type\":\"response.output_audio.delta\",\"event_id\":\"";
static char g_echo_delta_tail[1600];
static size_t g_echo_delta_tail_len;
static uint64_t g_event_counter;

static const char *const SESSION_DEFAULTS[][2] = {
    {"type", "\"realtime\""},
    {"object", "\"realtime.session\""},
    {"id", "\"sess_bench\""},
    {"model", "\"bench-echo\""},
    {"output_modalities", "[\"audio\"]"},
    {"audio",
     "{\"input\":{\"format\":{\"type\":\"audio/pcm\",\"rate\":24000},\"turn_detection\":null},"
     "\"output\":{\"format\":{\"type\":\"audio/pcm\",\"rate\":24000},\"voice\":\"marin\"}}"},
};
#define N_DEFAULTS (sizeof SESSION_DEFAULTS / sizeof SESSION_DEFAULTS[0])

static void echo_init(void) {
    uint8_t pcm[960];
    memset(pcm, 7, sizeof pcm);
    char b64[1300];
    base64_encode(pcm, sizeof pcm, b64);
    g_echo_delta_tail_len = (size_t)snprintf(
        g_echo_delta_tail, sizeof g_echo_delta_tail,
        "\",\"response_id\":\"resp_bench\",\"item_id\":\"item_bench\",\"output_index\":0,"
        "\"content_index\":0,\"delta\":\"%s\"}",
        b64);
}

static void echo_text(Conn *c, const char *text, size_t len) {
    send_frame(c, OP_TEXT, text, len);
}

static void echo_delta(Conn *c, const void *id, size_t id_len) {
    const void *parts[3] = {ECHO_DELTA_HEAD, id, g_echo_delta_tail};
    size_t lens[3] = {sizeof ECHO_DELTA_HEAD - 1, id_len, g_echo_delta_tail_len};
    send_parts(c, OP_TEXT, parts, lens, 3);
}

/* An object key as JSON.stringify writes it, from its decoded UTF-8. */
static void put_key(Str *s, const char *k, size_t n) { str_json_string(s, k, n); }

/* A canonical array index ("0", "17"; no sign, no leading zero, < 2^32 - 1): V8 orders
 * such keys first, ascending, before the others in insertion order. */
static bool array_index(const char *k, size_t n, uint64_t *value) {
    if (n == 0 || n > 10 || (n > 1 && k[0] == '0')) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < '0' || k[i] > '9') return false;
        v = v * 10 + (uint64_t)(k[i] - '0');
    }
    if (v >= 4294967295ULL) return false;
    *value = v;
    return true;
}

typedef struct {
    Str key;               /* decoded */
    const char *raw;       /* default value text, or NULL */
    const uint8_t *val, *val_end; /* client value */
    bool is_index;
    uint64_t index;
} Field;

static int field_cmp(const void *a, const void *b) {
    const Field *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* session.updated: the defaults with the client's `session` spread over them. */
static void echo_session_updated(Conn *c, const Member *session) {
    size_t n_over = 0;
    Member *over = NULL;
    Member *items = NULL;
    if (session && *session->val == '{') {
        n_over = json_members(session->val, session->val_end, &over);
    } else if (session && *session->val == '[') {
        /* an array spreads as {"0": .., "1": ..} */
        const uint8_t *p = json_ws(session->val + 1, session->val_end);
        size_t cap = 0;
        while (*p != ']') {
            const uint8_t *end = json_value_end(p, session->val_end);
            if (n_over == cap) {
                cap = cap ? cap * 2 : 16;
                items = xrealloc(items, cap * sizeof *items);
            }
            items[n_over].key = NULL;
            items[n_over].val = p;
            items[n_over].val_end = end;
            n_over++;
            p = json_ws(end, session->val_end);
            if (*p == ',') p = json_ws(p + 1, session->val_end);
        }
        over = items;
    }
    Field *fields = xrealloc(NULL, (N_DEFAULTS + n_over + 1) * sizeof *fields);
    size_t nf = 0;
    for (size_t i = 0; i < N_DEFAULTS; i++) {
        memset(&fields[nf], 0, sizeof fields[nf]);
        str_cat(&fields[nf].key, SESSION_DEFAULTS[i][0]);
        fields[nf].raw = SESSION_DEFAULTS[i][1];
        nf++;
    }
    for (size_t i = 0; i < n_over; i++) {
        Str key = {0};
        if (over[i].key)
            json_decode_string(over[i].key, over[i].key_end, SIZE_MAX, &key);
        else
            str_printf(&key, "%zu", i);
        if (!key.p) str_add(&key, "", 0);
        size_t j = 0;
        while (j < nf && !(fields[j].key.len == key.len && memcmp(fields[j].key.p, key.p, key.len) == 0))
            j++;
        if (j == nf) {
            memset(&fields[nf], 0, sizeof fields[nf]);
            fields[nf].key = key;
            nf++;
        } else {
            free(key.p);
        }
        fields[j].raw = NULL;
        fields[j].val = over[i].val;
        fields[j].val_end = over[i].val_end;
    }
    /* V8 property order: array indices ascending, then the rest as inserted */
    Field *ordered = xrealloc(NULL, (nf + 1) * sizeof *ordered);
    size_t no = 0;
    for (size_t i = 0; i < nf; i++)
        if (array_index(fields[i].key.p, fields[i].key.len, &fields[i].index)) {
            fields[i].is_index = true;
            ordered[no++] = fields[i];
        }
    qsort(ordered, no, sizeof *ordered, field_cmp);
    for (size_t i = 0; i < nf; i++)
        if (!fields[i].is_index) ordered[no++] = fields[i];

    Str out = {0};
    str_printf(&out, "{\"type\":\"session.updated\",\"event_id\":\"event_bench%llu\",\"session\":{",
               (unsigned long long)++g_event_counter);
    for (size_t i = 0; i < no; i++) {
        if (i) str_add(&out, ",", 1);
        put_key(&out, ordered[i].key.p, ordered[i].key.len);
        str_add(&out, ":", 1);
        if (ordered[i].raw)
            str_cat(&out, ordered[i].raw);
        else
            json_compact(&out, ordered[i].val, ordered[i].val_end);
    }
    str_add(&out, "}}", 2);
    echo_text(c, out.p, out.len);
    for (size_t i = 0; i < nf; i++) free(fields[i].key.p);
    free(fields);
    free(ordered);
    free(over);
    free(out.p);
}

/* Anything that is not a hot-path append: parsed, then answered by type. */
static void echo_parsed(Conn *c, const uint8_t *p, size_t len) {
    const uint8_t *e = p + len;
    if (!json_valid(p, e)) {
        Str out = {0};
        str_printf(&out,
                   "{\"type\":\"error\",\"event_id\":\"event_bench%llu\",\"error\":{\"type\":"
                   "\"invalid_request_error\",\"code\":\"invalid_json\",\"message\":\"bad JSON\"}}",
                   (unsigned long long)++g_event_counter);
        echo_text(c, out.p, out.len);
        free(out.p);
        return;
    }
    p = json_ws(p, e);
    if (*p != '{') return; /* null, arrays and scalars carry no type */
    Member *m = NULL;
    size_t n = json_members(p, e, &m);
    const Member *type = member_named(m, n, "type");
    if (type && *type->val == '"') {
        if (json_string_is(type->val, type->val_end, "session.update")) {
            const Member *session = member_named(m, n, "session");
            if (session && !(*session->val == '{' || *session->val == '[')) session = NULL;
            echo_session_updated(c, session);
        } else if (json_string_is(type->val, type->val_end, "input_audio_buffer.append")) {
            const Member *id = member_named(m, n, "event_id");
            Str decoded = {0};
            if (id && *id->val == '"') json_decode_string(id->val, id->val_end, MAX_EVENT_ID, &decoded);
            /* escaped again, so an id with a quote or a control character stays valid JSON */
            Str escaped = {0};
            str_json_string(&escaped, decoded.p ? decoded.p : "", decoded.len);
            echo_delta(c, escaped.p + 1, escaped.len - 2); /* between the quotes */
            free(escaped.p);
            free(decoded.p);
        }
        /* every other client event is accepted silently: the bench needs nothing else */
    }
    free(m);
}

static void echo_message(Conn *c, int opcode, uint8_t *payload, size_t len) {
    if (opcode != OP_TEXT) return; /* binary: ignored (the bench sends none) */
    size_t plen = sizeof APPEND_PREFIX - 1;
    if (len > plen && memcmp(payload, APPEND_PREFIX, plen) == 0) {
        const uint8_t *start = payload + plen;
        const uint8_t *end = memchr(start, '"', len - plen);
        /* an id with an escape in it takes the parsed path (a raw copy could end in `\`) */
        if (end && end > start && end - start <= MAX_EVENT_ID &&
            !memchr(start, '\\', (size_t)(end - start))) {
            echo_delta(c, start, (size_t)(end - start));
            return;
        }
    }
    echo_parsed(c, payload, len);
}

static void http_reply(Conn *c, const char *response) {
    conn_write(c, (const uint8_t *)response, strlen(response));
    c->phase = P_CLOSED; /* ignore whatever else the client sends */
    c->rlen = 0;
    if (c->fd < 0) return;
    if (conn_backlog(c) > 0) {
        c->end_after_flush = true;
    } else {
        shutdown(c->fd, SHUT_WR);
    }
    c->deadline_us = now_us() + CLOSE_WAIT_US;
}

/* A request head for the echo server: /healthz, 404, or the WebSocket upgrade. */
static void echo_head(Conn *c) {
    long end = head_end(c);
    if (end < 0) {
        if (c->rlen >= MAX_HEAD_BYTES)
            http_reply(c, "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n");
        return;
    }
    const char *head = (const char *)c->rbuf;
    size_t hlen = (size_t)end + 2;
    /* request line: METHOD SP target SP HTTP/1.x */
    const char *eol = memchr(head, '\r', hlen);
    const char *sp1 = memchr(head, ' ', (size_t)(eol - head));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp1 == head || sp2 == sp1 + 1 || eol - sp2 - 1 < 8 ||
        strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        http_reply(c, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
        return;
    }
    const char *target = sp1 + 1;
    size_t tlen = (size_t)(sp2 - target);
    size_t ulen = 0, clen = 0, klen = 0;
    const char *upgrade = header_value(head, hlen, "upgrade", &ulen);
    const char *connection = header_value(head, hlen, "connection", &clen);
    if (!upgrade || !connection || !has_token(connection, clen, "upgrade")) {
        if (tlen == 8 && memcmp(target, "/healthz", 8) == 0)
            http_reply(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                          "Connection: close\r\n\r\nok\n");
        else
            http_reply(c, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                          "Content-Length: 10\r\nConnection: close\r\n\r\nnot found\n");
        return;
    }
    const char *key = header_value(head, hlen, "sec-websocket-key", &klen);
    const char *q = memchr(target, '?', tlen);
    size_t path_len = q ? (size_t)(q - target) : tlen;
    if (!key || klen == 0 || path_len != 12 || memcmp(target, "/v1/realtime", 12) != 0 ||
        ulen != 9 || strncasecmp(upgrade, "websocket", 9) != 0) {
        http_reply(c, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    char accept[29];
    accept_key(key, klen, accept);
    char response[256];
    int n = snprintf(response, sizeof response,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                     "Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    conn_write(c, (const uint8_t *)response, (size_t)n);
    if (c->fd < 0) return;
    c->phase = P_WS;
    c->deadline_us = 0;
    size_t consumed = (size_t)end + 4;
    memmove(c->rbuf, c->rbuf + consumed, c->rlen - consumed);
    c->rlen -= consumed;
    Str created = {0};
    str_printf(&created, "{\"type\":\"session.created\",\"event_id\":\"event_bench%llu\",\"session\":{",
               (unsigned long long)++g_event_counter);
    for (size_t i = 0; i < N_DEFAULTS; i++) {
        str_printf(&created, "%s\"%s\":%s", i ? "," : "", SESSION_DEFAULTS[i][0],
                   SESSION_DEFAULTS[i][1]);
    }
    str_add(&created, "}}", 2);
    echo_text(c, created.p, created.len);
    free(created.p);
}

static int echo_main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--host") == 0)
            host = argv[i + 1];
        else if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
    }
    g_is_echo = true;
    g_max_backlog = ECHO_MAX_BACKLOG;
    echo_init();

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    if (getaddrinfo(host, port_text, &hints, &ai) != 0 || !ai) {
        fprintf(stderr, "wsload: cannot resolve %s\n", host);
        return 2;
    }
    int lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, ai->ai_addr, ai->ai_addrlen) < 0) die("bind");
    freeaddrinfo(ai);
    if (listen(lfd, 4096) < 0) die("listen");
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(lfd, (struct sockaddr *)&ss, &sl);
    char addr[INET6_ADDRSTRLEN] = "?";
    int bound_port = 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof addr);
        bound_port = ntohs(sin->sin_port);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof addr);
        bound_port = ntohs(sin6->sin6_port);
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) die("signalfd");

    static Handle listen_h = {H_LISTEN}, stdin_h = {H_STDIN}, signal_h = {H_SIGNAL};
    epoll_add(lfd, EPOLLIN, &listen_h);
    epoll_add(sfd, EPOLLIN, &signal_h);
    bool stdin_eof = false;
    {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &stdin_h};
        /* a regular file or /dev/null cannot be polled: read it to its end */
        if (epoll_ctl(g_epoll, EPOLL_CTL_ADD, STDIN_FILENO, &ev) < 0) stdin_eof = true;
    }
    Str line = {0};
    str_printf(&line, "echo upstream listening on ws://%s:%d/v1/realtime", addr, bound_port);
    emit_line(&line);
    free(line.p);

    /* every connection, for the deadline sweep */
    size_t nconns = 0, capconns = 0;
    Conn **conns = NULL;
    struct epoll_event events[MAX_EVENTS];
    int64_t next_sweep = now_us() + 100000;
    bool listen_paused = false;
    while (!stdin_eof) {
        int64_t wait_ms = (next_sweep - now_us()) / 1000;
        if (wait_ms < 0) wait_ms = 0;
        int n = epoll_wait(g_epoll, events, MAX_EVENTS, (int)wait_ms + 1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            Handle *h = events[i].data.ptr;
            if (h->kind == H_LISTEN) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) {
                            /* out of fds: the listener would stay ready and spin; pause it
                             * until the next sweep (closed sockets free fds by then) */
                            struct epoll_event off = {.events = 0, .data.ptr = &listen_h};
                            epoll_ctl(g_epoll, EPOLL_CTL_MOD, lfd, &off);
                            listen_paused = true;
                        }
                        break;
                    }
                    set_nodelay(fd);
                    Conn *c = conn_new(fd, false);
                    c->phase = P_HEAD;
                    c->deadline_us = now_us() + HEAD_TIMEOUT_US;
                    tune_socket(fd);
                    epoll_add(fd, EPOLLIN | EPOLLOUT | EPOLLET, c);
                    if (nconns == capconns) {
                        capconns = capconns ? capconns * 2 : 1024;
                        conns = xrealloc(conns, capconns * sizeof *conns);
                    }
                    conns[nconns++] = c;
                }
            } else if (h->kind == H_SIGNAL) {
                stdin_eof = true; /* SIGTERM / SIGINT: exit below */
            } else if (h->kind == H_STDIN) {
                char buf[4096];
                ssize_t r = read(STDIN_FILENO, buf, sizeof buf);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) stdin_eof = true;
            } else {
                conn_event((Conn *)h, events[i].events);
            }
        }
        int64_t now = now_us();
        if (now >= next_sweep) {
            next_sweep = now + 100000;
            if (listen_paused) {
                struct epoll_event on = {.events = EPOLLIN, .data.ptr = &listen_h};
                epoll_ctl(g_epoll, EPOLL_CTL_MOD, lfd, &on);
                listen_paused = false;
            }
            size_t k = 0;
            for (size_t i = 0; i < nconns; i++) {
                Conn *c = conns[i];
                if (c->fd >= 0 && c->deadline_us && now > c->deadline_us) {
                    if (c->phase == P_HEAD)
                        http_reply(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n");
                    else
                        conn_destroy(c);
                }
                if (c->fd >= 0)
                    conns[k++] = c;
                else
                    free(c); /* after the batch: no pending epoll event can name it */
            }
            nconns = k;
        }
    }
    return 0;
}

/* ================================================================ loadgen mode */

typedef struct {
    char url[512];
    char host[300];
    char hostport[300];
    char path[512];
    int port;
    int sessions;
    double seconds, warmup_seconds, grace_seconds, connect_timeout_seconds;
    int connect_concurrency, slot_ms;
    char **tokens;
    int ntokens;
} LoadConfig;

static LoadConfig L;
static Conn *g_sessions;
static struct sockaddr_storage g_addr;
static socklen_t g_addr_len;
static int g_opening;
static bool g_streaming;
static int64_t g_measure_from_us = INT64_MAX;
static uint32_t *g_samples;
static size_t g_sample_cap, g_sample_count;
static int64_t g_total_sent, g_total_received, g_stalled, g_late_skips, g_reorders, g_unmatched,
    g_error_events, g_closed_while_streaming;
static Str g_first_error;
static bool g_have_first_error;
static uint64_t g_close_codes[65536 / 64]; /* which codes were seen (bitmap) */
static int64_t *g_close_count;

static char g_append_tail[1400];
static size_t g_append_tail_len;
static const char APPEND_HEAD[] = "{\"type\":\"input_audio_buffer.append\",\"event_id\":\"";
static const char LOAD_DELTA_HEAD[] = "{\"type\":\"response.output_audio.delta\",\"event_id\":\"b";

static double js_round(double x) {
    double y = x + 0.5;
    long long t = (long long)y;
    if ((double)t > y) t -= 1; /* floor */
    return (double)t;
}

/* sin(x) for |x| <= a few turns, to double precision without libm (no -lm in the build). */
static double sine(double x) {
    const double pi = 3.14159265358979323846;
    long long k = (long long)js_round(x / (2 * pi));
    x -= (double)k * 2 * pi;
    double term = x, sum = x, x2 = x * x;
    for (int n = 1; n < 30; n++) {
        term *= -x2 / ((2.0 * n) * (2.0 * n + 1));
        sum += term;
    }
    return sum;
}

static void loadgen_init_audio(void) {
    /* 480 samples (20 ms at 24 kHz) of a 440 Hz tone */
    uint8_t pcm[960];
    const double pi = 3.14159265358979323846;
    for (int i = 0; i < 480; i++) {
        int v = (int)js_round(8000 * sine((2 * pi * 440 * i) / 24000));
        pcm[2 * i] = (uint8_t)(v & 0xFF);
        pcm[2 * i + 1] = (uint8_t)((v >> 8) & 0xFF);
    }
    char b64[1300];
    base64_encode(pcm, sizeof pcm, b64);
    g_append_tail_len = (size_t)snprintf(g_append_tail, sizeof g_append_tail,
                                         "\",\"audio\":\"%s\"}", b64);
}

static void count_close(uint16_t code) {
    g_close_codes[code / 64] |= 1ULL << (code % 64);
    g_close_count[code]++;
}

static int g_connect_failures;
static char *g_first_failure;

/* Mark a session's opening done; a failure drops its socket. */
static void session_settle(Conn *s, bool ok, const char *reason) {
    if (s->settled) return;
    s->settled = true;
    g_opening--;
    if (ok) {
        s->ready = true;
        return;
    }
    s->error = strdup(reason);
    g_connect_failures++;
    if (!g_first_failure) g_first_failure = strdup(reason);
    conn_destroy(s); /* closed = true via the hook; counts a close code only if upgraded */
    s->closed = true;
}

static void conn_closed(Conn *c) {
    if (g_is_echo) return; /* the sweep frees it after the batch */
    if (!c->upgraded) return; /* ws.onClose is attached only once the handshake is done */
    c->closed = true;
    count_close(c->close_code);
    if (g_streaming) g_closed_while_streaming++;
    char reason[32];
    snprintf(reason, sizeof reason, "closed %u", (unsigned)c->close_code);
    session_settle(c, false, reason);
}

/* Parse a non-empty run of digits; false if anything else is there. */
static bool parse_digits(const uint8_t *p, const uint8_t *e, int64_t *out) {
    if (p >= e || e - p > 18) return false;
    int64_t v = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return true;
}

static void on_delta(Conn *s, const uint8_t *raw, size_t len) {
    /* raw starts with LOAD_DELTA_HEAD; the id runs to the next quote: <session>.<seq>.<us> */
    size_t start = sizeof LOAD_DELTA_HEAD - 1;
    const uint8_t *id = raw + start;
    const uint8_t *end = memchr(id, '"', len - start);
    if (!end || end - id > 64) {
        g_unmatched++;
        return;
    }
    const uint8_t *dot1 = memchr(id, '.', (size_t)(end - id));
    const uint8_t *dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1)) : NULL;
    int64_t seq, sent_us;
    if (!dot1 || !dot2 || !parse_digits(dot1 + 1, dot2, &seq) ||
        !parse_digits(dot2 + 1, end, &sent_us)) {
        g_unmatched++;
        return;
    }
    int64_t rtt_us = now_us() - sent_us;
    g_total_received++;
    if (seq <= s->last_seq) g_reorders++;
    s->last_seq = seq;
    if (sent_us >= g_measure_from_us && g_sample_count < g_sample_cap) {
        g_samples[g_sample_count++] = rtt_us < 0 ? 0 : rtt_us > UINT32_MAX ? UINT32_MAX : (uint32_t)rtt_us;
    }
}

static void on_other(Conn *s, const uint8_t *p, size_t len) {
    const uint8_t *e = p + len;
    if (!json_valid(p, e)) {
        g_unmatched++;
        return;
    }
    p = json_ws(p, e);
    if (*p != '{') return;
    Member *m = NULL;
    size_t n = json_members(p, e, &m);
    const Member *type = member_named(m, n, "type");
    if (type && *type->val == '"') {
        if (json_string_is(type->val, type->val_end, "session.created")) {
            if (!s->settled) session_settle(s, true, NULL);
        } else if (json_string_is(type->val, type->val_end, "error")) {
            g_error_events++;
            if (!g_have_first_error) {
                g_have_first_error = true;
                const Member *err = member_named(m, n, "error");
                if (err && !(err->val_end - err->val == 4 && memcmp(err->val, "null", 4) == 0))
                    json_compact(&g_first_error, err->val, err->val_end); /* event.error ?? event */
                else
                    json_compact(&g_first_error, p, json_value_end(p, e));
            }
        } else if (json_string_is(type->val, type->val_end, "response.output_audio.delta")) {
            g_unmatched++; /* an echo that lost our id: cannot be matched to a send */
        }
    }
    free(m);
}

static void loadgen_message(Conn *s, int opcode, uint8_t *payload, size_t len) {
    if (opcode != OP_TEXT) {
        g_unmatched++;
        return;
    }
    size_t hl = sizeof LOAD_DELTA_HEAD - 1;
    if (len > hl && memcmp(payload, LOAD_DELTA_HEAD, hl) == 0)
        on_delta(s, payload, len);
    else
        on_other(s, payload, len);
}

static void on_message(Conn *c, int opcode, uint8_t *payload, size_t len) {
    if (g_is_echo)
        echo_message(c, opcode, payload, len);
    else
        loadgen_message(c, opcode, payload, len);
}

/* The server's answer to our upgrade: 101 and the right Sec-WebSocket-Accept, or fail. */
static void loadgen_head(Conn *s) {
    long end = head_end(s);
    if (end < 0) {
        if (s->rlen >= MAX_HEAD_BYTES) session_settle(s, false, "handshake response too long");
        return;
    }
    const char *head = (const char *)s->rbuf;
    size_t hlen = (size_t)end + 2;
    const char *sp = memchr(head, ' ', hlen);
    int status = sp ? atoi(sp + 1) : 0;
    if (status != 101) {
        char reason[32];
        snprintf(reason, sizeof reason, "HTTP %d", status);
        session_settle(s, false, reason);
        return;
    }
    size_t vlen = 0;
    const char *accept = header_value(head, hlen, "sec-websocket-accept", &vlen);
    char expected[29];
    accept_key(s->key, strlen(s->key), expected);
    if (!accept || vlen != 28 || memcmp(accept, expected, 28) != 0) {
        session_settle(s, false, "bad Sec-WebSocket-Accept");
        return;
    }
    s->upgraded = true;
    s->phase = P_WS;
    size_t consumed = (size_t)end + 4;
    memmove(s->rbuf, s->rbuf + consumed, s->rlen - consumed);
    s->rlen -= consumed;
}

static void on_head(Conn *c) {
    if (g_is_echo)
        echo_head(c);
    else
        loadgen_head(c);
}

/* A connect error spelled as relay_load.py reports it ("connect ECONNREFUSED 127.0.0.1:1"). */
static const char *errno_name(int err) {
    switch (err) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EMFILE: return "EMFILE";
    default: return strerror(err);
    }
}

static void loadgen_connected(Conn *s) {
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        char reason[512];
        snprintf(reason, sizeof reason, "connect %s %s", errno_name(err), L.hostport);
        session_settle(s, false, reason);
        return;
    }
    set_nodelay(s->fd);
    uint8_t nonce[16];
    if (getrandom(nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce) die("getrandom");
    base64_encode(nonce, sizeof nonce, s->key);
    Str req = {0};
    str_printf(&req,
               "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n",
               L.path, L.hostport, s->key);
    if (L.ntokens > 0) str_printf(&req, "Authorization: Bearer %s\r\n", L.tokens[s->index]);
    str_cat(&req, "\r\n");
    s->phase = P_HEAD;
    conn_write(s, (const uint8_t *)req.p, req.len);
    free(req.p);
}

static void conn_event(Conn *c, uint32_t events) {
    if (c->fd < 0) return;
    if (c->phase == P_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) loadgen_connected(c);
        return;
    }
    if (events & EPOLLOUT) conn_flush(c);
    if (c->fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) conn_readable(c);
}

static void session_start(Conn *s) {
    g_opening++;
    s->start_us = now_us();
    s->fd = socket(g_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        char reason[128];
        snprintf(reason, sizeof reason, "socket: %s", strerror(errno));
        session_settle(s, false, reason);
        return;
    }
    if (connect(s->fd, (struct sockaddr *)&g_addr, g_addr_len) < 0 && errno != EINPROGRESS) {
        char reason[512];
        snprintf(reason, sizeof reason, "connect %s %s", errno_name(errno), L.hostport);
        session_settle(s, false, reason);
        return;
    }
    s->phase = P_CONNECTING;
    tune_socket(s->fd);
    epoll_add(s->fd, EPOLLIN | EPOLLOUT | EPOLLET, s);
}

/* Run one epoll batch, waiting at most timeout_ms. */
static void loop_once(int timeout_ms, int timer_fd, bool *timer_fired) {
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(g_epoll, events, MAX_EVENTS, timeout_ms < 0 ? 0 : timeout_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
        Handle *h = events[i].data.ptr;
        if (h->kind == H_TIMER) {
            uint64_t expirations;
            if (read(timer_fd, &expirations, sizeof expirations) > 0 && timer_fired)
                *timer_fired = true;
        } else if (h->kind == H_CONN) {
            conn_event((Conn *)h, events[i].events);
        }
    }
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Hot path: the append as one pre-framed masked text frame (all-zero key), one write. */
static void send_one(Conn *s) {
    if (s->closed || s->fd < 0 || s->close_sent) return;
    if (conn_backlog(s) > LOADGEN_STALL_BACKLOG) {
        g_stalled++;
        return;
    }
    char id[64];
    int id_len = snprintf(id, sizeof id, "b%d.%lld.%lld", s->index, (long long)s->seq,
                          (long long)now_us());
    s->seq++;
    const void *parts[3] = {APPEND_HEAD, id, g_append_tail};
    size_t lens[3] = {sizeof APPEND_HEAD - 1, (size_t)id_len, g_append_tail_len};
    send_parts(s, OP_TEXT, parts, lens, 3);
    g_total_sent++;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void put_percentile(Str *out, const char *name, double q) {
    if (g_sample_count == 0) {
        str_printf(out, "\"%s\":null", name);
        return;
    }
    double x = q * (double)g_sample_count;
    long long c = (long long)x;
    if ((double)c < x) c++; /* ceil */
    long long rank = c - 1;
    if (rank < 0) rank = 0;
    if (rank > (long long)g_sample_count - 1) rank = (long long)g_sample_count - 1;
    str_printf(out, "\"%s\":%.3f", name, g_samples[rank] / 1000.0);
}

static void read_config(void) {
    size_t cap = 1 << 16, len = 0;
    char *text = xrealloc(NULL, cap);
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= (64u << 20)) {
                fprintf(stderr, "wsload: config on stdin too large\n");
                exit(2);
            }
            cap *= 2;
            text = xrealloc(text, cap);
        }
        ssize_t n = read(STDIN_FILENO, text + len, cap - len - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
    }
    text[len] = 0;
    L.warmup_seconds = 1;
    L.grace_seconds = 2;
    L.connect_timeout_seconds = 10;
    L.connect_concurrency = 32;
    L.slot_ms = 2;
    int token_cap = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *value = strchr(line, ' ');
        if (!value) continue;
        *value++ = 0;
        size_t vl = strlen(value);
        while (vl && (value[vl - 1] == '\r' || value[vl - 1] == ' ')) value[--vl] = 0;
        if (strcmp(line, "url") == 0) snprintf(L.url, sizeof L.url, "%s", value);
        else if (strcmp(line, "sessions") == 0) L.sessions = atoi(value);
        else if (strcmp(line, "seconds") == 0) L.seconds = strtod(value, NULL);
        else if (strcmp(line, "warmup_seconds") == 0) L.warmup_seconds = strtod(value, NULL);
        else if (strcmp(line, "grace_seconds") == 0) L.grace_seconds = strtod(value, NULL);
        else if (strcmp(line, "connect_timeout_seconds") == 0)
            L.connect_timeout_seconds = strtod(value, NULL);
        else if (strcmp(line, "connect_concurrency") == 0) L.connect_concurrency = atoi(value);
        else if (strcmp(line, "slot_ms") == 0) L.slot_ms = atoi(value);
        else if (strcmp(line, "token") == 0) {
            if (L.ntokens == token_cap) {
                token_cap = token_cap ? token_cap * 2 : 256;
                L.tokens = xrealloc(L.tokens, (size_t)token_cap * sizeof *L.tokens);
            }
            L.tokens[L.ntokens++] = strdup(value);
        }
    }
    free(text);
    if (L.connect_concurrency < 1) L.connect_concurrency = 1;
    int s = L.slot_ms;
    if (!(s == 1 || s == 2 || s == 4 || s == 5 || s == 10 || s == 20)) L.slot_ms = 2;
    if (L.sessions < 1 || L.sessions > 100000 || !(L.seconds > 0 && L.seconds <= 3600)) {
        fprintf(stderr, "wsload: config needs sessions (1..100000) and seconds (0..3600]\n");
        exit(2);
    }
    if (L.ntokens != 0 && L.ntokens < L.sessions) {
        fprintf(stderr, "wsload: %d tokens for %d sessions\n", L.ntokens, L.sessions);
        exit(2);
    }
    /* ws://host[:port][/path[?query]] */
    if (strncmp(L.url, "ws://", 5) != 0) {
        fprintf(stderr, "wsload: only ws:// is supported\n");
        exit(2);
    }
    const char *h = L.url + 5;
    const char *slash = strchr(h, '/');
    size_t hp_len = slash ? (size_t)(slash - h) : strlen(h);
    snprintf(L.hostport, sizeof L.hostport, "%.*s", (int)hp_len, h);
    snprintf(L.path, sizeof L.path, "%s", slash ? slash : "/");
    const char *colon = strrchr(L.hostport, ':');
    const char *bracket = strrchr(L.hostport, ']');
    if (colon && (!bracket || colon > bracket)) {
        L.port = atoi(colon + 1);
        snprintf(L.host, sizeof L.host, "%.*s", (int)(colon - L.hostport), L.hostport);
    } else {
        L.port = 80;
        snprintf(L.host, sizeof L.host, "%s", L.hostport);
    }
    if (L.host[0] == '[') { /* [::1] */
        size_t hl = strlen(L.host);
        memmove(L.host, L.host + 1, hl);
        L.host[hl - 2] = 0;
    }
}

static int loadgen_main(void) {
    g_is_echo = false;
    g_max_backlog = LOADGEN_MAX_BACKLOG;
    signal(SIGPIPE, SIG_IGN);
    read_config();
    loadgen_init_audio();
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", L.port);
    if (getaddrinfo(L.host, port_text, &hints, &ai) != 0 || !ai) {
        fprintf(stderr, "wsload: cannot resolve %s\n", L.host);
        return 2;
    }
    memcpy(&g_addr, ai->ai_addr, ai->ai_addrlen);
    g_addr_len = ai->ai_addrlen;
    freeaddrinfo(ai);

    int n = L.sessions;
    g_sessions = calloc((size_t)n, sizeof *g_sessions);
    g_close_count = calloc(65536, sizeof *g_close_count);
    double cap = (double)n * 50 * (L.seconds + 2) + 1000;
    g_sample_cap = cap < MAX_SAMPLES ? (size_t)cap : MAX_SAMPLES;
    g_samples = malloc(g_sample_cap * sizeof *g_samples);
    if (!g_sessions || !g_close_count || !g_samples) die("calloc");
    for (int i = 0; i < n; i++) {
        Conn *s = &g_sessions[i];
        s->h.kind = H_CONN;
        s->fd = -1;
        s->is_client = true;
        s->close_code = 1006;
        s->index = i;
        s->last_seq = -1;
        s->phase = P_CLOSED;
    }

    /* Connect: at most connect_concurrency sessions opening at once, each bounded. */
    int64_t connect_start = now_us();
    int64_t connect_timeout_us = (int64_t)(L.connect_timeout_seconds * 1e6);
    int next = 0;
    for (;;) {
        while (g_opening < L.connect_concurrency && next < n) session_start(&g_sessions[next++]);
        if (g_opening == 0 && next >= n) break;
        int64_t now = now_us();
        int64_t soonest = INT64_MAX;
        for (int i = 0; i < next; i++) {
            Conn *s = &g_sessions[i];
            if (s->settled) continue;
            int64_t deadline = s->start_us + connect_timeout_us;
            if (deadline <= now)
                session_settle(s, false, "timeout waiting for session.created");
            else if (deadline < soonest)
                soonest = deadline;
        }
        if (g_opening == 0 && next >= n) break;
        if (g_opening < L.connect_concurrency && next < n) continue;
        loop_once(soonest == INT64_MAX ? 100 : (int)((soonest - now) / 1000) + 1, -1, NULL);
    }
    int live_count = 0;
    int *live = malloc((size_t)n * sizeof *live);
    if (!live) die("malloc");
    for (int i = 0; i < n; i++)
        if (g_sessions[i].ready && !g_sessions[i].closed) live[live_count++] = i;
    Str out = {0};
    str_printf(&out, "{\"event\":\"connected\",\"connected\":%d,\"connect_failures\":%d,"
                     "\"first_connect_failure\":",
               live_count, g_connect_failures);
    if (g_first_failure)
        str_json_string(&out, g_first_failure, strlen(g_first_failure));
    else
        str_cat(&out, "null");
    str_printf(&out, ",\"connect_seconds\":%.6f}", (double)(now_us() - connect_start) / 1e6);
    emit_line(&out);

    double max_lag_ms = 0, elapsed = 0, cpu_streaming = 0;
    if (live_count > 0) {
        str_cat(&out, "{\"event\":\"streaming\"}");
        emit_line(&out);
        double cpu_start = cpu_seconds();
        /* The 20 ms period is cut into slots of slot_ms; live session k of n sends in slot
         * floor(k * slots / n) of every period. The timer fires on absolute slot times. */
        int slot_ms = L.slot_ms;
        int slots = PERIOD_MS / slot_ms;
        int *bucket_start = calloc((size_t)slots + 1, sizeof *bucket_start);
        if (!bucket_start) die("calloc");
        for (int k = 0; k < live_count; k++)
            bucket_start[(int)((long long)k * slots / live_count) + 1]++;
        for (int b = 0; b < slots; b++) bucket_start[b + 1] += bucket_start[b];
        int64_t duration_slots = (int64_t)js_round(L.seconds * 1000 / slot_ms);
        int64_t slot_ns = (int64_t)slot_ms * 1000000;
        int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (tfd < 0) die("timerfd_create");
        static Handle timer_h = {H_TIMER};
        epoll_add(tfd, EPOLLIN, &timer_h);
        int64_t t0 = mono_ns();
        struct itimerspec its = {
            .it_value = {.tv_sec = (t0 + slot_ns) / 1000000000, .tv_nsec = (t0 + slot_ns) % 1000000000},
            .it_interval = {.tv_sec = 0, .tv_nsec = slot_ns},
        };
        if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) die("timerfd_settime");
        g_measure_from_us = (t0 - g_t_origin_ns) / 1000 + (int64_t)js_round(L.warmup_seconds * 1e6);
        g_streaming = true;
        int64_t next_slot = 0, last_tick = t0;
        while (next_slot < duration_slots) {
            bool fired = false;
            loop_once(2 * slot_ms + 5, tfd, &fired);
            if (!fired) continue;
            int64_t now = mono_ns();
            double lag = (double)(now - last_tick) / 1e6;
            if (lag > max_lag_ms) max_lag_ms = lag;
            last_tick = now;
            int64_t end_slot = (now - t0) / slot_ns;
            if (end_slot > duration_slots - 1) end_slot = duration_slots - 1;
            if (end_slot - next_slot >= slots) {
                /* the loop stalled for more than a period: skip missed slots, never burst */
                for (int64_t slot = next_slot; slot <= end_slot - slots; slot++) {
                    int b = (int)(slot % slots);
                    g_late_skips += bucket_start[b + 1] - bucket_start[b];
                }
                next_slot = end_slot - slots + 1;
            }
            for (; next_slot <= end_slot; next_slot++) {
                int b = (int)(next_slot % slots);
                for (int k = bucket_start[b]; k < bucket_start[b + 1]; k++)
                    send_one(&g_sessions[live[k]]);
            }
        }
        elapsed = (double)(mono_ns() - t0) / 1e9;
        close(tfd);
        free(bucket_start);
        cpu_streaming = cpu_seconds() - cpu_start;
        g_streaming = false;
        str_cat(&out, "{\"event\":\"stopped\"}");
        emit_line(&out);
        int64_t grace_deadline = now_us() + (int64_t)(L.grace_seconds * 1e6);
        while (g_total_received < g_total_sent) {
            int64_t left = grace_deadline - now_us();
            if (left <= 0) break;
            loop_once((int)(left / 1000) + 1, -1, NULL);
        }
    }

    qsort(g_samples, g_sample_count, sizeof *g_samples, cmp_u32);
    str_printf(&out, "{\"event\":\"result\",\"sessions\":%d,\"connected\":%d,\"connect_failures\":%d,"
                     "\"first_connect_failure\":",
               n, live_count, g_connect_failures);
    if (g_first_failure)
        str_json_string(&out, g_first_failure, strlen(g_first_failure));
    else
        str_cat(&out, "null");
    str_printf(&out,
               ",\"stream_seconds\":%.6f,\"sent\":%lld,\"received\":%lld,\"expected\":%.15g,"
               "\"stalled\":%lld,\"late_skips\":%lld,\"reorders\":%lld,\"unmatched\":%lld,"
               "\"error_events\":%lld,\"first_error\":",
               elapsed, (long long)g_total_sent, (long long)g_total_received,
               (double)live_count * 50 * L.seconds, (long long)g_stalled, (long long)g_late_skips,
               (long long)g_reorders, (long long)g_unmatched, (long long)g_error_events);
    if (g_have_first_error)
        str_add(&out, g_first_error.p, g_first_error.len);
    else
        str_cat(&out, "null");
    str_printf(&out, ",\"closed_while_streaming\":%lld,\"close_codes\":{",
               (long long)g_closed_while_streaming);
    bool first = true;
    for (uint32_t code = 0; code < 65536; code++) {
        if (!(g_close_codes[code / 64] >> (code % 64) & 1)) continue;
        str_printf(&out, "%s\"%u\":%lld", first ? "" : ",", code, (long long)g_close_count[code]);
        first = false;
    }
    str_printf(&out, "},\"samples\":%zu,\"rtt_ms\":{", g_sample_count);
    put_percentile(&out, "p50", 0.5);
    str_cat(&out, ",");
    put_percentile(&out, "p90", 0.9);
    str_cat(&out, ",");
    put_percentile(&out, "p99", 0.99);
    str_cat(&out, ",");
    put_percentile(&out, "p999", 0.999);
    if (g_sample_count)
        str_printf(&out, ",\"max\":%.3f", g_samples[g_sample_count - 1] / 1000.0);
    else
        str_cat(&out, ",\"max\":null");
    str_printf(&out, "},\"loop_max_lag_ms\":%.3f,\"cpu_seconds_streaming\":%.6f}", max_lag_ms,
               cpu_streaming);
    emit_line(&out);
    free(out.p);

    /* Close every session with 1000 and give the peers 3 s to answer, then drop the rest. */
    for (int i = 0; i < n; i++) {
        Conn *s = &g_sessions[i];
        if (s->fd >= 0 && !s->closed) conn_close(s, 1000, "bench done");
    }
    int64_t close_deadline = now_us() + 3000000;
    for (;;) {
        bool open = false;
        for (int i = 0; i < n && !open; i++) open = g_sessions[i].fd >= 0;
        int64_t left = close_deadline - now_us();
        if (!open || left <= 0) break;
        loop_once((int)(left / 1000) + 1, -1, NULL);
    }
    for (int i = 0; i < n; i++)
        if (g_sessions[i].fd >= 0) close(g_sessions[i].fd);
    return 0;
}

int main(int argc, char **argv) {
    g_t_origin_ns = mono_ns();
    /* a ramp holds one socket per session: allow as many as the hard limit does */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    g_epoll = epoll_create1(EPOLL_CLOEXEC);
    if (g_epoll < 0) die("epoll_create1");
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && strcmp(argv[1], "echo") == 0) return echo_main(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "loadgen") == 0) return loadgen_main();
    fprintf(stderr, "usage: wsload echo [--host H] [--port P] | wsload loadgen < config\n");
    return 2;
}
