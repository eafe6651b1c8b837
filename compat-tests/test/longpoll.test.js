// LongPoll (spec §7): raw HTTP cases §13.35–39 and the framing rules, then the official
// phoenix@1.8.16 client with `transport: LongPoll` end to end. In Node the client's Ajax uses the
// global fetch (there is no XMLHttpRequest), so no polyfill is needed.
//
// Timing: the server's LongPoll window is 10 s unless it was started with LP_WINDOW_MS; tell the
// suite with PHX_LP_WINDOW_MS (same value) to make the idle-poll and expiry cases faster, e.g.
//   LP_WINDOW_MS=1000 PHX_LP_WINDOW_MS=1000 bash run.sh test/longpoll.test.js

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { LongPoll } from "phoenix";

import { HTTP_URL, SOCKET_ENDPOINT, fixtureToken, broadcast, uniqTopic, sleep } from "../lib/server.js";
import { recorder, mkSocket as mkAnySocket, connected, result } from "../lib/client.js";

/** The official client on LongPoll. */
const mkSocket = (t, opts = {}) => mkAnySocket(t, { transport: LongPoll, rejoinAfterMs: () => 300, ...opts });

const WINDOW = Number(process.env.PHX_LP_WINDOW_MS || 10000);
const T = { timeout: 60000 + 4 * WINDOW };
const WAIT = 5000;
const LP = `${HTTP_URL}/socket/longpoll`;

// ------------------------------------------------------------------------------------------------
// raw HTTP helpers

