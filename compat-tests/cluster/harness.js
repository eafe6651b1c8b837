// The cluster suite's moving parts: a Redis of its own on a free port (started and stopped by
// pid; the shared one on 6379 is never touched), `phx-server serve --fixture` nodes started as
// the README's "Running several nodes" tells a person to (PUBSUB_ADAPTER=redis, REDIS_URL,
// NODE_NAME, PUBSUB_NAME), and a raw RESP client to publish exact bytes and to watch the channel.

import { spawn } from "node:child_process";
import { mkdirSync, openSync, readFileSync } from "node:fs";
import net from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../lib/ports.js";

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, "../..");
export const LOGS = join(REPO, "compat-tests/.logs/cluster");
const BIN = resolve(REPO, process.env.PHX_SERVER_BIN || "target/debug/phx-server");
export const PUBSUB_NAME = "MyApp.PubSub";
export const CHANNEL = `phx:Elixir.${PUBSUB_NAME}.Adapter`;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The captured Elixir envelopes (protocol/tests/fixtures/pubsub-redis/<file>), as Buffers with their labels. */
export function captures(file) {
  const path = join(REPO, "protocol/tests/fixtures/pubsub-redis", file);
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .map((c) => ({ ...c, buf: Buffer.from(c.hex, "hex") }));
}

const children = new Set();
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});

function logTo(name) {
  mkdirSync(LOGS, { recursive: true });
  return join(LOGS, `${name}.log`);
}

/** A Redis of our own (no persistence) on `port` (a free one by default). */
export async function startRedis(port) {
  port = port ?? (await freePort());
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: ["ignore", openSync(logTo(`redis-${port}`), "a"), "inherit"],
  });
  children.add(proc);
  for (let i = 0; i < 100; i++) {
    try {
      const c = await resp(port);
      const pong = await c.command(["PING"]);
      c.close();
      if (pong === "PONG") return { proc, port, url: `redis://127.0.0.1:${port}` };
    } catch {
      /* not up yet */
    }
    await sleep(50);
  }
  throw new Error(`redis-server on ${port} did not come up`);
}

export async function stopRedis(redis, signal = "SIGTERM") {
  if (redis.proc.exitCode !== null) return;
  const exited = new Promise((r) => redis.proc.once("exit", r));
  redis.proc.kill(signal);
  await exited;
}

/** One `phx-server serve --fixture` node in the cluster on `redisUrl`. */
export async function startNode(name, redisUrl, extra = {}) {
  const port = await freePort();
  // /metrics is on the admin listener only (loopback), as the README tells an operator.
  const adminPort = await freePort();
  const env = { ...process.env, PORT: String(port), ADMIN_PORT: String(adminPort), RUST_LOG: "info", PUBSUB_ADAPTER: "redis", REDIS_URL: redisUrl, NODE_NAME: name, PUBSUB_NAME, ...extra };
  for (const k of ["DATABASE_URL", "HOST", "PHX_HOST", "CHECK_ORIGIN"]) delete env[k];
  const log = logTo(`node-${name}`);
  const out = openSync(log, "w");
  const proc = spawn(BIN, ["serve", "--fixture"], { env, stdio: ["ignore", out, out] });
  children.add(proc);
  const node = { name, port, proc, log, url: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${adminPort}`, ws: `ws://127.0.0.1:${port}/socket` };
  await waitReady(node);
  return node;
}

/** Resolves once the node answers /readyz with 200 (its Redis links are up). */
export async function waitReady(node, timeoutMs = 20000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (node.proc.exitCode !== null) throw new Error(`node ${node.name} exited ${node.proc.exitCode}; see ${node.log}`);
    try {
      if ((await fetch(`${node.url}/readyz`)).status === 200) return;
    } catch {
      /* not listening yet */
    }
    await sleep(100);
  }
  throw new Error(`node ${node.name} not ready within ${timeoutMs} ms; see ${node.log}`);
}

