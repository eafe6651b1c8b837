// `history:*` (CONFORMANCE_FIXTURE.md, a phx-server extension; real Phoenix has no history)
// through the unmodified phoenix@1.8.16 client: a join params *function* returns the cursor,
// which phoenix.js evaluates again on every rejoin. The cursor is kept by counting, as the
// fixture contract allows: joined at offset M (or recovered from N), k broadcasts later it is
// at M + k (N + k). Skipped against a server that does not mount `history:*`.
//
// The TCP connection is killed under the client (the `ws` socket destroyed: no close frame,
// the server sees EOF) while broadcasts flow at ~1,000/s. Reconnection is gated — the client's
// attempts go to a path that answers 404 until the test opens the gate — so how much the client
// misses is decided by the test, not by timers.

import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { uniqTopic, sleep, HTTP_URL } from "../lib/server.js";
import { mkSocket, connected, result } from "../lib/client.js";
// The optional client helper of this repository (no dependencies): checked end to end here.
import { withHistory } from "../../vendor-js/js/history.js";

const T = { timeout: 120000 };
const WAIT = 30000;

/** Resolves once `cond()` holds (checked every 10 ms); rejects with `what()` after ms. */
async function until(cond, what, ms = WAIT) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${typeof what === "function" ? what() : what}`);
    await sleep(10);
  }
}

/** A `ws` WebSocket whose connections go nowhere (HTTP 404) while `gate.open` is false. */
function gatedTransport(gate) {
  return class GatedWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(gate.open ? url : url.replace("/socket/websocket", "/no-socket-while-gated/websocket"), protocols);
    }
  };
}

/**
 * The cursor of one channel, kept by counting: the params function phoenix.js calls on every
 * (re)join, the join reply hook, and one call per broadcast received.
 */
function cursor() {
  const c = { epoch: null, offset: 0, sent: null, replies: [] };
  c.params = () => {
    c.sent = c.epoch === null ? null : { epoch: c.epoch, offset: c.offset };
    return c.sent ? { since: c.sent } : {};
  };
  c.joined = (reply) => {
    c.replies.push(reply);
    c.epoch = reply.epoch;
    c.offset = reply.recovered ? c.sent.offset : reply.offset;
  };
  c.received = () => {
    c.offset += 1;
  };
  return c;
}

/** A client on `topic` with a cursor, recording every `shout` payload it gets. */
function historyClient(t, topic, gate) {
  const socket = mkSocket(t, { transport: gatedTransport(gate), reconnectAfterMs: () => 100 });
  const cur = cursor();
  const seen = [];
  const ch = socket.channel(topic, cur.params);
  ch.on("shout", (p) => {
    cur.received();
    seen.push(p);
  });
  return { socket, ch, cur, seen };
}

/** Kills the client's TCP connection under it: no close frame, the server just sees EOF. */
function killTcp(socket) {
  const ws = socket.conn;
  assert.ok(ws && ws._socket, "the client has a live ws connection");
  ws._socket.destroy();
}

/**
 * Publishers: `sockets` clients on `topic`, each pushing `shout` {p, n} at `perSecond`; every
 * ok reply counted. `stop()` resolves once every push was answered.
 */
async function publishers(t, topic, sockets = 2, perSecond = 500) {
  const state = { sent: 0, ok: 0, errors: [] };
  const timers = [];
  for (let i = 0; i < sockets; i++) {
    const s = await connected(mkSocket(t));
    const ch = s.channel(topic, {});
    assert.equal((await result(ch.join())).status, "ok");
    let n = 0;
    const batch = Math.max(1, Math.round(perSecond / 100));
    timers.push(
      setInterval(() => {
        for (let k = 0; k < batch; k++) {
          state.sent++;
          ch.push("shout", { p: i, n: ++n }, 20000)
            .receive("ok", () => state.ok++)
            .receive("error", (e) => state.errors.push(e))
            .receive("timeout", () => state.errors.push("timeout"));
        }
      }, 10),
    );
  }
  state.stop = async () => {
    timers.forEach(clearInterval);
    await until(() => state.ok + state.errors.length === state.sent, () => `answers: ${JSON.stringify(state)}`);
    assert.deepEqual(state.errors, [], "every shout was accepted");
  };
  return state;
}

/** POST /fixture/broadcast `count` shouts on `topic`, `parallel` requests at a time. */
async function bulkBroadcast(topic, count, parallel = 16) {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const n = ++next;
      const res = await fetch(`${HTTP_URL}/fixture/broadcast`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ topic, event: "shout", payload: { p: "bulk", n } }),
      });
      await res.text();
      assert.equal(res.status, 204);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

let mounted = true;

describe("history:* (message history and recovery, phx-server extension)", () => {
  before(async () => {
    // A server without `history:*` answers the join with "unmatched topic": skip then.
    const t = { after: () => {} };
    const s = await connected(mkSocket(t));
    const r = await result(s.channel(uniqTopic("history:probe"), {}).join());
    mounted = r.status === "ok" && typeof r.response.epoch === "string";
    s.disconnect();
  });

  test("join reply carries the position; a cursor gets exactly what followed it", T, async (t) => {
    if (!mounted) return t.skip("history:* not mounted");
    const topic = uniqTopic("history:basic");
    const gate = { open: true };
    const a = historyClient(t, topic, gate);
    await connected(a.socket);
    const first = await result(a.ch.join().receive("ok", a.cur.joined));
    assert.equal(first.status, "ok");
    assert.deepEqual(Object.keys(first.response).sort(), ["epoch", "offset", "recovered"]);
    assert.equal(first.response.recovered, false);
    assert.equal(first.response.offset, 0);
    for (let n = 1; n <= 3; n++) assert.equal((await result(a.ch.push("shout", { n }))).status, "ok");
    await until(() => a.seen.length === 3, "3 shouts");
    assert.deepEqual(a.cur.params(), { since: { epoch: first.response.epoch, offset: 3 } });

    // A second client resuming from offset 1 gets 2 and 3, after its reply, and nothing else.
    const b = await connected(mkSocket(t));
    const seenB = [];
    const chB = b.channel(topic, { since: { epoch: first.response.epoch, offset: 1 } });
    chB.on("shout", (p) => seenB.push(p.n));
    const rb = await result(chB.join());
    assert.deepEqual(rb, { status: "ok", response: { recovered: true, epoch: first.response.epoch, offset: 3 } });
    assert.equal((await result(a.ch.push("shout", { n: 4 }))).status, "ok");
    await until(() => seenB.length === 3, () => `b saw ${JSON.stringify(seenB)}`);
    assert.deepEqual(seenB, [2, 3, 4]);
  });

  test("TCP killed while ~1,000 broadcasts/s flow: the client rejoins by itself and has every message once, in order", T, async (t) => {
    if (!mounted) return t.skip("history:* not mounted");
    const topic = uniqTopic("history:kill");
    // The reference: a client that never drops.
    const observer = await connected(mkSocket(t));
    const reference = [];
    const chO = observer.channel(topic, {});
    chO.on("shout", (p) => reference.push(p));
    assert.equal((await result(chO.join())).status, "ok");

    const gate = { open: true };
    const a = historyClient(t, topic, gate);
    await connected(a.socket);
    assert.equal((await result(a.ch.join().receive("ok", a.cur.joined))).status, "ok");

    const pub = await publishers(t, topic, 2, 500);
    await until(() => a.seen.length >= 300, "300 broadcasts before the kill");
    gate.open = false;
    killTcp(a.socket);
    const atKill = reference.length;
    // Away while at least 300 more are broadcast (well under the fixture's 1,000 kept).
    await until(() => reference.length >= atKill + 300, "300 broadcasts while away");
    gate.open = true;
    await until(() => a.cur.replies.length === 2, () => `the rejoin (replies ${JSON.stringify(a.cur.replies)})`);
    // Keep them flowing for a while after the rejoin, then stop.
    const atRejoin = reference.length;
    await until(() => reference.length >= atRejoin + 300, "300 broadcasts after the rejoin");
    await pub.stop();

    // A last broadcast behind all of them: once both have it, nothing else can be in flight.
    await bulkBroadcast(topic, 1, 1);
    const isLast = (seen) => seen.length > 0 && seen[seen.length - 1].p === "bulk";
    await until(() => isLast(reference), () => `observer ${reference.length}/${pub.ok + 1}`);
    await until(() => isLast(a.seen), () => `client ${a.seen.length}/${pub.ok + 1}`);
    assert.equal(reference.length, pub.ok + 1);
    assert.equal(a.cur.replies[1].recovered, true, JSON.stringify(a.cur.replies[1]));
    assert.equal(a.cur.replies[1].epoch, a.cur.replies[0].epoch);
    assert.equal(a.seen.length, reference.length, "as many messages as the observer: none missing, none twice");
    assert.deepEqual(a.seen, reference, "the same messages in the same order as a client that never dropped");
    assert.equal(a.cur.offset, pub.ok + 1, "the cursor counted every broadcast");
  });

  test("more than the history keeps sent while away: recovered false, nothing old pushed", T, async (t) => {
    if (!mounted) return t.skip("history:* not mounted");
    const topic = uniqTopic("history:trim");
    const gate = { open: true };
    const a = historyClient(t, topic, gate);
    await connected(a.socket);
    assert.equal((await result(a.ch.join().receive("ok", a.cur.joined))).status, "ok");
    for (let n = 1; n <= 5; n++) assert.equal((await result(a.ch.push("shout", { n }))).status, "ok");
    await until(() => a.seen.length === 5, "5 shouts");

    gate.open = false;
    killTcp(a.socket);
    await bulkBroadcast(topic, 1100);
    gate.open = true;
    await until(() => a.cur.replies.length === 2, "the rejoin");
    const reply = a.cur.replies[1];
    assert.deepEqual(reply, { recovered: false, epoch: a.cur.replies[0].epoch, offset: 1105 });

    assert.equal((await result(a.ch.push("shout", { n: "after" }))).status, "ok");
    await until(() => a.seen.length === 6, () => `client saw ${a.seen.length}`);
    assert.deepEqual(
      a.seen.map((p) => p.n),
      [1, 2, 3, 4, 5, "after"],
      "nothing of what was trimmed (or kept) is replayed after recovered: false",
    );
    assert.deepEqual(a.cur.params(), { since: { epoch: reply.epoch, offset: 1106 } });
  });

  test("vendor-js/js/history.js keeps the cursor across a killed connection", T, async (t) => {
    if (!mounted) return t.skip("history:* not mounted");
    const topic = uniqTopic("history:helper");
    const gate = { open: true };
    const socket = mkSocket(t, { transport: gatedTransport(gate), reconnectAfterMs: () => 100 });
    const { channel, cursor } = withHistory(socket, topic, { name: "helper" });
    const seen = [];
    channel.on("shout", (p) => seen.push(p.n));
    const replies = [];
    channel.join().receive("ok", (r) => replies.push(r));
    await connected(socket);
    await until(() => replies.length === 1, "the join");
    for (let n = 1; n <= 20; n++) assert.equal((await result(channel.push("shout", { n }))).status, "ok");
    await until(() => seen.length === 20, "20 shouts");
    assert.deepEqual(cursor.position(), { epoch: replies[0].epoch, offset: 20 });

    gate.open = false;
    killTcp(socket);
    for (let n = 21; n <= 50; n++) {
      const res = await fetch(`${HTTP_URL}/fixture/broadcast`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ topic, event: "shout", payload: { n } }),
      });
      assert.equal(res.status, 204);
    }
    gate.open = true;
    await until(() => replies.length === 2, "the rejoin");
    assert.deepEqual(replies[1], { recovered: true, epoch: replies[0].epoch, offset: 50 });
    await until(() => seen.length === 50, () => `helper client saw ${seen.length}`);
    assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => i + 1));
    assert.deepEqual(cursor.position(), { epoch: replies[0].epoch, offset: 50 });
    assert.equal(cursor.recovered, true);
  });
});
