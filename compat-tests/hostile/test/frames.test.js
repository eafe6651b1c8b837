// Frames (spec "Close codes" + "Frames"): the offending socket gets a Close frame with the
// documented code — received by the client, not a TCP drop (the `ws` client reports 1006 when
// the connection ends without a Close frame, so `code === 1009` proves the frame arrived):
//   1009 message larger than MAX_FRAME_SIZE (1 MiB by default; exactly 1 MiB is processed)
//   1011 a frame that is not a Phoenix message
//   1008 topic / event / ref / join_ref over 1024 bytes, or a ref that is not string/int/null

import { describe } from "node:test";
import assert from "node:assert/strict";

import { hostile, MiB } from "../lib/harness.js";
import { connect, frame, replyFrame, assertFrame, show } from "../../lib/raw.js";

const MAX_FRAME_SIZE = 1048576; // the default
const url = () => `ws://127.0.0.1:${process.env.PHX_PORT}/socket/websocket?vsn=2.0.0`;

/** A V2 ping frame to room:lobby (join_ref "1") of exactly `size` bytes. */
function pingOfSize(size, ref = "2") {
  const head = `["1","${ref}","room:lobby","ping",{"p":"`;
  const tail = `"}]`;
  return head + "x".repeat(size - head.length - tail.length) + tail;
}

async function joined() {
  const s = await connect(url());
  s.send(frame("1", "1", "room:lobby", "phx_join", {}));
  assertFrame(await s.next(), replyFrame("1", "1", "room:lobby", "ok", {}));
  return s;
}

/** What a client that does not wait for answers sends right after its bad frame. */
const FOLLOW_UP = [
  ...Array.from({ length: 200 }, (_, i) => `[null,"after${i}","phoenix","heartbeat",{}]`),
  `["1","after","room:lobby","ping",{"p":"${"y".repeat(512 * 1024)}"}]`,
];

/**
 * Sends `bad` on a fresh joined socket — alone, and (on a second socket) followed at once by
 * 200 heartbeats and a 512 KB push — and asserts that each socket gets a Close frame with `code`
 * and nothing else first. The second form is what a hostile client does; a server that closes
 * the TCP connection with unread input resets it, and the Close frame is lost (a 1006 here).
 */
async function expectClose(bad, code, what, { waitMs = 3000 } = {}) {
  for (const followUp of [[], FOLLOW_UP]) {
    const label = followUp.length ? `${what}, then more frames` : what;
    const s = await joined();
    try {
      s.send(bad);
      for (const f of followUp) s.send(f);
      let info;
      try {
        info = await s.closed(waitMs);
      } catch {
        assert.fail(`${label}: the socket is still open ${waitMs / 1000} s later (frames: ${s.pending().map(show).join(" | ").slice(0, 300)})`);
      }
      assert.equal(
        info.code,
        code,
        `${label}: closed with ${info.code}${info.code === 1006 ? " (TCP drop, no Close frame)" : ""}, expected a Close frame with ${code}`,
      );
      assert.deepEqual(s.pending().map(show), [], `${label}: no frame before the close`);
    } finally {
      s.close();
    }
  }
}

describe("frame size", () => {
  hostile("MAX_FRAME_SIZE + 1 → a Close frame with 1009 reaches the client; exactly MAX_FRAME_SIZE is processed", async () => {
    const s = await joined();
    try {
      const at = pingOfSize(MAX_FRAME_SIZE);
      assert.equal(Buffer.byteLength(at), MAX_FRAME_SIZE);
      s.send(at);
      const reply = await s.next(10000);
      assert.ok(reply.startsWith(`["1","2","room:lobby","phx_reply",{"response":{"p":"xxx`), show(reply.slice(0, 80)));
      await s.heartbeat();
    } finally {
      s.close();
    }
    await expectClose(pingOfSize(MAX_FRAME_SIZE + 1, "3"), 1009, `a ${MAX_FRAME_SIZE + 1}-byte text frame`, { waitMs: 5000 });
  });
});

