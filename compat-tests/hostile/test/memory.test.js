// Memory one client can grow (spec "Memory bounds"): a channel inbox flooded with phx_leave,
// an outbound queue that fills in bytes because the client never reads, a LongPoll session
// whose big replies are never polled, a LongPoll line over MAX_FRAME_SIZE, a Rumbl annotation
// body over 1000 characters. Each: the documented answer, and RSS back near baseline (the
// harness); the peak during the case is bounded too where the row is about growth.

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { spawn } from "node:child_process";

import { hostile, spawnServer, until, MiB, mb, RUN_DIR } from "../lib/harness.js";
import { WireSocket } from "../lib/wire.js";
import { connect, frame, replyFrame, assertFrame, show } from "../../lib/raw.js";
import { fixtureToken, uniqTopic, sleep } from "../../lib/server.js";

const port = () => Number(process.env.PHX_PORT);
const randomVideo = () => 2_000_000 + Math.floor(Math.random() * 1_000_000_000);
const randomUser = () => 2_000_000 + Math.floor(Math.random() * 1_000_000);

// ------------------------------------------------------------------------------------------------
describe("channel inbox: phx_leave flood to a busy channel (own server: its own SQLite file, MAX_MESSAGES_PER_SEC=0)", () => {
  // The busy channel: a videos:* channel whose post waits on the database, because a `sqlite3`
  // shell holds the write lock (the store waits up to its busy_timeout, 5 s). Meanwhile the
  // client floods the channel with phx_leave. Today each leave is queued as a control message,
  // outside the inbox bound; the spec counts it against the inbox (1,024 messages / 2 MiB), so
  // the socket stops reading instead. The message rate limit is off on this server: with it on
  // (1000/s) the flood would be refused before it reaches the channel, which proves the rate
  // limit (ratelimit.test.js), not the inbox bound.
  let server;
  const dbFile = path.join(RUN_DIR, `inbox-${process.pid}.sqlite3`);
  before(async () => {
    server = await spawnServer("inbox", {
      env: { DATABASE_URL: `sqlite://${dbFile}`, MAX_MESSAGES_PER_SEC: "0", MAX_JOINS_PER_SEC: "0" },
    });
  });
  after(() => server?.stop());

  const LEAVES = 200_000;
  hostile(
    `${LEAVES.toLocaleString("en")} phx_leave behind a post stuck on a locked database → peak RSS ≤ baseline + 16 MiB, the post and the leave answered, later leaves answered ok`,
    { server: () => server, timeout: 120000, rss: { bound: 16 * MiB } },
    async ({ baseline, peak, note }) => {
      const topic = `videos:${randomVideo()}`;
      const token = (await fetch(`${server.url}/fixture/token?user_id=${randomUser()}`).then((r) => r.text())).trim();
      const s = await connect(`${server.wsUrl}/socket/websocket?token=${encodeURIComponent(token)}&vsn=2.0.0`);
      let lock = null;
      try {
        s.send(frame("1", "1", topic, "phx_join", {}));
        assertFrame(await s.next(), replyFrame("1", "1", topic, "ok", { annotations: [] }));
        lock = sqliteWriteLock(dbFile); // after the join, which writes the video row
        const seen = { post: null, leaveOk: 0, other: [], closes: 0, heartbeat: null, last: Date.now() };
        s.ws.removeAllListeners("message");
        s.ws.on("message", (d) => {
          const t = d.toString();
          seen.last = Date.now();
          const f = JSON.parse(t);
          if (f[1] === "hb") seen.heartbeat = t;
          else if (f[1] === "post") seen.post = t;
          else if (f[3] === "phx_reply" && String(f[1]).startsWith("l") && f[4].status === "ok") seen.leaveOk++;
          else if (f[3] === "phx_close") seen.closes++;
          else if (f[3] !== "presence_state" && f[3] !== "presence_diff" && f[3] !== "new_annotation") seen.other.push(t.slice(0, 200));
        });
        await lock.acquired;
        s.send(frame("1", "post", topic, "new_annotation", { body: "stuck", at: 0 }));
        await sleep(100);
        // The flood, while the post waits on the lock. The lock is released once every leave has
        // left this process, or once sending stalls for 1 s: a server that stops reading (the
        // spec's backpressure) stalls us, one that queues every leave does not.
        const flushed = async (limit) => {
          let last = s.ws.bufferedAmount;
          let since = Date.now();
          while (s.ws.bufferedAmount > limit && !s.isClosed) {
            await sleep(5);
            if (s.ws.bufferedAmount < last) [last, since] = [s.ws.bufferedAmount, Date.now()];
            else if (Date.now() - since > 1000) lock.releaseAfter(0); // stalled: backpressure
          }
        };
        for (let i = 1; i <= LEAVES; i++) {
          s.send(frame("1", `l${i}`, topic, "phx_leave", {}));
          if (i % 5000 === 0) await flushed(1 * MiB);
        }
        await flushed(0);
        await sleep(500); // the server has read what it will
        note(`lock held for ${lock.released ? "the flood until sending stalled" : "the whole flood"}`);
        lock.releaseAfter(0);
        await until(() => seen.post !== null, "the post's reply", 15000);
        // until the answers stop coming
        await until(() => Date.now() - seen.last > 2000 || s.isClosed, "the replies to stop", 60000);
        note(`peak RSS ${mb(peak())} (baseline ${mb(baseline)}); leave ok replies ${seen.leaveOk}, phx_close ${seen.closes}; post ${seen.post?.slice(0, 90)}`);
        assert.ok(!s.isClosed, `the socket closed: ${JSON.stringify(s.closeInfo)}`);
        assert.ok(peak() <= baseline + 16 * MiB, `peak RSS ${mb(peak())} > baseline ${mb(baseline)} + 16 MiB: the leaves were queued without a bound`);
        // its answer: ok, or the store's error if the lock outlasted busy_timeout (5 s) on a slow machine
        const postReply = JSON.parse(seen.post)[4];
        assert.ok(
          postReply.status === "ok" || ["database unavailable", "database error"].includes(postReply.response?.reason),
          `the stuck post → ${seen.post}`,
        );
        assert.equal(seen.closes, 1, "one phx_close (the first leave)");
        // Leaves that reach the channel after its first leave are dropped with it (as in Phoenix);
        // a bounded inbox holds at most 1,024 of them, every later one is answered ok.
        assert.ok(seen.leaveOk >= LEAVES - 2048, `only ${seen.leaveOk} of ${LEAVES} leaves answered: the rest were queued behind the busy channel`);
        assert.deepEqual(seen.other, [], "no other frames");
        s.send(`[null,"hb","phoenix","heartbeat",{}]`);
        await until(() => seen.heartbeat !== null, "the heartbeat reply after the flood", 10000);
        assertFrame(seen.heartbeat, `[null,"hb","phoenix","phx_reply",{"response":{},"status":"ok"}]`);
      } finally {
        lock?.releaseAfter(0);
        s.close();
      }
    },
  );
});

