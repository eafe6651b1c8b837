// The same flows through the official phoenix@1.8.16 client (Socket/Channel API) in Node,
// with `ws` as the WebSocket implementation.

import { test, describe } from "node:test";
import assert from "node:assert/strict";

import {
  SOCKET_ENDPOINT,
  fixtureToken,
  broadcast,
  uniqTopic,
  sleep,
  restartCommand,
  runRestart,
} from "../lib/server.js";
import { recorder, mkSocket, connected, result } from "../lib/client.js";

const T = { timeout: 60000 };

// ------------------------------------------------------------------------------------------------
// helpers

async function joined(socket, topic, params = {}) {
  const ch = socket.channel(topic, params);
  const r = await result(ch.join());
  assert.deepEqual(r, { status: "ok", response: {} }, `join ${topic}`);
  return ch;
}

const bytes = (ab) => Array.from(new Uint8Array(ab));

// ------------------------------------------------------------------------------------------------
describe("official client: join", () => {
  test("client: join ok", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = s.channel("room:lobby");
    assert.deepEqual(await result(ch.join()), { status: "ok", response: {} });
    assert.equal(ch.state, "joined");
  });

  test("client: join error (room:private) → receive(\"error\") with reason", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = s.channel("room:private");
    assert.deepEqual(await result(ch.join()), { status: "error", response: { reason: "unauthorized" } });
    assert.equal(ch.state, "errored");
  });

  test("client: join crash (room:crash) → error \"join crashed\"", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = s.channel("room:crash");
    assert.deepEqual(await result(ch.join()), { status: "error", response: { reason: "join crashed" } });
  });

  test("client: unrouted topic → error \"unmatched topic\"", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = s.channel("nope:1");
    assert.deepEqual(await result(ch.join()), { status: "error", response: { reason: "unmatched topic" } });
  });

  test("client: join with reply (room:greet)", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = s.channel("room:greet", { a: 1 });
    assert.deepEqual(await result(ch.join()), { status: "ok", response: { hello: "world" } });
  });

  test("client: room:tick — join ok fires before the tick event", T, async (t) => {
    const s = await connected(mkSocket(t));
    const order = [];
    const ch = s.channel("room:tick");
    const tick = recorder("tick");
    ch.on("tick", (p) => {
      order.push("tick");
      tick(p);
    });
    ch.join().receive("ok", () => order.push("join ok"));
    const [[payload]] = await tick.wait(1);
    assert.deepEqual(payload, { n: 1 });
    assert.deepEqual(order, ["join ok", "tick"]);
  });

  test("client: a second Channel on the same topic leaves the first and joins", T, async (t) => {
    const s = await connected(mkSocket(t));
    const first = s.channel("room:dup");
    assert.equal((await result(first.join())).status, "ok");
    const firstClosed = recorder("first.onClose");
    first.onClose(firstClosed);
    const second = s.channel("room:dup");
    assert.equal((await result(second.join())).status, "ok");
    await firstClosed.wait(1);
    assert.deepEqual(await result(second.push("ping", { who: "second" })), { status: "ok", response: { who: "second" } });
  });

  test("client: socket.ping (heartbeat) gets an answer", T, async (t) => {
    const s = await connected(mkSocket(t));
    const pong = recorder("ping");
    assert.equal(s.ping(pong), true);
    const [[rtt]] = await pong.wait(1);
    assert.equal(typeof rtt, "number");
  });
});

// ------------------------------------------------------------------------------------------------
describe("official client: push, replies, events", () => {
  test("client: push + receive(\"ok\") with payload", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = await joined(s, "room:lobby");
    const payload = { x: 1, s: "ünïcødé", a: [1, { b: null }] };
    assert.deepEqual(await result(ch.push("ping", payload)), { status: "ok", response: payload });
  });

  test("client: receive(\"error\") for error_reply", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = await joined(s, "room:lobby");
    assert.deepEqual(await result(ch.push("error_reply", {})), { status: "error", response: { reason: "nope" } });
  });

  test("client: noreply push times out (no reply is sent)", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = await joined(s, "room:lobby");
    assert.deepEqual(await result(ch.push("noreply", {}, 800)), { status: "timeout" });
  });

  test("client: channel.on(\"pushed\") for a server push", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = await joined(s, "room:lobby");
    const pushed = recorder("pushed");
    ch.on("pushed", pushed);
    ch.push("push", { hello: "there" }, 1000);
    const [[payload, ref]] = await pushed.wait(1);
    assert.deepEqual(payload, { hello: "there" });
    assert.equal(ref, null, "a push has ref null");
  });

  test("client: whoami with authToken option (subprotocol) and with params token", T, async (t) => {
    const tok = await fixtureToken(61);
    const s1 = await connected(mkSocket(t, { authToken: tok }));
    const c1 = await joined(s1, "room:lobby");
    assert.deepEqual(await result(c1.push("whoami", {})), { status: "ok", response: { user_id: 61 } });
    const tok2 = await fixtureToken(62);
    const s2 = await connected(mkSocket(t, { params: { token: tok2 } }));
    const c2 = await joined(s2, "room:lobby");
    assert.deepEqual(await result(c2.push("whoami", {})), { status: "ok", response: { user_id: 62 } });
    const s3 = await connected(mkSocket(t));
    const c3 = await joined(s3, "room:lobby");
    assert.deepEqual(await result(c3.push("whoami", {})), { status: "ok", response: { user_id: null } });
  });

  test("client: bad token → the socket never opens (connection error)", T, async (t) => {
    const s = mkSocket(t, { params: { token: "garbage" }, reconnectAfterMs: () => 60000 });
    const opened = recorder("onOpen");
    const errored = recorder("onError");
    s.onOpen(opened);
    s.onError(errored);
    s.connect();
    await errored.wait(1);
    await sleep(200);
    assert.equal(opened.calls.length, 0, "socket must not open with a bad token");
  });
});

