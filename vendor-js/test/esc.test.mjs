// Node self-check of video.js's DOM-free parts: formatTime, escaping, the
// scheduling filter and the rejoin params. Browser behaviour (rendering,
// the player) is left to the browser tests in compat-tests.
import {test} from "node:test"
import assert from "node:assert/strict"
import {Socket} from "phoenix"

import Video from "../js/video.js"
import {formatTime, escapeHtml, escapeQuotes, mutableParams} from "../js/helpers.js"

const XSS = "<img src=x onerror=alert(1)>"

test("formatTime turns milliseconds into mm:ss as the book does", () => {
  assert.equal(formatTime(0), "00:00")
  assert.equal(formatTime(999), "00:00")
  assert.equal(formatTime(1500), "00:01")
  assert.equal(formatTime(65000), "01:05")
  assert.equal(formatTime(599999), "09:59")
  assert.equal(formatTime(59 * 60000 + 59000), "59:59")
  assert.equal(formatTime(3600000), "00:00", "wraps at an hour, like the book's ISO slice")
  assert.equal(Video.formatTime(65000), "01:05")
})

test("formatTime shows 00:00 instead of throwing on a non-number", () => {
  assert.equal(formatTime(undefined), "00:00")
  assert.equal(formatTime("abc"), "00:00")
  assert.equal(formatTime(NaN), "00:00")
})

test("escapeHtml renders markup as text", () => {
  assert.equal(escapeHtml(XSS), "&lt;img src=x onerror=alert(1)&gt;")
  assert.equal(escapeHtml("Tom & Jerry"), "Tom &amp; Jerry")
  assert.equal(escapeHtml(`" onmouseover="alert(1)`), "&quot; onmouseover=&quot;alert(1)")
  assert.equal(escapeHtml("it's"), "it&#39;s")
  assert.equal(escapeHtml(1500), "1500")
  assert.equal(escapeHtml("a\u00a0b"), "a&nbsp;b", "as a text node's innerHTML")
  assert.equal(escapeHtml("plain text"), "plain text")
})

test("Video.esc without a DOM is escapeHtml", () => {
  assert.equal(typeof document, "undefined")
  assert.equal(Video.esc(XSS), "&lt;img src=x onerror=alert(1)&gt;")
  assert.equal(Video.esc(`"><b>`), "&quot;&gt;&lt;b&gt;")
})

test("escapeQuotes on a text node's innerHTML gives escapeHtml's result", () => {
  // What the browser's innerHTML yields for a text node: & < > and nbsp only.
  let textNodeInnerHTML = s => s.replace(/&/g, "&amp;").replace(/</g, "&lt;")
    .replace(/>/g, "&gt;").replace(/\u00a0/g, "&nbsp;")
  for(let s of [XSS, `a"b'c`, "x & y", `"><img src=x onerror=alert(1)>`]){
    assert.equal(escapeQuotes(textNodeInnerHTML(s)), escapeHtml(s))
  }
})

test("renderAtTime renders what is due (at <= player time) and keeps the rest", () => {
  let rendered = []
  let video = Object.create(Video)
  video.renderAnnotation = (_container, ann) => rendered.push(ann.id)
  let anns = [{id: 1, at: 0}, {id: 2, at: 1000}, {id: 3, at: 1001}, {id: 4, at: 5000}]

  let remaining = video.renderAtTime(anns, 1000, null)
  assert.deepEqual(rendered, [1, 2])
  assert.deepEqual(remaining.map(a => a.id), [3, 4])

  remaining = video.renderAtTime(remaining, 5000, null)
  assert.deepEqual(rendered, [1, 2, 3, 4])
  assert.deepEqual(remaining, [])
})

test("mutableParams: properties set on it are what it returns", () => {
  let params = mutableParams()
  assert.deepEqual(params(), {})
  params.last_seen_id = 7
  assert.deepEqual(params(), {last_seen_id: 7})
  params.last_seen_id = 9
  assert.deepEqual(params(), {last_seen_id: 9})
  assert.deepEqual(mutableParams({a: 1})(), {a: 1})
})

test("the book's vidChannel.params.last_seen_id reaches phoenix 1.8's join payload", () => {
  let socket = new Socket("/socket", {params: {token: "t"}})
  let vidChannel = socket.channel("videos:1", mutableParams())
  assert.deepEqual(vidChannel.joinPush.payload(), {})

  vidChannel.params.last_seen_id = Math.max(...[3, 12, 5])
  assert.deepEqual(vidChannel.joinPush.payload(), {last_seen_id: 12})

  vidChannel.params.last_seen_id = 13   // a new_annotation broadcast
  assert.deepEqual(vidChannel.joinPush.payload(), {last_seen_id: 13})

  // With a plain object (the book's Phoenix 1.2 way) the id would be lost:
  let plain = socket.channel("videos:1", {})
  plain.params.last_seen_id = 13
  assert.deepEqual(plain.joinPush.payload(), {})
})
