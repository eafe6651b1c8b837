// The Rumbl VideoChannel (`videos:*`, CONFORMANCE_FIXTURE.md) through the official
// phoenix@1.8.16 client in Node, with `ws` as the WebSocket implementation — the same client
// code path as the watch page's video.js: channel params as a function carrying
// `last_seen_id`, updated from the join reply and from every `new_annotation` broadcast.
//
// Against `phx-server serve --fixture` (PHX_URL); the restart case needs PHX_RESTART_CMD and a
// store that survives the restart.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Socket } from "phoenix";

import { SOCKET_ENDPOINT, fixtureToken, sleep, restartCommand, runRestart } from "../lib/server.js";
import { mkSocket, result, shutdown } from "../lib/client.js";

const T = { timeout: 60000 };
const WAIT = 5000;

// ------------------------------------------------------------------------------------------------
// helpers

/** A video id nobody else uses (fixture mode creates the row on first join). */
const randomVideo = () => 1_000_000 + Math.floor(Math.random() * 1_000_000_000);
/** A user id for this run (fixture mode creates `user<ID>` on first post). */
const randomUser = () => 100_000 + Math.floor(Math.random() * 1_000_000);

/** An authenticated phoenix Socket on ws; disconnected when the test ends. */
async function userSocket(t, userId, opts = {}) {
  const token = await fixtureToken(userId);
  return mkSocket(t, { params: { token }, rejoinAfterMs: () => 300, ...opts });
}

/** Resolves when `pred()` holds (polled), or rejects after `ms`. */
async function until(what, pred, ms = WAIT) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * A viewer as video.js is: params is a closure returning `{last_seen_id}`; the join reply and
 * each broadcast advance it; everything received is kept in `seen` (join replies and
 * broadcasts alike), so duplicates and gaps show.
 */
function viewer(socket, videoId) {
  const state = { lastSeenId: 0, seen: [], joins: 0, joinParams: [] };
  const params = () => {
    const p = { last_seen_id: state.lastSeenId };
    state.joinParams.push(p);
    return p;
  };
  const channel = socket.channel(`videos:${videoId}`, params);
  channel.on("new_annotation", (ann) => {
    state.lastSeenId = ann.id;
    state.seen.push(ann);
  });
  channel
    .join()
    .receive("ok", ({ annotations }) => {
      const ids = annotations.map((a) => a.id);
      if (ids.length > 0) state.lastSeenId = Math.max(state.lastSeenId, ...ids);
      state.seen.push(...annotations);
      state.joins += 1;
    })
    .receive("error", (reason) => {
      state.joinError = reason;
    });
  return { channel, state };
}

function post(channel, body, at) {
  return result(channel.push("new_annotation", { body, at }));
}

const ids = (list) => list.map((a) => a.id);

