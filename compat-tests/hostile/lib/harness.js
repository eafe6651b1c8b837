// The hostile-input harness (issue 10, item 8). Every case runs inside `hostile(...)`, which
// wraps it in the four checks the issue asks of each case:
//
//   1. the offending client gets its documented answer         — the case body asserts it
//   2. a bystander keeps answering heartbeats                   — a raw V2 WebSocket joined to
//      room:lobby sends a heartbeat every 200 ms for the whole case; at the end every one of
//      them must have had its ok reply (a count, not a latency)
//   3. RSS returns near baseline                                — VmRSS of the server process
//      before the case, and after the case once it settles (polled), within a generous bound
//   4. no panic in the log                                      — the bytes the server logged
//      during the case never contain `panicked`, `overflowed its stack`, `fatal runtime error`
//
// If the server died, the case fails with the tail of its log, and the shared server is
// started again so that the next case tests its own row, not the previous case's corpse.
//
// Servers: the shared one is started by run.sh (`serve --fixture` on defaults; PHX_PORT and
// PHX_STATE_DIR tell us where its pidfile and log are); cases that need other settings start
// their own with `spawnServer` (the same binary, PHX_SERVER_BIN, `serve ...` as a person would).

import { test } from "node:test";
import fs from "node:fs";
import path from "node:path";
import os from "node:os";
import { spawn, execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

import { sleep } from "../../lib/server.js";
import { request, get } from "./tcp.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const COMPAT = path.resolve(HERE, "../..");
const REPO = path.resolve(COMPAT, "..");

export const MiB = 1 << 20;

/** HOSTILE_SCALE=1: the long variants (10k+ sockets, 100k+ messages). Documented in README.md. */
export const SCALE = process.env.HOSTILE_SCALE === "1";
export const scaled = (ci, big) => (SCALE ? big : ci);

/** The server binary (run.sh exports an absolute path). */
export const BIN = (() => {
  const b = process.env.PHX_SERVER_BIN || "target/debug/phx-server";
  return path.isAbsolute(b) ? b : path.join(REPO, b);
})();

/** Where this run keeps logs and scratch files. */
export const RUN_DIR = process.env.HOSTILE_RUN_DIR || fs.mkdtempSync(path.join(os.tmpdir(), "hostile-"));
fs.mkdirSync(RUN_DIR, { recursive: true });

const PANIC = /panicked|overflowed its stack|fatal runtime error/;

/** Whether `pid` is a running process (a zombie — exited, not yet reaped — is not). */
function procAlive(pid) {
  if (!pid) return false;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------------------------------------
// servers

/** What every server handle offers: where it listens, its pid, its log, whether it is alive. */
class ServerBase {
  constructor(name, port, logPath, { fixture = true } = {}) {
    this.name = name;
    this.port = port;
    this.logPath = logPath;
    this.fixture = fixture;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** VmRSS in bytes (null if the process is gone). */
  rss() {
    try {
      const s = fs.readFileSync(`/proc/${this.pid}/status`, "utf8");
      const m = /^VmRSS:\s+(\d+) kB/m.exec(s);
      return m ? Number(m[1]) * 1024 : null;
    } catch {
      return null;
    }
  }

  logSize() {
    try {
      return fs.statSync(this.logPath).size;
    } catch {
      return 0;
    }
  }

  /** The log from byte `from` on (as text). */
  logSince(from) {
    try {
      const fd = fs.openSync(this.logPath, "r");
      try {
        const size = fs.fstatSync(fd).size;
        const buf = Buffer.alloc(Math.max(0, size - from));
        fs.readSync(fd, buf, 0, buf.length, from);
        return buf.toString("utf8");
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      return "";
    }
  }

  logTail(lines = 40) {
    const size = this.logSize();
    const text = this.logSince(Math.max(0, size - 64 * 1024)).replace(/\x1b\[[0-9;]*m/g, "");
    return text.split("\n").slice(-lines - 1).join("\n");
  }
}

/** The shared server run.sh started (server-ctl.sh keeps its pid, exit status and log). */
class SharedServer extends ServerBase {
  constructor() {
    const port = Number(process.env.PHX_PORT);
    const state = process.env.PHX_STATE_DIR;
    if (!port || !state) throw new Error("PHX_PORT / PHX_STATE_DIR unset: run the suite through compat-tests/hostile/run.sh");
    super("shared", port, path.join(state, "server.log"));
    this.state = state;
  }

  get pid() {
    try {
      return Number(fs.readFileSync(path.join(this.state, "server.pid"), "utf8").trim());
    } catch {
      return null;
    }
  }

  alive() {
    if (fs.existsSync(path.join(this.state, "server.exit"))) return false;
    return procAlive(this.pid);
  }

  /** Whether it answers GET /fixture/token (within 2 s). */
  async answers() {
    try {
      return (await request(this.port, get("/fixture/token?user_id=1"), { timeout: 2000 })).status === 200;
    } catch {
      return false;
    }
  }

  /** server-ctl.sh start (after a case killed it). */
  restart() {
    return new Promise((resolve, reject) => {
      execFile("bash", [path.join(COMPAT, "server-ctl.sh"), "start"], { env: process.env, timeout: 60000 }, (err, _o, stderr) => {
        if (err) reject(new Error(`restarting the shared server failed: ${stderr}`));
        else resolve();
      });
    });
  }
}

let shared = null;
/** The shared `serve --fixture` server (defaults). */
export function sharedServer() {
  shared ??= new SharedServer();
  return shared;
}

/** A free TCP port on 127.0.0.1 (shared with the other suites; pg.js takes it from here). */
import { freePort } from "../../lib/ports.js";
export { freePort };

const spawned = new Set();
process.on("exit", () => {
  for (const s of spawned) if (s.alive()) s.child.kill("SIGKILL");
});

/** A server this file started itself. */
export class SpawnedServer extends ServerBase {
  constructor(name, port, logPath, child, opts) {
    super(name, port, logPath, opts);
    this.child = child;
    this.exit = null; // {code, signal}
    this.exited = new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  get pid() {
    return this.child.pid;
  }

  alive() {
    return this.exit === null && procAlive(this.pid);
  }

  /** SIGTERM; resolves with {code, signal} or null if it did not exit within ms (then SIGKILL). */
  async stop(ms = 45000) {
    if (this.exit) return this.exit;
    this.child.kill("SIGTERM");
    const r = await Promise.race([this.exited, sleep(ms).then(() => null)]);
    if (r === null) {
      this.child.kill("SIGKILL");
      await this.exited;
    }
    return r;
  }
}

/**
 * Starts `$PHX_SERVER_BIN <args>` (default `serve --fixture`) on a free port with HOST/PORT
 * (and, with `nofile`, under `ulimit -Sn <nofile>`),
 * the given env on top of ours (RUST_LOG and DATABASE_URL removed unless given: default log
 * level, and never the shared database), and waits until `ready` answers 200.
 * Stop it with `server.stop()` (an `after` hook); anything still running when this process
 * exits is killed.
 */
export async function spawnServer(name, { args = ["serve", "--fixture"], env = {}, cwd = REPO, ready, nofile } = {}) {
  const port = await freePort();
  const logPath = path.join(RUN_DIR, `${name}-${port}.log`);
  const log = fs.openSync(logPath, "a");
  const fullEnv = { ...process.env };
  delete fullEnv.RUST_LOG;
  delete fullEnv.DATABASE_URL;
  Object.assign(fullEnv, { HOST: "127.0.0.1", PORT: String(port) }, env);
  for (const k of Object.keys(fullEnv)) if (fullEnv[k] === undefined) delete fullEnv[k];
  // nofile: the soft RLIMIT_NOFILE the server starts with (bash's ulimit, then exec: same pid)
  const [file, argv] = nofile ? ["bash", ["-c", `ulimit -Sn ${Number(nofile)} && exec "$0" "$@"`, BIN, ...args]] : [BIN, args];
  const child = spawn(file, argv, { cwd, env: fullEnv, stdio: ["ignore", log, log] });
  fs.closeSync(log);
  const fixture = args.includes("--fixture");
  const server = new SpawnedServer(name, port, logPath, child, { fixture });
  spawned.add(server);
  const probe = ready ?? (fixture ? "/fixture/token?user_id=1" : "/login");
  const deadline = Date.now() + 30000;
  for (;;) {
    if (!server.alive()) throw new Error(`${name}: server exited during startup (${JSON.stringify(server.exit)}):\n${server.logTail()}`);
    try {
      // Connection: close, so no pooled connection keeps a slot (MAX_CONNECTIONS cases).
      const r = await request(port, get(probe), { timeout: 2000 });
      if (r.status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      server.child.kill("SIGKILL");
      throw new Error(`${name}: GET ${probe} did not answer 200 within 30 s:\n${server.logTail()}`);
    }
    await sleep(100);
  }
  return server;
}

/** `phx-server token <user_id>` with the env a server was started with (its SECRET_KEY_BASE). */
export function cliToken(userId, env = {}) {
  return new Promise((resolve, reject) => {
    execFile(BIN, ["token", String(userId)], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`phx-server token ${userId}: ${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

// ------------------------------------------------------------------------------------------------
// the bystander

/**
 * A raw V2 WebSocket on `server` (joined to `join`, room:lobby on the fixture) that sends a
 * heartbeat every `everyMs` until `finish()`, then waits for the outstanding replies and
 * reports {sent, answered, missing, closed}.
 */
export class Bystander {
  static async start(server, { join = server.fixture ? "room:lobby" : null, params = {}, everyMs = 200 } = {}) {
    const q = new URLSearchParams({ ...params, vsn: "2.0.0" });
    const ws = new WebSocket(`${server.wsUrl}/socket/websocket?${q}`);
    const b = new Bystander(ws, everyMs);
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", (e) => reject(new Error(`bystander: cannot connect: ${e.message}`)));
      ws.once("unexpected-response", (_q, res) => reject(new Error(`bystander: upgrade refused: HTTP ${res.statusCode}`)));
    });
    if (join) {
      ws.send(JSON.stringify(["by", "by", join, "phx_join", {}]));
      await b._waitFor(() => b.joined !== null, 5000);
      if (b.joined !== "ok") throw new Error(`bystander: join ${join} → ${b.joined}`);
    }
    b.timer = setInterval(() => b._beat(), everyMs);
    b._beat();
    return b;
  }

  constructor(ws, everyMs) {
    this.ws = ws;
    this.everyMs = everyMs;
    this.sent = 0;
    this.answered = new Set();
    this.bad = [];
    this.joined = null;
    this.closeInfo = null;
    ws.on("message", (data) => {
      let f;
      try {
        f = JSON.parse(data.toString());
      } catch {
        return this.bad.push(String(data).slice(0, 200));
      }
      if (f[1] === "by" && f[3] === "phx_reply") {
        this.joined = f[4]?.status ?? "?";
      } else if (typeof f[1] === "string" && f[1].startsWith("hb") && f[2] === "phoenix") {
        if (f[3] === "phx_reply" && f[4]?.status === "ok") this.answered.add(f[1]);
        else this.bad.push(String(data).slice(0, 200));
      }
    });
    ws.on("close", (code, reason) => {
      this.closeInfo = { code, reason: String(reason) };
    });
    ws.on("error", () => {});
  }

  _beat() {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.sent++;
    this.ws.send(`[null,"hb${this.sent}","phoenix","heartbeat",{}]`);
  }

  async _waitFor(cond, ms) {
    const deadline = Date.now() + ms;
    while (!cond() && Date.now() < deadline && !this.closeInfo) await sleep(20);
  }

  /** Stops beating; waits (up to waitMs) for every reply; closes. */
  async finish(waitMs = 10000) {
    clearInterval(this.timer);
    await this._waitFor(() => this.answered.size >= this.sent, waitMs);
    const r = {
      sent: this.sent,
      answered: this.answered.size,
      closed: this.closeInfo,
      bad: this.bad.slice(0, 3),
    };
    try {
      this.ws.close(1000);
    } catch {
      /* already closed */
    }
    setTimeout(() => this.ws.terminate(), 500).unref();
    return r;
  }
}

// ------------------------------------------------------------------------------------------------
// RSS

/** Samples a server's RSS every `everyMs` for the peak during a case. */
function rssSampler(server, everyMs = 100) {
  const s = { peak: server.rss() ?? 0 };
  const t = setInterval(() => {
    const r = server.rss();
    if (r !== null && r > s.peak) s.peak = r;
  }, everyMs);
  s.stop = () => clearInterval(t);
  return s;
}

/** RSS once it is ≤ limit (polled every 250 ms for up to ms); the last value otherwise. */
async function settledRss(server, limit, ms) {
  const deadline = Date.now() + ms;
  let r = server.rss();
  while (r !== null && r > limit && Date.now() < deadline) {
    await sleep(250);
    r = server.rss();
  }
  return r;
}

export const mb = (bytes) => (bytes === null || bytes === undefined ? "?" : `${(bytes / MiB).toFixed(1)} MiB`);

// ------------------------------------------------------------------------------------------------
// the case wrapper

/**
 * Declares one hostile case. opts:
 *   server     a server handle or a function returning one (default: the shared server)
 *   bystander  false, or options for Bystander.start (default: room:lobby on the fixture), or a
 *              function returning them
 *   rss        false, or {bound (bytes over the baseline, default 32 MiB), settleMs (default 10 s)}
 *   timeout    node:test timeout (default 60 s)
 *   expectExit the case stops the server itself (SIGTERM): its exit is not a death
 * fn(ctx): ctx = {server, t, baseline, peak(), note(text)}.
 */
export function hostile(name, opts, fn) {
  if (typeof opts === "function") [opts, fn] = [{}, opts];
  test(name, { timeout: opts.timeout ?? 60000 }, async (t) => {
    const server = (typeof opts.server === "function" ? opts.server() : opts.server) ?? sharedServer();
    if (server instanceof SharedServer) {
      // A server that a previous case killed may still be dying (not answering, not reaped).
      if (server.alive() && !(await server.answers())) {
        await until(() => !server.alive(), "", 5000).catch(() => {});
      }
      if (!server.alive()) await server.restart();
    } else if (!server.alive()) {
      throw new Error(`${server.name} is not running:\n${server.logTail()}`);
    }
    const logFrom = server.logSize();
    const baseline = server.rss();
    const sampler = rssSampler(server);
    const rssOpts = opts.rss === false ? null : { bound: 32 * MiB, settleMs: 10000, ...(opts.rss ?? {}) };
    const byOpts = typeof opts.bystander === "function" ? opts.bystander() : opts.bystander;
    const bystander = byOpts === false ? null : await Bystander.start(server, byOpts ?? {});
    const started = Date.now();
    const ctx = { server, t, baseline, peak: () => sampler.peak, note: (s) => t.diagnostic(s) };

    let caseError = null;
    try {
      await fn(ctx);
    } catch (e) {
      caseError = e;
    }
    const problems = [];
    const facts = [`case ${((Date.now() - started) / 1000).toFixed(1)} s`];

    if (bystander) {
      const r = await bystander.finish();
      facts.push(`bystander heartbeats ${r.answered}/${r.sent}`);
      if (r.answered !== r.sent || r.sent === 0) {
        problems.push(
          `bystander: ${r.answered} of ${r.sent} heartbeats answered` +
            (r.closed ? `; its socket closed (code ${r.closed.code} ${JSON.stringify(r.closed.reason)})` : "") +
            (r.bad.length ? `; unexpected frames: ${r.bad.join(" | ")}` : ""),
        );
      }
    }
    sampler.stop();

    const alive = server.alive();
    if (!alive && !opts.expectExit) {
      problems.push(`the server (${server.name}) died during the case. Last log lines:\n${server.logTail(30)}`);
    } else if (rssOpts && baseline !== null) {
      const after = await settledRss(server, baseline + rssOpts.bound, rssOpts.settleMs);
      facts.push(`rss ${mb(baseline)} → peak ${mb(sampler.peak)} → ${mb(after)}`);
      if (after !== null && after > baseline + rssOpts.bound) {
        problems.push(
          `RSS did not return near baseline: ${mb(baseline)} before, ${mb(sampler.peak)} at peak, ` +
            `${mb(after)} ${rssOpts.settleMs / 1000} s after the case (bound: baseline + ${mb(rssOpts.bound)})`,
        );
      }
    }

    const logged = server.logSince(logFrom);
    facts.push(`log +${logged.length} B`);
    const panics = logged.replace(/\x1b\[[0-9;]*m/g, "").split("\n").filter((l) => PANIC.test(l));
    if (panics.length) problems.push(`the log has panics:\n  ${panics.slice(0, 5).join("\n  ")}`);

    t.diagnostic(facts.join(" · "));
    if (!alive && server instanceof SharedServer) await server.restart();

    if (caseError || problems.length) {
      const parts = [];
      if (caseError) parts.push(describeError(caseError));
      if (problems.length) parts.push(`harness checks failed:\n- ${problems.join("\n- ")}`);
      const e = new Error(parts.join("\n\n"));
      // the case's own location is in describeError; no harness frames
      e.stack = `Error: ${e.message}\n    at hostile case "${name}"`;
      throw e;
    }
  });
}

/** An error's message plus where in a test file it was thrown. */
function describeError(e) {
  const where = String(e?.stack ?? "")
    .split("\n")
    .find((l) => l.includes("/hostile/test/"));
  return `${e?.message ?? String(e)}${where ? `\n    ${where.trim()}` : ""}`;
}

/** Resolves once cond() holds (polled every 20 ms); rejects with what() after ms. */
export async function until(cond, what, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${typeof what === "function" ? what() : what}`);
    await sleep(20);
  }
}