/**
 * A `sqlite3` shell holding the write lock of `file` (BEGIN IMMEDIATE) until releaseAfter(ms).
 * `acquired` resolves once the shell has the lock.
 */
function sqliteWriteLock(file) {
  const child = spawn("sqlite3", [file], { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  const acquired = new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("locked")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`sqlite3 exited (${code}) before taking the lock`)));
  });
  acquired.catch(() => {});
  child.stdin.write("PRAGMA busy_timeout = 5000;\nBEGIN IMMEDIATE;\nSELECT 'locked';\n");
  const lock = {
    acquired,
    released: false,
    releaseAfter(ms) {
      if (lock.released) return;
      lock.released = true;
      setTimeout(() => child.stdin.end("COMMIT;\n.quit\n"), ms);
    },
  };
  return lock;
}

// ------------------------------------------------------------------------------------------------
describe("outbound queue bounded in bytes (defaults: OUTBOX_MAX_BYTES 4 MiB)", () => {
  // The queue fills from outside the socket: broadcasts to a topic it joined. (Its own big
  // `ping` replies do not pile up today: the socket stops reading while a write is blocked.)
  hostile(
    "a client that joined and never reads, sent 100 broadcasts of 512 KB → closed (1013 or TCP drop) once its queue passes 4 MiB; peak RSS ≤ baseline + 32 MiB",
    { timeout: 90000 },
    async ({ server, baseline, peak, note }) => {
      const topic = uniqTopic("room:big");
      const s = await WireSocket.open(port(), "/socket/websocket?vsn=2.0.0");
      try {
        s.sendText(frame("1", "1", topic, "phx_join", {}));
        assertFrame(await s.nextText(), replyFrame("1", "1", topic, "ok", {}));
        s.pause(); // from here on nothing is read: the kernel buffers fill, then the server's queue
        s.frames = 0; // count broadcasts only
        const N = 100;
        const payload = { p: "z".repeat(512 * 1024) };
        for (let i = 1; i <= N; i++) await broadcastTo(server, topic, "big", { ...payload, i });
        await sleep(2000);
        const peakWhilePaused = peak();
        s.resume();
        // Now read: a server that bounded the queue has closed the connection (a Close frame
        // with 1013 after what the kernel buffered, or the TCP connection just ends).
        await until(() => s.ended || s.closeFrame !== null || s.frames >= N, () => `the close or all ${N} broadcasts (got ${s.frames})`, 30000);
        await sleep(200);
        note(`broadcasts read ${s.frames}/${N} (${mb(s.bytesIn)}), close ${JSON.stringify(s.closeFrame)}, TCP ${s.conn.end?.how ?? "open"}; peak RSS ${mb(peakWhilePaused)} (baseline ${mb(baseline)})`);
        assert.ok(
          s.ended || s.closeFrame !== null,
          `the socket that never read is still open: all ${s.frames} broadcasts (${mb(s.bytesIn)}) were queued for it`,
        );
        if (s.closeFrame) assert.equal(s.closeFrame.code, 1013, "close code");
        assert.ok(s.frames < N, `every one of the ${N} broadcasts was delivered: the queue was not bounded in bytes`);
        assert.ok(peakWhilePaused <= baseline + 32 * MiB, `peak RSS ${mb(peakWhilePaused)} > baseline ${mb(baseline)} + 32 MiB while the client did not read`);
      } finally {
        s.destroy();
      }
    },
  );
});

