// Per-socket rate limits (spec "Frames": MAX_JOINS_PER_SEC 10/s, burst 200 = 2 × MAX_CHANNELS; MAX_MESSAGES_PER_SEC
// 1000/s, burst 1000 — both on by default) and the log volume a flood may cause (spec "Logs":
// no JOIN lines at the default level, rate-limit warnings at most one a second).
//
// Buckets refill while a burst is in flight, so the cases bound the number of accepted
// messages by burst + rate × (time the burst took), never by a fixed count beyond the burst.

import { describe } from "node:test";
import assert from "node:assert/strict";

import { hostile, scaled, until } from "../lib/harness.js";
import { request, upgrade, get } from "../lib/tcp.js";
import { connect, frame, replyFrame, assertFrame, show } from "../../lib/raw.js";
import { uniqTopic, sleep } from "../../lib/server.js";

const url = () => `ws://127.0.0.1:${process.env.PHX_PORT}/socket/websocket?vsn=2.0.0`;
const RATE_LIMITED = { reason: "rate limited" };

/**
 * From now on, the phx_reply frames of a RawSocket by ref (`byRef`: ref → [frame text]) and
 * every other frame (`other`). Takes the socket's frames over: `next()` no longer sees them.
 */
function replies(sock) {
  const byRef = new Map();
  const other = [];
  sock.ws.removeAllListeners("message");
  sock.ws.on("message", (data, isBinary) => {
    if (isBinary) return other.push("<binary>");
    const text = data.toString("utf8");
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return other.push(text.slice(0, 200));
    }
    if (f[3] === "phx_reply") {
      const list = byRef.get(f[1]) ?? [];
      list.push(text);
      byRef.set(f[1], list);
    } else other.push(text.slice(0, 200));
  });
  return { byRef, other };
}

describe("join rate limit (MAX_JOINS_PER_SEC)", () => {
  hostile("300 joins in a burst on one socket → the first 200 (2 × MAX_CHANNELS) ok, then {reason: rate limited} (join_ref and ref echoed)", async ({ note }) => {
    // One topic joined again and again: the channel count stays at 1, so "too many channels
    // joined" can never be the answer, only the join bucket (burst 2 × MAX_CHANNELS = 200)
    // decides.
    const topic = uniqTopic("room:joins");
    const s = await connect(url());
    try {
      const r = replies(s);
      const t0 = Date.now();
      for (let i = 1; i <= 300; i++) s.send(frame(`j${i}`, `j${i}`, topic, "phx_join", {}));
      await until(() => r.byRef.size >= 300 || s.isClosed, () => `300 join replies, got ${r.byRef.size}`, 20000);
      const elapsed = (Date.now() - t0) / 1000;
      assert.ok(!s.isClosed, `the socket closed: ${JSON.stringify(s.closeInfo)}`);

      let ok = 0;
      let limited = 0;
      for (let i = 1; i <= 300; i++) {
        const got = r.byRef.get(`j${i}`);
        assert.equal(got.length, 1, `join j${i}: exactly one reply, got ${got.map(show).join(" | ")}`);
        const okFrame = replyFrame(`j${i}`, `j${i}`, topic, "ok", {});
        if (i <= 200) {
          assertFrame(got[0], okFrame);
          ok++;
        } else if (got[0] === okFrame) {
          ok++;
        } else {
          assertFrame(got[0], replyFrame(`j${i}`, `j${i}`, topic, "error", RATE_LIMITED));
          limited++;
        }
      }
      note(`ok ${ok}, rate limited ${limited}, burst took ${elapsed.toFixed(2)} s`);
      assert.ok(limited > 0, "no join was rate limited");
      assert.ok(ok <= 200 + Math.ceil(10 * elapsed) + 1, `${ok} joins ok in ${elapsed.toFixed(2)} s: more than burst 200 + 10/s`);
      // The socket is fine, and the bucket refills (10/s).
      await sleep(300);
      s.send(frame("again", "again", topic, "phx_join", {}));
      await until(() => r.byRef.has("again"), "a join after 300 ms", 5000);
      assertFrame(r.byRef.get("again")[0], replyFrame("again", "again", topic, "ok", {}));
      s.send(`[null,"hb","phoenix","heartbeat",{}]`);
      await until(() => r.byRef.has("hb"), "the heartbeat reply", 5000);
      assertFrame(r.byRef.get("hb")[0], `[null,"hb","phoenix","phx_reply",{"response":{},"status":"ok"}]`);
    } finally {
      s.close();
    }
  });
});

