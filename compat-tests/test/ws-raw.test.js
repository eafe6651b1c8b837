// Raw-frame WebSocket conformance: spec §13 cases 1–34 (PHOENIX_PROTOCOL.md), adapted to the
// conformance fixture's RoomChannel (CONFORMANCE_FIXTURE.md), plus §11 edge cases.
//
// Envelopes are compared byte-for-byte, payloads as parsed JSON (see lib/raw.js).

import { test, describe } from "node:test";
import assert from "node:assert/strict";

import {
  connect,
  socketUrl,
  assertFrame,
  assertBinary,
  expectUnordered,
  frame,
  replyFrame,
  binClientPush,
  binServerPush,
  binReply,
  binBroadcast,
  upgradeRequest,
  show,
} from "../lib/raw.js";
import { fixtureToken, broadcast, tokenSubprotocol, uniqTopic, sleep } from "../lib/server.js";

const T = { timeout: 30000 };

/** Opens a V2 socket (or per params/opts) and closes it when the test ends. */
async function open(t, params = {}, opts = {}) {
  const { vsn, ...connectOpts } = opts;
  const sock = await connect(socketUrl(params, vsn === undefined ? {} : { vsn }), connectOpts);
  t.after(() => sock.close());
  return sock;
}

/** Join `topic` with join_ref = ref = jr and assert the ok reply (response `{}` unless given). */
async function join(sock, jr, topic, { payload = {}, response = {}, ref = jr } = {}) {
  sock.send(frame(jr, ref, topic, "phx_join", payload));
  assertFrame(await sock.next(), replyFrame(jr, ref, topic, "ok", response));
}

const unmatched = (ref, topic) => replyFrame(null, ref, topic, "error", { reason: "unmatched topic" });

// ------------------------------------------------------------------------------------------------
describe("heartbeat", () => {
  test("§13.1 heartbeat", T, async (t) => {
    const s = await open(t);
    s.send(`[null,"1","phoenix","heartbeat",{}]`);
    assertFrame(await s.next(), `[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]`);
  });

  test("§13.2 heartbeat with a join_ref → reply join_ref null", T, async (t) => {
    const s = await open(t);
    s.send(`["9","2","phoenix","heartbeat",{}]`);
    assertFrame(await s.next(), `[null,"2","phoenix","phx_reply",{"response":{},"status":"ok"}]`);
  });

  test("§11.23 heartbeat answered after joins, and phx_join on topic phoenix is unmatched", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(`["3","4","phoenix","heartbeat",{}]`);
    assertFrame(await s.next(), `[null,"4","phoenix","phx_reply",{"response":{},"status":"ok"}]`);
    s.send(`["5","5","phoenix","phx_join",{}]`);
    assertFrame(await s.next(), unmatched("5", "phoenix"));
    s.send(`[null,"6","phoenix","heartbeat",{}]`);
    assertFrame(await s.next(), `[null,"6","phoenix","phx_reply",{"response":{},"status":"ok"}]`);
  });

  test("§2.1 refs are opaque JSON values echoed verbatim (numbers stay numbers)", T, async (t) => {
    const s = await open(t);
    s.send(`[null,7,"phoenix","heartbeat",{}]`);
    assertFrame(await s.next(), `[null,7,"phoenix","phx_reply",{"response":{},"status":"ok"}]`);
    s.send(`[3,3,"room:lobby","phx_join",{}]`);
    assertFrame(await s.next(), `[3,3,"room:lobby","phx_reply",{"response":{},"status":"ok"}]`);
    s.send(`[3,4,"room:lobby","ping",{"n":1}]`);
    assertFrame(await s.next(), `[3,4,"room:lobby","phx_reply",{"response":{"n":1},"status":"ok"}]`);
    // join_refs are compared with strict equality: "3" is not 3 → stale → dropped
    s.send(`["3","5","room:lobby","ping",{}]`);
    await s.expectNone(300, `no reply to a push whose join_ref "3" ≠ the channel's 3`);
    await s.heartbeat();
  });

  test("§11.9 V2 frames with more than 5 elements are accepted (extras ignored)", T, async (t) => {
    const s = await open(t);
    s.send(`[null,"1","phoenix","heartbeat",{},"extra",7]`);
    assertFrame(await s.next(), `[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]`);
  });
});