// ------------------------------------------------------------------------------------------------
describe("official client: leave, crash, stop", () => {
  test("client: leave → receive ok and onClose", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = await joined(s, "room:lobby");
    const closed = recorder("onClose");
    ch.onClose(closed);
    assert.equal((await result(ch.leave())).status, "ok");
    await closed.wait(1);
    assert.equal(ch.state, "closed");
    assert.equal(s.channels.includes(ch), false);
  });

  test("client: boom → onError {reason: channel_crash}, then automatic rejoin succeeds", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = s.channel("room:lobby");
    const joins = recorder("join ok");
    const errors = recorder("onError");
    ch.onError(errors);
    ch.join().receive("ok", joins);
    await joins.wait(1);
    ch.push("boom", {}, 1000);
    const [[reason]] = await errors.wait(1);
    assert.deepEqual(reason, { reason: "channel_crash" });
    await joins.wait(2, 10000); // rejoinAfterMs
    assert.equal(ch.state, "joined");
    assert.deepEqual(await result(ch.push("ping", { after: "rejoin" })), { status: "ok", response: { after: "rejoin" } });
  });

  test("client: stop → ok reply, onClose, and no rejoin", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = s.channel("room:lobby");
    const joins = recorder("join ok");
    const closed = recorder("onClose");
    const errors = recorder("onError");
    ch.onClose(closed);
    ch.onError(errors);
    ch.join().receive("ok", joins);
    await joins.wait(1);
    assert.deepEqual(await result(ch.push("stop", {})), { status: "ok", response: {} });
    await closed.wait(1);
    await sleep(1500); // longer than rejoinAfterMs
    assert.equal(joins.calls.length, 1, "no rejoin after a server-side close");
    assert.equal(errors.calls.length, 0, "no error after a normal stop");
    assert.equal(ch.state, "closed");
  });
});

// ------------------------------------------------------------------------------------------------
describe("official client: broadcast", () => {
  test("client: broadcast via shout reaches a second socket's channel.on(\"shout\")", T, async (t) => {
    const topic = uniqTopic();
    const a = await connected(mkSocket(t));
    const b = await connected(mkSocket(t));
    const ca = await joined(a, topic);
    const cb = await joined(b, topic);
    const gotA = recorder("A shout");
    const gotB = recorder("B shout");
    ca.on("shout", gotA);
    cb.on("shout", gotB);
    assert.deepEqual(await result(ca.push("shout", { body: "hi" })), { status: "ok", response: {} });
    assert.deepEqual((await gotB.wait(1))[0][0], { body: "hi" });
    assert.deepEqual((await gotA.wait(1))[0][0], { body: "hi" });
  });

  test("client: endpoint broadcast (POST /fixture/broadcast) reaches channel.on", T, async (t) => {
    const topic = uniqTopic();
    const a = await connected(mkSocket(t));
    const ca = await joined(a, topic);
    const got = recorder("new_msg");
    ca.on("new_msg", got);
    await broadcast(topic, "new_msg", { body: "from server" });
    assert.deepEqual((await got.wait(1))[0][0], { body: "from server" });
  });

  test("client: broadcast_from (shout_from) is not received by the sender", T, async (t) => {
    const topic = uniqTopic();
    const a = await connected(mkSocket(t));
    const b = await connected(mkSocket(t));
    const ca = await joined(a, topic);
    const cb = await joined(b, topic);
    const gotA = recorder("A shout");
    const gotB = recorder("B shout");
    ca.on("shout", gotA);
    cb.on("shout", gotB);
    assert.deepEqual(await result(ca.push("shout_from", { n: 1 })), { status: "ok", response: {} });
    assert.deepEqual((await gotB.wait(1))[0][0], { n: 1 });
    await sleep(300);
    assert.equal(gotA.calls.length, 0, "the sender must not receive its broadcast_from");
  });

  test("client: intercepted broadcast (filter) → on(\"filtered\") with seen: true", T, async (t) => {
    const topic = uniqTopic();
    const a = await connected(mkSocket(t));
    const b = await connected(mkSocket(t));
    const ca = await joined(a, topic);
    const cb = await joined(b, topic);
    const gotA = recorder("A filtered");
    const gotB = recorder("B filtered");
    ca.on("filtered", gotA);
    cb.on("filtered", gotB);
    ca.push("filter", { v: 1 }, 1000);
    assert.deepEqual((await gotA.wait(1))[0][0], { seen: true, v: 1 });
    assert.deepEqual((await gotB.wait(1))[0][0], { seen: true, v: 1 });
  });
});