describe("protocol violations → 1011", () => {
  const cases = [
    ["a V2 array of 4 elements", `["1","2","room:lobby","ping"]`],
    ["a V2 array of 3 elements", `[null,"2","phoenix"]`],
    ["a V1 object on a V2 socket", `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"2"}`],
    ["text that is not JSON", `[null,"2","phoenix","heartbeat",{}`],
    ["a JSON scalar", `42`],
    ["JSON nested 100,000 deep (the whole frame)", "[".repeat(100000) + "]".repeat(100000)],
    ["JSON nested 100,000 deep (in the payload)", `["1","2","room:lobby","ping",${"[".repeat(100000)}${"]".repeat(100000)}]`],
    ["JSON nested 129 deep (in the payload)", `["1","2","room:lobby","ping",${"[".repeat(129)}${"]".repeat(129)}]`],
    ["binary kind 1 (a reply: server→client only)", Buffer.from([1, 1, 1, 10, 2, 0x31, 0x32, ...Buffer.from("room:lobbyok"), 0x7b, 0x7d])],
    ["binary kind 2 (a broadcast: server→client only)", Buffer.from([2, 10, 4, ...Buffer.from("room:lobbyping")])],
    ["binary kind 7", Buffer.from([7, 0, 0, 0, 0])],
    ["a truncated binary header (kind 0, two bytes)", Buffer.from([0, 1])],
    ["a binary kind 0 whose lengths run past the end", Buffer.from([0, 1, 1, 200, 4, 0x31, 0x32, 0x72])],
    ["an empty binary frame", Buffer.alloc(0)],
  ];
  hostile("protocol violations (fewer than 5 elements, V1 on V2, bad JSON, 100,000-deep JSON, binary kind 1/2/7, truncated binary) → Close 1011 each", async () => {
    const failures = [];
    for (const [what, bad] of cases) {
      try {
        await expectClose(bad, 1011, what);
      } catch (e) {
        failures.push(e.message.split("\n")[0]);
      }
    }
    assert.deepEqual(failures, [], `${failures.length} of ${cases.length} violations did not get a Close frame 1011`);
  });

  hostile("JSON nested 100 deep is still a message (under serde_json's 128-level limit)", async () => {
    const s = await joined();
    try {
      // 99 levels of arrays inside the frame's own array: 100 in all.
      const p = "[".repeat(99) + "]".repeat(99);
      s.send(`["1","2","room:lobby","ping",${p}]`);
      const r = await s.next();
      assert.ok(r.startsWith(`["1","2","room:lobby","phx_reply",{"response":[[[`), show(r.slice(0, 80)));
    } finally {
      s.close();
    }
  });
});

describe("field limits → 1008", () => {
  const x = (n) => "x".repeat(n);
  const topicOver = `room:${x(1020)}`;
  hostile("topic, event, ref, join_ref of 1025 bytes, and refs that are objects/arrays/booleans → Close 1008 each; 1024 bytes is fine", async () => {
    const cases = [
      ["a 1025-byte topic (join)", frame("5", "5", topicOver, "phx_join", {})],
      ["a 1025-byte topic (push to an unjoined topic)", frame(null, "5", topicOver, "ping", {})],
      ["a 1025-byte event", frame("1", "5", "room:lobby", x(1025), {})],
      ["a 1025-byte ref", frame("1", x(1025), "room:lobby", "ping", {})],
      ["a 1025-byte join_ref", frame(x(1025), "5", "room:other", "phx_join", {})],
      ["an object ref", `["1",{"a":1},"room:lobby","ping",{}]`],
      ["an array ref", `["1",["5"],"room:lobby","ping",{}]`],
      ["a boolean ref", `["1",true,"room:lobby","ping",{}]`],
      ["an object join_ref", `[{"a":1},"5","room:lobby","ping",{}]`],
      ["an array join_ref (heartbeat)", `[[1],"5","phoenix","heartbeat",{}]`],
    ];
    const failures = [];
    for (const [what, bad] of cases) {
      try {
        await expectClose(bad, 1008, what);
      } catch (e) {
        failures.push(e.message.split("\n")[0]);
      }
    }
    assert.deepEqual(failures, [], `${failures.length} of ${cases.length} over-limit frames did not get a Close frame 1008`);

    // The limit itself: 1024-byte topic, join_ref and ref join; a 1024-byte event is routed.
    const s = await connect(url());
    try {
      const tMax = `room:${x(1019)}`;
      s.send(frame(x(1024), x(1024), tMax, "phx_join", {}));
      assertFrame(await s.next(), replyFrame(x(1024), x(1024), tMax, "ok", {}));
      s.send(frame(null, "6", "nope:1", x(1024), {}));
      assertFrame(await s.next(), replyFrame(null, "6", "nope:1", "error", { reason: "unmatched topic" }));
      s.send(frame(x(1024), 7, tMax, "ping", { n: 7 }));
      assertFrame(await s.next(), replyFrame(x(1024), 7, tMax, "ok", { n: 7 }));
      await s.heartbeat();
    } finally {
      s.close();
    }
  });

  hostile(
    "100 joins of room:<1 MB> on one socket → Close 1008 on the first, nothing joined, RSS back near baseline",
    { rss: { bound: 32 * MiB }, timeout: 60000 },
    async ({ note, peak, baseline }) => {
      const s = await connect(url());
      try {
        // 100 different topics of ~1 MB each (a frame stays under MAX_FRAME_SIZE)
        const big = x(1_000_000);
        for (let i = 1; i <= 100; i++) s.send(frame(`${i}`, `${i}`, `room:${i}-${big}`, "phx_join", {}));
        let info = null;
        try {
          info = await s.closed(10000);
        } catch {
          /* reported below */
        }
        const replies = s.pending().length;
        note(`join replies before the close: ${replies}; peak RSS +${((peak() - baseline) / MiB).toFixed(0)} MiB`);
        assert.ok(info, `the socket is still open 10 s after 100 joins of a 1 MB topic (${replies} replies received)`);
        assert.equal(info.code, 1008, `closed with ${info.code}${info.code === 1006 ? " (TCP drop)" : ""}, expected 1008`);
        assert.equal(replies, 0, "the first join already closes the socket: no join reply");
      } finally {
        s.close();
      }
    },
  );
});