// ------------------------------------------------------------------------------------------------
describe("join", () => {
  test("§13.3 join ok", T, async (t) => {
    const s = await open(t);
    s.send(`["3","3","room:lobby","phx_join",{}]`);
    assertFrame(await s.next(), `["3","3","room:lobby","phx_reply",{"response":{},"status":"ok"}]`);
    await s.expectNone(300, "nothing after the join reply of room:lobby");
  });

  test("§13.4 join with reply payload (room:greet)", T, async (t) => {
    const s = await open(t);
    s.send(`["4","4","room:greet","phx_join",{"a":1}]`);
    assertFrame(await s.next(), `["4","4","room:greet","phx_reply",{"response":{"hello":"world"},"status":"ok"}]`);
  });

  test("§13.5 join refused (room:private), then a push to it is unmatched", T, async (t) => {
    const s = await open(t);
    s.send(`["5","5","room:private","phx_join",{}]`);
    assertFrame(
      await s.next(),
      `["5","5","room:private","phx_reply",{"response":{"reason":"unauthorized"},"status":"error"}]`,
    );
    s.send(`["5","6","room:private","ping",{}]`);
    assertFrame(
      await s.next(),
      `[null,"6","room:private","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]`,
    );
    await s.expectNone(300, "no phx_close after a refused join");
  });

  test("§4.1 join that raises (room:crash) → error \"join crashed\", nothing registered", T, async (t) => {
    const s = await open(t);
    s.send(`["1","1","room:crash","phx_join",{}]`);
    assertFrame(await s.next(), `["1","1","room:crash","phx_reply",{"response":{"reason":"join crashed"},"status":"error"}]`);
    s.send(`["1","2","room:crash","ping",{}]`);
    assertFrame(await s.next(), unmatched("2", "room:crash"));
    await s.heartbeat();
  });

  test("§13.6 unrouted join → unmatched topic with join_ref null", T, async (t) => {
    const s = await open(t);
    s.send(`["7","7","nope:1","phx_join",{}]`);
    assertFrame(await s.next(), `[null,"7","nope:1","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]`);
  });

  test("§3 routing: room:* is a prefix match (\"room:\" itself joins; \"roomx\" does not)", T, async (t) => {
    const s = await open(t);
    await join(s, "1", "room:");
    s.send(`["2","2","roomx","phx_join",{}]`);
    assertFrame(await s.next(), unmatched("2", "roomx"));
    s.send(`["3","3","room","phx_join",{}]`);
    assertFrame(await s.next(), unmatched("3", "room"));
  });

  test("§13.7 push to an unjoined topic → unmatched topic", T, async (t) => {
    const s = await open(t);
    s.send(`["8","8","room:x","ping",{}]`);
    assertFrame(await s.next(), `[null,"8","room:x","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]`);
  });
});

// ------------------------------------------------------------------------------------------------
describe("handle_in", () => {
  test("§13.8 push with reply", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(`["3","10","room:lobby","ping",{"x":1}]`);
    assertFrame(await s.next(), `["3","10","room:lobby","phx_reply",{"response":{"x":1},"status":"ok"}]`);
  });

  test("§13.8b ping echoes arbitrary JSON (nesting, unicode, escapes, floats)", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    const p = {
      a: [1, 2, { b: null }],
      s: "ünïcødé \u2028 / \"q\" \\ \n\t\u0001 😀",
      f: 1.5,
      e: 1e20,
      neg: -7,
      t: true,
      nested: { deep: { deeper: [[], {}] } },
    };
    s.send(frame("3", "11", "room:lobby", "ping", p));
    assertFrame(await s.next(), replyFrame("3", "11", "room:lobby", "ok", p));
  });

  test("§13.9 null join_ref accepted; reply carries the channel's join_ref", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(`[null,"11","room:lobby","ping",{}]`);
    assertFrame(await s.next(), `["3","11","room:lobby","phx_reply",{"response":{},"status":"ok"}]`);
  });

  test("§13.10 stale join_ref dropped silently; connection stays alive", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(`["1","12","room:lobby","ping",{}]`);
    await s.expectNone(300, "no reply to a stale join_ref");
    await s.heartbeat();
    s.send(`["3","13","room:lobby","ping",{"still":"joined"}]`);
    assertFrame(await s.next(), `["3","13","room:lobby","phx_reply",{"response":{"still":"joined"},"status":"ok"}]`);
  });

  test("§13.11 noreply → no frame", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(`["3","13","room:lobby","noreply",{}]`);
    await s.expectNone(300, "no frame for noreply");
    await s.heartbeat();
  });

  test("§11.8 error reply: {:error, %{reason: \"nope\"}} → status \"error\"", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(`["3","14","room:lobby","error_reply",{}]`);
    assertFrame(await s.next(), `["3","14","room:lobby","phx_reply",{"response":{"reason":"nope"},"status":"error"}]`);
  });

  test("whoami: anonymous socket → user_id null; ?token= → the token's user id", T, async (t) => {
    const a = await open(t);
    await join(a, "3", "room:lobby");
    a.send(`["3","4","room:lobby","whoami",{}]`);
    assertFrame(await a.next(), `["3","4","room:lobby","phx_reply",{"response":{"user_id":null},"status":"ok"}]`);
    const tok = await fixtureToken(77);
    const u = await open(t, { token: tok });
    await join(u, "3", "room:lobby");
    u.send(`["3","4","room:lobby","whoami",{}]`);
    assertFrame(await u.next(), `["3","4","room:lobby","phx_reply",{"response":{"user_id":77},"status":"ok"}]`);
  });
});

