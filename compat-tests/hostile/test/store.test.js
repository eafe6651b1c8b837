// The Rumbl store (spec "Store acknowledgement contract" and "Join boundary"), on a private
// Postgres cluster (lib/pg.js) behind `serve --fixture` with DATABASE_URL pointing at it:
//
//   join boundary  official clients join videos:<id> while others post as fast as they are
//                  acknowledged; each joiner sees every annotation after its last_seen_id
//                  exactly once across its join reply and the broadcasts — checked against
//                  what the table holds at the end
//   outage         the cluster is stopped mid-run: posts get {"reason":"database unavailable"}
//                  (or "database error") replies, joins get an error reply, other sockets keep
//                  heartbeating, nothing panics; every post acknowledged ok is in the table
//                  afterwards and no post answered with an error is

import { describe, before, after } from "node:test";
import assert from "node:assert/strict";

import { hostile, spawnServer, until, scaled } from "../lib/harness.js";
import { Cluster } from "../lib/pg.js";
import WebSocket from "ws";
import { Socket } from "phoenix";

import { mkSocketAt, result, shutdown } from "../../lib/client.js";
import { sleep } from "../../lib/server.js";

const randomVideo = () => 3_000_000 + Math.floor(Math.random() * 1_000_000_000);
const randomUser = () => 3_000_000 + Math.floor(Math.random() * 1_000_000);

let cluster;
let server;
before(async () => {
  cluster = await Cluster.create("store");
  server = await spawnServer("store", { env: { DATABASE_URL: cluster.url() } });
});
after(async () => {
  await server?.stop();
  await cluster?.destroy();
});

const endpoint = () => `${server.wsUrl}/socket`;
async function token(userId) {
  const r = await fetch(`${server.url}/fixture/token?user_id=${userId}`);
  return (await r.text()).trim();
}

/** Joins `videos:<id>` on `socket`; resolves with the join reply (rejects on error/timeout). */
function join(channel) {
  return new Promise((resolve, reject) => {
    channel
      .join()
      .receive("ok", resolve)
      .receive("error", (e) => reject(new Error(`join ${channel.topic}: ${JSON.stringify(e)}`)))
      .receive("timeout", () => reject(new Error(`join ${channel.topic}: timeout`)));
  });
}

/** Ids of `video`'s rows. */
async function tableIds(video) {
  return (await cluster.query(`SELECT id FROM annotations WHERE video_id = ${video} ORDER BY id`)).map(Number);
}

describe("join boundary (Postgres)", () => {
  const JOINERS = scaled(150, 2000);
  hostile(
    `join boundary: ${JOINERS} official clients join videos:<id> while 4 posters post as fast as acknowledged → each sees every later annotation exactly once`,
    { server: () => server, timeout: scaled(120000, 600000) },
    async ({ t, note }) => {
      const video = randomVideo();
      const topic = `videos:${video}`;
      // The watcher tells each joiner where to start (its last_seen_id): the highest id broadcast so far.
      const watcher = mkSocketAt(t, endpoint());
      watcher.connect();
      const wch = watcher.channel(topic, {});
      let maxSeen = 0;
      wch.on("new_annotation", (a) => (maxSeen = Math.max(maxSeen, a.id)));
      await join(wch);

      // posters
      let posting = true;
      const acked = { ok: 0, error: 0, timeout: 0 };
      const posters = [];
      for (let p = 0; p < 4; p++) {
        const s = mkSocketAt(t, endpoint(), { params: { token: await token(randomUser()) } });
        s.connect();
        const ch = s.channel(topic, {});
        await join(ch);
        posters.push(
          (async () => {
            for (let n = 0; posting; n++) {
              const r = await result(ch.push("new_annotation", { body: `p${p}-${n}`, at: 0 }));
              acked[r.status]++;
            }
          })(),
        );
      }
      await until(() => acked.ok > 20, "the posters to get going", 10000);

      // joiners, one every ~15 ms, while the posts flow (torn down together at the end)
      const joiners = [];
      const sockets = [];
      t.after(() => Promise.all(sockets.map(shutdown)));
      for (let j = 0; j < JOINERS; j++) {
        const from = maxSeen;
        const s = new Socket(endpoint(), { transport: WebSocket, rejoinAfterMs: () => 500 });
        sockets.push(s);
        s.connect();
        const ch = s.channel(topic, () => ({ last_seen_id: from }));
        const seen = [];
        const state = { from, seen, replyLen: null, joined: null, joins: 0 };
        ch.on("new_annotation", (a) => seen.push(a.id));
        state.joined = join(ch).then((reply) => {
          state.joins++;
          state.replyLen = reply.annotations.length;
          seen.unshift(...reply.annotations.map((a) => a.id));
        });
        joiners.push(state);
        await sleep(15);
      }
      await Promise.all(joiners.map((j) => j.joined));
      await sleep(1000);
      posting = false;
      await Promise.all(posters);
      await sleep(1500); // the last broadcasts
      const ids = await tableIds(video);
      note(`posts: ${JSON.stringify(acked)}; table rows ${ids.length}`);
      assert.equal(acked.timeout, 0, "no post went unanswered");
      assert.equal(acked.error, 0, "no post failed");

      const bad = [];
      for (const [i, j] of joiners.entries()) {
        assert.ok(j.replyLen < 200, `joiner ${i}: its join reply holds ${j.replyLen} annotations (the book's cap): the case posts too fast to be exact`);
        const expected = ids.filter((id) => id > j.from);
        const dup = j.seen.filter((id, k) => j.seen.indexOf(id) !== k);
        const seenSet = new Set(j.seen);
        const holes = expected.filter((id) => !seenSet.has(id));
        // ids at or below last_seen_id may come as broadcasts (committed late); only ids that are
        // not in the table at all are wrong
        const inTable = new Set(ids);
        const extra = [...seenSet].filter((id) => !inTable.has(id));
        if (dup.length || holes.length || extra.length || j.joins !== 1) {
          bad.push(`joiner ${i} (last_seen_id ${j.from}, reply ${j.replyLen}): duplicates ${JSON.stringify(dup.slice(0, 5))}, holes ${JSON.stringify(holes.slice(0, 5))}, not in the table ${JSON.stringify(extra.slice(0, 5))}, joins ${j.joins}`);
        }
      }
      assert.deepEqual(bad, [], `${bad.length} of ${JOINERS} joiners did not see every annotation exactly once`);
    },
  );
});

