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
//
//   node benches/presence_wave.mjs --raw N            the big-wave mode (see rawWave below)
//
// --raw: N byte-level wave sockets (frame headers parsed, payloads skipped: a wave moves
// O(N²) bytes, so the clients must stay cheap) spread over CHILDREN (default 2) child
// processes — one process may hold at most ~20,000 files — and the source addresses
// 127.0.0.2..127.0.0.(1+ADDRS) (default 4). Beside them, in this process: an observer
// socket with the official Presence on the same topic (the wave is over when it lists all
// N + 1 keys, and the leave wave when it is back to 1); in a process of its own, a bystander
// socket that sends a heartbeat every HB_MS (default 50) and records how long each reply takes. The server's
// RSS is sampled every 100 ms (needs PHX_SERVER_BIN, or PHX_PID with PHX_URL). Phases: join
// wave (all connects and joins), full house (2 s), leave wave (every wave socket destroyed),
// then SETTLE_S (default 15) for the RSS "after". One JSON line on stdout.

import { createRequire } from "node:module";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, resolve } from "node:path";
import { freePort } from "../compat-tests/lib/ports.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const require = createRequire(resolve(HERE, "../compat-tests/package.json"));
const WebSocket = require("ws");
const { Presence } = require("phoenix");

const RAW = process.argv[2] === "--raw";
const CHILD = process.argv[2] === "--child";
const BYSTANDER = process.argv[2] === "--bystander";
const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const NS = sizes.length ? sizes : [100, 300, 1000];
const WINDOW_MS = Number(process.env.WINDOW_S || 8) * 1000;
const CONCURRENCY = Number(process.env.CONCURRENCY || 100);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));


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


// ------------------------------------------------------------------------------------------------
// --raw: the big wave

import { fork } from "node:child_process";
import net from "node:net";
import crypto from "node:crypto";

/** A masked client text frame. */
function textFrame(str) {
  const payload = Buffer.from(str, "utf8");
  const len = payload.length;
  const head = len < 126 ? 2 : 4;
  const out = Buffer.allocUnsafe(head + 4 + len);
  out[0] = 0x81;
  if (len < 126) out[1] = 0x80 | len;
  else {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  }
  const mask = crypto.randomBytes(4);
  mask.copy(out, head);
  for (let i = 0; i < len; i++) out[head + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

/**
 * A wave socket: upgrade, join, then count frames by their headers, skipping payload bytes
 * without keeping them (O(1) memory per socket whatever the frame sizes).
 */
function waveSocket(port, localAddress, topic, name, stats) {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: "127.0.0.1", localAddress });
    const s = { sock, frames: 0, upgraded: false, head: Buffer.alloc(0), skip: 0 };
    sock.setNoDelay(true);
    sock.on("connect", () => {
      sock.write(
        `GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString("base64")}\r\n\r\n`,
      );
    });
    sock.on("error", () => {
      stats.errors++;
      resolve(s);
    });
    sock.on("close", () => {
      if (!stats.leaving) stats.closed++;
      resolve(s);
    });
    sock.on("data", (chunk) => {
      stats.bytes += chunk.length;
      let b = chunk;
      if (!s.upgraded) {
        s.head = Buffer.concat([s.head, b]);
        const end = s.head.indexOf("\r\n\r\n");
        if (end < 0) return;
        if (!s.head.subarray(0, 12).toString("latin1").includes("101")) {
          stats.refused++;
          sock.destroy();
          return;
        }
        s.upgraded = true;
        b = s.head.subarray(end + 4);
        s.head = Buffer.alloc(0);
        sock.write(textFrame(JSON.stringify(["1", "1", topic, "phx_join", { name }])));
        resolve(s);
      }
      // frame headers only
      let i = 0;
      while (i < b.length) {
        if (s.skip > 0) {
          const n = Math.min(s.skip, b.length - i);
          s.skip -= n;
          i += n;
          continue;
        }
        const h = s.head.length ? Buffer.concat([s.head, b.subarray(i, i + 14)]) : b.subarray(i, i + 14);
        if (h.length < 2) {
          s.head = Buffer.from(h);
          return;
        }
        let len = h[1] & 0x7f;
        let p = 2;
        if (len === 126) p = 4;
        else if (len === 127) p = 10;
        if (h.length < p) {
          s.head = Buffer.from(h);
          return;
        }
        if (len === 126) len = h.readUInt16BE(2);
        else if (len === 127) len = Number(h.readBigUInt64BE(2));
        i += p - s.head.length;
        s.head = Buffer.alloc(0);
        s.skip = len;
        const op = h[0] & 0x0f;
        if (op === 1 || op === 2) {
          s.frames++;
          if (s.frames === 2) stats.stated++;
        }
      }
    });
  });
}

/** Bystander process: a heartbeat every HB_MS, each reply's latency tagged with the phase
 * the parent last announced; on "report", the samples and the count never answered. */