// ------------------------------------------------------------------------------------------------
describe("leave and close", () => {
  test("§13.12 leave → ok reply then phx_close (ref = join_ref); topic then unmatched", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(`["3","14","room:lobby","phx_leave",{}]`);
    assertFrame(await s.next(), `["3","14","room:lobby","phx_reply",{"response":{},"status":"ok"}]`);
    assertFrame(await s.next(), `["3","3","room:lobby","phx_close",{}]`);
    s.send(`["3","15","room:lobby","ping",{}]`);
    assertFrame(await s.next(), unmatched("15", "room:lobby"));
    // and the topic can be joined again, without any phx_close
    await join(s, "16", "room:lobby");
    await s.expectNone(300, "nothing after the rejoin reply");
  });

  test("§13.13 leave of an unjoined topic → ok reply and no phx_close", T, async (t) => {
    const s = await open(t);
    s.send(`["20","21","room:none","phx_leave",{}]`);
    assertFrame(await s.next(), `["20","21","room:none","phx_reply",{"response":{},"status":"ok"}]`);
    await s.expectNone(300, "no phx_close for a leave of an unjoined topic");
  });

  test("§13.14 leave with a stale join_ref → no frame; channel stays joined", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(`["1","22","room:lobby","phx_leave",{}]`);
    await s.expectNone(300, "no frame for a stale leave");
    s.send(`["3","10","room:lobby","ping",{"x":1}]`);
    assertFrame(await s.next(), `["3","10","room:lobby","phx_reply",{"response":{"x":1},"status":"ok"}]`);
  });

  test("§13.15 duplicate join → new reply first, then phx_close of the old join_ref", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(`["30","30","room:lobby","phx_join",{}]`);
    assertFrame(await s.next(), `["30","30","room:lobby","phx_reply",{"response":{},"status":"ok"}]`);
    assertFrame(await s.next(), `["3","3","room:lobby","phx_close",{}]`);
    s.send(`["30","31","room:lobby","ping",{"j":30}]`);
    assertFrame(await s.next(), `["30","31","room:lobby","phx_reply",{"response":{"j":30},"status":"ok"}]`);
    s.send(`["3","32","room:lobby","ping",{}]`);
    await s.expectNone(300, `no reply to a push with the replaced join_ref "3"`);
    s.send(`[null,"33","room:lobby","ping",{}]`);
    assertFrame(await s.next(), `["30","33","room:lobby","phx_reply",{"response":{},"status":"ok"}]`);
  });

  test("§13.16 channel crash → phx_error {reason: channel_crash} (ref = join_ref); topic then unmatched", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(`["3","31","room:lobby","boom",{}]`);
    assertFrame(await s.next(), `["3","3","room:lobby","phx_error",{"reason":"channel_crash"}]`);
    s.send(`["3","32","room:lobby","ping",{}]`);
    assertFrame(await s.next(), `[null,"32","room:lobby","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]`);
    // the socket survives a channel crash and the topic can be joined again
    await join(s, "33", "room:lobby");
    await s.heartbeat();
  });

  test("§13.16b unknown event (no handle_in clause) crashes the channel → phx_error", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(`["3","31","room:lobby","no_such_event",{}]`);
    assertFrame(await s.next(), `["3","3","room:lobby","phx_error",{"reason":"channel_crash"}]`);
    await s.heartbeat();
  });

  test("§13.17 stop with reply → ok reply then phx_close; topic then unmatched", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(`["3","33","room:lobby","stop",{}]`);
    assertFrame(await s.next(), `["3","33","room:lobby","phx_reply",{"response":{},"status":"ok"}]`);
    assertFrame(await s.next(), `["3","3","room:lobby","phx_close",{}]`);
    s.send(`["3","34","room:lobby","ping",{}]`);
    assertFrame(await s.next(), unmatched("34", "room:lobby"));
  });
});

