// Several phx-server nodes on one Redis, in one PubSub with phoenix_pubsub_redis's wire format
// (shared/protocol/PUBSUB_REDIS.md), driven by the official phoenix client on every node:
//
// * a broadcast on any node reaches every node's clients exactly once;
// * the socket-id "disconnect" closes a user's sockets on every node;
// * the envelope phx-server publishes is byte-for-byte what an Elixir node (OTP 25,
//   phoenix_pubsub_redis 3.1.0) published for the same broadcast, and the captured Elixir
//   bytes, PUBLISHed to Redis, reach a phoenix client here; a direct broadcast reaches its
//   target only;
// * garbage, plain terms and Phoenix.Tracker traffic on the channel are ignored, counted,
//   and not logged once per message;
// * Presence: the JS Presence class on every node lists every node's users; a node killed
//   with SIGKILL has its users leave everywhere after the down timeout, one stopped cleanly
//   at once;
// * Redis down: local delivery goes on, /readyz says 503, cross-node broadcasts are lost and
//   counted; Redis back: delivery resumes by itself.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Socket, Presence } from "phoenix";
import * as h from "./harness.js";

let redis;
let nodes = [];
const sockets = [];

before(async () => {
  redis = await h.startRedis();
  // node-a is the name the Elixir captures were made with: its envelopes must be byte-identical.
  nodes = await Promise.all(["node-a", "node-2", "node-3"].map((n) => h.startNode(n, redis.url)));
});

after(async () => {
  for (const s of sockets) s.disconnect();
  await Promise.all(nodes.map((n) => h.stopNode(n)));
  if (redis) await h.stopRedis(redis);
});

function connect(node, params = {}) {
  const socket = new Socket(node.ws, { transport: WebSocket, params, reconnectAfterMs: () => 60000 });
  socket.connect();
  sockets.push(socket);
  return socket;
}

function join(socket, topic) {
  const channel = socket.channel(topic, {});
  return new Promise((res, rej) =>
    channel
      .join()
      .receive("ok", () => res(channel))
      .receive("error", (e) => rej(new Error(JSON.stringify(e))))
      .receive("timeout", () => rej(new Error(`join ${topic} timed out`))),
  );
}

/** Collects `event` pushes on `channel`. */
function collect(channel, event) {
  const got = [];
  channel.on(event, (p) => got.push(p));
  return got;
}

async function until(what, cond, ms = 5000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await h.sleep(25);
  }
  assert.fail(`timed out waiting for ${what}`);
}

test("a broadcast on any node reaches every node's clients exactly once", async () => {
  const topic = `room:cluster-${Date.now()}`;
  const got = [];
  for (const n of nodes) got.push(collect(await join(connect(n), topic), "shout"));
  for (const [i, n] of nodes.entries()) await h.broadcast(n, topic, "shout", { from: i });
  await until("3 shouts on every node", () => got.every((g) => g.length >= 3));
  await h.sleep(300); // anything duplicated would have arrived by now
  for (const g of got) assert.deepEqual(g.map((p) => p.from).sort(), [0, 1, 2]);
});

test("broadcast_from-style and plain broadcasts carry the payload as JSON", async () => {
  const topic = `room:payload-${Date.now()}`;
  const got = collect(await join(connect(nodes[2]), topic), "shout");
  const payload = { body: "héllo", n: 70000, neg: -1, f: 1.5, none: null, list: [1, "a", true], nested: { k: "v" } };
  await h.broadcast(nodes[0], topic, "shout", payload);
  await until("the shout", () => got.length === 1);
  assert.deepEqual(got[0], payload);
});

test('the socket-id "disconnect" closes the user\'s sockets on every node', async () => {
  const token = await h.fixtureToken(nodes[0], 4242);
  const closed = nodes.map(() => false);
  const opened = nodes.map((n, i) => {
    const s = connect(n, { token });
    s.onClose(() => (closed[i] = true));
    return new Promise((r) => s.onOpen(r));
  });
  await Promise.all(opened);
  // An anonymous bystander on each node stays connected.
  const bystanders = nodes.map((n) => connect(n));
  await until("bystanders open", () => bystanders.every((b) => b.isConnected()));
  await h.broadcast(nodes[1], "users_socket:4242", "disconnect", {});
  await until("every node closed user 4242's socket", () => closed.every(Boolean));
  assert.ok(bystanders.every((b) => b.isConnected()), "other sockets keep working");
});