async function bystanderMain() {
  const hbMs = Number(process.env.HB_MS || 50);
  const hb = { idle: [], join: [], full: [], leave: [], settle: [] };
  let phase = "idle";
  const sock = new WebSocket(process.env.BYSTANDER_URL, { perMessageDeflate: false });
  await new Promise((r, j) => (sock.once("open", r), sock.once("error", j)));
  const sent = new Map();
  let ref = 0;
  sock.on("message", (data) => {
    const [, r, topic, event] = JSON.parse(data.toString());
    if (topic === "phoenix" && event === "phx_reply" && sent.has(r)) {
      const { at, ph } = sent.get(r);
      sent.delete(r);
      hb[ph].push(performance.now() - at);
    }
  });
  const timer = setInterval(() => {
    const r = String(++ref);
    sent.set(r, { at: performance.now(), ph: phase });
    sock.send(JSON.stringify([null, r, "phoenix", "heartbeat", {}]));
  }, hbMs);
  process.on("message", async (m) => {
    if (m?.phase) phase = m.phase;
    if (m === "report") {
      clearInterval(timer);
      await sleep(hbMs * 4);
      process.send({ hb, missed: sent.size });
    }
  });
  process.send("ready");
}

/** Child: opens COUNT wave sockets, reports, destroys them all on "leave". */
async function childMain() {
  const port = Number(process.env.WAVE_PORT);
  const count = Number(process.env.WAVE_COUNT);
  const first = Number(process.env.WAVE_FIRST);
  const addrs = process.env.WAVE_ADDRS.split(",");
  const topic = process.env.WAVE_TOPIC;
  const conc = Number(process.env.CONCURRENCY || 100);
  const stats = { bytes: 0, stated: 0, errors: 0, refused: 0, open: 0, closed: 0, leaving: false };
  const socks = [];
  const report = () => process.send({ ...stats, open: socks.length });
  const timer = setInterval(report, 200);
  process.on("message", (m) => {
    if (m === "leave") {
      stats.leaving = true;
      for (const s of socks) s.sock.destroy();
      report();
    } else if (m === "exit") {
      clearInterval(timer);
      process.exit(0);
    }
  });
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(conc, count) }, async () => {
      while (next < count) {
        const i = next++;
        const k = first + i;
        socks.push(await waveSocket(port, addrs[k % addrs.length], topic, `w${k}`, stats));
      }
    }),
  );
  report();
}

function pct(xs, p) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(1);
}
const lat = (xs) => ({ n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99), max: xs.length ? +Math.max(...xs).toFixed(1) : null });

