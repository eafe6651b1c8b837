// The dashboard across nodes: two `serve --fixture` nodes on one Redis, both with ADMIN_TOKEN.
// The official phoenix client joins `dashboard:stats` on node A's admin listener (as the
// dashboard page does) and must get snapshots from both nodes, each tagged with its
// NODE_NAME; a socket connected to node B's public port shows in B's snapshots seen on A.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import WebSocket from "ws";
import { Socket } from "phoenix";
import * as h from "./harness.js";

const TOKEN = randomBytes(24).toString("hex");
let redis;
let nodes = [];
const sockets = [];

before(async () => {
  redis = await h.startRedis();
  nodes = await Promise.all(["dash-a", "dash-b"].map((n) => h.startNode(n, redis.url, { ADMIN_TOKEN: TOKEN })));
});

after(async () => {
  for (const s of sockets) s.disconnect();
  await Promise.all(nodes.map((n) => h.stopNode(n)));
  if (redis) await h.stopRedis(redis);
});

test("a dashboard on one node sees every node's snapshots, by NODE_NAME", { timeout: 60000 }, async () => {
  const [a, b] = nodes;
  const dashboard = new Socket(`${a.admin.replace("http", "ws")}/dashboard/socket`, {
    transport: WebSocket,
    params: { token: TOKEN },
  });
  sockets.push(dashboard);
  dashboard.connect();
  const channel = dashboard.channel("dashboard:stats", {});
  const latest = new Map();
  let notify = () => {};
  channel.on("snapshot", (s) => {
    latest.set(s.node, s);
    notify();
  });
  await new Promise((res, rej) => channel.join().receive("ok", res).receive("error", rej).receive("timeout", rej));
  const until = (pred, what) =>
    new Promise((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`${what}; seen: ${JSON.stringify([...latest.values()])}`)), 20000);
      notify = () => {
        if (pred()) {
          clearTimeout(timer);
          res();
        }
      };
      notify();
    });
  await until(() => latest.has("dash-a") && latest.has("dash-b"), "snapshots from both nodes");

  // A public socket on node B: B's own snapshot, relayed through Redis to A, counts it.
  const initial = latest.get("dash-b").sockets.websocket;
  const pub = new Socket(b.ws, { transport: WebSocket });
  sockets.push(pub);
  pub.connect();
  await until(() => latest.get("dash-b").sockets.websocket > initial, "node B's snapshot counting its new socket");
  assert.equal(latest.get("dash-a").node, "dash-a");
});
