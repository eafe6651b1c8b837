// A tiny raw-frame WebSocket client (on `ws`) plus the frame comparison helpers.
//
// Comparison rule (spec §2.4, §11.21): the envelope — every byte of the frame that is not the
// payload — is compared byte-for-byte; the payload is compared as parsed JSON (key order inside
// payloads is not part of the protocol). For `phx_reply` frames the payload skeleton
// `{"response":<R>,"status":"<s>"}` is also compared byte-for-byte ("response" before "status").

import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import crypto from "node:crypto";
import WebSocket from "ws";

import { WS_URL, HTTP_URL } from "./server.js";

const DEFAULT_TIMEOUT = 5000;

/** ws URL of the socket endpoint with the given query params; `vsn` defaults to 2.0.0 and comes
 * last, like the JS client. Pass `vsn: null` to omit it. */
export function socketUrl(params = {}, { vsn = "2.0.0", path = "/socket/websocket" } = {}) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  }
  if (vsn !== null) parts.push(`vsn=${encodeURIComponent(vsn)}`);
  return `${WS_URL}${path}${parts.length ? "?" + parts.join("&") : ""}`;
}

/**
 * Connect. Resolves with a RawSocket once open; rejects with an Error carrying `.status`
 * (and `.body`) when the server answers the upgrade with something other than 101.
 * opts: { protocols, headers, rawProtocolHeader, timeout }
 *  - rawProtocolHeader: send this exact Sec-WebSocket-Protocol header (e.g. a padded token,
 *    which `ws` refuses to put in `protocols`); the client then accepts "phoenix" back.
 */
export function connect(url = socketUrl(), opts = {}) {
  const { protocols = [], headers = {}, rawProtocolHeader, timeout = DEFAULT_TIMEOUT } = opts;
  return new Promise((resolve, reject) => {
    const wsOpts = { headers, handshakeTimeout: timeout };
    let prots = protocols;
    if (rawProtocolHeader !== undefined) {
      prots = ["phoenix"];
      wsOpts.finishRequest = (req) => {
        req.setHeader("Sec-WebSocket-Protocol", rawProtocolHeader);
        req.end();
      };
    }
    const ws = new WebSocket(url, prots, wsOpts);
    const sock = new RawSocket(ws, url);
    let settled = false;
    ws.on("unexpected-response", (_req, res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        if (settled) return;
        settled = true;
        const err = new Error(`upgrade refused: HTTP ${res.statusCode}`);
        err.status = res.statusCode;
        err.body = Buffer.concat(chunks).toString("utf8");
        err.headers = res.headers;
        reject(err);
      });
      res.on("error", () => {});
    });
    ws.on("upgrade", (res) => {
      sock.upgradeHeaders = res.headers;
    });
    ws.on("open", () => {
      if (settled) return;
      settled = true;
      resolve(sock);
    });
    ws.on("error", (e) => {
      if (settled) return;
      settled = true;
      reject(e);
    });
  });
}

function hex(buf) {
  return Buffer.from(buf).toString("hex").replace(/(..)(?!$)/g, "$1 ");
}

export function show(frame) {
  if (frame === null || frame === undefined) return String(frame);
  if (typeof frame === "string") return frame;
  if (Buffer.isBuffer(frame)) return `<binary ${frame.length}B: ${hex(frame)}>`;
  if (frame.closed) return `<closed code=${frame.code} reason=${JSON.stringify(frame.reason)}>`;
  return String(frame);
}

export class RawSocket {
  constructor(ws, url) {
    this.ws = ws;
    this.url = url;
    this.queue = []; // frames: string (text) | Buffer (binary)
    this.waiters = [];
    this.closeInfo = null;
    this.closeWaiters = [];
    this.upgradeHeaders = null;
    ws.on("message", (data, isBinary) => {
      const frame = isBinary ? Buffer.from(data) : data.toString("utf8");
      this.queue.push(frame);
      this._wake();
    });
    ws.on("close", (code, reason) => {
      this.closeInfo = { code, reason: reason.toString("utf8") };
      this._wake();
      for (const w of this.closeWaiters.splice(0)) w(this.closeInfo);
    });
    ws.on("error", () => {
      /* reported through close */
    });
  }

  get protocol() {
    return this.ws.protocol;
  }

  _wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Send a text frame (string) or a binary frame (Buffer/Uint8Array). */
  send(frame) {
    if (typeof frame === "string") this.ws.send(frame, { binary: false });
    else this.ws.send(Buffer.from(frame), { binary: true });
  }