// ------------------------------------------------------------------------------------------------
describe("server push and broadcast", () => {
  test("§13.18 server push (push → \"pushed\", ref null, join_ref set)", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(`["3","40","room:lobby","push",{"a":[1.5,true],"at":1,"body":"hi","z":null}]`);
    assertFrame(await s.next(), `["3",null,"room:lobby","pushed",{"a":[1.5,true],"at":1,"body":"hi","z":null}]`);
    await s.expectNone(300, "no reply for push (noreply)");
    s.send(`[null,"41","room:lobby","push",{"n":2}]`);
    assertFrame(await s.next(), `["3",null,"room:lobby","pushed",{"n":2}]`);
  });

  test("§13.18/§13.22 room:tick: join reply first, then the tick push", T, async (t) => {
    const s = await open(t);
    s.send(`["3","3","room:tick","phx_join",{}]`);
    assertFrame(await s.next(), `["3","3","room:tick","phx_reply",{"response":{},"status":"ok"}]`);
    assertFrame(await s.next(), `["3",null,"room:tick","tick",{"n":1}]`);
    await s.expectNone(300, "a single tick");
  });

  test("§13.22 join reply ordering holds on repeated joins (room:tick ×5 on fresh sockets)", T, async (t) => {
    for (let i = 0; i < 5; i++) {
      const s = await open(t);
      const jr = String(10 + i);
      s.send(frame(jr, jr, "room:tick", "phx_join", {}));
      const f1 = await s.next();
      const f2 = await s.next();
      assertFrame(f1, replyFrame(jr, jr, "room:tick", "ok", {}));
      assertFrame(f2, frame(jr, null, "room:tick", "tick", { n: 1 }));
      s.close();
    }
  });

  test("§13.19 broadcast fastlane via POST /fixture/broadcast: joined sockets only, join_ref null", T, async (t) => {
    const topic = uniqTopic();
    const a = await open(t);
    const b = await open(t);
    const c = await open(t);
    const d = await open(t);
    await join(a, "3", topic);
    await join(b, "7", topic);
    await join(c, "3", uniqTopic()); // joined elsewhere
    await broadcast(topic, "new_msg", { body: "hi" });
    const expected = frame(null, null, topic, "new_msg", { body: "hi" });
    assertFrame(await a.next(), expected);
    assertFrame(await b.next(), expected);
    await c.expectNone(300, "no broadcast for a socket joined to another topic");
    await d.expectNone(10, "no broadcast for a socket with no channel");
  });

  test("§13.19b broadcast via handle_in shout reaches every joined socket", T, async (t) => {
    const topic = uniqTopic();
    const a = await open(t);
    const b = await open(t);
    await join(a, "3", topic);
    await join(b, "7", topic);
    a.send(frame("3", "5", topic, "shout", { body: "yo" }));
    await expectUnordered(a, [
      frame(null, null, topic, "shout", { body: "yo" }),
      replyFrame("3", "5", topic, "ok", {}),
    ]);
    assertFrame(await b.next(), frame(null, null, topic, "shout", { body: "yo" }));
  });

  test("§13.19c shout: the sender gets the broadcast before its reply (transcript order)", T, async (t) => {
    const topic = uniqTopic();
    const a = await open(t);
    await join(a, "3", topic);
    for (let i = 0; i < 5; i++) {
      const ref = String(10 + i);
      a.send(frame("3", ref, topic, "shout", { i }));
      assertFrame(await a.next(), frame(null, null, topic, "shout", { i }));
      assertFrame(await a.next(), replyFrame("3", ref, topic, "ok", {}));
    }
  });

  test("§13.20 broadcast_from (shout_from): others get it, the sender does not", T, async (t) => {
    const topic = uniqTopic();
    const a = await open(t);
    const b = await open(t);
    await join(a, "3", topic);
    await join(b, "7", topic);
    a.send(frame("3", "5", topic, "shout_from", {}));
    assertFrame(await a.next(), replyFrame("3", "5", topic, "ok", {}));
    assertFrame(await b.next(), `[null,null,${JSON.stringify(topic)},"shout",{}]`);
    await a.expectNone(300, "broadcast_from must skip the sender");
  });

  test("§13.21 intercepted broadcast (filter): handle_out pushes with each socket's join_ref", T, async (t) => {
    const topic = uniqTopic();
    const a = await open(t);
    const b = await open(t);
    await join(a, "3", topic);
    await join(b, "7", topic);
    a.send(frame("3", "5", topic, "filter", { v: 1 }));
    assertFrame(await a.next(), frame("3", null, topic, "filtered", { seen: true, v: 1 }));
    assertFrame(await b.next(), frame("7", null, topic, "filtered", { seen: true, v: 1 }));
    await a.expectNone(300, "filter is noreply");
    // an endpoint broadcast of the intercepted event goes through handle_out too
    await broadcast(topic, "filtered", { v: 2 });
    assertFrame(await a.next(), frame("3", null, topic, "filtered", { seen: true, v: 2 }));
    assertFrame(await b.next(), frame("7", null, topic, "filtered", { seen: true, v: 2 }));
  });
});