/**
 * Three posts while Postgres is SIGSTOPped (connections open, nothing answers) for longer than
 * the server's 5 s deadline — from three sockets (`queued: false`) or queued on one channel
 * (`queued: true`: the 2nd and 3rd wait behind the 1st, so their deadline must run from their
 * arrival for the client to hear back within phoenix.js's 10 s) — then it resumes.
 */
function hungDatabase(queued) {
  return async ({ t, note }) => {
      const video = randomVideo();
      const topic = `videos:${video}`;
      // three posters on their own sockets (one channel each: their posts are independent)
      const channels = [];
      for (let p = 0; p < (queued ? 1 : 3); p++) {
        const s = mkSocketAt(t, endpoint(), { params: { token: await token(randomUser()) }, rejoinAfterMs: () => 60000 });
        s.connect();
        const ch = s.channel(topic, {});
        await join(ch);
        channels.push(ch);
      }
      const watcher = mkSocketAt(t, endpoint(), { rejoinAfterMs: () => 60000 });
      watcher.connect();
      const wch = watcher.channel(topic, {});
      const broadcast = new Set();
      wch.on("new_annotation", (a) => broadcast.add(a.body));
      await join(wch);

      const results = [];
      const post = async (ch, body) => {
        const r = await result(ch.push("new_annotation", { body, at: 0 }, 10000));
        results.push({ body, ...r });
        return r;
      };
      for (let n = 0; n < 5; n++) assert.equal((await post(channels[n % channels.length], `before-${n}`)).status, "ok");
      cluster.freeze();
      let hung;
      try {
        hung = await Promise.all([0, 1, 2].map((n) => post(channels[n % channels.length], `hung-${n}`)));
      } finally {
        cluster.thaw();
      }
      await sleep(3000); // a transaction left running would commit now
      const after = await post(channels[0], "after");
      await sleep(500);
      const bodies = new Set(await cluster.query(`SELECT body FROM annotations WHERE video_id = ${video}`));
      note(`posts to the hung database: ${JSON.stringify(hung)}; first post after it resumed: ${JSON.stringify(after)}; rows ${[...bodies].join(",")}`);

      const lost = results.filter((r) => r.status === "ok" && !bodies.has(r.body)).map((r) => r.body);
      assert.deepEqual(lost, [], "posts acknowledged ok that are not in the table");
      const ghosts = results.filter((r) => r.status !== "ok" && bodies.has(r.body)).map((r) => `${r.body} (${r.status})`);
      assert.deepEqual(ghosts, [], "posts answered with an error (or not at all) that committed anyway once the database resumed");
      const unbroadcast = [...bodies].filter((b) => !broadcast.has(b));
      assert.deepEqual(unbroadcast, [], "rows that were never broadcast to the watcher");
      for (const [n, r] of hung.entries()) {
        assert.notEqual(r.status, "timeout", `post hung-${n}: no answer within phoenix.js's 10 s (the server's deadline is 5 s)`);
      }
  };
}

