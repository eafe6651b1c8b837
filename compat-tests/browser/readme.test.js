// The newcomer's path, as README.md's "The two commands" tells it: run the demo, open the
// address the README gives, pick a demo user, and watch — no environment a person would not
// set. The server is started as scripts/demo.sh starts it (`phx-server serve` from a checkout,
// embedded SQLite under ./data/, the built bundle under ./vendor-js/dist), with nothing
// configured but a free PORT in place of 4000. The README's URL is read from README.md itself,
// so the test follows the text a person follows.
//
// Then the other side of the rule: a configured server (a DATABASE_URL, no PHX_HOST) keeps the
// strict origin check, and its watch page says why its socket is refused instead of showing an
// empty annotation list.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { REPO, LOGS, startServer, launchBrowser } from "./harness.js";

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  if (browser) await browser.close().catch(() => {});
});

/** The demo URL of README.md's "Run the demo" row, e.g. http://localhost:4000/login. */
function readmeDemoUrl() {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  const row = readme.split("\n").find((l) => l.includes("scripts/demo.sh") && l.startsWith("| Run the demo"));
  assert.ok(row, "README.md has a 'Run the demo' row naming scripts/demo.sh");
  const m = /<(http:\/\/[^>]+)>/.exec(row);
  assert.ok(m, `the demo row gives a URL: ${row}`);
  return new URL(m[1]);
}

/** Opens `url` (a login page) in a fresh context; returns {context, page, errors}. */
async function open(url) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const r = await page.goto(url);
  assert.equal(r.status(), 200, `GET ${url}`);
  return { context, page, errors };
}

const statusOf = (page) => page.getAttribute("#socket-status", "data-state");

test("the README's demo: its URL and the other loopback name both log in, connect and annotate", { timeout: 120000 }, async () => {
  const server = await startServer({ demo: true, logName: "browser-readme-demo.log" });
  try {
    const given = readmeDemoUrl();
    assert.equal(given.port, "4000", "the README names the default port");
    const other = given.hostname === "localhost" ? "127.0.0.1" : "localhost";
    for (const [i, host] of [given.hostname, other].entries()) {
      const url = new URL(given);
      url.hostname = host;
      url.port = String(server.port);
      const { context, page, errors } = await open(url.href);
      // The demo's pick-a-user login: a <select> of the seeded users, no password.
      const user = ["jose", "chris"][i];
      await page.selectOption("#username", user);
      await Promise.all([page.waitForURL(/\/watch\/2-elixir$/), page.click("button[type=submit]")]);
      assert.equal(await page.textContent(".current-user"), user);
      await page.waitForFunction(() => document.querySelector("#socket-status")?.dataset.state === "connected", null, {
        timeout: 15000,
      });
      assert.equal(await page.textContent("#socket-status"), "Socket: connected");
      // The channel is joined when the seeded annotation arrives (the player falls back to
      // its offline clock when YouTube is unreachable, as it is here).
      await page.waitForFunction(() => document.querySelector("#msg-container").textContent.includes("Welcome!"), null, {
        timeout: 20000,
      });
      const body = `hello from ${user} at ${host}`;
      await page.fill("#msg-input", body);
      await page.click("#msg-submit");
      await page.waitForFunction((b) => document.querySelector("#msg-container").textContent.includes(b), body, {
        timeout: 10000,
      });
      await page.screenshot({ path: join(LOGS, `readme-demo-${host}.png`), fullPage: true });
      assert.deepEqual(errors, [], `${host}: no page errors`);
      await context.close();
    }
  } finally {
    await server.stop();
  }
});

test("a configured server keeps the strict origin check, and the page says why its socket is refused", { timeout: 120000 }, async () => {
  // A DATABASE_URL (the harness's temporary SQLite file) and no PHX_HOST: the endpoint's host
  // is `localhost`, so a page opened at 127.0.0.1 gets its socket refused (403).
  const server = await startServer({ env: { PHX_HOST: null }, logName: "browser-readme-strict.log" });
  try {
    const { context, page, errors } = await open(`http://127.0.0.1:${server.port}/watch/2-elixir`);
    await page.fill("#username", "jose");
    await page.fill("#password", "phoenix");
    await Promise.all([page.waitForURL(/\/watch\/2-elixir$/), page.click("button[type=submit]")]);
    await page.waitForFunction(() => document.querySelector("#socket-status")?.dataset.state === "refused", null, {
      timeout: 15000,
    });
    const text = await page.textContent("#socket-status");
    assert.match(text, /^Socket: refused — the server refuses sockets from pages at http:\/\/127\.0\.0\.1:\d+/);
    assert.match(text, /localhost \(PHX_HOST\)/);
    await page.screenshot({ path: join(LOGS, "readme-strict-refused.png"), fullPage: true });

    // The same server at localhost: allowed, connected.
    const ok = await open(`http://localhost:${server.port}/watch/2-elixir`);
    await ok.page.fill("#username", "chris");
    await ok.page.fill("#password", "phoenix");
    await Promise.all([ok.page.waitForURL(/\/watch\/2-elixir$/), ok.page.click("button[type=submit]")]);
    await ok.page.waitForFunction(() => document.querySelector("#socket-status")?.dataset.state === "connected", null, {
      timeout: 15000,
    });
    assert.equal(await statusOf(page), "refused", "the 127.0.0.1 page is still refused");
    assert.deepEqual(errors, [], "no page errors");
    await ok.context.close();
    await context.close();
  } finally {
    await server.stop();
  }
});
