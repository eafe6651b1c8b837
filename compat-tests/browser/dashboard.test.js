// The admin dashboard in a real browser (Debian's Chromium via playwright-core).
//
// `phx-server serve` is started as the README's demo is (nothing configured), plus the two
// settings an operator adds for the dashboard: ADMIN_PORT and ADMIN_TOKEN. The page at
// http://127.0.0.1:ADMIN_PORT/dashboard?token=… joins `dashboard:stats` on the server's own
// socket with the official phoenix client; meanwhile node phoenix clients connect to the
// PUBLIC port, join videos:2 and post annotations (each one broadcast to all of them). The test
// reads what uPlot plots (its instances' `data`, exposed on window.__dashboard) and checks the
// charts have a size and follow the load up and back down. Also: a wrong token is refused and
// the page says so; without ADMIN_TOKEN, /dashboard answers 403 saying to set it.
//
// A screenshot goes to compat-tests/.logs/dashboard.png; the server log to
// compat-tests/.logs/browser-dashboard.log (checked not to contain the token).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import WebSocket from "ws";
import { Socket } from "phoenix";
import { freePort } from "../lib/ports.js";
import { LOGS, REPO, sleep, startServer, launchBrowser } from "./harness.js";

const BIN = resolve(REPO, process.env.PHX_SERVER_BIN || "target/debug/phx-server");
const TOKEN = randomBytes(24).toString("hex");
const LOAD_SOCKETS = 6;

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
});

/** Starts the demo server with an admin listener; resolves once the admin /healthz answers. */
async function startWithAdmin(adminToken, logName) {
  const adminPort = await freePort();
  const server = await startServer({
    demo: true,
    logName,
    env: { ADMIN_PORT: String(adminPort), ADMIN_TOKEN: adminToken },
  });
  const admin = `http://127.0.0.1:${adminPort}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${admin}/healthz`)).status === 200) break;
    } catch {
      /* not up yet */
    }
    if (i > 300) {
      await server.stop();
      throw new Error(`admin listener did not come up on ${admin}`);
    }
    await sleep(100);
  }
  return { ...server, admin };
}

