// Raw TCP for the hostile suite: a connection that records every byte the server sends and how
// the connection ended, and a tiny HTTP/1.1 response parser. Nothing here is forgiving on
// purpose: the point is to see exactly what reaches the wire (a status line, a close, nothing).

import net from "node:net";

import { sleep } from "../../lib/server.js";

/**
 * One TCP connection. `data` holds everything received; `end` becomes
 * {how: "eof" | "reset" | "error", error?} when the server closes (or resets) it.
 */
export class Conn {
  /** Connects to 127.0.0.1:port; resolves once connected. */
  static open(port, { host = "127.0.0.1", timeout = 5000 } = {}) {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port, host });
      const t = setTimeout(() => {
        sock.destroy();
        reject(new Error(`connect to ${host}:${port}: no answer within ${timeout} ms`));
      }, timeout);
      sock.once("connect", () => {
        clearTimeout(t);
        sock.removeAllListeners("error");
        resolve(new Conn(sock));
      });
      sock.once("error", (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
  }

  constructor(sock) {
    this.sock = sock;
    this.chunks = [];
    this.received = 0;
    this.end = null;
    this.waiters = [];
    sock.setNoDelay(true);
    sock.on("data", (c) => {
      this.chunks.push(c);
      this.received += c.length;
      this._wake();
    });
    sock.on("end", () => this._ended({ how: "eof" }));
    sock.on("error", (e) => this._ended({ how: e.code === "ECONNRESET" ? "reset" : "error", error: e }));
    sock.on("close", () => this._ended({ how: "eof" }));
  }

  _ended(info) {
    if (this.end) return;
    this.end = info;
    this._wake();
  }

  _wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Everything received so far. */
  get data() {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  get text() {
    return this.data.toString("latin1");
  }

  /** Writes bytes (string: latin1, so any byte value can be sent). Errors are recorded in `end`. */
  write(bytes) {
    if (this.sock.destroyed) return false;
    return this.sock.write(typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes);
  }

  /** Resolves once `pred(this)` holds; rejects after ms with `what`. */
  async until(pred, ms, what) {
    const deadline = Date.now() + ms;
    while (!pred(this)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves with `end` once the server closed the connection; rejects after ms. */
  async closed(ms = 5000) {
    await this.until((c) => c.end !== null, ms, "the server to close the connection");
    return this.end;
  }

  /** Resolves with the first complete HTTP response received; rejects after ms. */
  async response(ms = 5000) {
    let r = null;
    await this.until(
      (c) => (r = parseResponse(c.data)) !== null || c.end !== null,
      ms,
      "an HTTP response",
    );
    r ??= parseResponse(this.data);
    if (r === null) {
      throw new Error(
        `connection ended (${this.end.how}) without a complete HTTP response; received ${JSON.stringify(this.text.slice(0, 300))}`,
      );
    }
    return r;
  }

  destroy() {
    this.sock.destroy();
  }
}

/**
 * Parses one HTTP/1.1 response at the start of `buf`: {status, reason, headers (lower-case
 * names), body (Buffer), length (bytes the response took)} — or null if it is not complete yet.
 * Bodies: content-length, chunked, or none (1xx/204/304, or no length: up to the end of data).
 */
export function parseResponse(buf) {
  const head = buf.indexOf("\r\n\r\n");
  if (head < 0) return null;
  const lines = buf.subarray(0, head).toString("latin1").split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) return { status: NaN, reason: lines[0], headers: {}, body: Buffer.alloc(0), length: head + 4, malformed: true };
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const status = Number(m[1]);
  const start = head + 4;
  if (status < 200 || status === 204 || status === 304) {
    return { status, reason: m[2] ?? "", headers, body: Buffer.alloc(0), length: start };
  }
  if (headers["content-length"] !== undefined) {
    const n = Number(headers["content-length"]);
    if (buf.length < start + n) return null;
    return { status, reason: m[2] ?? "", headers, body: buf.subarray(start, start + n), length: start + n };
  }
  if (/chunked/i.test(headers["transfer-encoding"] ?? "")) {
    const parts = [];
    let i = start;
    for (;;) {
      const eol = buf.indexOf("\r\n", i);
      if (eol < 0) return null;
      const size = parseInt(buf.subarray(i, eol).toString("latin1"), 16);
      if (Number.isNaN(size)) return null;
      if (size === 0) {
        const fin = buf.indexOf("\r\n\r\n", eol);
        if (fin < 0 && buf.length < eol + 4) return null;
        return { status, reason: m[2] ?? "", headers, body: Buffer.concat(parts), length: Math.max(fin + 4, eol + 4) };
      }
      if (buf.length < eol + 2 + size + 2) return null;
      parts.push(buf.subarray(eol + 2, eol + 2 + size));
      i = eol + 2 + size + 2;
    }
  }
  return { status, reason: m[2] ?? "", headers, body: buf.subarray(start), length: buf.length, toEof: true };
}

/**
 * Sends one request on a fresh connection and returns {status, headers, body, conn}. The
 * connection stays open (the caller may check whether the server closed it) unless
 * `close: true`.
 */
export async function request(port, bytes, { timeout = 5000, close = true } = {}) {
  const conn = await Conn.open(port);
  try {
    conn.write(bytes);
    const r = await conn.response(timeout);
    return { ...r, conn };
  } finally {
    if (close) conn.destroy();
  }
}

/** `GET target HTTP/1.1` with a Host header, extra header lines, and the final CRLF. */
export function get(target, headerLines = [], { keepAlive = false } = {}) {
  return (
    `GET ${target} HTTP/1.1\r\nHost: localhost\r\n` +
    headerLines.map((h) => `${h}\r\n`).join("") +
    (keepAlive ? "" : "Connection: close\r\n") +
    "\r\n"
  );
}

/** A WebSocket upgrade request for `target` (Sec-WebSocket-Key fixed; we only read the status). */
export function upgrade(target, headerLines = []) {
  return get(target, [
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ...headerLines,
  ], { keepAlive: true });
}

/** Opens `n` connections (in parallel batches, so the listen backlog never overflows). */
export async function openMany(port, n, batch = 200) {
  const out = [];
  for (let i = 0; i < n; i += batch) {
    const k = Math.min(batch, n - i);
    out.push(...(await Promise.all(Array.from({ length: k }, () => Conn.open(port)))));
  }
  return out;
}

/** Sends `body` one chunk every `everyMs` (a slow client), stopping when the connection ends. */
export async function trickle(conn, body, { chunk = 1, everyMs = 500 } = {}) {
  for (let i = 0; i < body.length && conn.end === null; i += chunk) {
    conn.write(body.subarray(i, i + chunk));
    await sleep(everyMs);
  }
}