describe("message rate limit (MAX_MESSAGES_PER_SEC)", () => {
  hostile(
    "5,000 pushes in a burst → every push gets exactly one reply, the first 999 ok, the rest mostly {reason: rate limited}; the socket stays open",
    { timeout: 90000 },
    async ({ note }) => {
      const s = await connect(url());
      try {
        s.send(frame("1", "1", "room:lobby", "phx_join", {}));
        assertFrame(await s.next(), replyFrame("1", "1", "room:lobby", "ok", {}));
        const r = replies(s);
        const N = 5000;
        const t0 = Date.now();
        for (let i = 1; i <= N; i++) s.send(frame("1", `p${i}`, "room:lobby", "ping", { i }));
        await until(() => r.byRef.size >= N || s.isClosed, () => `${N} replies, got ${r.byRef.size}`, 60000);
        const elapsed = (Date.now() - t0) / 1000;
        assert.ok(!s.isClosed, `the socket closed: ${JSON.stringify(s.closeInfo)}`);
        assert.deepEqual(r.other, [], "nothing but replies");

        let ok = 0;
        let limited = 0;
        for (let i = 1; i <= N; i++) {
          const got = r.byRef.get(`p${i}`);
          assert.equal(got?.length, 1, `push p${i}: exactly one reply, got ${(got ?? []).map(show).join(" | ")}`);
          const okFrame = replyFrame("1", `p${i}`, "room:lobby", "ok", { i });
          if (i <= 999) {
            assertFrame(got[0], okFrame); // burst 1000, the join was the first message
            ok++;
          } else if (got[0].includes(`"status":"ok"`)) {
            assertFrame(got[0], okFrame);
            ok++;
          } else {
            assertFrame(got[0], replyFrame("1", `p${i}`, "room:lobby", "error", RATE_LIMITED));
            limited++;
          }
        }
        note(`ok ${ok}, rate limited ${limited}, burst answered in ${elapsed.toFixed(2)} s`);
        assert.ok(limited > 0, `none of ${N} pushes was rate limited`);
        assert.ok(ok <= 1000 + Math.ceil(1000 * elapsed) + 50, `${ok} pushes ok in ${elapsed.toFixed(2)} s: more than burst 1000 + 1000/s`);
        // after a pause the bucket has refilled: the socket works
        await sleep(1200);
        s.send(`[null,"hb","phoenix","heartbeat",{}]`);
        await until(() => r.byRef.has("hb"), "the heartbeat reply", 5000);
        assertFrame(r.byRef.get("hb")[0], `[null,"hb","phoenix","phx_reply",{"response":{},"status":"ok"}]`);
      } finally {
        s.close();
      }
    },
  );
});

