// examples/ driven by the official phoenix client: each example binary (built by
// `cargo test`, next to PHX_SERVER_BIN under target/debug/examples/) is started on a free
// port exactly as `cargo run --example <name>` runs it, with only PORT set.
//
// chat_room — Phoenix's channels guide: room:lobby open, other rooms refuse with
// "unauthorized", new_msg is broadcast to the room.
// presence_list — the Presence guide: the official `Presence` class lists who is in the room.
// token_socket — a Phoenix.Token minted the way an Elixir app mints it (Plug.Crypto's bytes,
// checked here against the spec's Elixir-made vector) authenticates the socket.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { existsSync } from "node:fs";
import { createHmac, pbkdf2Sync } from "node:crypto";
import WebSocket from "ws";
import { Socket, Presence } from "phoenix";
import { freePort } from "../lib/ports.js";

const BIN = resolve(process.env.PHX_SERVER_BIN || "../target/debug/phx-server");
const EXAMPLES = join(dirname(BIN), "examples");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));


/** Starts examples/<name> with PORT (and `extra`) only; resolves once /healthz answers. */
async function startExample(name, extra = {}) {
  const bin = join(EXAMPLES, name);
  assert.ok(existsSync(bin), `${bin} is built (cargo test builds the examples)`);
  const port = await freePort();
  const env = { ...process.env, PORT: String(port), RUST_LOG: "warn" };
  for (const k of ["HOST", "PHX_HOST", "CHECK_ORIGIN", "SECRET_KEY_BASE", "DATABASE_URL"]) delete env[k];
  Object.assign(env, extra);
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

// The spec's Plug.Crypto vectors (shared/protocol/PHOENIX_PROTOCOL.md, Token format).
const SECRET = "abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz012345";
const ELIXIR_TOKEN_42 = "SFMyNTY.g2gDYSpuBgAAaOXPiwFiAAFRgA.K6UIXyFlmjQPpD3Oci8lEY8U2aDAOKDqG0kQKcbLMHY";

/** Phoenix.Token.sign(secret, salt, userId) for an integer id, as Plug.Crypto writes it. */
function mintToken(secret, salt, userId, signedAtMs = Date.now(), maxAge = 86400) {
  const key = pbkdf2Sync(secret, salt, 1000, 32, "sha256");
  const int = (n) =>
    n >= 0 && n < 256 ? Buffer.from([97, n]) : Buffer.concat([Buffer.from([98]), i32(n)]);
  const i32 = (n) => {
    const b = Buffer.alloc(4);
    b.writeInt32BE(n);
    return b;
  };
  const at = Buffer.alloc(6);
  at.writeUIntLE(signedAtMs, 0, 6);
  const term = Buffer.concat([Buffer.from([131, 104, 3]), int(userId), Buffer.from([110, 6, 0]), at, int(maxAge)]);
  const signed = `SFMyNTY.${term.toString("base64url")}`;
  return `${signed}.${createHmac("sha256", key).update(signed).digest("base64url")}`;
}

let chat, presence, tokens;
before(async () => {
  chat = await startExample("chat_room");
  presence = await startExample("presence_list");
  tokens = await startExample("token_socket", { SECRET_KEY_BASE: SECRET });
});
after(async () => {
  for (const s of sockets) s.disconnect();
  for (const [name, ex] of [["chat_room", chat], ["presence_list", presence], ["token_socket", tokens]]) {
    assert.equal(await stopExample(ex), 0, `${name} exits 0 on SIGTERM`);
  }
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

/** Polls `f` until it returns true, for up to `ms`. */
async function until(f, ms = 5000) {
  const t = Date.now();
  while (!f()) {
    if (Date.now() - t > ms) return false;
    await sleep(20);
  }
  return true;
}

test("presence_list: the official Presence lists everyone in the room, and drops who leaves", async () => {
  const watch = (name) => {
    const socket = connect(presence.port);
    const channel = socket.channel("room:lobby", { name });
    const p = new Presence(channel);
    const seen = { names: [] };
    p.onSync(() => (seen.names = p.list((key) => key).sort()));
    return { socket, channel, seen };
  };
  const alice = watch("alice");
  await joined(alice.channel);
  assert.ok(await until(() => alice.seen.names.join() === "alice"), `alice sees ${alice.seen.names}`);
  const bob = watch("bob");
  await joined(bob.channel);
  for (const w of [alice, bob]) {
    assert.ok(await until(() => w.seen.names.join() === "alice,bob"), `sees ${w.seen.names}`);
  }
  bob.socket.disconnect();
  assert.ok(await until(() => alice.seen.names.join() === "alice"), `after bob left: ${alice.seen.names}`);
});

test("presence_list: a join without a name is refused", async () => {
  const s = connect(presence.port);
  const reason = await joined(s.channel("room:lobby", {})).then(
    () => assert.fail("joined without a name"),
    (r) => r,
  );
  assert.deepEqual(reason, { reason: "a name is required" });
});

test("token_socket: the test's signer writes Plug.Crypto's bytes (the spec's Elixir-made token for 42)", () => {
  assert.equal(mintToken(SECRET, "user socket", 42, 1_700_000_000_000, 86400), ELIXIR_TOKEN_42);
});

test("token_socket: a token for user 42 joins user:42 only, and whoami answers 42", async () => {
  const socket = new Socket(`ws://127.0.0.1:${tokens.port}/socket`, {
    transport: WebSocket,
    params: { token: mintToken(SECRET, "user socket", 42) },
  });
  socket.connect();
  sockets.push(socket);
  const own = socket.channel("user:42", {});
  await joined(own);
  const reply = await new Promise((res, rej) =>
    own.push("whoami", {}).receive("ok", res).receive("error", rej).receive("timeout", () => rej(new Error("timeout"))),
  );
  assert.deepEqual(reply, { user_id: 42 });
  const other = await joined(socket.channel("user:7", {})).then(
    () => assert.fail("joined another user's topic"),
    (r) => r,
  );
  assert.deepEqual(other, { reason: "unauthorized" });
});

/** The HTTP status of a WebSocket upgrade to token_socket with `query`. */
function upgradeStatus(query) {
  return new Promise((res) => {
    const ws = new WebSocket(`ws://127.0.0.1:${tokens.port}/socket/websocket?vsn=2.0.0&${query}`);
    ws.once("open", () => (ws.close(), res(101)));
    ws.once("unexpected-response", (_req, r) => (r.resume(), res(r.statusCode)));
    ws.once("error", () => {});
  });
}

test("token_socket: no token, a forged token, another salt, and the expired Elixir token are refused (403)", async () => {
  assert.equal(await upgradeStatus(`token=${mintToken(SECRET, "user socket", 42)}`), 101, "control: a good token");
  assert.equal(await upgradeStatus(""), 403, "no token");
  assert.equal(await upgradeStatus(`token=${mintToken("x".repeat(64), "user socket", 42)}`), 403, "another secret");
  assert.equal(await upgradeStatus(`token=${mintToken(SECRET, "other salt", 42)}`), 403, "another salt");
  // Signed in 2023 with max_age 86400: expired for Phoenix.Token.verify, and here.
  assert.equal(await upgradeStatus(`token=${ELIXIR_TOKEN_42}`), 403, "the 2023 token is expired");
});

test("token_socket: without SECRET_KEY_BASE it refuses to start, saying why", async () => {
  const bin = join(EXAMPLES, "token_socket");
  const env = { ...process.env, PORT: String(await freePort()) };
  delete env.SECRET_KEY_BASE;
  const proc = spawn(bin, [], { env, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  proc.stderr.on("data", (d) => (err += d));
  const code = await new Promise((r) => proc.once("exit", r));
  assert.notEqual(code, 0);
  assert.match(err, /SECRET_KEY_BASE/);
});