/** POST /fixture/broadcast on `server` (expects 204). */
async function broadcastTo(server, topic, event, payload) {
  const r = await fetch(`${server.url}/fixture/broadcast`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ topic, event, payload }),
  });
  assert.equal(r.status, 204, `broadcast: HTTP ${r.status} ${await r.text()}`);
}

// ------------------------------------------------------------------------------------------------
// LongPoll helpers (raw HTTP, fetch)

async function lpSession(base) {
  const r = await fetch(`${base}/socket/longpoll?vsn=2.0.0`);
  const j = await r.json();
  assert.equal(j.status, 410, `handshake: ${JSON.stringify(j)}`);
  return j.token;
}

async function lpPost(base, token, body, contentType = "application/x-ndjson") {
  const r = await fetch(`${base}/socket/longpoll?vsn=2.0.0&token=${token}`, {
    method: "POST",
    headers: { "content-type": contentType },
    body,
  });
  return { status: r.status, body: await r.text() };
}

async function lpPoll(base, token) {
  const r = await fetch(`${base}/socket/longpoll?vsn=2.0.0&token=${token}`);
  return { status: r.status, body: await r.text() };
}

describe("LongPoll buffer bounded in bytes (defaults: LP_MAX_BUFFERED_BYTES 4 MiB)", () => {
  hostile("LongPoll: 6 MB of replies never polled → the session is closed (next request {status: 410}), RSS back", { timeout: 60000 }, async ({ server, note }) => {
    const base = server.url;
    const token = await lpSession(base);
    const payload = "q".repeat(512 * 1024);
    assert.equal((await lpPost(base, token, `["1","1","room:lobby","phx_join",{}]`)).body, `{"status":200}`);
    const answers = [];
    for (let p = 0; p < 4; p++) {
      const lines = [0, 1, 2].map((k) => `["1","${2 + p * 3 + k}","room:lobby","ping",{"p":"${payload}"}]`);
      const r = await lpPost(base, token, lines.join("\n"));
      answers.push(`${r.status} ${r.body}`);
    }
    note(`POST answers: ${answers.join(", ")}`);
    let last;
    await until(
      async () => {
        last = await lpPost(base, token, `[null,"hb","phoenix","heartbeat",{}]`);
        return last.body === `{"status":410}`;
      },
      () => `the next request to answer {"status":410}; it answered HTTP ${last?.status} ${last?.body} with 12 × 512 KB buffered`,
      5000,
    );
  });
});

