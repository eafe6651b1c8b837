// Rumbl login (spec "Rumbl login"): `serve` with a configured DATABASE_URL checks passwords —
// a username alone is refused (401) and the pick-a-user form is gone; the embedded demo
// (DATABASE_URL unset) keeps the pick-a-user login, labelled as the demo's passwordless login.
// Both servers are `phx-server serve` as a person starts it; the SQLite file is seeded by the
// server itself (the demo users jose, chris, bruce).

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";

import { hostile, spawnServer, cliToken, RUN_DIR } from "../lib/harness.js";

async function loginPage(server) {
  const r = await fetch(`${server.url}/login`);
  return { status: r.status, html: await r.text() };
}

async function postLogin(server, form) {
  const r = await fetch(`${server.url}/login`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(form).toString(),
    redirect: "manual",
  });
  return { status: r.status, cookie: r.headers.get("set-cookie"), location: r.headers.get("location"), body: await r.text() };
}

/** The pick-a-user form: a username <select> with the seeded users as options. */
const offersPicker = (html) => /<select[^>]*name="username"/.test(html) || /<option value="jose"/.test(html);

describe("serve with DATABASE_URL (SQLite file)", () => {
  let server;
  let token;
  before(async () => {
    const dir = path.join(RUN_DIR, `login-db-${process.pid}`);
    fs.mkdirSync(dir, { recursive: true });
    server = await spawnServer("login-db", { args: ["serve"], env: { DATABASE_URL: `sqlite://${path.join(dir, "rumbl.sqlite3")}` } });
    token = await cliToken(1);
  });
  after(() => server?.stop());

  hostile(
    "login: serve with a DATABASE_URL → POST /login with only a username is 401, a wrong password is 401 (same answer as an unknown user), no pick-a-user form",
    { server: () => server, bystander: () => ({ join: null, params: { token } }), timeout: 60000 },
    async () => {
      const page = await loginPage(server);
      assert.equal(page.status, 200);
      assert.ok(!offersPicker(page.html), "GET /login offers the pick-a-user form on a configured database");
      assert.match(page.html, /type="password"/, "GET /login has a password field");

      const alone = await postLogin(server, { username: "jose" });
      assert.equal(alone.status, 401, `POST /login username=jose → ${alone.status} ${alone.location ?? ""}`);
      assert.ok(!/_rumbl|session|token/i.test(alone.cookie ?? ""), `no session cookie: ${alone.cookie}`);

      const wrong = await postLogin(server, { username: "jose", password: "not-his-password" });
      assert.equal(wrong.status, 401, `wrong password → ${wrong.status}`);
      const unknown = await postLogin(server, { username: "nobody-here", password: "not-his-password" });
      assert.equal(unknown.status, 401, `unknown user → ${unknown.status}`);
      assert.equal(unknown.body, wrong.body, "one generic answer: an unknown user and a wrong password look the same");
      assert.ok(!offersPicker(wrong.body), "the 401 page offers no pick-a-user form");
    },
  );
});

describe("serve without DATABASE_URL (the embedded demo)", () => {
  let server;
  let token;
  before(async () => {
    token = await cliToken(1);
    // its own cwd, so ./data/rumbl.sqlite3 is private to this run
    const cwd = path.join(RUN_DIR, `login-demo-${process.pid}`);
    fs.mkdirSync(cwd, { recursive: true });
    server = await spawnServer("login-demo", { args: ["serve"], cwd });
  });
  after(() => server?.stop());

  hostile(
    "login: the embedded demo still offers the pick-a-user login, labelled as the demo's passwordless login, and it logs in",
    { server: () => server, bystander: () => ({ join: null, params: { token } }), timeout: 60000 },
    async () => {
      const page = await loginPage(server);
      assert.equal(page.status, 200);
      assert.ok(offersPicker(page.html), "the demo's pick-a-user form");
      assert.match(page.html, /demo/i, "labelled as the demo");
      assert.match(page.html, /password/i, "labelled as passwordless (the page says it asks no password)");
      const r = await postLogin(server, { username: "jose" });
      assert.equal(r.status, 303, `POST /login username=jose → ${r.status}`);
      assert.ok(r.cookie, "a session cookie");
    },
  );
});