// ------------------------------------------------------------------------------------------------
describe("binary frames", () => {
  test("§13.23 binary push in, binary reply out (exact bytes)", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    const input = Buffer.concat([
      Buffer.from([0x00, 0x01, 0x02, 0x0a, 0x04]),
      Buffer.from("340room:lobbyping", "latin1"),
      Buffer.from([0xde, 0xad]),
    ]);
    assert.ok(input.equals(binClientPush("3", "40", "room:lobby", "ping", [0xde, 0xad])), "builder sanity");
    s.send(input);
    const expected = Buffer.concat([
      Buffer.from([0x01, 0x01, 0x02, 0x0a, 0x02]),
      Buffer.from("340room:lobbyok", "latin1"),
      Buffer.from([0xde, 0xad]),
    ]);
    assertBinary(await s.next(), expected);
  });

  test("§13.23b binary echo: empty payload, all byte values, 100 KB payload", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(binClientPush("3", "41", "room:lobby", "ping", []));
    assertBinary(await s.next(), binReply("3", "41", "room:lobby", "ok", []));
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    s.send(binClientPush("3", "42", "room:lobby", "ping", all));
    assertBinary(await s.next(), binReply("3", "42", "room:lobby", "ok", all));
    const big = Buffer.alloc(100 * 1024, 0xab);
    s.send(binClientPush("3", "43", "room:lobby", "ping", big));
    assertBinary(await s.next(), binReply("3", "43", "room:lobby", "ok", big));
  });

  test("§13.24 binary push out (kind 0, no ref field)", T, async (t) => {
    const s = await open(t);
    await join(s, "3", "room:lobby");
    s.send(binClientPush("3", "41", "room:lobby", "push", [1, 2, 3]));
    const expected = Buffer.concat([
      Buffer.from([0x00, 0x01, 0x0a, 0x06]),
      Buffer.from("3room:lobbypushed", "latin1"),
      Buffer.from([1, 2, 3]),
    ]);
    assert.ok(expected.equals(binServerPush("3", "room:lobby", "pushed", [1, 2, 3])), "builder sanity");
    assertBinary(await s.next(), expected);
    await s.expectNone(300, "push is noreply");
  });

  test("§13.25 binary broadcast (kind 2) via shout with a binary payload", T, async (t) => {
    const topic = uniqTopic();
    const a = await open(t);
    const b = await open(t);
    await join(a, "3", topic);
    await join(b, "7", topic);
    a.send(binClientPush("3", "5", topic, "shout", [9]));
    const bc = binBroadcast(topic, "shout", [9]);
    assert.equal(bc[0], 2);
    await expectUnordered(a, [bc, replyFrame("3", "5", topic, "ok", {})]);
    assertBinary(await b.next(), bc);
  });

  test("§13.26 oversized binary field: nothing binary is sent, socket stays alive", T, async (t) => {
    // A client→server binary frame cannot carry a >255-byte field either, so the only way to make
    // the fixture push {:binary, _} with an unencodable field is a >255-byte join_ref set by a text
    // join, followed by a binary push whose join_ref is empty. Whatever the server does with the
    // empty join_ref (drop it as stale, or accept it like null), it must not emit a binary frame
    // (it cannot be encoded) and must not tear the connection down. A phx_error for that channel
    // is tolerated (Phoenix encodes pushes inside the channel process).
    const s = await open(t);
    const longJr = "j".repeat(256);
    s.send(frame(longJr, "1", "room:lobby", "phx_join", {}));
    assertFrame(await s.next(), replyFrame(longJr, "1", "room:lobby", "ok", {}));
    // text output with a long join_ref is fine
    s.send(frame(null, "2", "room:lobby", "push", { k: 1 }));
    assertFrame(await s.next(), frame(longJr, null, "room:lobby", "pushed", { k: 1 }));
    s.send(binClientPush("", "3", "room:lobby", "push", [1, 2, 3]));
    s.send(binClientPush("", "4", "room:lobby", "ping", [4, 5, 6]));
    await sleep(300);
    for (const f of s.pending()) {
      assert.ok(typeof f === "string", `no binary frame may be sent, got ${show(f)}`);
      assertFrame(f, frame(longJr, longJr, "room:lobby", "phx_error", { reason: "channel_crash" }));
    }
    s.queue.length = 0;
    assert.ok(!s.isClosed, "socket must stay open");
    await s.heartbeat();

    // A 256-byte topic can be joined and used through text frames.
    const longTopic = "room:" + "x".repeat(251);
    assert.equal(Buffer.byteLength(longTopic), 256);
    await join(s, "5", longTopic);
    s.send(frame("5", "6", longTopic, "push", { t: 1 }));
    assertFrame(await s.next(), frame("5", null, longTopic, "pushed", { t: 1 }));
    s.send(frame("5", "7", longTopic, "ping", { t: 2 }));
    assertFrame(await s.next(), replyFrame("5", "7", longTopic, "ok", { t: 2 }));
    await s.heartbeat();
  });
});

// ------------------------------------------------------------------------------------------------
describe("V1 serializer", () => {
  const v1Heartbeat = `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}`;
  const v1HeartbeatReply = `{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"phoenix"}`;

  test("§13.27 V1 socket without vsn: heartbeat", T, async (t) => {
    const s = await open(t, {}, { vsn: null });
    s.send(v1Heartbeat);
    assertFrame(await s.next(), v1HeartbeatReply);
  });

  test("§13.27 V1 socket with vsn=1.0.0: heartbeat", T, async (t) => {
    const s = await open(t, {}, { vsn: "1.0.0" });
    s.send(v1Heartbeat);
    assertFrame(await s.next(), v1HeartbeatReply);
  });

  test("§13.27 V1 join, ping, push, unmatched (keys event,payload,ref,topic; no join_ref)", T, async (t) => {
    const s = await open(t, {}, { vsn: "1.0.0" });
    s.send(`{"event":"phx_join","payload":{},"ref":"1","topic":"room:lobby"}`);
    assertFrame(await s.next(), `{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"room:lobby"}`);
    s.send(`{"event":"ping","payload":{"x":1},"ref":"2","topic":"room:lobby"}`);
    assertFrame(await s.next(), `{"event":"phx_reply","payload":{"response":{"x":1},"status":"ok"},"ref":"2","topic":"room:lobby"}`);
    s.send(`{"event":"push","payload":{"a":1},"ref":"3","topic":"room:lobby"}`);
    assertFrame(await s.next(), `{"event":"pushed","payload":{"a":1},"ref":null,"topic":"room:lobby"}`);
    s.send(`{"event":"ping","payload":{},"ref":"4","topic":"room:nope"}`);
    assertFrame(await s.next(), `{"event":"phx_reply","payload":{"response":{"reason":"unmatched topic"},"status":"error"},"ref":"4","topic":"room:nope"}`);
  });

  test("§13.27 V1 input with join_ref and other key order (transcript shape)", T, async (t) => {
    const s = await open(t, {}, { vsn: "1.0.0" });
    s.send(`{"topic":"room:greet","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}`);
    assertFrame(await s.next(), `{"event":"phx_reply","payload":{"response":{"hello":"world"},"status":"ok"},"ref":"1","topic":"room:greet"}`);
    s.send(`{"topic":"room:greet","event":"ping","payload":{"y":2},"ref":"2","join_ref":"1"}`);
    assertFrame(await s.next(), `{"event":"phx_reply","payload":{"response":{"y":2},"status":"ok"},"ref":"2","topic":"room:greet"}`);
  });

  test("§13.27 V1 broadcast looks like a push (ref null, no join_ref)", T, async (t) => {
    const topic = uniqTopic();
    const s = await open(t, {}, { vsn: "1.0.0" });
    s.send(JSON.stringify({ event: "phx_join", payload: {}, ref: "1", topic }));
    assertFrame(await s.next(), `{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":${JSON.stringify(topic)}}`);
    await broadcast(topic, "new_msg", { body: "hi" });
    assertFrame(await s.next(), `{"event":"new_msg","payload":{"body":"hi"},"ref":null,"topic":${JSON.stringify(topic)}}`);
  });

  test("§13.27 V1 leave: ok reply, then phx_close with ref null (stored join_ref is nil)", T, async (t) => {
    const s = await open(t, {}, { vsn: "1.0.0" });
    s.send(`{"event":"phx_join","payload":{},"ref":"1","topic":"room:lobby"}`);
    assertFrame(await s.next(), `{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"room:lobby"}`);
    s.send(`{"event":"phx_leave","payload":{},"ref":"2","topic":"room:lobby"}`);
    assertFrame(await s.next(), `{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"2","topic":"room:lobby"}`);
    assertFrame(await s.next(), `{"event":"phx_close","payload":{},"ref":null,"topic":"room:lobby"}`);
  });

  test("§1.3 vsn uses ~> semantics: 2.0.9 speaks V2, 1.0.3 speaks V1", T, async (t) => {
    const v2 = await open(t, {}, { vsn: "2.0.9" });
    v2.send(`[null,"1","phoenix","heartbeat",{}]`);
    assertFrame(await v2.next(), `[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]`);
    const v1 = await open(t, {}, { vsn: "1.0.3" });
    v1.send(v1Heartbeat);
    assertFrame(await v1.next(), v1HeartbeatReply);
  });
});