test('an Elixir node\'s "disconnect" for users_socket:42 (captured) closes that user\'s sockets on every node', async () => {
  const disconnect = h.captures("broadcast-v3.1.0.jsonl")[4]; // Endpoint.broadcast("users_socket:42", "disconnect", %{}) on node-b
  const token = await h.fixtureToken(nodes[0], 42);
  const closed = nodes.map(() => false);
  await Promise.all(
    nodes.map((n, i) => {
      const s = connect(n, { token });
      s.onClose(() => (closed[i] = true));
      return new Promise((r) => s.onOpen(r));
    }),
  );
  await h.publishRaw(redis.port, disconnect.buf);
  await until("every node closed user 42's socket", () => closed.every(Boolean));
});

test("phx-server's envelope is byte-for-byte the one an Elixir node publishes", async () => {
  const [elixir] = h.captures("broadcast-v3.1.0.jsonl"); // node-a: Endpoint.broadcast("room:lobby", "shout", %{"body" => "hi"})
  const watcher = await h.resp(redis.port);
  await watcher.command(["SUBSCRIBE", h.CHANNEL]);
  await h.broadcast(nodes[0], "room:lobby", "shout", { body: "hi" });
  await until("the envelope on Redis", () => watcher.messages.length >= 1);
  watcher.close();
  assert.equal(watcher.messages[0].data.toString("hex"), elixir.buf.toString("hex"));
});

test("an Elixir node's captured broadcast, PUBLISHed to Redis, reaches phoenix clients on every node", async () => {
  const [elixir] = h.captures("broadcast-v3.1.0.jsonl");
  const got = [];
  for (const n of nodes) got.push(collect(await join(connect(n), "room:lobby"), "shout"));
  const receivers = await h.publishRaw(redis.port, elixir.buf);
  assert.equal(receivers, 3, "every node is subscribed to phx:Elixir.MyApp.PubSub.Adapter");
  // node-a drops it: the envelope says it came from node-a (its own name, :except).
  await until("nodes 2 and 3 got it", () => got[1].length === 1 && got[2].length === 1);
  await h.sleep(200);
  assert.deepEqual(got[1][0], { body: "hi" });
  assert.equal(got[0].length, 0, "node-a treats an envelope from node-a as its own");
});

test("a direct broadcast reaches only its target node", async () => {
  // Elixir's PubSub.direct_broadcast(:"node-b", ...) (capture #2): no node here is node-b.
  const direct = h.captures("broadcast-v3.1.0.jsonl")[2];
  const got = [];
  for (const n of nodes) got.push(collect(await join(connect(n), "room:lobby"), "shout"));
  await h.publishRaw(redis.port, direct.buf);
  await h.sleep(500);
  assert.deepEqual(got.map((g) => g.length), [0, 0, 0], "nobody here is node-b");
  // The same envelope with node-2 as its target: rewrite the ATOM_EXT name in place (same length).
  const retargeted = Buffer.from(direct.buf);
  const at = retargeted.indexOf(Buffer.from("node-b"));
  retargeted.write("node-2", at);
  await h.publishRaw(redis.port, retargeted);
  await until("node-2 got it", () => got[1].length === 1);
  await h.sleep(300);
  assert.deepEqual(got.map((g) => g.length), [0, 1, 0]);
});

test("garbage, plain terms and tracker traffic are ignored, counted, and not logged per message", async () => {
  const ignoredBefore = await h.metric(nodes[1], "phx_cluster_ignored_total");
  const junk = [
    ...h.captures("presence-v2.2.0.jsonl").map((c) => c.buf),
    h.captures("broadcast-v3.1.0.jsonl")[3].buf, // {:hello, "world", 42} with Phoenix.PubSub
    Buffer.from("not an external term"),
    Buffer.from([131, 104, 6, 97, 4]), // truncated, version 4
  ];
  const n = 100;
  for (let i = 0; i < n; i++) await h.publishRaw(redis.port, junk[i % junk.length]);
  await until("all counted", async () => (await h.metric(nodes[1], "phx_cluster_ignored_total")) >= ignoredBefore + n);
  // Still part of the cluster.
  const topic = `room:after-junk-${Date.now()}`;
  const got = collect(await join(connect(nodes[1]), topic), "shout");
  await h.broadcast(nodes[2], topic, "shout", { ok: true });
  await until("a broadcast after the junk", () => got.length === 1);
  for (const node of nodes) {
    const lines = h.logLines(node, /cluster|PubSub|envelope/i).filter((l) => /WARN|ERROR/.test(l));
    assert.ok(lines.length < 10, `${node.name} logged ${lines.length} warnings:\n${lines.slice(0, 5).join("\n")}`);
  }
});

