// Connect params (spec "Connect params" + the URI cap of "HTTP layer"): the Plug-style query
// decoder runs before `connect`, so it is reachable without a token. Bounded and iterative:
// a URI over 8 KiB → 414, a key nested deeper than 32 → 400, more than 1000 pairs → 400,
// bytes that are not UTF-8 → 400 — on both transports — and the limits themselves are accepted.

import { describe } from "node:test";
import assert from "node:assert/strict";

import { hostile } from "../lib/harness.js";
import { request, upgrade, get } from "../lib/tcp.js";

const port = () => Number(process.env.PHX_PORT);

/** `a[b][b]…=1` whose key has `depth` levels (`a` is level 1, as `a[b][c]` has depth 3). */
const nested = (depth) => `a${"[b]".repeat(depth - 1)}=1`;
/** `k0=1&k1=1&…` — n pairs. */
const pairs = (n) => Array.from({ length: n }, (_, i) => `k${i}=1`).join("&");

/** The answer to a WebSocket upgrade of `/socket/websocket?<query>`. */
const ws = (query) => request(port(), upgrade(`/socket/websocket?${query}`));
/** The answer to the LongPoll session-creating GET `/socket/longpoll?<query>`. */
const lp = (query) => request(port(), get(`/socket/longpoll?${query}`));

describe("connect params", () => {
  hostile("params: 15 KB of nested brackets (a[b][b]…=1) → 414 on both transports (20 KB: 414 or 431), server alive", async () => {
    const q = `${nested(5000)}&vsn=2.0.0`; // 15 KB of brackets: over the URI cap, under the header cap
    assert.ok(q.length > 8192 && q.length < 16000, `query is ${q.length} bytes`);
    const w = await ws(q);
    assert.equal(w.status, 414, `WebSocket upgrade with a ${q.length}-byte nested query → HTTP ${w.status}`);
    const l = await lp(q);
    assert.equal(l.status, 414, `LongPoll GET with a ${q.length}-byte nested query → HTTP ${l.status}`);
    // ~20 KB is over the header cap (16 KiB) too; the spec does not order the two: 414 or 431
    const q20 = `${nested(6700)}&vsn=2.0.0`;
    for (const [what, r] of [["WebSocket", await ws(q20)], ["LongPoll", await lp(q20)]]) {
      assert.ok([414, 431].includes(r.status), `${what} with a ${q20.length}-byte nested query → HTTP ${r.status}`);
    }
  });

  hostile("params: depth 33 under the URI cap → 400 on both transports; depth 32 connects", async () => {
    const deep = `${nested(33)}&vsn=2.0.0`;
    const w = await ws(deep);
    assert.equal(w.status, 400, `WebSocket, key depth 33 → HTTP ${w.status}`);
    const l = await lp(deep);
    assert.equal(l.status, 400, `LongPoll, key depth 33 → HTTP ${l.status} ${l.body}`);

    const ok = `${nested(32)}&vsn=2.0.0`;
    assert.equal((await ws(ok)).status, 101, "WebSocket, key depth 32 → 101");
    const l32 = await lp(ok);
    assert.equal(l32.status, 200, "LongPoll, key depth 32 → 200");
    assert.match(l32.body.toString(), /"status":410,"token":/, "LongPoll, key depth 32 → a new session");
  });

  hostile("params: 1001 key/value pairs → 400 on both transports; 1000 connect", async () => {
    const over = `${pairs(1000)}&vsn=2.0.0`; // 1001 pairs, vsn included
    assert.ok(over.length < 8192, `query is ${over.length} bytes: under the URI cap`);
    assert.equal((await ws(over)).status, 400, "WebSocket, 1001 pairs → 400");
    assert.equal((await lp(over)).status, 400, "LongPoll, 1001 pairs → 400");

    const limit = `${pairs(999)}&vsn=2.0.0`; // exactly 1000 pairs
    assert.equal((await ws(limit)).status, 101, "WebSocket, 1000 pairs → 101");
    assert.equal((await lp(limit)).status, 200, "LongPoll, 1000 pairs → 200");
  });

  hostile("params: bytes that are not UTF-8 once decoded (%FF) → 400 on both transports; a stray % connects", async () => {
    // Plug's fetch_query_params validates UTF-8 (InvalidQueryError → 400); since Elixir 1.13 a
    // `%` not followed by two hex digits is kept as typed.
    for (const bad of ["name=%FF", "%C3=1", "name=%ED%A0%80"]) {
      assert.equal((await ws(`${bad}&vsn=2.0.0`)).status, 400, `WebSocket, ${bad} → 400`);
      assert.equal((await lp(`${bad}&vsn=2.0.0`)).status, 400, `LongPoll, ${bad} → 400`);
    }
    assert.equal((await ws("name=100%&q=%zz&vsn=2.0.0")).status, 101, "WebSocket, stray % → 101");
    assert.equal((await ws("name=%C3%A9&vsn=2.0.0")).status, 101, "WebSocket, %C3%A9 (é) → 101");
  });

  hostile("params: hostile shapes decode without a crash (a[]…, a[][]…, [[[…, ]]]…, %5B…) → an answer, server alive", async () => {
    // Shapes a recursive decoder handles badly; each must get some HTTP answer under the caps.
    const shapes = [
      `a${"[]".repeat(2000)}=1`,
      `${"[".repeat(4000)}=1`,
      `a${"]".repeat(4000)}=1`,
      `a${"%5Bb%5D".repeat(1000)}=1`,
      `a[${"b".repeat(4000)}]=1`,
      `${"a[b]=1&".repeat(900)}a=1`, // a key that is both a map and a scalar
    ];
    for (const s of shapes) {
      const r = await ws(`${s}&vsn=2.0.0`);
      assert.ok([101, 400, 403, 414].includes(r.status), `${s.slice(0, 30)}… → HTTP ${r.status}`);
    }
  });
});
