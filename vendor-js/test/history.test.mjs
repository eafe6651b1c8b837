// Node check of js/history.js with the real phoenix client over an in-memory transport: the
// test plays the server, frame by frame, and reads the join params phoenix.js sends.
import {test} from "node:test"
import assert from "node:assert/strict"

import {Socket} from "phoenix"
import {HistoryCursor, isBroadcast, withHistory} from "../js/history.js"

/** A WebSocket stand-in: records what the client sends; the test delivers frames. */
class FakeWS {
  static all = []
  constructor(url) {
    this.url = url
    this.readyState = 0
    this.sent = []
    FakeWS.all.push(this)
    setTimeout(() => {
      this.readyState = 1
      this.onopen && this.onopen()
    }, 0)
  }
  send(data) {
    this.sent.push(JSON.parse(data))
  }
  close(code = 1000) {
    this.drop(code)
  }
  /** The connection ends (a killed TCP connection is 1006). */
  drop(code = 1006) {
    if (this.readyState === 3) return
    this.readyState = 3
    this.onclose && this.onclose({code, reason: "", wasClean: code === 1000})
  }
  deliver(frame) {
    this.onmessage && this.onmessage({data: JSON.stringify(frame)})
  }
  joins(topic) {
    return this.sent.filter((m) => m[2] === topic && m[3] === "phx_join")
  }
}

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms))

async function until(cond, what) {
  for (let i = 0; i < 400; i++) {
    if (cond()) return
    await tick()
  }
  assert.fail(`timed out waiting for ${what}`)
}

function mkSocket() {
  FakeWS.all = []
  return new Socket("ws://test/socket", {
    transport: FakeWS,
    reconnectAfterMs: () => 10,
    rejoinAfterMs: () => 10,
    heartbeatIntervalMs: 60000,
  })
}

const current = () => FakeWS.all[FakeWS.all.length - 1]

function reply(ws, join, response) {
  const [joinRef, ref, topic] = join
  ws.deliver([joinRef, ref, topic, "phx_reply", {status: "ok", response}])
}

const shout = (ws, topic, n) => ws.deliver([null, null, topic, "shout", {n}])

test("what counts as a broadcast", () => {
  assert.equal(isBroadcast("new_msg", null), true)
  assert.equal(isBroadcast("new_msg", undefined), true)
  assert.equal(isBroadcast("pushed", "3"), false)
  assert.equal(isBroadcast("phx_reply", null), false)
  assert.equal(isBroadcast("phx_error", null), false)
  assert.equal(isBroadcast("chan_reply_4", undefined), false)
})

test("the cursor: counted after a fresh join, resumed from since after a recovered one", () => {
  const c = new HistoryCursor()
  const params = c.params({token: "t"})
  assert.deepEqual(params(), {token: "t"})
  c.joined({recovered: false, epoch: "e1", offset: 10})
  c.received()
  c.received()
  assert.deepEqual(params(), {token: "t", since: {epoch: "e1", offset: 12}})
  // Recovered: the missed ones follow the reply and are counted from the since sent.
  c.joined({recovered: true, epoch: "e1", offset: 15})
  assert.deepEqual(c.position(), {epoch: "e1", offset: 12})
  c.received()
  c.received()
  c.received()
  assert.deepEqual(c.position(), {epoch: "e1", offset: 15})
  // Not recovered (trimmed, restarted): the reply's position.
  params()
  c.joined({recovered: false, epoch: "e2", offset: 3})
  assert.deepEqual(c.position(), {epoch: "e2", offset: 3})
  assert.equal(c.recovered, false)
  // A server without history: nothing kept, no since sent.
  c.joined({})
  assert.equal(c.position(), null)
  assert.deepEqual(params(), {token: "t"})
})

test("with the phoenix client: the rejoin after a dropped connection sends the counted cursor", async () => {
  const socket = mkSocket()
  const topic = "history:t"
  const {channel, cursor} = withHistory(socket, topic, () => ({name: "a"}))
  const seen = []
  channel.on("shout", (p) => seen.push(p.n))
  const replies = []
  channel.join().receive("ok", (r) => replies.push(r))
  socket.connect()

  await until(() => current() && current().joins(topic).length === 1, "the first join")
  let ws = current()
  let [join] = ws.joins(topic)
  assert.deepEqual(join[4], {name: "a"}, "no since before a position is known")
  reply(ws, join, {recovered: false, epoch: "ep", offset: 7})
  for (const n of [8, 9, 10]) shout(ws, topic, n)
  // A push to this join and a reply to another push are not broadcasts.
  ws.deliver([join[0], null, topic, "pushed", {}])
  assert.deepEqual(cursor.position(), {epoch: "ep", offset: 10})

  ws.drop(1006)
  await until(() => FakeWS.all.length === 2 && current().joins(topic).length === 1, "the rejoin")
  ws = current()
  ;[join] = ws.joins(topic)
  assert.deepEqual(join[4], {name: "a", since: {epoch: "ep", offset: 10}})
  reply(ws, join, {recovered: true, epoch: "ep", offset: 12})
  for (const n of [11, 12, 13]) shout(ws, topic, n)
  assert.deepEqual(cursor.position(), {epoch: "ep", offset: 13})
  assert.deepEqual(seen, [8, 9, 10, 11, 12, 13])
  assert.equal(replies.length, 2, "the app's receive(\"ok\") hook runs on the rejoin too")
  assert.equal(replies[1].recovered, true)
  socket.disconnect()
})

test("an onMessage hook the app set before is still called", async () => {
  const socket = mkSocket()
  const channel = socket.channel("history:u", {})
  const hooked = []
  channel.onMessage = (event, payload) => {
    hooked.push(event)
    return payload
  }
  assert.equal(new HistoryCursor().attach(channel), channel)
  channel.trigger("shout", {n: 1}, null, null)
  assert.deepEqual(hooked, ["shout"])
})