test("Redis down: local delivery goes on, /readyz says so, and delivery resumes when it is back", async () => {
  const topic = `room:outage-${Date.now()}`;
  const got = [];
  for (const n of nodes) got.push(collect(await join(connect(n), topic), "shout"));
  const lostBefore = await h.metric(nodes[0], "phx_cluster_lost_total");
  await h.stopRedis(redis, "SIGKILL");
  await until("every node reports not ready", async () => (await Promise.all(nodes.map(h.readyStatus))).every((s) => s === 503), 15000);
  await h.broadcast(nodes[0], topic, "shout", { during: true });
  await until("local delivery during the outage", () => got[0].length === 1);
  await until("the lost broadcast is counted", async () => (await h.metric(nodes[0], "phx_cluster_lost_total")) > lostBefore);
  assert.equal(got[1].length + got[2].length, 0, "nothing is queued for the other nodes");
  redis = await h.startRedis(redis.port);
  await Promise.all(nodes.map((n) => h.waitReady(n, 40000)));
  await h.broadcast(nodes[0], topic, "shout", { after: true });
  await until("delivery resumed on every node", () => got[1].length === 1 && got[2].length === 1 && got[0].length === 2);
  assert.deepEqual(got[1][0], { after: true });
});

/** Joins `topic` on `node` as `name` with the official Presence class; returns its list(). */
async function present(node, topic, name) {
  const socket = connect(node);
  const channel = socket.channel(topic, { name });
  const presence = new Presence(channel);
  await new Promise((res, rej) => channel.join().receive("ok", res).receive("error", (e) => rej(new Error(JSON.stringify(e)))));
  return { socket, list: () => presence.list((key) => key).sort() };
}

test("Presence: every node's JS Presence lists every node's users; a killed node's users leave after the down timeout, a stopped one's at once", async () => {
  // Two extra nodes of our own, so that stopping them leaves the suite's three running.
  const doomed = await h.startNode("node-doomed", redis.url);
  const polite = await h.startNode("node-polite", redis.url);
  const topic = `presence:cluster-${Date.now()}`;
  const views = [];
  for (const [i, n] of nodes.entries()) views.push(await present(n, topic, `user${i}`));
  await present(doomed, topic, "doomed");
  await present(polite, topic, "polite");
  const everyone = ["anon-doomed", "anon-polite", "anon-user0", "anon-user1", "anon-user2"];
  await until("every node lists all five", () => views.every((v) => JSON.stringify(v.list()) === JSON.stringify(everyone)), 10000);

  // A clean stop (SIGTERM: drain, then bye): its user leaves everywhere at once.
  const stopAt = Date.now();
  await h.stopNode(polite);
  await until("the stopped node's user left", () => views.every((v) => !v.list().includes("anon-polite")), 10000);
  const politeMs = Date.now() - stopAt;

  // SIGKILL: no goodbye; the others notice the missing heartbeats (PRESENCE_DOWN_MS, 5 s).
  const killAt = Date.now();
  await h.stopNode(doomed, "SIGKILL");
  await until("the killed node's user left", () => views.every((v) => !v.list().includes("anon-doomed")), 15000);
  const doomedMs = Date.now() - killAt;
  assert.ok(doomedMs >= 3000, `left after ${doomedMs} ms: only after missing heartbeats, not at once`);
  for (const v of views) assert.deepEqual(v.list(), ["anon-user0", "anon-user1", "anon-user2"]);
  assert.ok(politeMs < doomedMs, `a clean stop (${politeMs} ms) leaves before a kill is noticed (${doomedMs} ms)`);
});