// ------------------------------------------------------------------------------------------------
describe("handshake", () => {
  test("§13.28 bad vsn → HTTP 403, empty body (3.0.0, 2.1.0, abc, 2, vsn[x]=1)", T, async () => {
    for (const q of ["vsn=3.0.0", "vsn=2.1.0", "vsn=abc", "vsn=2", "vsn%5Bx%5D=1", "vsn=1.1.0"]) {
      const r = await upgradeRequest(`/socket/websocket?${q}`);
      assert.equal(r.status, 403, `?${q} → expected 403, got ${r.status}`);
      assert.equal(r.body, "", `?${q} → expected an empty body, got ${JSON.stringify(r.body)}`);
    }
    // and through a real WebSocket client
    await assert.rejects(connect(socketUrl({}, { vsn: "3.0.0" })), (e) => e.status === 403);
  });

  test("§13.28b bad vsn is refused before connect: even ?reject=1 or a garbage token gives 403", T, async () => {
    const r = await upgradeRequest(`/socket/websocket?token=garbage&vsn=2.1.0`);
    assert.equal(r.status, 403);
    assert.equal(r.body, "");
  });

  test("§13.29 connect refused → HTTP 403, empty body (?reject=1, ?token=garbage)", T, async (t) => {
    for (const q of ["reject=1&vsn=2.0.0", "token=garbage&vsn=2.0.0"]) {
      const r = await upgradeRequest(`/socket/websocket?${q}`);
      assert.equal(r.status, 403, `?${q} → expected 403, got ${r.status}`);
      assert.equal(r.body, "", `?${q} → expected an empty body`);
    }
    await assert.rejects(connect(socketUrl({ reject: "1" })), (e) => e.status === 403);
    // a valid token and an anonymous socket are accepted
    const tok = await fixtureToken(5);
    const r = await upgradeRequest(`/socket/websocket?token=${encodeURIComponent(tok)}&vsn=2.0.0`);
    assert.equal(r.status, 101);
    const anon = await upgradeRequest(`/socket/websocket?vsn=2.0.0`);
    assert.equal(anon.status, 101);
    const s = await open(t, { token: tok });
    await s.heartbeat();
  });

  test("§13.30 check_origin (host localhost; scheme and port ignored)", T, async () => {
    const cases = [
      ["http://evil.com", 403],
      [null, 101],
      ["http://localhost:8080", 101],
      ["https://localhost", 101],
      ["http://localhost", 101],
      ["http://localhost.evil.com", 403],
      ["http://evil.com:4000", 403],
    ];
    for (const [origin, status] of cases) {
      const r = await upgradeRequest(`/socket/websocket?vsn=2.0.0`, origin ? { Origin: origin } : {});
      assert.equal(r.status, status, `Origin ${origin ?? "(none)"} → expected ${status}, got ${r.status}`);
      if (status === 403) assert.equal(r.body, "", `Origin ${origin} → expected an empty body`);
    }
  });

  test("§1.4 non-GET → 400 empty body; GET without upgrade → 400", T, async () => {
    const post = await upgradeRequest(`/socket/websocket?vsn=2.0.0`, {}, { method: "POST" });
    assert.equal(post.status, 400, `POST → expected 400, got ${post.status}`);
    assert.equal(post.body, "");
    const plain = await upgradeRequest(`/socket/websocket?vsn=2.0.0`, {
      Connection: null,
      Upgrade: null,
      "Sec-WebSocket-Version": null,
      "Sec-WebSocket-Key": null,
    });
    assert.equal(plain.status, 400, `plain GET → expected 400, got ${plain.status}`);
  });

  test("§10 no permessage-deflate negotiated (compress: false); no greeting frame", T, async (t) => {
    const r = await upgradeRequest(`/socket/websocket?vsn=2.0.0`, {
      "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
    });
    assert.equal(r.status, 101);
    assert.equal(r.headers["sec-websocket-extensions"], undefined);
    assert.equal(r.headers["sec-websocket-protocol"], undefined, "no subprotocol when none was requested");
    const s = await open(t);
    await s.expectNone(300, "no greeting frame: the client speaks first");
  });
});

