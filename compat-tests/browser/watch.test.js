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
import { join } from "node:path";
import { LOGS, sleep, startServer, launchBrowser, watchAs as watchOn } from "./harness.js";

const XSS = "<img src=x onerror=alert(1)>";

let server;
let browser;

before(async () => {
  server = await startServer({ logName: "browser-server.log" });
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (server) await server.stop();
});

/** A logged-in page on /watch/2-elixir with the clock player; collects errors and dialogs. */
const watchAs = (username) => watchOn(browser, server.baseUrl, username);

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

/** The names in the page's "Who's watching" list (#presence-list), sorted. */
const viewers = (page) =>
  page.$$eval("#presence-list li", (lis) => lis.map((li) => li.textContent.trim()).sort());

test("who is watching: the list follows a second user opening and leaving the page", { timeout: 120000 }, async () => {
  const a = await watchAs("jose");
  await a.page.waitForFunction(() => document.querySelector("#presence-list").textContent.includes("jose"), null, {
    timeout: 10000,
  });
  assert.deepEqual(await viewers(a.page), ["jose: (1)"]);

  const b = await watchAs("chris");
  for (const p of [a.page, b.page]) {
    await p.waitForFunction(() => document.querySelectorAll("#presence-list li").length === 2, null, {
      timeout: 10000,
    });
    assert.deepEqual(await viewers(p), ["chris: (1)", "jose: (1)"]);
  }
  await a.page.screenshot({ path: join(LOGS, "watch-presence.png"), fullPage: true });

  await b.context.close(); // chris leaves: the page (and its socket) goes away
  await a.page.waitForFunction(() => !document.querySelector("#presence-list").textContent.includes("chris"), null, {
    timeout: 10000,
  });
  assert.deepEqual(await viewers(a.page), ["jose: (1)"]);
  assert.deepEqual(a.problems.errors, [], "no page errors");
  await a.context.close();
});
