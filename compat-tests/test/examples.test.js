// examples/ driven by the official phoenix client: each example binary (built by
// `cargo test`, next to PHX_SERVER_BIN under target/debug/examples/) is started on a free
// port exactly as `cargo run --example <name>` runs it, with only PORT set.
//
// chat_room — Phoenix's channels guide: room:lobby open, other rooms refuse with
// "unauthorized", new_msg is broadcast to the room.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { existsSync } from "node:fs";
import WebSocket from "ws";
import { Socket } from "phoenix";

const BIN = resolve(process.env.PHX_SERVER_BIN || "../target/debug/phx-server");
const EXAMPLES = join(dirname(BIN), "examples");
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

/** Starts examples/<name> with PORT only; resolves once /healthz answers. */
async function startExample(name) {
  const bin = join(EXAMPLES, name);
  assert.ok(existsSync(bin), `${bin} is built (cargo test builds the examples)`);
  const port = await freePort();
  const env = { ...process.env, PORT: String(port), RUST_LOG: "warn" };
  for (const k of ["HOST", "PHX_HOST", "CHECK_ORIGIN", "SECRET_KEY_BASE", "DATABASE_URL"]) delete env[k];
  const proc = spawn(bin, [], { env, stdio: ["ignore", "ignore", "inherit"] });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).status === 200) return { proc, port, url };
    } catch {
      /* not up yet */
    }
    if (proc.exitCode !== null) throw new Error(`${name} exited ${proc.exitCode}`);
    await sleep(100);
  }
  proc.kill("SIGKILL");
  throw new Error(`${name} did not come up`);
}

async function stopExample(ex) {
  if (!ex || ex.proc.exitCode !== null) return;
  const exited = new Promise((r) => ex.proc.once("exit", (code) => r(code)));
  ex.proc.kill("SIGTERM");
  const code = await Promise.race([exited, sleep(10000).then(() => "timeout")]);
  if (code === "timeout") ex.proc.kill("SIGKILL");
  return code;
}

const sockets = [];
function connect(port) {
  const socket = new Socket(`ws://127.0.0.1:${port}/socket`, { transport: WebSocket });
  socket.connect();
  sockets.push(socket);
  return socket;
}
const joined = (channel) =>
  new Promise((res, rej) => channel.join().receive("ok", res).receive("error", rej).receive("timeout", () => rej(new Error("timeout"))));

let chat;
before(async () => {
  chat = await startExample("chat_room");
});
after(async () => {
  for (const s of sockets) s.disconnect();
  assert.equal(await stopExample(chat), 0, "chat_room exits 0 on SIGTERM");
});

test("chat_room: two clients in room:lobby both get a new_msg one of them pushed", async () => {
  const [a, b] = [connect(chat.port), connect(chat.port)];
  const [ca, cb] = [a.channel("room:lobby", {}), b.channel("room:lobby", {})];
  await joined(ca);
  await joined(cb);
  const got = (ch) => new Promise((r) => ch.on("new_msg", r));
  const [ga, gb] = [got(ca), got(cb)];
  ca.push("new_msg", { body: "hello from a" });
  assert.deepEqual(await gb, { body: "hello from a" });
  assert.deepEqual(await ga, { body: "hello from a" }, "broadcast! includes the sender");
});

test("chat_room: a private room refuses the join with {reason: unauthorized}", async () => {
  const s = connect(chat.port);
  const reason = await joined(s.channel("room:secret", {})).then(
    () => assert.fail("joined a private room"),
    (r) => r,
  );
  assert.deepEqual(reason, { reason: "unauthorized" });
});