// ------------------------------------------------------------------------------------------------
describe("authToken subprotocol", () => {
  test("§13.31 authToken subprotocol → 101 + protocol phoenix; whoami = token user", T, async (t) => {
    const tok = await fixtureToken(42);
    const r = await upgradeRequest(`/socket/websocket?vsn=2.0.0`, {
      "Sec-WebSocket-Protocol": `phoenix, ${tokenSubprotocol(tok)}`,
    });
    assert.equal(r.status, 101);
    assert.equal(r.headers["sec-websocket-protocol"], "phoenix");

    const s = await open(t, {}, { protocols: ["phoenix", tokenSubprotocol(tok)] });
    assert.equal(s.protocol, "phoenix");
    await join(s, "3", "room:lobby");
    s.send(`["3","4","room:lobby","whoami",{}]`);
    assertFrame(await s.next(), `["3","4","room:lobby","phx_reply",{"response":{"user_id":42},"status":"ok"}]`);
  });

  test("§13.31b padded base64 token subprotocol is accepted too", T, async (t) => {
    // find a user id whose token needs base64 padding
    let tok, uid;
    for (uid of [42, 43, 420, 4200, 42000, 420000, 4200000, 5, 300, 70000, 1e9]) {
      tok = await fixtureToken(uid);
      if (tok.length % 3 !== 0) break;
    }
    assert.ok(tokenSubprotocol(tok, { padded: true }).endsWith("="), "found a token that needs padding");
    const header = `phoenix, ${tokenSubprotocol(tok, { padded: true })}`;
    const r = await upgradeRequest(`/socket/websocket?vsn=2.0.0`, { "Sec-WebSocket-Protocol": header });
    assert.equal(r.status, 101);
    assert.equal(r.headers["sec-websocket-protocol"], "phoenix");
    const s = await open(t, {}, { rawProtocolHeader: header });
    await join(s, "3", "room:lobby");
    s.send(`["3","4","room:lobby","whoami",{}]`);
    assertFrame(await s.next(), replyFrame("3", "4", "room:lobby", "ok", { user_id: uid }));
  });

  test("§13.31c bad tokens: garbage token in subprotocol → 403; invalid base64 → refused, server survives", T, async (t) => {
    const garbage = await upgradeRequest(`/socket/websocket?vsn=2.0.0`, {
      "Sec-WebSocket-Protocol": `phoenix, ${tokenSubprotocol("garbage")}`,
    });
    assert.equal(garbage.status, 403, `a token that does not verify → expected 403, got ${garbage.status}`);
    // Phoenix raises on invalid base64 (HTTP 500); any refusal passes, the server must survive
    const bad = await upgradeRequest(`/socket/websocket?vsn=2.0.0`, {
      "Sec-WebSocket-Protocol": "phoenix, base64url.bearer.phx.!!!not*base64",
    });
    assert.ok(bad.status >= 400 && bad.status <= 599, `invalid base64 → expected a refusal, got ${bad.status}`);
    const s = await open(t);
    await s.heartbeat();
  });

  test("§1.4/§1.5 subprotocol negotiation edge cases", T, async () => {
    const tok = await fixtureToken(42);
    // only the token: it is removed, nothing is left → no response subprotocol, 101
    const only = await upgradeRequest(`/socket/websocket?vsn=2.0.0`, { "Sec-WebSocket-Protocol": tokenSubprotocol(tok) });
    assert.equal(only.status, 101, `token-only subprotocol → expected 101, got ${only.status}`);
    assert.equal(only.headers["sec-websocket-protocol"], undefined);
    // a subprotocol list that does not include phoenix → 403
    const foo = await upgradeRequest(`/socket/websocket?vsn=2.0.0`, { "Sec-WebSocket-Protocol": "foo" });
    assert.equal(foo.status, 403, `unknown subprotocol → expected 403, got ${foo.status}`);
    // plain "phoenix" → 101, echoed
    const ph = await upgradeRequest(`/socket/websocket?vsn=2.0.0`, { "Sec-WebSocket-Protocol": "phoenix" });
    assert.equal(ph.status, 101);
    assert.equal(ph.headers["sec-websocket-protocol"], "phoenix");
  });
});