export async function readyStatus(node) {
  return (await fetch(`${node.url}/readyz`)).status;
}

export async function stopNode(node, signal = "SIGTERM") {
  if (node.proc.exitCode !== null || node.proc.signalCode !== null) return;
  const exited = new Promise((r) => node.proc.once("exit", (code, sig) => r(code ?? sig)));
  node.proc.kill(signal);
  return Promise.race([exited, sleep(15000).then(() => node.proc.kill("SIGKILL"))]);
}

/** POST /fixture/broadcast on `node`. */
export async function broadcast(node, topic, event, payload) {
  const res = await fetch(`${node.url}/fixture/broadcast`, { method: "POST", body: JSON.stringify({ topic, event, payload }) });
  if (res.status !== 204) throw new Error(`broadcast on ${node.name}: HTTP ${res.status}`);
}

export async function metric(node, name) {
  const text = await (await fetch(`${node.admin}/metrics`)).text();
  const m = text.match(new RegExp(`^${name} (\\d+)$`, "m"));
  return m ? Number(m[1]) : NaN;
}

export async function fixtureToken(node, userId) {
  return (await fetch(`${node.url}/fixture/token?user_id=${userId}`)).text();
}

function encodeCommand(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

/** Parses one RESP2 value at `buf[off]`; returns [value, nextOffset] or null if incomplete. */
function parse(buf, off = 0) {
  if (off >= buf.length) return null;
  const line = buf.indexOf("\r\n", off);
  if (line < 0) return null;
  const type = String.fromCharCode(buf[off]);
  const head = buf.subarray(off + 1, line).toString();
  const next = line + 2;
  if (type === "+") return [head, next];
  if (type === "-") return [new Error(head), next];
  if (type === ":") return [Number(head), next];
  if (type === "$") {
    const n = Number(head);
    if (n < 0) return [null, next];
    if (buf.length < next + n + 2) return null;
    return [buf.subarray(next, next + n), next + n + 2];
  }
  if (type === "*") {
    const n = Number(head);
    const items = [];
    let at = next;
    for (let i = 0; i < n; i++) {
      const r = parse(buf, at);
      if (!r) return null;
      items.push(r[0]);
      at = r[1];
    }
    return [items, at];
  }
  throw new Error(`RESP: unexpected type ${type}`);
}

/** A minimal RESP2 connection: `command(args)` resolves with the reply; in subscribe mode, `messages` collects pushes. */
export function resp(port) {
  return new Promise((res, rej) => {
    const sock = net.connect({ port, host: "127.0.0.1" });
    let buf = Buffer.alloc(0);
    const waiters = [];
    const c = {
      messages: [],
      command(args) {
        return new Promise((ok, fail) => {
          waiters.push({ ok, fail });
          sock.write(encodeCommand(args));
        });
      },
      close() {
        sock.destroy();
      },
    };
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const r = parse(buf);
        if (!r) break;
        buf = buf.subarray(r[1]);
        const v = r[0];
        if (Array.isArray(v) && v.length === 3 && Buffer.isBuffer(v[0]) && v[0].toString() === "message") {
          c.messages.push({ channel: v[1].toString(), data: v[2] });
          continue;
        }
        const w = waiters.shift();
        if (!w) continue;
        if (v instanceof Error) w.fail(v);
        else w.ok(Buffer.isBuffer(v) ? v.toString() : v);
      }
    });
    sock.once("connect", () => res(c));
    sock.once("error", rej);
  });
}

/** Publishes raw bytes on the cluster's channel; resolves with the number of receivers. */
export async function publishRaw(redisPort, bytes) {
  const c = await resp(redisPort);
  try {
    return await c.command(["PUBLISH", CHANNEL, bytes]);
  } finally {
    c.close();
  }
}

/** Lines of a node's log matching `re`. */
export function logLines(node, re) {
  return readFileSync(node.log, "utf8").split("\n").filter((l) => re.test(l));
}
