// The Rumbl watch page in a real browser: Debian's Chromium driven by playwright-core.
//
// Starts its own `phx-server serve` (NORMAL mode: UserSocket, pages, the built vendor-js bundle)
// on a free port over a temporary SQLite database (seeded with the demo users and videos), logs
// in two demo users in two isolated browser contexts, posts through the page's own form and
// checks the other user's page renders the annotation — and that an HTML body is shown as text.
//
//   PHX_SERVER_BIN   server binary (default <repo>/target/debug/phx-server)
//   ASSETS_DIR       the built bundle (default <repo>/vendor-js/dist; run vendor-js/build.sh)
//   CHROMIUM_BIN     browser (default /usr/bin/chromium; scripts/browser-deps.sh installs it)
//
// A screenshot of the second user's page is written to compat-tests/.logs/watch.png.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync, mkdirSync, createWriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createServer } from "node:net";
import { randomBytes } from "node:crypto";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "../..");
const LOGS = join(REPO, "compat-tests/.logs");
const BIN = resolve(REPO, process.env.PHX_SERVER_BIN || "target/debug/phx-server");
const ASSETS = resolve(REPO, process.env.ASSETS_DIR || "vendor-js/dist");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const XSS = "<img src=x onerror=alert(1)>";

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

let server;
let serverExit;
let baseUrl;
let tmp;
let browser;

before(async () => {
  for (const [what, path] of [["server binary (PHX_SERVER_BIN)", BIN], ["bundle (vendor-js/build.sh)", join(ASSETS, "app.js")], ["chromium (scripts/browser-deps.sh)", CHROMIUM]]) {
    if (!existsSync(path)) throw new Error(`missing ${what}: ${path}`);
  }
  mkdirSync(LOGS, { recursive: true });
  tmp = mkdtempSync(join(tmpdir(), "rumbl-browser-"));
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  const log = createWriteStream(join(LOGS, "browser-server.log"));
  server = spawn(BIN, ["serve"], {
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      DATABASE_URL: `sqlite://${join(tmp, "rumbl.sqlite3")}`,
      ASSETS_DIR: ASSETS,
      SECRET_KEY_BASE: randomBytes(48).toString("base64"),
      PHX_HOST: "127.0.0.1",
      RUST_LOG: process.env.RUST_LOG || "info",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  server.stdout.pipe(log);
  server.stderr.pipe(log);
  serverExit = new Promise((res) => server.once("exit", (code, signal) => res({ code, signal })));
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      const r = await fetch(`${baseUrl}/healthz`);
      if (r.status === 200) break;
    } catch {
      /* not up yet */
    }
    if (server.exitCode !== null) throw new Error(`phx-server exited (${server.exitCode}); see ${LOGS}/browser-server.log`);
    if (Date.now() > deadline) throw new Error("phx-server did not come up within 30 s");
    await sleep(100);
  }
  // playwright's launch() runs Chromium on a fresh temporary user-data-dir of its own.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (server && server.exitCode === null) {
    server.kill("SIGTERM");
    const timeout = sleep(10000).then(() => "timeout");
    const r = await Promise.race([serverExit, timeout]);
    if (r === "timeout") server.kill("SIGKILL");
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** A logged-in page on /watch/2-elixir with the clock player; collects errors and dialogs. */
async function watchAs(username) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  await context.addInitScript(() => {
    window.rumblPlayerOptions = { mode: "clock" };
  });
  const page = await context.newPage();
  const problems = { errors: [], dialogs: [] };
  page.on("pageerror", (e) => problems.errors.push(String(e)));
  page.on("dialog", async (d) => {
    problems.dialogs.push(d.message());
    await d.dismiss().catch(() => {});
  });
  const r = await page.goto(`${baseUrl}/watch/2-elixir`);
  assert.equal(r.status(), 200);
  assert.match(page.url(), /\/login\?next=%2Fwatch%2F2-elixir$/, "not logged in → the login page");
  await page.selectOption("#username", username);
  await Promise.all([page.waitForURL(`${baseUrl}/watch/2-elixir`), page.click("button[type=submit]")]);
  assert.equal(await page.textContent(".current-user"), username);
  await page.waitForFunction(
    () => window.__rumbl && window.__rumbl.socket.channels.some((c) => c.topic === "videos:2" && c.state === "joined"),
    null,
    { timeout: 10000 },
  );
  assert.equal(await page.evaluate(() => window.__rumbl.Player.mode), "clock");
  return { context, page, problems };
}

const containerText = (page) => page.textContent("#msg-container");

test("two users annotate /watch/2-elixir; an HTML body renders as text", { timeout: 120000 }, async () => {
  const a = await watchAs("jose");
  const b = await watchAs("chris");

  // The seeded annotation at 1 s shows up when the clock passes it (scheduleMessages).
  await b.page.waitForFunction(() => document.querySelector("#msg-container").textContent.includes("Welcome!"), null, {
    timeout: 10000,
  });

  await a.page.fill("#msg-input", "hello from jose");
  await a.page.click("#msg-submit");
  await b.page.waitForFunction(
    () => document.querySelector("#msg-container").textContent.includes("hello from jose"),
    null,
    { timeout: 10000 },
  );
  assert.equal(await a.page.inputValue("#msg-input"), "", "the form is cleared after posting");
  const line = b.page.locator("#msg-container a", { hasText: "hello from jose" });
  assert.equal(await line.locator("b").textContent(), "jose");

  await a.page.fill("#msg-input", XSS);
  await a.page.click("#msg-submit");
  for (const p of [a.page, b.page]) {
    await p.waitForFunction((xss) => document.querySelector("#msg-container").textContent.includes(xss), XSS, {
      timeout: 10000,
    });
    assert.equal(await p.locator("#msg-container img").count(), 0, "no <img> element was created");
    assert.ok((await containerText(p)).includes(XSS));
  }
  await sleep(500); // an onerror handler, had it existed, would have fired by now

  await b.page.screenshot({ path: join(LOGS, "watch.png"), fullPage: true });

  for (const [who, x] of [["jose", a], ["chris", b]]) {
    assert.deepEqual(x.problems.dialogs, [], `${who}: no alert() ran`);
    assert.deepEqual(x.problems.errors, [], `${who}: no page errors`);
  }
  await a.context.close();
  await b.context.close();
});