/** One request; resolves {status, headers, body}. */
async function req(method, query = "", { headers = {}, body } = {}) {
  const res = await fetch(`${LP}${query}`, { method, headers, body });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

/** Asserts a protocol answer: HTTP 200, JSON, no-store, CORS, exactly `body` (string or RegExp). */
function expectJson(r, body) {
  assert.equal(r.status, 200, `HTTP status (body ${r.body})`);
  assert.equal(r.headers.get("content-type"), "application/json; charset=utf-8");
  assert.equal(r.headers.get("cache-control"), "no-store");
  assert.equal(r.headers.get("access-control-allow-origin"), "*");
  if (body instanceof RegExp) assert.match(r.body, body);
  else assert.equal(r.body, body, `\n  expected: ${body}\n  actual:   ${r.body}`);
}

const NEW_SESSION = /^\{"messages":\[\],"status":410,"token":"([A-Za-z0-9_.-]+)"\}$/;

async function newSession(query = "?vsn=2.0.0&", headers = {}) {
  const r = await req("GET", query, { headers });
  expectJson(r, NEW_SESSION);
  return JSON.parse(r.body).token;
}

const poll = (token) => req("GET", `?vsn=2.0.0&token=${token}`);
const post = (token, lines, contentType = "application/x-ndjson") =>
  req("POST", `?vsn=2.0.0&token=${token}`, {
    headers: { "content-type": contentType },
    body: Array.isArray(lines) ? lines.join("\n") : lines,
  });

/** Polls until n messages arrived; returns them (strings). */
async function collect(token, n) {
  const out = [];
  while (out.length < n) {
    const r = await poll(token);
    const j = JSON.parse(r.body);
    assert.equal(j.status, 200, `waiting for ${n} messages, got ${r.body}`);
    out.push(...j.messages);
  }
  return out;
}

const hb = (ref) => `[null,"${ref}","phoenix","heartbeat",{}]`;
const hbReply = (ref) => `[null,"${ref}","phoenix","phx_reply",{"response":{},"status":"ok"}]`;

// ------------------------------------------------------------------------------------------------
describe("LongPoll raw HTTP (§13.35–39)", () => {
  test("§13.35 handshake: GET ?vsn=2.0.0& → 200 {messages:[],status:410,token}", T, async () => {
    await newSession();
  });

  test("§13.36 send + receive: ndjson POST → 200, GET → both replies as strings", T, async () => {
    const t = await newSession();
    expectJson(await post(t, [hb("1"), `["3","3","room:lobby","phx_join",{}]`]), `{"status":200}`);
    expectJson(
      await poll(t),
      `{"messages":["[null,\\"1\\",\\"phoenix\\",\\"phx_reply\\",{\\"response\\":{},\\"status\\":\\"ok\\"}]",` +
        `"[\\"3\\",\\"3\\",\\"room:lobby\\",\\"phx_reply\\",{\\"response\\":{},\\"status\\":\\"ok\\"}]"],` +
        `"status":200,"token":"${t}"}`,
    );
  });

  test("§13.37 idle poll → 204 after the window", T, async () => {
    const t = await newSession();
    const started = Date.now();
    expectJson(await poll(t), `{"messages":[],"status":204,"token":"${t}"}`);
    const held = Date.now() - started;
    assert.ok(held >= WINDOW * 0.8, `held ${held} ms, window ${WINDOW} ms`);
  });

  test("§13.38 bad session: POST garbage → 410; GET garbage → new session", T, async () => {
    expectJson(await post("garbage", [hb("1")]), `{"status":410}`);
    // The token in the 1.8.10+ header: a query `token` would also reach the fixture's connect
    // as a user token (§7.1's collision) and be refused.
    const t2 = await newSession("?vsn=2.0.0", { "x-phoenix-longpoll-token": "garbage" });
    assert.notEqual(t2, "garbage");
  });

  test("§13.39 refused → {status:403}; OPTIONS → CORS preflight; PUT → 400", T, async () => {
    expectJson(await req("GET", "?reject=1&vsn=2.0.0&"), `{"status":403}`);
    expectJson(await req("GET", "?token=garbage&vsn=2.0.0&"), `{"status":403}`);
    expectJson(await req("GET", "?vsn=2.1.0&"), `{"status":403}`);
    const o = await req("OPTIONS", "", {
      headers: { "access-control-request-headers": "content-type, x-phoenix-authtoken" },
    });
    assert.equal(o.status, 200);
    assert.equal(o.body, "");
    assert.equal(o.headers.get("access-control-allow-origin"), "*");
    assert.equal(o.headers.get("access-control-allow-headers"), "content-type, x-phoenix-authtoken");
    assert.equal(o.headers.get("access-control-allow-methods"), "get, post, options");
    assert.equal(o.headers.get("access-control-max-age"), "3600");
    const p = await req("PUT");
    assert.equal(p.status, 400);
    assert.equal(p.body, "");
  });

  test("check_origin failure → {status:403}", T, async () => {
    const r = await req("GET", "?vsn=2.0.0&", { headers: { origin: "https://evil.com" } });
    expectJson(r, `{"status":403}`);
  });

  test("only the first 100 ndjson lines are used", T, async () => {
    const t = await newSession();
    const lines = Array.from({ length: 150 }, (_, i) => hb(`${i + 1}`));
    expectJson(await post(t, lines), `{"status":200}`);
    const got = await collect(t, 100);
    assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => hbReply(`${i + 1}`)));
    expectJson(await post(t, [hb("after")]), `{"status":200}`);
    assert.deepEqual(await collect(t, 1), [hbReply("after")], "line 101+ were dropped, not queued");
  });

  test("\\r\\n line ends; another content type is one frame", T, async () => {
    const t = await newSession();
    expectJson(await post(t, `${hb("1")}\r\n${hb("2")}`), `{"status":200}`);
    expectJson(await post(t, hb("3"), "application/json"), `{"status":200}`);
    assert.deepEqual(await collect(t, 3), [hbReply("1"), hbReply("2"), hbReply("3")]);
  });

  test("a trailing newline kills the session (POST ≠ 200, session gone)", T, async () => {
    const t = await newSession();
    const r = await post(t, `${hb("1")}\n`);
    assert.notEqual(JSON.parse(r.body).status, 200, r.body);
    expectJson(await post(t, [hb("2")]), `{"status":410}`);
  });

  test("POSTs are acknowledged in order: one channel's replies keep the POST order", T, async () => {
    const t = await newSession();
    expectJson(await post(t, [`["3","3","room:lobby","phx_join",{}]`, `["3","4","room:lobby","ping",{"n":1}]`]), `{"status":200}`);
    expectJson(await post(t, [`["3","5","room:lobby","ping",{"n":2}]`]), `{"status":200}`);
    assert.deepEqual(await collect(t, 3), [
      `["3","3","room:lobby","phx_reply",{"response":{},"status":"ok"}]`,
      `["3","4","room:lobby","phx_reply",{"response":{"n":1},"status":"ok"}]`,
      `["3","5","room:lobby","phx_reply",{"response":{"n":2},"status":"ok"}]`,
    ]);
  });

  test("x-phoenix-authtoken on the session-creating GET → connect_info.auth_token", T, async () => {
    const user = await fixtureToken(71);
    const t = await newSession("?vsn=2.0.0&", { "x-phoenix-authtoken": user });
    expectJson(await post(t, [`["1","1","room:lobby","phx_join",{}]`, `["1","2","room:lobby","whoami",{}]`]), `{"status":200}`);
    const got = await collect(t, 2);
    assert.equal(got[1], `["1","2","room:lobby","phx_reply",{"response":{"user_id":71},"status":"ok"}]`);
    expectJson(await req("GET", "?vsn=2.0.0&", { headers: { "x-phoenix-authtoken": "forged" } }), `{"status":403}`);
  });
});

// ------------------------------------------------------------------------------------------------
// the official client