  /** Next frame (string for text, Buffer for binary). Rejects on timeout or close. */
  async next(timeoutMs = DEFAULT_TIMEOUT) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.queue.length) return this.queue.shift();
      if (this.closeInfo) {
        throw new Error(
          `socket closed (code ${this.closeInfo.code} ${JSON.stringify(this.closeInfo.reason)}) while waiting for a frame`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame within ${timeoutMs} ms`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Next n frames, in order. */
  async nextN(n, timeoutMs = DEFAULT_TIMEOUT) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await this.next(timeoutMs));
    return out;
  }

  /** Assert that no frame arrives within ms (and the socket does not close). */
  async expectNone(ms = 300, what = "no frame") {
    await new Promise((r) => setTimeout(r, ms));
    if (this.queue.length) {
      assert.fail(`expected ${what}, but got: ${this.queue.map(show).join("  |  ")}`);
    }
    if (this.closeInfo) {
      assert.fail(`expected ${what} and an open socket, but it closed: ${show({ closed: true, ...this.closeInfo })}`);
    }
  }

  /** Resolves with {code, reason} when the socket closes; rejects after timeoutMs. */
  closed(timeoutMs = DEFAULT_TIMEOUT) {
    if (this.closeInfo) return Promise.resolve(this.closeInfo);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`socket not closed within ${timeoutMs} ms`)), timeoutMs);
      this.closeWaiters.push((info) => {
        clearTimeout(t);
        resolve(info);
      });
    });
  }

  get isClosed() {
    return this.closeInfo !== null;
  }

  /** Frames received but not consumed yet. */
  pending() {
    return this.queue.slice();
  }

  /** Send a frame and assert the next frame equals `expected` (text or Buffer). */
  async roundtrip(frame, expected, timeoutMs = DEFAULT_TIMEOUT) {
    this.send(frame);
    const got = await this.next(timeoutMs);
    assertAny(got, expected);
    return got;
  }

  /** Heartbeat with a fresh ref; asserts the exact reply. Proves the socket is alive. */
  async heartbeat(ref = `hb${++hbCounter}`) {
    this.send(`[null,${JSON.stringify(ref)},"phoenix","heartbeat",{}]`);
    const got = await this.next();
    assertFrame(got, `[null,${JSON.stringify(ref)},"phoenix","phx_reply",{"response":{},"status":"ok"}]`);
  }

  close(code = 1000) {
    try {
      if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
        this.ws.close(code);
      }
    } catch {
      /* ignore */
    }
    // don't let a server that never answers the close keep the test process alive
    setTimeout(() => {
      try {
        this.ws.terminate();
      } catch {
        /* ignore */
      }
    }, 1000).unref();
  }
}

let hbCounter = 0;

// ---------------------------------------------------------------------------------------------
// JSON span scanner: finds the byte spans of values so that a frame can be split into its
// envelope and its payload without re-serialising anything.

function skipWs(s, i) {
  while (i < s.length && (s[i] === " " || s[i] === "\t" || s[i] === "\n" || s[i] === "\r")) i++;
  return i;
}

/** End index (exclusive) of the JSON value starting at i (no leading whitespace). */
function scanValue(s, i) {
  const c = s[i];
  if (c === '"') {
    i++;
    while (i < s.length) {
      if (s[i] === "\\") i += 2;
      else if (s[i] === '"') return i + 1;
      else i++;
    }
    throw new Error("unterminated string");
  }
  if (c === "{" || c === "[") {
    const close = c === "{" ? "}" : "]";
    i = skipWs(s, i + 1);
    if (s[i] === close) return i + 1;
    for (;;) {
      if (c === "{") {
        i = skipWs(s, scanValue(s, skipWs(s, i)));
        if (s[i] !== ":") throw new Error(`expected ':' at ${i}`);
        i = skipWs(s, i + 1);
      }
      i = skipWs(s, scanValue(s, skipWs(s, i)));
      if (s[i] === ",") {
        i = skipWs(s, i + 1);
        continue;
      }
      if (s[i] === close) return i + 1;
      throw new Error(`expected ',' or '${close}' at ${i}`);
    }
  }
  const m = /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)/.exec(s.slice(i, i + 400));
  if (!m) throw new Error(`bad JSON value at ${i}`);
  return i + m[0].length;
}

/** Top-level elements of a JSON array text: [{start,end}] */
function arraySpans(s) {
  let i = skipWs(s, 0);
  if (s[i] !== "[") throw new Error("not a JSON array");
  const spans = [];
  i = skipWs(s, i + 1);
  if (s[i] === "]") return spans;
  for (;;) {
    const start = i;
    const end = scanValue(s, i);
    spans.push({ start, end });
    i = skipWs(s, end);
    if (s[i] === ",") {
      i = skipWs(s, i + 1);
      continue;
    }
    if (s[i] === "]") {
      if (skipWs(s, i + 1) !== s.length) throw new Error("trailing data after array");
      return spans;
    }
    throw new Error(`expected ',' or ']' at ${i}`);
  }
}

/** Top-level members of a JSON object text: [{key, keyStart, start, end}] (value spans). */
function objectSpans(s) {
  let i = skipWs(s, 0);
  if (s[i] !== "{") throw new Error("not a JSON object");
  const out = [];
  i = skipWs(s, i + 1);
  if (s[i] === "}") return out;
  for (;;) {
    const keyStart = i;
    const keyEnd = scanValue(s, i);
    const key = JSON.parse(s.slice(keyStart, keyEnd));
    i = skipWs(s, keyEnd);
    if (s[i] !== ":") throw new Error(`expected ':' at ${i}`);
    i = skipWs(s, i + 1);
    const start = i;
    const end = scanValue(s, i);
    out.push({ key, keyStart, start, end });
    i = skipWs(s, end);
    if (s[i] === ",") {
      i = skipWs(s, i + 1);
      continue;
    }
    if (s[i] === "}") {
      if (skipWs(s, i + 1) !== s.length) throw new Error("trailing data after object");
      return out;
    }
    throw new Error(`expected ',' or '}' at ${i}`);
  }
}

/**
 * Split a frame into {skeleton, parts}: skeleton is the text with each opaque part replaced by
 * «P0», «P1»…; parts are the parsed values. V2 arrays: the payload (5th element) is opaque, and for
 * phx_reply the payload's "response" is opaque instead. V1 objects: the same for the "payload" key.
 */
function skeletonize(text) {
  const trimmed = text;
  const first = trimmed[skipWs(trimmed, 0)];
  let payloadSpan;
  let event;
  if (first === "[") {
    const spans = arraySpans(trimmed);
    if (spans.length < 5) throw new Error(`V2 frame with ${spans.length} elements`);
    payloadSpan = spans[4];
    event = JSON.parse(trimmed.slice(spans[3].start, spans[3].end));
  } else if (first === "{") {
    const members = objectSpans(trimmed);
    const p = members.find((m) => m.key === "payload");
    const e = members.find((m) => m.key === "event");
    if (!p) throw new Error("V1 frame without payload");
    payloadSpan = p;
    event = e ? JSON.parse(trimmed.slice(e.start, e.end)) : undefined;
  } else {
    throw new Error("frame is neither a JSON array nor a JSON object");
  }
  const payloadText = trimmed.slice(payloadSpan.start, payloadSpan.end);
  let inner = null;
  if (event === "phx_reply" && payloadText[0] === "{") {
    const members = objectSpans(payloadText);
    const r = members.find((m) => m.key === "response");
    if (r) inner = { start: payloadSpan.start + r.start, end: payloadSpan.start + r.end };
  }
  const opaque = inner || payloadSpan;
  const skeleton = trimmed.slice(0, opaque.start) + "«P»" + trimmed.slice(opaque.end);
  return { skeleton, opaque: JSON.parse(trimmed.slice(opaque.start, opaque.end)) };
}

function frameMismatch(actual, expected, why) {
  return new assert.AssertionError({
    message: `frame mismatch (${why})\n  expected: ${show(expected)}\n  actual:   ${show(actual)}`,
    actual: show(actual),
    expected: show(expected),
    operator: "assertFrame",
  });
}

/**
 * Envelope byte-for-byte, payload as parsed JSON. Works for V2 arrays and V1 objects.
 */
export function assertFrame(actual, expected) {
  if (typeof actual !== "string") throw frameMismatch(actual, expected, "expected a text frame");
  let a, e;
  e = skeletonize(expected); // a bug in the test if this throws
  try {
    a = skeletonize(actual);
  } catch (err) {
    throw frameMismatch(actual, expected, `unparsable frame: ${err.message}`);
  }
  if (a.skeleton !== e.skeleton) throw frameMismatch(actual, expected, "envelope bytes differ");
  try {
    assert.deepStrictEqual(a.opaque, e.opaque);
  } catch {
    throw frameMismatch(actual, expected, "payload differs (compared as parsed JSON)");
  }
}

/** Byte-exact binary comparison. */
export function assertBinary(actual, expected) {
  if (!Buffer.isBuffer(actual)) throw frameMismatch(actual, expected, "expected a binary frame");
  if (!actual.equals(Buffer.from(expected))) throw frameMismatch(actual, Buffer.from(expected), "binary bytes differ");
}

export function assertAny(actual, expected) {
  if (typeof expected === "string") assertFrame(actual, expected);
  else assertBinary(actual, expected);
}

/** Does the frame match (no throw)? */
export function matches(actual, expected) {
  try {
    assertAny(actual, expected);
    return true;
  } catch {
    return false;
  }
}

/** Receive `expected.length` frames and match them in ANY order (each exactly once). */
export async function expectUnordered(sock, expected, timeoutMs = DEFAULT_TIMEOUT) {
  const got = await sock.nextN(expected.length, timeoutMs);
  const left = got.slice();
  for (const exp of expected) {
    const idx = left.findIndex((g) => matches(g, exp));
    if (idx < 0) {
      assert.fail(
        `expected frame not received: ${show(exp)}\n  received: ${got.map(show).join("\n            ")}`,
      );
    }
    left.splice(idx, 1);
  }
  return got;
}

// ---------------------------------------------------------------------------------------------
// Frame builders

/** V2 text frame. */
export function frame(joinRef, ref, topic, event, payload) {
  return JSON.stringify([joinRef, ref, topic, event, payload]);
}

export function replyFrame(joinRef, ref, topic, status, response) {
  return `[${JSON.stringify(joinRef)},${JSON.stringify(ref)},${JSON.stringify(topic)},"phx_reply",{"response":${JSON.stringify(response)},"status":${JSON.stringify(status)}}]`;
}

function b(s) {
  return Buffer.from(s, "utf8");
}

function len8(buf, what) {
  if (buf.length > 255) throw new Error(`${what} longer than 255 bytes cannot be framed`);
  return buf.length;
}

/** Client→server binary push (kind 0): 00 jrlen reflen topiclen eventlen jr ref topic event payload */
export function binClientPush(joinRef, ref, topic, event, payload) {
  const jr = b(joinRef ?? ""), r = b(ref ?? ""), t = b(topic), e = b(event);
  return Buffer.concat([
    Buffer.from([0, len8(jr, "join_ref"), len8(r, "ref"), len8(t, "topic"), len8(e, "event")]),
    jr, r, t, e, Buffer.from(payload),
  ]);
}

/** Server→client binary push (kind 0): 00 jrlen topiclen eventlen jr topic event payload */
export function binServerPush(joinRef, topic, event, payload) {
  const jr = b(joinRef ?? ""), t = b(topic), e = b(event);
  return Buffer.concat([Buffer.from([0, jr.length, t.length, e.length]), jr, t, e, Buffer.from(payload)]);
}

/** Server→client binary reply (kind 1): 01 jrlen reflen topiclen statuslen jr ref topic status payload */
export function binReply(joinRef, ref, topic, status, payload) {
  const jr = b(joinRef ?? ""), r = b(ref ?? ""), t = b(topic), s = b(status);
  return Buffer.concat([Buffer.from([1, jr.length, r.length, t.length, s.length]), jr, r, t, s, Buffer.from(payload)]);
}

/** Server→client binary broadcast (kind 2): 02 topiclen eventlen topic event payload */
export function binBroadcast(topic, event, payload) {
  const t = b(topic), e = b(event);
  return Buffer.concat([Buffer.from([2, t.length, e.length]), t, e, Buffer.from(payload)]);
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP upgrade attempt: to read refusal statuses, empty bodies and response headers.

/**
 * Sends `GET path` with WebSocket upgrade headers (plus `headers`; a header whose value is
 * null is omitted). Resolves with {status, headers, body}. On 101 the connection is closed at
 * once (body "").
 */
export function upgradeRequest(pathAndQuery, headers = {}, { timeout = DEFAULT_TIMEOUT, method = "GET" } = {}) {
  const base = new URL(HTTP_URL);
  const mod = base.protocol === "https:" ? https : http;
  const all = {
    Connection: "Upgrade",
    Upgrade: "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": crypto.randomBytes(16).toString("base64"),
    ...headers,
  };
  for (const k of Object.keys(all)) if (all[k] === null) delete all[k];
  return new Promise((resolve, reject) => {
    const req = mod.request({
      protocol: base.protocol,
      hostname: base.hostname,
      port: base.port,
      path: pathAndQuery,
      method,
      headers: all,
      timeout,
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode, headers: res.headers, body: "" });
    });
    req.on("response", (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no HTTP answer within ${timeout} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/** Query string for the socket path. */
export function socketPath(query = "vsn=2.0.0", path = "/socket/websocket") {
  return query === null ? path : `${path}?${query}`;
}