// ------------------------------------------------------------------------------------------------
describe("disconnect by socket id", () => {
  test("§13.32 disconnect broadcast → close 1001, no frames first; other sockets unaffected", T, async (t) => {
    const tok42 = await fixtureToken(42);
    const tok43 = await fixtureToken(43);
    const a1 = await open(t, { token: tok42 });
    const a2 = await open(t, {}, { protocols: ["phoenix", tokenSubprotocol(tok42)] });
    const b = await open(t, { token: tok43 });
    await join(a1, "3", "room:lobby");
    await join(a2, "3", "room:other");
    await join(b, "3", "room:lobby");
    await broadcast("users_socket:42", "disconnect", {});
    for (const [name, s] of [["a1", a1], ["a2", a2]]) {
      const c = await s.closed(5000);
      assert.equal(c.code, 1001, `${name}: expected close code 1001, got ${c.code}`);
      assert.deepEqual(s.pending().map(show), [], `${name}: no frames before the close`);
    }
    await b.heartbeat();
    b.send(`["3","4","room:lobby","ping",{"alive":true}]`);
    assertFrame(await b.next(), `["3","4","room:lobby","phx_reply",{"response":{"alive":true},"status":"ok"}]`);
  });

  test("§6.3 other events on the id topic are ignored", T, async (t) => {
    const tok = await fixtureToken(45);
    const s = await open(t, { token: tok });
    await join(s, "3", "room:lobby");
    await broadcast("users_socket:45", "not_disconnect", { x: 1 });
    await s.expectNone(300, "no frame for a non-disconnect event on the id topic");
    await s.heartbeat();
  });

  test("§13.32b disconnect_me → close 1001; anonymous disconnect_me is a no-op", T, async (t) => {
    const tok = await fixtureToken(44);
    const s = await open(t, { token: tok });
    await join(s, "3", "room:lobby");
    s.send(`["3","4","room:lobby","disconnect_me",{}]`);
    const c = await s.closed(5000);
    assert.equal(c.code, 1001, `expected close code 1001, got ${c.code}`);
    assert.deepEqual(s.pending().map(show), [], "no frames before the close");

    const anon = await open(t);
    await join(anon, "3", "room:lobby");
    anon.send(`["3","4","room:lobby","disconnect_me",{}]`);
    await anon.expectNone(300, "anonymous disconnect_me: nothing");
    await anon.heartbeat();
  });
});

// ------------------------------------------------------------------------------------------------
describe("limits", () => {
  test("§13.33 channel limit: 100 joins ok, the 101st → too many channels joined", T, async (t) => {
    const s = await open(t);
    for (let i = 1; i <= 100; i++) s.send(frame(String(i), String(i), `room:${i}`, "phx_join", {}));
    for (let i = 1; i <= 100; i++) {
      assertFrame(await s.next(), replyFrame(String(i), String(i), `room:${i}`, "ok", {}));
    }
    s.send(`["999","999","room:101","phx_join",{}]`);
    assertFrame(
      await s.next(),
      `["999","999","room:101","phx_reply",{"response":{"reason":"too many channels joined"},"status":"error"}]`,
    );
    // not registered: a push to it is unmatched
    s.send(`["999","1000","room:101","ping",{}]`);
    assertFrame(await s.next(), unmatched("1000", "room:101"));
    // a duplicate join of an already joined topic is not limited
    s.send(`["1001","1001","room:5","phx_join",{}]`);
    assertFrame(await s.next(), replyFrame("1001", "1001", "room:5", "ok", {}));
    assertFrame(await s.next(), `["5","5","room:5","phx_close",{}]`);
    // leaving one frees a slot
    s.send(`["1","1002","room:1","phx_leave",{}]`);
    assertFrame(await s.next(), replyFrame("1", "1002", "room:1", "ok", {}));
    assertFrame(await s.next(), `["1","1","room:1","phx_close",{}]`);
    await join(s, "1003", "room:101");
  });
});

// ------------------------------------------------------------------------------------------------
describe("malformed input closes the connection", () => {
  const cases = [
    ["§13.34 V2 array with 4 elements", `["1","1","t","e"]`],
    ["§13.34 text that is not JSON", "this is not json"],
    ["§11.9 V1 object on a V2 socket", `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}`],
    ["§13.34 JSON scalar", `42`],
    ["§11.9 binary frame of kind 1", Buffer.from([1, 1, 1, 1, 2, 0x33, 0x34, 0x74, 0x6f, 0x6b])],
    ["§11.9 binary frame of kind 2", Buffer.from([2, 1, 1, 0x74, 0x65, 9])],
    ["§11.9 truncated binary kind 0", Buffer.from([0, 5, 5, 5, 5, 0x41])],
    ["§11.9 empty binary frame", Buffer.alloc(0)],
  ];
  for (const [name, bad] of cases) {
    test(`${name} → socket closes; a new socket works`, T, async (t) => {
      const s = await open(t);
      await join(s, "3", "room:lobby");
      s.send(bad);
      const c = await s.closed(5000);
      assert.ok(c, "closed");
      const fresh = await open(t);
      await fresh.heartbeat();
    });
  }

  test("§13.34 V1 socket: JSON array (V2 frame) closes it", T, async (t) => {
    const s = await open(t, {}, { vsn: "1.0.0" });
    s.send(`[null,"1","phoenix","heartbeat",{}]`);
    await s.closed(5000);
    const fresh = await open(t);
    await fresh.heartbeat();
  });
});