/** A user token for the demo server (development secret, as `serve` with nothing set uses). */
function userToken(userId) {
  const env = { ...process.env };
  delete env.SECRET_KEY_BASE;
  const r = spawnSync(BIN, ["token", String(userId)], { env, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

/** The load: `n` phoenix clients on the public port in videos:2, each posting annotations. */
async function startLoad(port, n) {
  const token = userToken(1);
  const sockets = [];
  const timers = [];
  for (let i = 0; i < n; i++) {
    const socket = new Socket(`ws://127.0.0.1:${port}/socket`, { transport: WebSocket, params: { token } });
    socket.connect();
    const channel = socket.channel("videos:2", {});
    await new Promise((res, rej) => {
      channel.join().receive("ok", res).receive("error", (e) => rej(new Error(`join: ${JSON.stringify(e)}`)));
    });
    let k = 0;
    timers.push(setInterval(() => channel.push("new_annotation", { body: `load ${i}.${k++}`, at: 1000 }), 150));
    sockets.push(socket);
  }
  return () => {
    for (const t of timers) clearInterval(t);
    for (const s of sockets) s.disconnect();
  };
}

/** What the sockets and messages charts plot now: the last websocket count and messages in/s. */
function plotted(page) {
  return page.evaluate(() => {
    const d = window.__dashboard;
    const last = (col) => {
      for (let i = col.length - 1; i >= 0; i--) if (col[i] != null) return col[i];
      return null;
    };
    const s = d.charts.sockets && d.charts.sockets.plot.data;
    const m = d.charts.messages && d.charts.messages.plot.data;
    return {
      points: s ? s[0].length : 0,
      websocket: s ? last(s[1]) : null,
      messagesIn: m ? last(m[1]) : null,
      messagesOut: m ? last(m[2]) : null,
      maxIn: m ? Math.max(0, ...m[1].filter((v) => v != null)) : 0,
    };
  });
}

test("the dashboard's charts render and follow a load on the public port", { timeout: 120000 }, async () => {
  const server = await startWithAdmin(TOKEN, "browser-dashboard.log");
  let stopLoad = () => {};
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  try {
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    const r = await page.goto(`${server.admin}/dashboard?token=${TOKEN}`);
    assert.equal(r.status(), 200);
    // The token left the address bar; it lives in this tab's sessionStorage only.
    await page.waitForFunction(() => !location.search.includes("token"));
    await page.waitForFunction(() => document.getElementById("dashboard").dataset.state === "live", null, {
      timeout: 15000,
    });

    // Rendered: a uPlot canvas with a size in each chart.
    for (const id of ["sockets", "messages", "latency", "presence", "slow", "rss"]) {
      const box = await page.locator(`#chart-${id} canvas`).first().boundingBox();
      assert.ok(box && box.width > 0 && box.height > 0, `#chart-${id} canvas: ${JSON.stringify(box)}`);
    }
    const nodeRow = await page.locator("#nodes tr[data-node]").first().getAttribute("data-node");
    assert.equal(nodeRow, "local");
    const idle = await plotted(page);
    assert.ok(idle.websocket >= 1, `the dashboard's own socket counts: ${JSON.stringify(idle)}`);

    // Under load the sockets line climbs and messages flow, in and out (broadcast fan-out),
    // at the rates the load makes: each of the n sockets posts about 6.7 annotations a second
    // (≈ 6.7·n in), each broadcast to all n plus a reply (≈ 6.7·n·(n+1) out). The idle page
    // alone makes ~0 in and ~1 out a second, so half those rates can only come from the load.
    // Only points plotted after the load started count, and a fan-out latency must appear
    // (broadcast→write is sampled 1 in 64; the load makes a few samples a second).
    stopLoad = await startLoad(server.port, LOAD_SOCKETS);
    const wantIn = (6.7 * LOAD_SOCKETS) / 2;
    const wantOut = (6.7 * LOAD_SOCKETS * (LOAD_SOCKETS + 1)) / 2;
    await page.waitForFunction(
      ({ base, n, from, wantIn, wantOut }) => {
        const d = window.__dashboard.charts;
        const col = (c, i) => d[c].plot.data[i].slice(from).filter((v) => v != null);
        const ws = col("sockets", 1);
        return (
          ws.length > 0 &&
          ws[ws.length - 1] >= base + n &&
          col("messages", 1).some((v) => v >= wantIn) &&
          col("messages", 2).some((v) => v >= wantOut) &&
          col("latency", 1).some((v) => v > 0)
        );
      },
      { base: idle.websocket, n: LOAD_SOCKETS, from: idle.points, wantIn, wantOut },
      { timeout: 30000 },
    );
    const busy = await plotted(page);
    assert.ok(busy.maxIn >= wantIn, `messages in/s followed the load: ${JSON.stringify({ idle, busy })}`);
    const channels = await page.textContent("#nodes");
    assert.match(channels, /videos:\*: \d+/);
    await page.screenshot({ path: join(LOGS, "dashboard.png"), fullPage: true });

    // Load gone: the sockets line comes back down.
    stopLoad();
    stopLoad = () => {};
    await page.waitForFunction(
      (base) => {
        const ws = window.__dashboard.charts.sockets.plot.data[1].filter((v) => v != null);
        return ws[ws.length - 1] <= base;
      },
      idle.websocket,
      { timeout: 20000 },
    );
    assert.deepEqual(errors, []);
  } finally {
    stopLoad();
    await context.close().catch(() => {});
    await server.stop();
  }
  const log = readFileSync(join(LOGS, "browser-dashboard.log"), "utf8");
  assert.ok(!log.includes(TOKEN), "the admin token appears in the server log");
});

test("a wrong token: the dashboard socket is refused and the page says so", { timeout: 60000 }, async () => {
  const server = await startWithAdmin(TOKEN, "browser-dashboard-wrong.log");
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const r = await page.goto(`${server.admin}/dashboard?token=not-the-token`);
    assert.equal(r.status(), 200);
    await page.waitForFunction(() => document.getElementById("status").dataset.state === "refused", null, {
      timeout: 15000,
    });
    assert.match(await page.textContent("#status"), /refused/);
    assert.equal(await page.evaluate(() => window.__dashboard.samples.size), 0, "no snapshot reached the page");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("phx-dashboard-token")), null);
    // The form is there to try again; the right token then opens it.
    await page.fill("#token", TOKEN);
    await page.click("#token-form button[type=submit]");
    await page.waitForFunction(() => document.getElementById("dashboard").dataset.state === "live", null, {
      timeout: 15000,
    });
  } finally {
    await context.close().catch(() => {});
    await server.stop();
  }
});

test("without ADMIN_TOKEN, /dashboard is 403 and says to set it", { timeout: 60000 }, async () => {
  const server = await startWithAdmin(null, "browser-dashboard-off.log");
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const r = await page.goto(`${server.admin}/dashboard`);
    assert.equal(r.status(), 403);
    assert.match(await page.textContent("#dashboard-notice"), /set\s+ADMIN_TOKEN/i);
  } finally {
    await context.close().catch(() => {});
    await server.stop();
  }
});
