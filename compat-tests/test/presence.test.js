// `presence:*` (CONFORMANCE_FIXTURE.md, spec §8 and §11.22) through the official phoenix@1.8.16
// client's `Presence` class in Node, plus the raw frames it is built from.
//
// The fixture's PresenceChannel tracks key = user_id (or "anon-" <> params.name) with meta
// {name: params.name} after join and pushes presence_state; `update` replaces the meta.
// A server may coalesce diffs (phx-server does, per topic, over a short window): nothing here
// depends on how many diffs carry a change, only on what every client ends up with — except the
// join-wave case, which counts diff frames to check they are far fewer than Phoenix's N²/2.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Presence } from "phoenix";

import { SOCKET_ENDPOINT, fixtureToken, uniqTopic, sleep } from "../lib/server.js";
import { connect, socketUrl, show } from "../lib/raw.js";
import { mkSocket } from "../lib/client.js";

const T = { timeout: 60000 };
const WAIT = 5000;
const REF = /^[A-Za-z0-9_-]{16}$/;

// ------------------------------------------------------------------------------------------------
// helpers

/** Resolves once `cond()` holds (checked every 10 ms); rejects with `what()` after ms. */
async function until(cond, what, ms = WAIT) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${typeof what === "function" ? what() : what}`);
    await sleep(10);
  }
}

/**
 * Joins `topic` on a fresh socket with a `Presence` on the channel. Returns
 * {socket, channel, presence, diffs, states, syncs}: the raw presence_diff / presence_state
 * payloads seen, and the number of onSync calls.
 */
async function viewer(t, topic, { userId = null, name = "anon", socketOpts = {} } = {}) {
  const params = userId === null ? {} : { token: await fixtureToken(userId) };
  const socket = mkSocket(t, { params, ...socketOpts });
  socket.connect();
  const channel = socket.channel(topic, { name });
  const presence = new Presence(channel);
  const v = { socket, channel, presence, diffs: [], states: [], syncs: 0 };
  presence.onSync(() => v.syncs++);
  channel.on("presence_diff", (d) => v.diffs.push(d));
  channel.on("presence_state", (s) => v.states.push(s));
  await new Promise((resolve, reject) => {
    channel
      .join()
      .receive("ok", resolve)
      .receive("error", (e) => reject(new Error(`join ${topic}: ${JSON.stringify(e)}`)))
      .receive("timeout", () => reject(new Error(`join ${topic}: timeout`)));
  });
  return v;
}

/** The Presence's list as {key: [meta, ...]}, keys sorted, metas sorted by phx_ref. */
function listed(v) {
  const entries = v.presence.list((key, { metas }) => [key, metas.slice().sort((a, b) => (a.phx_ref < b.phx_ref ? -1 : 1))]);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(entries);
}

const keys = (v) => Object.keys(listed(v)).sort();

/** Waits until every viewer's list has exactly `expected` keys (sorted array). */
async function converge(viewers, expected, ms = WAIT) {
  const want = expected.slice().sort();
  await until(
    () => viewers.every((v) => JSON.stringify(keys(v)) === JSON.stringify(want)),
    () => `every list to be ${JSON.stringify(want)}; got ${viewers.map((v) => JSON.stringify(keys(v))).join(" / ")}`,
    ms,
  );
}

const randomUser = () => 500_000 + Math.floor(Math.random() * 1_000_000);

// ------------------------------------------------------------------------------------------------
describe("presence: raw frames", () => {
  test("join → presence_state (join_ref, own key) and presence_diff (null refs, joins+leaves)", T, async () => {
    const topic = uniqTopic("presence:raw");
    const ws = await connect(socketUrl());
    try {
      ws.send(JSON.stringify(["1", "1", topic, "phx_join", { name: "raw" }]));
      const reply = await ws.next();
      assert.equal(reply, `["1","1",${JSON.stringify(topic)},"phx_reply",{"response":{},"status":"ok"}]`);
      // Both come after the join reply; their relative order is not fixed.
      const two = [await ws.next(), await ws.next()];
      const state = two.find((f) => f.includes('"presence_state"'));
      const diff = two.find((f) => f.includes('"presence_diff"'));
      assert.ok(state && diff, `presence_state and presence_diff: ${two.map(show).join(" | ")}`);

      assert.ok(state.startsWith(`["1",null,${JSON.stringify(topic)},"presence_state",{`), show(state));
      const s = JSON.parse(state)[4];
      assert.deepEqual(Object.keys(s), ["anon-raw"]);
      assert.equal(s["anon-raw"].metas.length, 1);
      const meta = s["anon-raw"].metas[0];
      assert.equal(meta.name, "raw");
      assert.match(meta.phx_ref, REF, "phx_ref: 16 chars of base64url");

      assert.ok(diff.startsWith(`[null,null,${JSON.stringify(topic)},"presence_diff",{`), show(diff));
      const d = JSON.parse(diff)[4];
      assert.deepEqual(Object.keys(d).sort(), ["joins", "leaves"], "both keys always present");
      assert.deepEqual(d.leaves, {});
      assert.deepEqual(d.joins, { "anon-raw": { metas: [meta] } });

      // update: one diff with the new meta as a join (phx_ref_prev) and the old as a leave.
      ws.send(JSON.stringify(["1", "2", topic, "update", { name: "raw2" }]));
      const upd = JSON.parse(await ws.next())[4];
      assert.equal(upd.joins["anon-raw"].metas.length, 1);
      const m2 = upd.joins["anon-raw"].metas[0];
      assert.equal(m2.name, "raw2");
      assert.match(m2.phx_ref, REF);
      assert.notEqual(m2.phx_ref, meta.phx_ref);
      assert.equal(m2.phx_ref_prev, meta.phx_ref);
      assert.deepEqual(upd.leaves, { "anon-raw": { metas: [meta] } });
      await ws.expectNone(300, "no reply to update");
    } finally {
      ws.close();
    }
  });
});

describe("presence: official client Presence class", () => {
  test("three sockets: join, update meta, leave, abrupt disconnect", T, async (t) => {
    const topic = uniqTopic("presence:room");
    const [ua, ub] = [randomUser(), randomUser() + 1];
    const a = await viewer(t, topic, { userId: ua, name: "alice" });
    const b = await viewer(t, topic, {
      userId: ub,
      name: "bob",
      // b is killed below without a close frame; it must not come back.
      socketOpts: { reconnectAfterMs: () => 600000 },
    });
    const c = await viewer(t, topic, { name: "carol" });
    const all = [String(ua), String(ub), "anon-carol"];
    await converge([a, b, c], all);
    for (const v of [a, b, c]) {
      assert.ok(v.states.length >= 1, "presence_state received");
      assert.ok(v.syncs >= 1, "onSync called");
      const l = listed(v);
      assert.equal(l[String(ua)][0].name, "alice");
      assert.equal(l["anon-carol"][0].name, "carol");
      for (const metas of Object.values(l)) for (const m of metas) assert.match(m.phx_ref, REF);
    }
    // Everybody holds the same refs.
    assert.deepEqual(listed(b), listed(a));
    assert.deepEqual(listed(c), listed(a));

    // update: everybody sees the new meta, with phx_ref_prev = the old ref, and one meta only.
    const before = listed(a)[String(ua)][0];
    a.channel.push("update", { name: "alice2", status: "away" });
    await until(
      () => [a, b, c].every((v) => (listed(v)[String(ua)] || [])[0]?.name === "alice2"),
      "alice2 everywhere",
    );
    for (const v of [a, b, c]) {
      const metas = listed(v)[String(ua)];
      assert.equal(metas.length, 1, JSON.stringify(metas));
      assert.equal(metas[0].status, "away");
      assert.equal(metas[0].phx_ref_prev, before.phx_ref);
      assert.notEqual(metas[0].phx_ref, before.phx_ref);
    }
    const updDiff = b.diffs.find((d) => d.joins[String(ua)]?.metas.some((m) => m.name === "alice2"));
    assert.ok(updDiff, "a diff carries the update");
    assert.deepEqual(updDiff.leaves[String(ua)], { metas: [before] }, "the old meta leaves in the same diff");

    // leave: c leaves the channel (phx_leave); a and b drop it.
    await new Promise((resolve) => c.channel.leave().receive("ok", resolve));
    await converge([a, b], [String(ua), String(ub)]);

    // abrupt disconnect: kill b's TCP connection without a WebSocket close.
    const leaves = a.diffs.length;
    b.socket.conn._socket.destroy();
    await converge([a], [String(ua)]);
    assert.ok(
      a.diffs.slice(leaves).some((d) => d.leaves[String(ub)]),
      `a leave diff for ${ub}: ${JSON.stringify(a.diffs.slice(leaves))}`,
    );
  });

  test("same key from two sockets: two metas under one key; one leaves → one meta", T, async (t) => {
    const topic = uniqTopic("presence:same");
    const u = randomUser();
    const observer = await viewer(t, topic, { name: "obs" });
    const tab1 = await viewer(t, topic, { userId: u, name: "tab1" });
    const tab2 = await viewer(t, topic, { userId: u, name: "tab2" });
    await until(
      () => [observer, tab1, tab2].every((v) => (listed(v)[String(u)] || []).length === 2),
      () => `two metas for ${u}: ${JSON.stringify(listed(observer))}`,
    );
    const metas = listed(observer)[String(u)];
    assert.deepEqual(metas.map((m) => m.name).sort(), ["tab1", "tab2"]);
    assert.notEqual(metas[0].phx_ref, metas[1].phx_ref);

    tab1.socket.disconnect();
    await until(
      () => [observer, tab2].every((v) => JSON.stringify((listed(v)[String(u)] || []).map((m) => m.name)) === '["tab2"]'),
      () => `only tab2 left: ${JSON.stringify(listed(observer))}`,
    );
    assert.deepEqual(keys(observer), [String(u), "anon-obs"].sort());
  });

  test("join wave of 200 sockets: all converge to the same list, with far fewer than N²/2 diff frames", { timeout: 120000 }, async (t) => {
    const N = 200;
    const topic = uniqTopic("presence:wave");
    const viewers = await Promise.all(
      Array.from({ length: N }, (_, i) => viewer(t, topic, { name: `w${i}` })),
    );
    const names = viewers.map((_, i) => `anon-w${i}`);
    await converge(viewers, names, 30000);
    const first = JSON.stringify(listed(viewers[0]));
    const differ = viewers.filter((v) => JSON.stringify(listed(v)) !== first).length;
    assert.equal(differ, 0, `${differ} of ${N} lists differ from the first (keys, metas, refs)`);
    await sleep(300); // any diff still in flight
    const frames = viewers.reduce((n, v) => n + v.diffs.length, 0);
    const phoenix = (N * (N + 1)) / 2; // one diff per join to every socket joined by then
    const perSocket = Math.max(...viewers.map((v) => v.diffs.length));
    t.diagnostic(`N=${N}: ${frames} presence_diff frames in total (max ${perSocket} per socket); one per join would be ${phoenix}`);
    assert.ok(frames * 4 < phoenix, `${frames} diff frames is not far below N²/2 = ${phoenix}`);

    // The wave leaves: the last socket standing sees everyone go.
    const last = viewers[N - 1];
    for (const v of viewers.slice(0, N - 1)) v.socket.disconnect();
    await converge([last], [`anon-w${N - 1}`], 30000);
  });
});
