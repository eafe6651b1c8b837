// `longPollFallbackMs` in a real browser: the watch page's unmodified phoenix client falls back
// to LongPoll when the server refuses the WebSocket, and the page still exchanges annotations.
//
// Each test starts its own `phx-server serve` (harness.js: normal mode, temporary SQLite, own
// port) and opens two logged-in /watch/2-elixir pages (jose, chris) with the clock player and
// `window.phxSocketOptions = {longPollFallbackMs: 500}`:
//
//   - SOCKET_TRANSPORTS=longpoll: /socket/websocket has no route (HTTP 404, as Phoenix answers
//     for `websocket: false`), so the client's WebSocket fails, it falls back to LongPoll and
//     remembers it (sessionStorage `phx:fallback:LongPoll`); an annotation posted by one user
//     reaches the other over /socket/longpoll.
//   - positive control, both transports (the default): the same page stays on WebSocket (its
//     health-check ping passes within the 500 ms) and never requests /socket/longpoll.
//
// Server logs: compat-tests/.logs/browser-fallback-{longpoll,both}.log; screenshot: fallback.png.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import WebSocket from "ws";
import { LOGS, sleep, startServer, launchBrowser, watchAs, waitForAnnotation } from "./harness.js";

const SOCKET_OPTIONS = { longPollFallbackMs: 500 };

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
});

/** The HTTP status a WebSocket upgrade of `url` gets (101 when it is accepted). */
function upgradeStatus(url) {
  return new Promise((res, rej) => {
    const ws = new WebSocket(url);
    ws.once("unexpected-response", (_req, r) => {
      res(r.statusCode);
      ws.terminate();
    });
    ws.once("open", () => {
      res(101);
      ws.terminate();
    });
    ws.once("error", (e) => rej(e));
  });
}

/** Records a page's socket traffic: WebSocket attempts and /socket/longpoll responses. */
function watchTraffic(page) {
  const t = { websockets: [], longpoll: [] };
  page.on("websocket", (ws) => t.websockets.push(ws.url()));
  page.on("response", (r) => {
    if (new URL(r.url()).pathname === "/socket/longpoll") t.longpoll.push(`${r.request().method()} ${r.status()}`);
  });
  return t;
}

/** Logs `username` in with the fallback options; the page's traffic is recorded from the start. */
async function watchWithFallback(baseUrl, username) {
  let traffic;
  const w = await watchAs(browser, baseUrl, username, {
    socketOptions: SOCKET_OPTIONS,
    onPage: (page) => (traffic = watchTraffic(page)),
  });
  return { ...w, traffic };
}

/** Which transport the page's socket ended up on, as phoenix.js itself names it. */
const socketState = (page) =>
  page.evaluate(() => {
    const s = window.__rumbl.socket;
    return {
      transport: s.transportName(s.transport),
      connIsWebSocket: s.conn instanceof WebSocket,
      connected: s.isConnected(),
      remembered: sessionStorage.getItem("phx:fallback:LongPoll"),
      primaryPassedHealthCheck: s.primaryPassedHealthCheck,
    };
  });

async function exchange(a, b, text) {
  await a.page.fill("#msg-input", text);
  await a.page.click("#msg-submit");
  await waitForAnnotation(b.page, text);
  await waitForAnnotation(a.page, text);
  const line = b.page.locator("#msg-container a", { hasText: text });
  assert.equal(await line.locator("b").textContent(), "jose");
}

test("WebSocket refused (SOCKET_TRANSPORTS=longpoll): the page falls back to LongPoll and still annotates", { timeout: 120000 }, async () => {
  const server = await startServer({ env: { SOCKET_TRANSPORTS: "longpoll" }, logName: "browser-fallback-longpoll.log" });
  try {
    // The server side of the switch: the upgrade is refused with 404, LongPoll answers.
    const status = await upgradeStatus(`${server.baseUrl.replace("http", "ws")}/socket/websocket?vsn=2.0.0`);
    assert.equal(status, 404, "the WebSocket route is not mounted");
    const lp = await fetch(`${server.baseUrl}/socket/longpoll?vsn=2.0.0`);
    assert.equal(lp.status, 200, "LongPoll is mounted");

    const a = await watchWithFallback(server.baseUrl, "jose");
    const b = await watchWithFallback(server.baseUrl, "chris");

    for (const [who, x] of [["jose", a], ["chris", b]]) {
      const st = await socketState(x.page);
      assert.equal(st.transport, "LongPoll", `${who}: on LongPoll (${JSON.stringify(st)})`);
      assert.equal(st.connIsWebSocket, false, `${who}: the connection is not a WebSocket`);
      assert.equal(st.connected, true, `${who}: connected`);
      assert.equal(st.remembered, "true", `${who}: the fallback is remembered for the session`);
      assert.ok(
        x.traffic.websockets.some((u) => new URL(u).pathname === "/socket/websocket"),
        `${who}: the WebSocket was tried first: ${JSON.stringify(x.traffic)}`,
      );
      assert.ok(x.traffic.longpoll.includes("GET 200"), `${who}: polled /socket/longpoll: ${JSON.stringify(x.traffic)}`);
      assert.ok(
        x.consoleLines.some((l) => l.includes("falling back to LongPoll")),
        `${who}: phoenix.js logged the fallback: ${JSON.stringify(x.consoleLines)}`,
      );
    }

    await waitForAnnotation(b.page, "Welcome!"); // the seeded annotation at 1 s, via the join reply
    await exchange(a, b, "hello over longpoll");
    assert.ok(a.traffic.longpoll.includes("POST 200"), `jose's annotation was POSTed: ${JSON.stringify(a.traffic)}`);

    await b.page.screenshot({ path: join(LOGS, "fallback.png"), fullPage: true });
    for (const [who, x] of [["jose", a], ["chris", b]]) {
      assert.deepEqual(x.problems.dialogs, [], `${who}: no dialogs`);
      assert.deepEqual(x.problems.errors, [], `${who}: no page errors`);
    }
    await a.context.close();
    await b.context.close();
  } finally {
    await server.stop();
  }
});

test("control: with both transports the same page stays on WebSocket", { timeout: 120000 }, async () => {
  const server = await startServer({ logName: "browser-fallback-both.log" });
  try {
    const a = await watchWithFallback(server.baseUrl, "jose");
    const b = await watchWithFallback(server.baseUrl, "chris");
    // Past the 500 ms fallback window and the primary's health-check ping.
    for (const x of [a, b]) {
      await x.page.waitForFunction(() => window.__rumbl.socket.primaryPassedHealthCheck === true, null, { timeout: 10000 });
    }
    await sleep(1000);

    await exchange(a, b, "hello over websocket");

    for (const [who, x] of [["jose", a], ["chris", b]]) {
      const st = await socketState(x.page);
      assert.equal(st.transport, "WebSocket", `${who}: on WebSocket (${JSON.stringify(st)})`);
      assert.equal(st.connIsWebSocket, true, `${who}: the connection is a WebSocket`);
      assert.equal(st.connected, true, `${who}: connected`);
      assert.equal(st.remembered, null, `${who}: no fallback remembered`);
      assert.deepEqual(x.traffic.longpoll, [], `${who}: never requested /socket/longpoll`);
      assert.equal(x.traffic.websockets.length, 1, `${who}: one WebSocket: ${JSON.stringify(x.traffic)}`);
      assert.ok(!x.consoleLines.some((l) => l.includes("falling back")), `${who}: no fallback logged`);
      assert.deepEqual(x.problems.errors, [], `${who}: no page errors`);
    }
    await a.context.close();
    await b.context.close();
  } finally {
    await server.stop();
  }
});
