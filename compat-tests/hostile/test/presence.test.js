// Presence under a join wave (spec "Presence"): CI runs a 1,500-socket wave on one presence:*
// topic and its leave wave; the official phoenix Presence class on three observer sockets must
// converge to every key and back, the bystander's heartbeats must all be answered, and RSS must
// come back near where it started. HOSTILE_SCALE=1 runs 10,000 sockets (the 20,000-socket
// figure with heartbeat latencies is the benches' job: benches/README.md).
//
// Wave sockets are byte-level WebSockets that parse frame headers only (a joiner receives the
// whole presence_state, so the wave moves O(N²) bytes; the client must stay cheap).

import { describe } from "node:test";
import { Presence } from "phoenix";

import { hostile, scaled, until, MiB, mb } from "../lib/harness.js";
import { WireSocket } from "../lib/wire.js";
import { mkSocket } from "../../lib/client.js";
import { uniqTopic } from "../../lib/server.js";

const port = () => Number(process.env.PHX_PORT);
const N = scaled(1500, 10000);

/** An official client socket with a Presence on `topic`, joined as `name` (key anon-<name>). */
async function observer(t, topic, name) {
  const socket = mkSocket(t);
  socket.connect();
  const channel = socket.channel(topic, { name });
  const presence = new Presence(channel);
  await new Promise((resolve, reject) => {
    channel
      .join()
      .receive("ok", resolve)
      .receive("error", (e) => reject(new Error(`observer join: ${JSON.stringify(e)}`)))
      .receive("timeout", () => reject(new Error("observer join: timeout")));
  });
  return { presence, keys: () => presence.list((k) => k) };
}

describe("presence join wave", () => {
  hostile(
    `presence: a ${N.toLocaleString("en")}-socket join wave on one presence:* topic and its leave wave → the official Presence converges both ways, RSS back near baseline`,
    { timeout: scaled(180000, 900000), rss: { bound: 48 * MiB, settleMs: 15000 } },
    async ({ t, note, peak }) => {
      const topic = uniqTopic("presence:wave");
      const observers = [];
      for (const name of ["o1", "o2", "o3"]) observers.push(await observer(t, topic, name));
      const base = ["anon-o1", "anon-o2", "anon-o3"];

      const wave = [];
      const t0 = Date.now();
      try {
        for (let i = 0; i < N; i += 100) {
          const batch = await Promise.all(
            Array.from({ length: Math.min(100, N - i) }, () => WireSocket.open(port(), "/socket/websocket?vsn=2.0.0", { keep: "none" })),
          );
          batch.forEach((s, k) => s.sendText(JSON.stringify(["1", "1", topic, "phx_join", { name: `w${i + k}` }])));
          wave.push(...batch);
        }
        const want = N + base.length;
        await until(
          () => observers.every((o) => o.keys().length === want),
          () => `every observer to list ${want} keys; they list ${observers.map((o) => o.keys().length).join(", ")}`,
          scaled(60000, 600000),
        );
        const joined = Date.now();
        const peakJoined = peak();
        // every wave socket gets its join reply and its presence_state at least. Not
        // necessarily before the observers converged: joiners share one presence_state build
        // per read (the tracker's group commit), so the last joiners' states can trail the
        // diffs that already told the observers about them.
        await until(
          () => wave.every((s) => s.frames >= 2),
          () => `every wave socket to get its join reply and presence_state; ${wave.filter((s) => s.frames < 2).length} have fewer than 2 frames`,
          scaled(30000, 300000),
        );

        for (const s of wave) s.destroy(); // the leave wave: transports gone
        await until(
          () => observers.every((o) => o.keys().length === base.length),
          () => `every observer back to ${base.length} keys; they list ${observers.map((o) => o.keys().length).join(", ")}`,
          scaled(60000, 600000),
        );
        const left = Date.now();
        for (const o of observers) {
          const keys = o.keys().sort();
          if (JSON.stringify(keys) !== JSON.stringify(base)) throw new Error(`observer lists ${JSON.stringify(keys)}`);
        }
        note(
          `join wave converged in ${((joined - t0) / 1000).toFixed(1)} s, leave wave in ${((left - joined) / 1000).toFixed(1)} s; ` +
            `peak RSS at full house ${mb(peakJoined)}; frames to wave sockets ${wave.reduce((a, s) => a + s.frames, 0)}, ` +
            `${mb(wave.reduce((a, s) => a + s.bytesIn, 0))}`,
        );
      } finally {
        for (const s of wave) s.destroy();
      }
    },
  );
});
