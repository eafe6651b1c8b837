#!/usr/bin/env node
// Presence under a join wave (shared/perf/BASELINE.md): N sockets connect at once and each joins
// the same `presence:*` topic of the conformance fixture (PresenceChannel); the presence_state and
// presence_diff frames are counted at the clients for WINDOW seconds from the start, and every
// client's final state — presence_state then diffs, applied with the official phoenix@1.8.16
// `Presence.syncState` / `Presence.syncDiff` — is checked to hold all N keys.
//
//   node benches/presence_wave.mjs [N ...]            default: 100 300 1000
//
//   PHX_SERVER_BIN     start this binary (`serve --fixture`, RUST_LOG=warn) on a free 127.0.0.1
//                      port for each N, with PRESENCE_BATCH_MS passed through; or
//   PHX_URL            use a server already running there (one topic per N, unique per run)
//   PRESENCE_BATCH_MS  the server's coalescing window (phx-server; 0 = a diff per change)
//   WINDOW_S           counting window in seconds (default 8, as BASELINE.md)
//   CONCURRENCY        connects in flight at once (default 100, below the listen backlog)
//
// Prints one line per N and a JSON line (stdout) per N. Uses `ws` and `phoenix` from
// compat-tests/node_modules (run `npm ci` there first).

import { createRequire } from "node:module";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { dirname, resolve } from "node:path";

const HERE = dirname(fileURLToPath(import.meta.url));
const require = createRequire(resolve(HERE, "../compat-tests/package.json"));
const WebSocket = require("ws");
const { Presence } = require("phoenix");

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const NS = sizes.length ? sizes : [100, 300, 1000];
const WINDOW_MS = Number(process.env.WINDOW_S || 8) * 1000;
const CONCURRENCY = Number(process.env.CONCURRENCY || 100);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

async function startServer() {
  const bin = resolve(process.cwd(), process.env.PHX_SERVER_BIN);
  const port = await freePort();
  const env = { ...process.env, HOST: "127.0.0.1", PORT: String(port), RUST_LOG: "warn" };
  delete env.DATABASE_URL;
  const proc = spawn(bin, ["serve", "--fixture"], { env, stdio: "ignore" });
  // Never leave the server behind, whatever happens here.
  process.once("exit", () => proc.exitCode === null && proc.kill("SIGKILL"));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).status === 200) return { url, proc };
    } catch {
      /* not up yet */
    }
    if (proc.exitCode !== null) throw new Error(`server exited ${proc.exitCode}`);
    await sleep(100);
  }
  throw new Error("server did not come up in 30 s");
}

async function stopServer(proc) {
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  await Promise.race([exited, sleep(10000)]);
  if (proc.exitCode === null) proc.kill("SIGKILL");
}

/** One client: connects, joins, records frames; `state` is what Presence would hold. */
function client(wsUrl, topic, i, t0, stats) {
  return new Promise((resolveOpen) => {
    const ws = new WebSocket(`${wsUrl}/socket/websocket?vsn=2.0.0`, { perMessageDeflate: false });
    const c = { ws, state: Object.create(null), gotState: false, pending: [], diffs: 0 };
    ws.on("open", () => {
      ws.send(JSON.stringify(["1", "1", topic, "phx_join", { name: `w${i}` }]));
      resolveOpen(c);
    });
    ws.on("error", (e) => {
      stats.errors++;
      if (stats.errors < 5) console.error(`socket ${i}: ${e.message}`);
      resolveOpen(c);
    });
    ws.on("message", (data) => {
      if (Date.now() - t0 > WINDOW_MS) return;
      const [, , , event, payload] = JSON.parse(data.toString());
      if (event === "presence_diff") {
        stats.diffFrames++;
        stats.diffBytes += data.length;
        c.diffs++;
        if (c.gotState) c.state = Presence.syncDiff(c.state, payload);
        else c.pending.push(payload);
      } else if (event === "presence_state") {
        stats.stateFrames++;
        stats.stateBytes += data.length;
        c.state = Presence.syncState(c.state, payload);
        for (const d of c.pending) c.state = Presence.syncDiff(c.state, d);
        c.pending = [];
        c.gotState = true;
      }
    });
  });
}

async function wave(baseUrl, n) {
  const wsUrl = baseUrl.replace(/^http/, "ws");
  const topic = `presence:wave-${n}-${Math.random().toString(36).slice(2, 8)}`;
  const stats = { diffFrames: 0, diffBytes: 0, stateFrames: 0, stateBytes: 0, errors: 0 };
  const t0 = Date.now();
  const clients = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, n) }, async () => {
      while (next < n) {
        const i = next++;
        clients.push(await client(wsUrl, topic, i, t0, stats));
      }
    }),
  );
  const connectedMs = Date.now() - t0;
  let convergedMs = null;
  while (Date.now() - t0 < WINDOW_MS) {
    if (convergedMs === null && clients.every((c) => c.gotState && Object.keys(c.state).length === n)) {
      convergedMs = Date.now() - t0;
    }
    await sleep(20);
  }
  const converged = clients.filter((c) => c.gotState && Object.keys(c.state).length === n).length;
  const perSocket = clients.map((c) => c.diffs);
  for (const c of clients) c.ws.terminate();
  return {
    n,
    batch_ms: process.env.PRESENCE_BATCH_MS ?? "default",
    window_s: WINDOW_MS / 1000,
    connected_ms: connectedMs,
    converged_ms: convergedMs,
    converged_clients: converged,
    diff_frames: stats.diffFrames,
    diff_bytes: stats.diffBytes,
    state_frames: stats.stateFrames,
    state_bytes: stats.stateBytes,
    diffs_per_socket_mean: +(stats.diffFrames / n).toFixed(1),
    diffs_per_socket_max: Math.max(...perSocket),
    phoenix_diff_frames: (n * (n + 1)) / 2,
    errors: stats.errors,
  };
}

const mb = (b) => (b / 1e6).toFixed(2);
for (const n of NS) {
  let server = null;
  let url = process.env.PHX_URL;
  if (process.env.PHX_SERVER_BIN) server = await startServer();
  if (server) url = server.url;
  if (!url) throw new Error("set PHX_SERVER_BIN or PHX_URL");
  try {
    const r = await wave(url, n);
    console.error(
      `N=${n} (batch ${r.batch_ms} ms): ${r.diff_frames} presence_diff frames (${mb(r.diff_bytes)} MB), ` +
        `${r.diffs_per_socket_mean} per socket (max ${r.diffs_per_socket_max}); one per join: ${r.phoenix_diff_frames}; ` +
        `presence_state ${mb(r.state_bytes)} MB; connected in ${r.connected_ms} ms, ` +
        `${r.converged_clients}/${n} converged` +
        (r.converged_ms === null ? "" : ` at ${r.converged_ms} ms`) +
        (r.errors ? `; ${r.errors} socket errors` : ""),
    );
    console.log(JSON.stringify(r));
  } finally {
    if (server) await stopServer(server.proc);
  }
}