// ------------------------------------------------------------------------------------------------
describe("rumbl: videos:* through the official client", () => {
  test("two users on one video see each other's annotations, whitelisted", T, async (t) => {
    const video = randomVideo();
    const [ua, ub] = [randomUser(), randomUser()];
    const sa = await userSocket(t, ua);
    const sb = await userSocket(t, ub);
    sa.connect();
    sb.connect();
    const a = viewer(sa, video);
    const b = viewer(sb, video);
    await until("both joined", () => a.state.joins === 1 && b.state.joins === 1);
    assert.deepEqual(a.state.seen, [], "a new video has no annotations");

    assert.deepEqual(await post(a.channel, "hello from a", 100), { status: "ok", response: {} });
    await until("b sees a's annotation", () => b.state.seen.length === 1);
    const got = b.state.seen[0];
    assert.deepEqual(Object.keys(got).sort(), ["at", "body", "id", "user"]);
    assert.deepEqual(got.user, { id: ua, username: `user${ua}` });
    assert.equal(got.body, "hello from a");
    assert.equal(got.at, 100);

    // Extra fields in the push never reach the others.
    const r = await result(
      b.channel.push("new_annotation", { body: "hi from b", at: 50, user: { id: 1, username: "admin" }, admin: true }),
    );
    assert.equal(r.status, "ok");
    await until("a sees b's annotation", () => a.state.seen.length === 2);
    assert.deepEqual(a.state.seen[1], { id: a.state.seen[1].id, user: { id: ub, username: `user${ub}` }, body: "hi from b", at: 50 });
    // The sender got its own broadcast too (before its reply, as Phoenix does).
    assert.deepEqual(ids(a.state.seen), ids(b.state.seen));
  });

  test("rejoin with last_seen_id gets only newer annotations, ordered by (at, id)", T, async (t) => {
    const video = randomVideo();
    const s = await userSocket(t, randomUser());
    s.connect();
    const w = viewer(s, video);
    await until("joined", () => w.state.joins === 1);
    for (const [body, at] of [["one", 300], ["two", 100], ["three", 200]]) {
      assert.equal((await post(w.channel, body, at)).status, "ok");
    }
    await until("3 broadcasts", () => w.state.seen.length === 3);
    const [one, two, three] = w.state.seen;

    const fresh = await userSocket(t, randomUser());
    fresh.connect();
    const all = await result(fresh.channel(`videos:${video}`, { last_seen_id: 0 }).join());
    assert.equal(all.status, "ok");
    assert.deepEqual(ids(all.response.annotations), [two.id, three.id, one.id], "ordered by at");

    const newer = await result(fresh.channel(`videos:${video}`, { last_seen_id: one.id }).join());
    assert.deepEqual(ids(newer.response.annotations), [two.id, three.id]);
    const none = await result(fresh.channel(`videos:${video}`, { last_seen_id: three.id }).join());
    assert.deepEqual(none.response.annotations, []);
  });

  test("error replies: invalid video, changeset errors, anonymous post", T, async (t) => {
    const s = await userSocket(t, randomUser());
    s.connect();
    assert.deepEqual(await result(s.channel("videos:abc").join()), {
      status: "error",
      response: { reason: "invalid video" },
    });
    const ch = s.channel(`videos:${randomVideo()}`);
    assert.equal((await result(ch.join())).status, "ok");
    assert.deepEqual(await result(ch.push("new_annotation", { body: "", at: "abc" })), {
      status: "error",
      response: { errors: { at: ["is invalid"], body: ["can't be blank"] } },
    });

    const anon = new Socket(SOCKET_ENDPOINT, { transport: WebSocket });
    t.after(() => shutdown(anon));
    anon.connect();
    const ach = anon.channel(`videos:${randomVideo()}`);
    assert.equal((await result(ach.join())).status, "ok", "anonymous sockets may watch");
    assert.deepEqual(await result(ach.push("new_annotation", { body: "x", at: 1 })), {
      status: "error",
      response: { reason: "unauthenticated" },
    });
  });

  test("an HTML body arrives verbatim, as text in the payload", T, async (t) => {
    const video = randomVideo();
    const xss = "<img src=x onerror=alert(1)>";
    const s = await userSocket(t, randomUser());
    s.connect();
    const w = viewer(s, video);
    await until("joined", () => w.state.joins === 1);
    assert.equal((await post(w.channel, xss, 1)).status, "ok");
    await until("broadcast", () => w.state.seen.length === 1);
    assert.equal(w.state.seen[0].body, xss);
    const again = await result(s.channel(`videos:${video}`, {}).join());
    assert.equal(again.response.annotations[0].body, xss);
  });

  test("server restart: automatic rejoin with last_seen_id, no duplicates, no gaps", { timeout: 180000 }, async (t) => {
    if (!restartCommand()) {
      t.skip("PHX_RESTART_CMD not set");
      return;
    }
    const video = randomVideo();
    // The viewer reconnects slowly after the restart, so that the writer posts while it is away.
    let viewerDelay = 100;
    const sv = await userSocket(t, randomUser(), { reconnectAfterMs: () => viewerDelay });
    const sw = await userSocket(t, randomUser());
    const opens = { v: 0, w: 0 };
    sv.onOpen(() => (opens.v += 1));
    sw.onOpen(() => (opens.w += 1));
    sv.connect();
    sw.connect();
    const v = viewer(sv, video);
    const writer = sw.channel(`videos:${video}`);
    let writerJoins = 0;
    writer.join().receive("ok", () => (writerJoins += 1));
    await until("joined", () => v.state.joins === 1 && writerJoins === 1);

    for (let i = 0; i < 3; i++) {
      assert.equal((await post(writer, `before ${i}`, 10 * i)).status, "ok");
    }
    await until("viewer saw the first 3", () => v.state.seen.length === 3);
    const lastBefore = v.state.lastSeenId;

    viewerDelay = 4000;
    await runRestart();
    // The writer is back first (100 ms), rejoins, and posts while the viewer is still away.
    await until("writer rejoined", () => writerJoins === 2, 30000);
    assert.equal(opens.v, 1, "the viewer has not reconnected yet");
    for (let i = 0; i < 2; i++) {
      assert.equal((await post(writer, `missed ${i}`, 5 + i)).status, "ok");
    }
    await until("viewer rejoined", () => v.state.joins === 2, 30000);
    const rejoinParams = v.state.joinParams[v.state.joinParams.length - 1];
    assert.deepEqual(rejoinParams, { last_seen_id: lastBefore }, "rejoin carried last_seen_id");

    // And live again afterwards.
    viewerDelay = 100;
    assert.equal((await post(writer, "after", 1)).status, "ok");
    await until("viewer saw everything", () => v.state.seen.length >= 6, 10000);
    await sleep(300);

    const truth = await result(sw.channel(`videos:${video}`, { last_seen_id: 0 }).join());
    assert.equal(truth.status, "ok");
    const seenIds = ids(v.state.seen);
    assert.equal(new Set(seenIds).size, seenIds.length, `no duplicates: ${seenIds}`);
    assert.deepEqual([...seenIds].sort((x, y) => x - y), ids(truth.response.annotations).sort((x, y) => x - y), "no gaps");
    assert.deepEqual(
      v.state.seen.map((a) => a.body).filter((b) => b.startsWith("missed")).sort(),
      ["missed 0", "missed 1"],
    );
  });
});