describe("official client over LongPoll", () => {
  test("client/LP: join, push/reply, receive a broadcast, leave", T, async (t) => {
    const s = await connected(mkSocket(t));
    assert.equal(s.transport, LongPoll);
    const topic = uniqTopic("room:lp");
    const ch = s.channel(topic);
    assert.deepEqual(await result(ch.join()), { status: "ok", response: {} });
    assert.deepEqual(await result(ch.push("ping", { a: [1, { b: null }], s: "ünïcødé" })), {
      status: "ok",
      response: { a: [1, { b: null }], s: "ünïcødé" },
    });
    const got = recorder("new_msg");
    ch.on("new_msg", got);
    await broadcast(topic, "new_msg", { body: "hi" });
    const [[payload, ref]] = await got.wait(1);
    assert.deepEqual(payload, { body: "hi" });
    assert.equal(ref, null);
    // Several pushes in one tick go out as one ndjson batch; every reply comes back.
    const many = await Promise.all(Array.from({ length: 5 }, (_, i) => result(ch.push("ping", { i }))));
    assert.deepEqual(many, Array.from({ length: 5 }, (_, i) => ({ status: "ok", response: { i } })));
    assert.deepEqual(await result(ch.leave()), { status: "ok", response: {} });
    assert.equal(ch.state, "closed");
  });

  test("client/LP: authToken option → X-Phoenix-AuthToken → whoami", T, async (t) => {
    const tok = await fixtureToken(72);
    const s = await connected(mkSocket(t, { authToken: tok }));
    const ch = s.channel("room:lobby");
    assert.deepEqual(await result(ch.join()), { status: "ok", response: {} });
    assert.deepEqual(await result(ch.push("whoami", {})), { status: "ok", response: { user_id: 72 } });
  });

  test("client/WS: authToken option (subprotocol) → whoami", T, async (t) => {
    const tok = await fixtureToken(73);
    const s = await connected(mkSocket(t, { authToken: tok, transport: WebSocket }));
    const ch = s.channel("room:lobby");
    assert.deepEqual(await result(ch.join()), { status: "ok", response: {} });
    assert.deepEqual(await result(ch.push("whoami", {})), { status: "ok", response: { user_id: 73 } });
  });

  test("client/LP: refused connect → 403 → error, no open", T, async (t) => {
    const s = mkSocket(t, { params: { reject: "1" }, reconnectAfterMs: () => 60000 });
    const opened = recorder("onOpen");
    const errored = recorder("onError");
    s.onOpen(opened);
    s.onError(errored);
    s.connect();
    const [[err]] = await errored.wait(1);
    assert.equal(err, 403);
    await sleep(200);
    assert.equal(opened.calls.length, 0);
  });

  /** Connects with authToken for `userId`, joins room:lobby, runs `kill`, and expects the client
   * to notice, reconnect with a new session and rejoin. */
  async function recovers(t, userId, kill, waitMs) {
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
    const first = s.conn.token;
    assert.ok(first, "the LongPoll transport holds a session token");
    await kill(s);
    const [[ev]] = await closes.wait(1, waitMs);
    await opened.wait(2, waitMs);
    await joins.wait(2, waitMs);
    assert.notEqual(s.conn.token, first, "a new session");
    assert.deepEqual(await result(ch.push("whoami", {})), { status: "ok", response: { user_id: userId } });
    return ev;
  }

  test("client/LP: disconnect on the socket id → held poll 410 → reconnect, rejoin", T, async (t) => {
    const ev = await recovers(t, 74, () => broadcast("users_socket:74", "disconnect", {}), WAIT);
    assert.equal(ev.code, 3410, `close: ${JSON.stringify(ev)}`);
    assert.equal(ev.reason, "session_gone");
  });

  test("client/LP: session expiry (client stalled > 1.5 × window) → reconnect, rejoin", T, async (t) => {
    // Stall the client's polls (requests are delayed, not failed) until the server reports the
    // session gone, then let them through: the stale poll finds no session and the client
    // reconnects. (With this fixture the stale poll's `token` query param reaches connect as a
    // user token and is refused — 403, close 1008 — where an app that ignores `token` answers
    // 410 with a new session and the client closes with 3410; both recover.)
    const realFetch = globalThis.fetch;
    let release = null;
    const stalled = new Promise((r) => (release = r));
    let stalling = false;
    globalThis.fetch = (url, opts = {}) =>
      stalling && String(url).includes("/socket/longpoll") && (opts.method || "GET") === "GET"
        ? stalled.then(() => realFetch(url, opts))
        : realFetch(url, opts);
    t.after(() => {
      globalThis.fetch = realFetch;
      release();
    });
    const ev = await recovers(
      t,
      75,
      async (s) => {
        const token = s.conn.token;
        stalling = true;
        const deadline = Date.now() + 3 * WINDOW + 10000;
        for (;;) {
          const r = await realFetch(`${LP}?vsn=2.0.0`, {
            method: "POST",
            headers: { "content-type": "application/x-ndjson", "x-phoenix-longpoll-token": token },
            body: hb("probe"),
          });
          if (JSON.parse(await r.text()).status === 410) break;
          assert.ok(Date.now() < deadline, "the session did not expire within 3 windows");
          await sleep(Math.min(500, WINDOW / 4));
        }
        stalling = false;
        release();
      },
      WAIT + 2 * WINDOW,
    );
    assert.ok([3410, 1008].includes(ev.code), `close: ${JSON.stringify(ev)}`);
  });
});