function rssOf(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(require("node:fs").readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

async function rawWave(baseUrl, pid, n) {
  const port = Number(new URL(baseUrl).port);
  const wsUrl = baseUrl.replace(/^http/, "ws");
  const topic = `presence:raw-${n}-${Math.random().toString(36).slice(2, 8)}`;
  const children = Number(process.env.CHILDREN || 2);
  const nAddrs = Number(process.env.ADDRS || 4);
  const addrs = Array.from({ length: nAddrs }, (_, i) => `127.0.0.${i + 2}`).join(",");
  const hbMs = Number(process.env.HB_MS || 50);
  const settleS = Number(process.env.SETTLE_S || 15);

  // RSS sampler
  const rss = { before: rssOf(pid), peak: 0, samples: [] };
  const sampler = setInterval(() => {
    const r = rssOf(pid);
    if (r !== null) rss.peak = Math.max(rss.peak, r);
  }, 100);

  // bystander: heartbeats on its own socket, in its own process (the observer's syncDiff of a
  // 20,000-key state would otherwise delay this event loop and be counted as server latency)
  const bystander = fork(fileURLToPath(import.meta.url), ["--bystander"], {
    env: { ...process.env, BYSTANDER_URL: `${wsUrl}/socket/websocket?vsn=2.0.0`, HB_MS: String(hbMs) },
  });
  const bystanderReport = new Promise((r) => bystander.on("message", (m) => m.hb && r(m)));
  await new Promise((r) => bystander.once("message", (m) => m === "ready" && r()));
  const setPhase = (ph) => bystander.send({ phase: ph });

  // observer: the official Presence on the wave's topic
  let observed = Object.create(null);
  let gotState = false;
  const pendingDiffs = [];
  const observer = new WebSocket(`${wsUrl}/socket/websocket?vsn=2.0.0`, { perMessageDeflate: false });
  await new Promise((r, j) => (observer.once("open", r), observer.once("error", j)));
  observer.on("message", (data) => {
    const [, , , event, payload] = JSON.parse(data.toString());
    if (event === "presence_state") {
      observed = Presence.syncState(observed, payload);
      for (const d of pendingDiffs.splice(0)) observed = Presence.syncDiff(observed, d);
      gotState = true;
    } else if (event === "presence_diff") {
      if (gotState) observed = Presence.syncDiff(observed, payload);
      else pendingDiffs.push(payload);
    }
  });
  observer.send(JSON.stringify(["1", "1", topic, "phx_join", { name: "observer" }]));
  const keys = () => Object.keys(observed).length;
  const untilKeys = async (want, limitMs) => {
    const t = Date.now();
    while (keys() !== want) {
      if (Date.now() - t > limitMs) return false;
      await sleep(10);
    }
    return true;
  };
  await untilKeys(1, 10000);
  setPhase("idle");
  await sleep(1000); // idle heartbeats
  rss.before = rssOf(pid);

  // the wave
  const per = Math.ceil(n / children);
  const kids = [];
  const kidStats = [];
  for (let c = 0; c < children; c++) {
    const count = Math.max(0, Math.min(per, n - c * per));
    const kid = fork(fileURLToPath(import.meta.url), ["--child"], {
      env: { ...process.env, WAVE_PORT: String(port), WAVE_COUNT: String(count), WAVE_FIRST: String(c * per), WAVE_ADDRS: addrs, WAVE_TOPIC: topic },
    });
    kid.on("message", (m) => (kidStats[c] = m));
    kids.push(kid);
  }
  const sum = (k) => kidStats.reduce((a, s) => a + (s?.[k] ?? 0), 0);
  setPhase("join");
  const t0 = performance.now();
  rss.peak = rss.before;
  // Over when the observer lists everyone — or when the server closed some wave sockets
  // (slow readers past OUTBOX_MAX_BYTES) and the rest have joined.
  const limit = Number(process.env.WAVE_LIMIT_S || 600) * 1000;
  let joinedOk = false;
  while (performance.now() - t0 < limit) {
    if (keys() === n + 1) {
      joinedOk = true;
      break;
    }
    if (sum("closed") > 0 && sum("stated") + sum("closed") >= n) break;
    await sleep(20);
  }
  const joinMs = performance.now() - t0;
  // every wave socket has its presence_state too
  const tState = performance.now();
  while (sum("stated") < n && performance.now() - tState < 60000) await sleep(20);
  const statesMs = performance.now() - t0;
  const rssFull = rssOf(pid);
  setPhase("full");
  await sleep(2000);
  const bytesIn = sum("bytes");
  const stated = sum("stated");
  const errors = sum("errors") + sum("refused");
  const closedEarly = sum("closed");
  setPhase("leave");
  const t1 = performance.now();
  for (const k of kids) k.send("leave");
  const leftOk = await untilKeys(1, Number(process.env.WAVE_LIMIT_S || 600) * 1000);
  const leaveMs = performance.now() - t1;
  const rssPeak = rss.peak;
  setPhase("settle");
  for (const k of kids) k.send("exit");
  await sleep(settleS * 1000);
  const rssAfter = rssOf(pid);
  clearInterval(sampler);
  bystander.send("report");
  const { hb, missed } = await bystanderReport;
  bystander.kill();
  observer.terminate();
  return {
    mode: "raw",
    n,
    batch_ms: process.env.PRESENCE_BATCH_MS ?? "default",
    join_wave_ms: Math.round(joinMs),
    join_converged: joinedOk,
    all_states_ms: Math.round(statesMs),
    wave_sockets_with_state: stated,
    leave_wave_ms: Math.round(leaveMs),
    leave_converged: leftOk,
    bytes_to_wave_sockets: bytesIn,
    socket_errors: errors,
    wave_sockets_closed_by_server: closedEarly,
    heartbeat_ms: { idle: lat(hb.idle), join: lat(hb.join), full: lat(hb.full), leave: lat(hb.leave), settle: lat(hb.settle) },
    heartbeats_unanswered: missed,
    rss_mib: {
      before: +(rss.before / MiB).toFixed(1),
      full_house: +(rssFull / MiB).toFixed(1),
      peak: +(rssPeak / MiB).toFixed(1),
      after: +(rssAfter / MiB).toFixed(1),
    },
  };
}
const MiB = 1024 * 1024;

if (CHILD) {
  await childMain();
} else if (BYSTANDER) {
  await bystanderMain();
} else if (RAW) {
  for (const n of NS) {
    let server = null;
    let url = process.env.PHX_URL;
    let pid = Number(process.env.PHX_PID || 0);
    if (process.env.PHX_SERVER_BIN) server = await startServer();
    if (server) {
      url = server.url;
      pid = server.proc.pid;
    }
    if (!url) throw new Error("set PHX_SERVER_BIN or PHX_URL (+ PHX_PID)");
    try {
      const r = await rawWave(url, pid, n);
      const h = r.heartbeat_ms;
      console.error(
        `N=${n}: join wave ${r.join_wave_ms} ms (all presence_states ${r.all_states_ms} ms, ${r.wave_sockets_with_state}/${n}), ` +
          `leave wave ${r.leave_wave_ms} ms; bystander heartbeat p50/p99/max join ${h.join.p50}/${h.join.p99}/${h.join.max} ms, ` +
          `leave ${h.leave.p50}/${h.leave.p99}/${h.leave.max} ms; RSS ${r.rss_mib.before} → peak ${r.rss_mib.peak} → after ${r.rss_mib.after} MiB`,
      );
      console.log(JSON.stringify(r));
    } finally {
      if (server) await stopServer(server.proc);
    }
  }
  process.exit(0);
} else {
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

}
