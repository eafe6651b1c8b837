// Node check of the watch page's status line texts (socket_status.js); the
// wiring to a live socket is driven in Chromium by compat-tests/browser.
import {test} from "node:test"
import assert from "node:assert/strict"

import {statusText} from "../js/socket_status.js"

test("a refused socket shows the server's reason, not a silent page", () => {
  const why = "the server refuses sockets from pages at http://127.0.0.1:4000: ..."
  assert.equal(statusText("failed", why, 1), "Socket: refused — " + why)
})

test("a failure the server did not predict says so and that it retries", () => {
  assert.match(statusText("failed", "", 1), /cannot connect \(1 attempt\), retrying/)
  assert.match(statusText("failed", "", 3), /\(3 attempts\)/)
})

test("the other states", () => {
  assert.equal(statusText("connecting", ""), "Socket: connecting…")
  assert.equal(statusText("connected", "anything"), "Socket: connected")
  assert.match(statusText("reconnecting", ""), /reconnecting/)
  assert.match(statusText("join-error", "", "unauthorized"), /joining the video was refused: unauthorized/)
})
