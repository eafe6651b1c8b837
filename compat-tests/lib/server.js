// Where the server under test lives, and the fixture's HTTP helpers
// (shared/protocol/CONFORMANCE_FIXTURE.md).

import { exec } from "node:child_process";

const raw = (process.env.PHX_URL || "http://127.0.0.1:4000").replace(/\/+$/, "");

/** http(s)://host:port of the server under test (env PHX_URL). */
export const HTTP_URL = raw;
/** ws(s)://host:port derived from PHX_URL. */
export const WS_URL = raw.replace(/^http:/, "ws:").replace(/^https:/, "wss:");
/** Endpoint for `new Socket(...)` of the official client. */
export const SOCKET_ENDPOINT = `${WS_URL}/socket`;

/** GET /fixture/token?user_id=N → the token text (a Phoenix.Token for integer N). */
export async function fixtureToken(userId) {
  const res = await fetch(`${HTTP_URL}/fixture/token?user_id=${encodeURIComponent(userId)}`);
  const body = await res.text();
  if (res.status !== 200) {
    throw new Error(`GET /fixture/token?user_id=${userId} → HTTP ${res.status} ${body}`);
  }
  return body.trim();
}

/** POST /fixture/broadcast {"topic","event","payload"} → expects 204. */
export async function broadcast(topic, event, payload = {}) {
  const res = await fetch(`${HTTP_URL}/fixture/broadcast`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ topic, event, payload }),
  });
  const body = await res.text();
  if (res.status !== 204) {
    throw new Error(`POST /fixture/broadcast ${topic}/${event} → HTTP ${res.status} ${body}`);
  }
}

/** Standard base64 without padding, as phoenix.js sends authToken (btoa(token).replace(/=/g, "")). */
export function tokenSubprotocol(token, { padded = false } = {}) {
  const b64 = Buffer.from(token, "latin1").toString("base64");
  return `base64url.bearer.phx.${padded ? b64 : b64.replace(/=/g, "")}`;
}

/** A topic nobody else uses, for broadcast cases (server-global effects). */
let uniqCounter = 0;
const runId = Math.random().toString(36).slice(2, 8);
export function uniqTopic(prefix = "room:t") {
  return `${prefix}-${runId}-${++uniqCounter}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs $PHX_RESTART_CMD (null when unset). Resolves when it exits 0. */
export function restartCommand() {
  return process.env.PHX_RESTART_CMD || null;
}

export function runRestart(timeoutMs = 90000) {
  const cmd = restartCommand();
  return new Promise((resolve, reject) => {
    exec(cmd, { timeout: timeoutMs, shell: "/bin/bash" }, (err, stdout, stderr) => {
      if (err) reject(new Error(`PHX_RESTART_CMD failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}