// ------------------------------------------------------------------------------------------------
describe("official client: binary", () => {
  test("client: ArrayBuffer push → ok reply whose response is an ArrayBuffer with the same bytes", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = await joined(s, "room:lobby");
    const data = new Uint8Array([0, 1, 2, 127, 128, 253, 254, 255]).buffer;
    const r = await result(ch.push("ping", data));
    assert.equal(r.status, "ok");
    assert.ok(r.response instanceof ArrayBuffer, `response must be an ArrayBuffer, got ${Object.prototype.toString.call(r.response)}`);
    assert.deepEqual(bytes(r.response), [0, 1, 2, 127, 128, 253, 254, 255]);
  });

  test("client: binary push received via on(\"pushed\") as an ArrayBuffer", T, async (t) => {
    const s = await connected(mkSocket(t));
    const ch = await joined(s, "room:lobby");
    const pushed = recorder("pushed");
    ch.on("pushed", pushed);
    ch.push("push", new Uint8Array([1, 2, 3]).buffer, 1000);
    const [[payload]] = await pushed.wait(1);
    assert.ok(payload instanceof ArrayBuffer, "payload must be an ArrayBuffer");
    assert.deepEqual(bytes(payload), [1, 2, 3]);
  });

  test("client: binary broadcast (shout) received by another socket as an ArrayBuffer", T, async (t) => {
    const topic = uniqTopic();
    const a = await connected(mkSocket(t));
    const b = await connected(mkSocket(t));
    const ca = await joined(a, topic);
    const cb = await joined(b, topic);
    const gotB = recorder("B shout");
    cb.on("shout", gotB);
    assert.equal((await result(ca.push("shout", new Uint8Array([9, 8, 7]).buffer))).status, "ok");
    const [[payload, ref]] = await gotB.wait(1);
    assert.ok(payload instanceof ArrayBuffer);
    assert.deepEqual(bytes(payload), [9, 8, 7]);
    assert.equal(ref, null);
  });
});

// ------------------------------------------------------------------------------------------------
describe("official client: disconnect and reconnect", () => {
  async function reconnectAfter(t, userId, trigger) {
    const tok = await fixtureToken(userId);
    const s = mkSocket(t, { authToken: tok });
    const opened = recorder("onOpen");
    const closes = recorder("onClose");
    s.onOpen(opened);
    s.onClose(closes);
    s.connect();
    await opened.wait(1);
    const ch = s.channel("room:lobby");
    const joins = recorder("join ok");
    ch.join().receive("ok", joins);
    await joins.wait(1);
    await trigger(ch);
    const [[ev]] = await closes.wait(1);
    assert.equal(ev.code, 1001, `server close code: expected 1001, got ${ev.code}`);
    await opened.wait(2, 10000);
    await joins.wait(2, 10000);
    assert.deepEqual(await result(ch.push("whoami", {})), { status: "ok", response: { user_id: userId } });
  }

  test("client: disconnect_me → close 1001, the client reconnects and rejoins", T, async (t) => {
    await reconnectAfter(t, 46, async (ch) => {
      ch.push("disconnect_me", {}, 1000);
    });
  });

  test("client: disconnect broadcast on users_socket:N → close 1001, reconnect, rejoin", T, async (t) => {
    await reconnectAfter(t, 47, async () => {
      await broadcast("users_socket:47", "disconnect", {});
    });
  });

  test("client: reconnect after server restart (PHX_RESTART_CMD)", { timeout: 180000 }, async (t) => {
    if (!restartCommand()) {
      t.skip("PHX_RESTART_CMD not set");
      return;
    }
    const s = mkSocket(t, { reconnectAfterMs: () => 200 });
    const opened = recorder("onOpen");
    const closes = recorder("onClose");
    s.onOpen(opened);
    s.onClose(closes);
    s.connect();
    await opened.wait(1);
    const ch = s.channel("room:lobby");
    const joins = recorder("join ok");
    ch.join().receive("ok", joins);
    await joins.wait(1);
    assert.deepEqual(await result(ch.push("ping", { before: 1 })), { status: "ok", response: { before: 1 } });

    await runRestart();

    const [[ev]] = await closes.wait(1, 30000);
    t.diagnostic(`close code on server shutdown: ${ev.code}`);
    await opened.wait(2, 60000);
    await joins.wait(2, 60000);
    assert.equal(ch.state, "joined");
    assert.deepEqual(await result(ch.push("ping", { after: 1 })), { status: "ok", response: { after: 1 } });
  });
});
