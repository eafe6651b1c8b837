// A WebSocket client written at the byte level (RFC 6455), for what `ws` cannot do:
// a client that stops reading while it keeps sending (its TCP receive window fills, the
// server's outbound queue grows), and thousands of cheap sockets for a join wave (frames are
// parsed, payloads kept only when asked for).

import crypto from "node:crypto";

import { Conn, parseResponse } from "./tcp.js";

const OP_TEXT = 1;
const OP_BINARY = 2;
const OP_CLOSE = 8;
const OP_PING = 9;
const OP_PONG = 10;

/** A client frame: FIN set, masked with a random key (servers must refuse unmasked frames). */
export function clientFrame(opcode, payload) {
  const len = payload.length;
  const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + 4 + len);
  out[0] = 0x80 | opcode;
  if (len < 126) out[1] = 0x80 | len;
  else if (len < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(len), 2);
  }
  const mask = crypto.randomBytes(4);
  mask.copy(out, head);
  const body = head + 4;
  for (let i = 0; i < len; i++) out[body + i] = payload[i] ^ mask[i & 3];
  return out;
}

export class WireSocket {
  /**
   * Handshake on a fresh TCP connection to `port`, `target` e.g. `/socket/websocket?vsn=2.0.0`.
   * opts.keep: "text" (default: keep text payloads), "none" (count frames only).
   */
  static async open(port, target = "/socket/websocket?vsn=2.0.0", { keep = "text", timeout = 10000 } = {}) {
    const conn = await Conn.open(port, { timeout });
    conn.write(
      `GET ${target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString("base64")}\r\n\r\n`,
    );
    await conn.until((c) => c.data.indexOf("\r\n\r\n") >= 0 || c.end !== null, timeout, "the upgrade response");
    const head = conn.data.indexOf("\r\n\r\n");
    if (head < 0) throw new Error(`upgrade: connection ended (${conn.end?.how}) without a response`);
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(conn.data.subarray(0, 20).toString("latin1"))?.[1]);
    if (status !== 101) {
      const r = parseResponse(conn.data);
      conn.destroy();
      const e = new Error(`upgrade refused: HTTP ${status}`);
      e.status = status;
      e.body = r?.body?.toString("utf8");
      throw e;
    }
    return new WireSocket(conn, head + 4, keep);
  }

  constructor(conn, offset, keep) {
    this.conn = conn;
    this.keep = keep;
    this.offset = offset; // parse position in conn's buffer
    this.texts = []; // kept text payloads (strings)
    this.frames = 0; // data frames received
    this.bytesIn = 0; // payload bytes received
    this.closeFrame = null; // {code, reason} when a Close frame arrived
    this.waiters = [];
    this._buf = Buffer.alloc(0);
    // Re-parse whenever data arrives. Conn keeps everything; we consume from `offset`.
    conn.sock.on("data", () => this._parse());
    conn.sock.on("close", () => this._wake());
    this._parse();
  }

  _wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  _parse() {
    // Move the unconsumed tail out of Conn so memory does not grow with traffic.
    const data = this.conn.data;
    if (this.offset > 0 || data.length > 0) {
      this._buf = this._buf.length ? Buffer.concat([this._buf, data.subarray(this.offset)]) : data.subarray(this.offset);
      this.conn.chunks = [];
      this.offset = 0;
    }
    let b = this._buf;
    for (;;) {
      if (b.length < 2) break;
      const op = b[0] & 0x0f;
      let len = b[1] & 0x7f;
      let p = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        p = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2));
        p = 10;
      }
      if (b.length < p + len) break;
      const payload = b.subarray(p, p + len);
      if (op === OP_TEXT || op === OP_BINARY || op === 0) {
        // A message may come in fragments (a first frame, continuations, FIN on the last):
        // `frames` counts messages, as a WebSocket API delivers them.
        const fin = (b[0] & 0x80) !== 0;
        if (op !== 0) this._msgOp = op;
        this.bytesIn += len;
        const keep = this._msgOp === OP_TEXT && this.keep === "text";
        if (keep) (this._pieces ??= []).push(Buffer.from(payload));
        if (fin) {
          this.frames++;
          if (keep) this.texts.push(Buffer.concat(this._pieces).toString("utf8"));
          this._pieces = null;
        }
      } else if (op === OP_CLOSE) {
        this.closeFrame = {
          code: len >= 2 ? payload.readUInt16BE(0) : 1005,
          reason: len > 2 ? payload.subarray(2).toString("utf8") : "",
        };
      } else if (op === OP_PING) {
        this.conn.write(clientFrame(OP_PONG, Buffer.from(payload)));
      }
      b = b.subarray(p + len);
    }
    this._buf = b.length ? Buffer.from(b) : Buffer.alloc(0);
    this._wake();
  }

  sendText(s) {
    return this.conn.write(clientFrame(OP_TEXT, Buffer.from(s, "utf8")));
  }

  sendBinary(buf) {
    return this.conn.write(clientFrame(OP_BINARY, Buffer.from(buf)));
  }

  sendClose(code = 1000) {
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code);
    return this.conn.write(clientFrame(OP_CLOSE, p));
  }

  /** Stop reading: the kernel's receive buffer fills, then the server's sends block. */
  pause() {
    this.conn.sock.pause();
  }

  resume() {
    this.conn.sock.resume();
  }

  /** The TCP connection has ended (EOF or reset). */
  get ended() {
    return this.conn.end !== null;
  }

  /** Resolves once pred(this) holds; rejects after ms. */
  async until(pred, ms, what) {
    const deadline = Date.now() + ms;
    while (!pred(this)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 500));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Next kept text frame (waits up to ms). */
  async nextText(ms = 5000) {
    await this.until((s) => s.texts.length > 0 || s.ended, ms, "a text frame");
    if (this.texts.length === 0) throw new Error(`connection ended (${this.conn.end.how}) while waiting for a text frame`);
    return this.texts.shift();
  }

  destroy() {
    this.conn.destroy();
  }
}
