// Shared by the browser tests (*.test.js here): a `phx-server serve` (NORMAL mode: UserSocket,
// pages, the built vendor-js bundle) on a free port over a temporary SQLite database seeded with
// the demo users and videos, Debian's Chromium through playwright-core, and a logged-in watch page.
//
//   PHX_SERVER_BIN   server binary (default <repo>/target/debug/phx-server)
//   ASSETS_DIR       the built bundle (default <repo>/vendor-js/dist; run vendor-js/build.sh)
//   CHROMIUM_BIN     browser (default /usr/bin/chromium; scripts/browser-deps.sh installs it)

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync, mkdirSync, createWriteStream, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { chromium } from "playwright-core";
import { freePort } from "../lib/ports.js";

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, "../..");
export const LOGS = join(REPO, "compat-tests/.logs");
const BIN = resolve(REPO, process.env.PHX_SERVER_BIN || "target/debug/phx-server");
const ASSETS = resolve(REPO, process.env.ASSETS_DIR || "vendor-js/dist");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));


export function checkPrerequisites() {
  for (const [what, path] of [["server binary (PHX_SERVER_BIN)", BIN], ["bundle (vendor-js/build.sh)", join(ASSETS, "app.js")], ["chromium (scripts/browser-deps.sh)", CHROMIUM]]) {
    if (!existsSync(path)) throw new Error(`missing ${what}: ${path}`);
  }
  mkdirSync(LOGS, { recursive: true });
}

/** What the server's configuration may come from; `demo: true` clears all of it. */
const CONFIG_VARS = ["HOST", "PORT", "DATABASE_URL", "ASSETS_DIR", "SECRET_KEY_BASE", "PHX_HOST", "CHECK_ORIGIN", "SOCKET_TRANSPORTS"];

/**
 * Starts `phx-server serve` with `env` added to the environment; its output goes to
 * compat-tests/.logs/<logName>. Resolves once /healthz answers. Returns {baseUrl, port, stop()}.
 *
 * `demo: true` starts it as the README's demo command does instead: `serve` run from a
 * directory laid out like the repository (`vendor-js/dist`, `./data/` created by the server),
 * with none of the configuration variables set — only `PORT`, a free one instead of 4000 —
 * so the defaults a newcomer gets are the ones under test. `env` then adds only what the test
 * names (e.g. the admin listener's `ADMIN_PORT` and `ADMIN_TOKEN`, as an operator sets them);
 * a `null` value unsets the variable in either mode.
 */
export async function startServer({ env = {}, logName = "browser-server.log", demo = false } = {}) {
  checkPrerequisites();
  const tmp = mkdtempSync(join(tmpdir(), "rumbl-browser-"));
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const log = createWriteStream(join(LOGS, logName));
  let childEnv;
  if (demo) {
    childEnv = { ...process.env };
    for (const k of CONFIG_VARS) delete childEnv[k];
    childEnv.PORT = String(port);
    childEnv.RUST_LOG = process.env.RUST_LOG || "info";
    Object.assign(childEnv, env);
    mkdirSync(join(tmp, "vendor-js"), { recursive: true });
    symlinkSync(ASSETS, join(tmp, "vendor-js", "dist"));
  } else {
    childEnv = {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      DATABASE_URL: `sqlite://${join(tmp, "rumbl.sqlite3")}`,
      ASSETS_DIR: ASSETS,
      SECRET_KEY_BASE: randomBytes(48).toString("base64"),
      PHX_HOST: "127.0.0.1",
      RUST_LOG: process.env.RUST_LOG || "info",
      ...env,
    };
  }
  for (const [k, v] of Object.entries(env)) if (v === null) delete childEnv[k];
  const server = spawn(BIN, ["serve"], {
    cwd: demo ? tmp : undefined,
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  server.stdout.pipe(log);
  server.stderr.pipe(log);
  const exited = new Promise((res) => server.once("exit", (code, signal) => res({ code, signal })));
  const stop = async () => {
    if (server.exitCode === null && server.signalCode === null) {
      server.kill("SIGTERM");
      const r = await Promise.race([exited, sleep(10000).then(() => "timeout")]);
      if (r === "timeout") server.kill("SIGKILL");
    }
    rmSync(tmp, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      const r = await fetch(`${baseUrl}/healthz`);
      if (r.status === 200) break;
    } catch {
      /* not up yet */
    }
    if (server.exitCode !== null) {
      await stop();
      throw new Error(`phx-server exited (${server.exitCode}); see ${LOGS}/${logName}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error("phx-server did not come up within 30 s");
    }
    await sleep(100);
  }
  return { baseUrl, port, stop };
}

/** Headless Chromium; playwright's launch() runs it on a fresh temporary user-data-dir. */
export function launchBrowser() {
  checkPrerequisites();
  return chromium.launch({
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
}

/**
 * A logged-in page on /watch/2-elixir with the clock player, in a context of its own, once
 * `videos:2` is joined. `socketOptions`, if given, becomes `window.phxSocketOptions`; `onPage`
 * is called with the page before it first navigates. Collects page errors, dialogs and console
 * lines in `problems` / `consoleLines`.
 */
export async function watchAs(browser, baseUrl, username, { socketOptions, onPage } = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  await context.addInitScript((opts) => {
    window.rumblPlayerOptions = { mode: "clock" };
    if (opts) window.phxSocketOptions = opts;
  }, socketOptions || null);
  const page = await context.newPage();
  if (onPage) onPage(page);
  const problems = { errors: [], dialogs: [] };
  const consoleLines = [];
  page.on("pageerror", (e) => problems.errors.push(String(e)));
  page.on("console", (m) => consoleLines.push(m.text()));
  page.on("dialog", async (d) => {
    problems.dialogs.push(d.message());
    await d.dismiss().catch(() => {});
  });
  const r = await page.goto(`${baseUrl}/watch/2-elixir`);
  assert.equal(r.status(), 200);
  assert.match(page.url(), /\/login\?next=%2Fwatch%2F2-elixir$/, "not logged in → the login page");
  // `serve` with a DATABASE_URL checks passwords; the seeded users' password is the one the
  // README gives (rumbl/src/store/seed.rs DEMO_PASSWORD).
  await page.fill("#username", username);
  await page.fill("#password", "phoenix");
  await Promise.all([page.waitForURL(`${baseUrl}/watch/2-elixir`), page.click("button[type=submit]")]);
  assert.equal(await page.textContent(".current-user"), username);
  await page.waitForFunction(
    () => window.__rumbl && window.__rumbl.socket.channels.some((c) => c.topic === "videos:2" && c.state === "joined"),
    null,
    { timeout: 15000 },
  );
  assert.equal(await page.evaluate(() => window.__rumbl.Player.mode), "clock");
  return { context, page, problems, consoleLines };
}

/** Waits until `#msg-container` of `page` contains `text`. */
export function waitForAnnotation(page, text, timeout = 10000) {
  return page.waitForFunction((t) => document.querySelector("#msg-container").textContent.includes(t), text, {
    timeout,
  });
}