describe("a database that hangs (Postgres SIGSTOPped past the 5 s deadline)", () => {
  hostile(
    "store: three posts from three sockets to a hung database → error replies within the deadline; once it resumes none of them is in the table, nothing commits unbroadcast",
    { server: () => server, timeout: 90000 },
    hungDatabase(false),
  );
  hostile(
    "store: three posts queued on one channel to a hung database → each answered before phoenix.js's 10 s timeout; none commits after its error/timeout",
    { server: () => server, timeout: 90000 },
    hungDatabase(true),
  );
});

describe("database outage (Postgres stopped mid-run)", () => {
  hostile(
    "store: the database goes down mid-run → posts get {reason: database unavailable} (or database error), joins get an error, other sockets heartbeat; every ok is in the table, no error is",
    { server: () => server, timeout: 120000 },
    async ({ t, note }) => {
      const video = randomVideo();
      const topic = `videos:${video}`;
      const s = mkSocketAt(t, endpoint(), { params: { token: await token(randomUser()) }, rejoinAfterMs: () => 60000 });
      s.connect();
      const ch = s.channel(topic, {});
      await join(ch);

      const results = []; // {body, status, response, during}
      let phase = "before";
      const post = async (body) => {
        const during = phase; // when it was sent
        const r = await result(ch.push("new_annotation", { body, at: 0 }, 10000));
        results.push({ body, during, ...r });
        return r;
      };
      for (let n = 0; n < 20; n++) assert.equal((await post(`before-${n}`)).status, "ok");

      // keep posting as fast as answered; stop the cluster while posts are in flight
      let posting = true;
      const loop = (async () => {
        for (let n = 0; posting; n++) await post(`around-${n}`);
      })();
      await sleep(300);
      phase = "stopping";
      await cluster.stop("fast");
      phase = "down";
      await sleep(6000); // posts during the outage (the server answers within its 5 s deadline)
      // a join during the outage
      const other = mkSocketAt(t, endpoint(), { rejoinAfterMs: () => 60000 });
      other.connect();
      const och = other.channel(`videos:${randomVideo()}`, {});
      const joinDuringOutage = await result(och.join(10000));
      posting = false;
      await loop;

      await cluster.start();
      const bodies = new Set(await cluster.query(`SELECT body FROM annotations WHERE video_id = ${video}`));
      const count = (pred) => results.filter(pred).length;
      note(
        `posts: ${results.length} (ok ${count((r) => r.status === "ok")}, error ${count((r) => r.status === "error")}, ` +
          `timeout ${count((r) => r.status === "timeout")}); errors during the outage: ${JSON.stringify([...new Set(results.filter((r) => r.status === "error").map((r) => JSON.stringify(r.response)))])}; ` +
          `join during the outage: ${JSON.stringify(joinDuringOutage)}`,
      );

      assert.deepEqual(results.filter((r) => r.status === "timeout").map((r) => r.body), [], "posts answered by nobody within 10 s");
      const down = results.filter((r) => r.during === "down");
      assert.ok(down.length > 0, "posts were made during the outage");
      for (const r of down) {
        assert.equal(r.status, "error", `post ${r.body} during the outage → ${r.status} ${JSON.stringify(r.response)}`);
        // A poster that gets its errors at once posts faster than MAX_MESSAGES_PER_SEC: the
        // rate limit's refusal is an error reply too (nothing was attempted, nothing committed).
        assert.ok(
          ["database unavailable", "database error", "rate limited"].includes(r.response?.reason),
          `post ${r.body} during the outage → ${JSON.stringify(r.response)}`,
        );
      }
      assert.equal(joinDuringOutage.status, "error", `a join during the outage → ${JSON.stringify(joinDuringOutage)}`);
      const lost = results.filter((r) => r.status === "ok" && !bodies.has(r.body)).map((r) => r.body);
      assert.deepEqual(lost, [], "posts acknowledged ok that are not in the table");
      const ghosts = results.filter((r) => r.status === "error" && bodies.has(r.body)).map((r) => r.body);
      assert.deepEqual(ghosts, [], "posts answered with an error that are in the table anyway");
    },
  );
});