describe("LongPoll frame cap (own server, LP_MAX_BODY=16 MiB so MAX_FRAME_SIZE is what triggers)", () => {
  let server;
  before(async () => {
    server = await spawnServer("lpframe", { env: { LP_MAX_BODY: String(16 * MiB) } });
  });
  after(() => server?.stop());

  const MAX_FRAME_SIZE = 1048576;
  const pingLine = (ref, size) => {
    const head = `["1","${ref}","room:lobby","ping",{"p":"`;
    return head + "w".repeat(size - head.length - 3) + `"}]`;
  };

  hostile(
    "LongPoll: an ndjson line or a non-ndjson body over MAX_FRAME_SIZE → HTTP 400, nothing of the batch dispatched; a line of exactly MAX_FRAME_SIZE is processed",
    { server: () => server, timeout: 60000 },
    async () => {
      const base = server.url;
      const token = await lpSession(base);
      assert.equal((await lpPost(base, token, `["1","1","room:lobby","phx_join",{}]`)).body, `{"status":200}`);
      const joinReply = await lpPoll(base, token);
      assert.match(joinReply.body, /phx_reply/);

      const over = pingLine("big", MAX_FRAME_SIZE + 1);
      const r = await lpPost(base, token, [`[null,"before","phoenix","heartbeat",{}]`, over].join("\n"));
      assert.equal(r.status, 400, `a ${over.length}-byte ndjson line → HTTP ${r.status} ${r.body.slice(0, 100)}`);
      const j = await lpPost(base, token, over, "application/json");
      assert.equal(j.status, 400, `a ${over.length}-byte non-ndjson body → HTTP ${j.status} ${j.body.slice(0, 100)}`);

      // nothing of the refused batches ran; the session still works
      assert.equal((await lpPost(base, token, `[null,"after","phoenix","heartbeat",{}]`)).body, `{"status":200}`);
      const polled = JSON.parse((await lpPoll(base, token)).body);
      assert.deepEqual(polled.messages, [`[null,"after","phoenix","phx_reply",{"response":{},"status":"ok"}]`], "only the heartbeat after the 400s was processed");

      const at = pingLine("at", MAX_FRAME_SIZE);
      assert.equal(at.length, MAX_FRAME_SIZE);
      assert.equal((await lpPost(base, token, at)).body, `{"status":200}`, "a line of exactly MAX_FRAME_SIZE");
      const reply = JSON.parse((await lpPoll(base, token)).body);
      assert.ok(reply.messages[0]?.startsWith(`["1","at","room:lobby","phx_reply"`), show(String(reply.messages[0]).slice(0, 80)));
    },
  );
});

// ------------------------------------------------------------------------------------------------
describe("Rumbl annotation body (1000 characters)", () => {
  hostile("Rumbl: a body of 1001 characters → the changeset error reply; 1000 characters (of 4 bytes each) → ok", async () => {
    const video = randomVideo();
    const token = await fixtureToken(randomUser());
    const s = await connect(`ws://127.0.0.1:${port()}/socket/websocket?token=${encodeURIComponent(token)}&vsn=2.0.0`);
    const topic = `videos:${video}`;
    // the channel's own frames, without the Presence ones it also pushes
    const next = async () => {
      for (;;) {
        const f = await s.next();
        if (!/^\[[^\]]*?"presence_(state|diff)"/.test(f)) return f;
      }
    };
    try {
      s.send(frame("1", "1", topic, "phx_join", {}));
      assertFrame(await next(), replyFrame("1", "1", topic, "ok", { annotations: [] }));
      const tooLong = { errors: { body: ["should be at most 1000 character(s)"] } };
      for (const [ref, body] of [["2", "a".repeat(1001)], ["3", "é".repeat(1001)], ["4", "😀".repeat(1001)]]) {
        s.send(frame("1", ref, topic, "new_annotation", { body, at: 0 }));
        assertFrame(await next(), replyFrame("1", ref, topic, "error", tooLong));
      }
      // 1000 scalar values is the limit (4000 bytes, 2000 UTF-16 units): accepted and broadcast
      const ok = "😀".repeat(1000);
      s.send(frame("1", "5", topic, "new_annotation", { body: ok, at: 0 }));
      const [bcast, reply] = [await next(), await next()];
      assert.equal(JSON.parse(bcast)[3], "new_annotation", show(bcast.slice(0, 80)));
      assert.equal(JSON.parse(bcast)[4].body, ok);
      assertFrame(reply, replyFrame("1", "5", topic, "ok", {}));
    } finally {
      s.close();
    }
  });
});