describe("log content", () => {
  hostile("logs: a refused token, malformed frames and pushes never put the token or the payload into the log", async ({ server }) => {
    const from = server.logSize();
    const secret = `SECRET${Math.random().toString(36).slice(2)}`;
    const token = `SFMyNTY.${secret}-token`;
    const p = Number(process.env.PHX_PORT);
    assert.equal((await request(p, upgrade(`/socket/websocket?token=${token}&vsn=2.0.0`))).status, 403);
    const lp = await request(p, get("/socket/longpoll?vsn=2.0.0", [`x-phoenix-authtoken: ${token}`]));
    assert.match(lp.body.toString(), /"status":403/);
    for (const bad of [
      `["1","2","room:lobby","ping",{"p":"${secret}-payload"}`, // not JSON
      `{"topic":"room:lobby","event":"ping","payload":{"p":"${secret}-payload"},"ref":"2"}`, // V1 on V2
      `["1","2","room:lobby","ping"]`,
    ]) {
      const s = await connect(url());
      s.send(frame("1", "1", "room:lobby", "phx_join", {}));
      await s.next();
      s.send(`["1","3","room:lobby","ping",{"p":"${secret}-payload"}]`);
      await s.next();
      s.send(bad);
      await s.closed(5000).catch(() => {});
      s.close();
    }
    await sleep(500);
    const logged = server.logSince(from);
    const leaks = logged.split("\n").filter((l) => l.includes(secret));
    assert.deepEqual(leaks.map((l) => l.replace(/\x1b\[[0-9;]*m/g, "").slice(0, 300)), [], "log lines with the token or a payload");
  });
});

describe("log volume", () => {
  const PAIRS = scaled(20000, 100000);
  hostile(
    `a ${PAIRS.toLocaleString("en")}-pair join/leave loop on one socket: every frame answered, the log grows by < 64 KiB, no JOIN line at the default level`,
    { timeout: 180000 },
    async ({ server, note }) => {
      const from = server.logSize();
      const topic = uniqTopic("room:loop");
      const s = await connect(url());
      try {
        const r = replies(s);
        const WINDOW = 2000; // frames in flight
        let sent = 0;
        const total = 2 * PAIRS;
        const answered = () => {
          let n = 0;
          for (const v of r.byRef.values()) n += v.length;
          return n;
        };
        const t0 = Date.now();
        let done = 0;
        while (sent < total) {
          done = answered();
          while (sent < total && sent - done < WINDOW) {
            const i = (sent >> 1) + 1;
            // A topic per pair: a leave whose join was rate limited must still be a leave of an
            // unjoined topic (ok reply), never a stale-join_ref leave of the previous pair's
            // channel, which Phoenix ignores without a reply.
            const ti = `${topic}:${i}`;
            s.send(sent % 2 === 0 ? frame(`j${i}`, `j${i}`, ti, "phx_join", {}) : frame(`j${i}`, `l${i}`, ti, "phx_leave", {}));
            sent++;
          }
          await sleep(5);
          assert.ok(!s.isClosed, `the socket closed after ${done} replies: ${JSON.stringify(s.closeInfo)}`);
          if (Date.now() - t0 > 150000) assert.fail(`only ${done} of ${total} frames answered in 150 s`);
        }
        await until(() => answered() >= total || s.isClosed, () => `${total} replies, got ${answered()}`, 30000);
        assert.equal(r.byRef.size, total, "one reply per frame (distinct refs)");
        const kinds = new Map();
        for (const v of r.byRef.values()) {
          const k = JSON.parse(v[0])[4];
          const key = `${k.status}:${k.response.reason ?? ""}`;
          kinds.set(key, (kinds.get(key) ?? 0) + 1);
        }
        note(`${total} frames in ${((Date.now() - t0) / 1000).toFixed(1)} s; replies ${JSON.stringify(Object.fromEntries(kinds))}`);
      } finally {
        s.close();
      }
      await sleep(1500); // let rate-limited warnings flush
      const logged = server.logSince(from).replace(/\x1b\[[0-9;]*m/g, "");
      const joinLines = logged.split("\n").filter((l) => /\bJOIN(ED)?\b/.test(l));
      note(`log: +${logged.length} bytes, ${logged.split("\n").length - 1} lines, ${joinLines.length} JOIN lines`);
      assert.equal(joinLines.length, 0, `JOIN lines at the default log level, e.g. ${joinLines[0]?.slice(0, 200)}`);
      assert.ok(logged.length < 64 * 1024, `the log grew by ${logged.length} bytes during the loop (bound 64 KiB)`);
    },
  );
});
