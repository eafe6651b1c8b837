// Helpers for driving the official phoenix client in Node: a socket per test that is torn
// down when the test ends, call recorders, and Push → Promise.

import WebSocket from "ws";
import { Socket } from "phoenix";

import { SOCKET_ENDPOINT } from "./server.js";

/** How long a recorder waits by default for expected calls. */
export const WAIT = 5000;

/** Records calls; `wait(n, ms)` resolves with the calls once n happened, rejects after ms. */
export function recorder(name) {
  const calls = [];
  let waiters = [];
  const fn = (...args) => {
    calls.push(args);
    waiters = waiters.filter((w) => {
      if (calls.length >= w.n) {
        w.resolve(calls.slice());
        return false;
      }
      return true;
    });
  };
  fn.calls = calls;
  fn.wait = (n = 1, ms = WAIT) =>
    new Promise((resolve, reject) => {
      if (calls.length >= n) return resolve(calls.slice());
      const w = { n };
      const timer = setTimeout(() => {
        waiters = waiters.filter((x) => x !== w);
        reject(new Error(`${name}: expected ${n} call(s) within ${ms} ms, got ${calls.length}: ${JSON.stringify(calls)}`));
      }, ms);
      w.resolve = (v) => {
        clearTimeout(timer);
        resolve(v);
      };
      waiters.push(w);
    });
  return fn;
}

/**
 * A phoenix Socket (WebSocket from `ws` unless `opts.transport` says otherwise) with quick
 * reconnect/rejoin; its channels are left and it is disconnected when the test ends.
 */
export function mkSocket(t, opts = {}) {
  const socket = new Socket(SOCKET_ENDPOINT, {
    transport: WebSocket,
    reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 500,
    ...opts,
  });
  t.after(() => shutdown(socket));
  return socket;
}

/** `mkSocket` against another server: `endpoint` is its `ws://host:port/socket`. */
export function mkSocketAt(t, endpoint, opts = {}) {
  const socket = new Socket(endpoint, {
    transport: WebSocket,
    reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 500,
    ...opts,
  });
  t.after(() => shutdown(socket));
  return socket;
}

/** Leaves every channel and disconnects; resolves within 3 s whatever happens. */
export function shutdown(socket) {
  return new Promise((resolve) => {
    for (const c of socket.channels.slice()) {
      try {
        c.leave(500);
      } catch {
        /* already closed */
      }
    }
    const done = setTimeout(resolve, 3000);
    socket.disconnect(() => {
      clearTimeout(done);
      resolve();
    });
  });
}

/** connect() and wait for the first open. */
export async function connected(socket) {
  const opened = recorder("socket.onOpen");
  socket.onOpen(opened);
  socket.connect();
  await opened.wait(1);
  return socket;
}

/** Push → Promise<{status, response}> (ok / error / timeout). */
export function result(push) {
  return new Promise((resolve) => {
    push
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}
