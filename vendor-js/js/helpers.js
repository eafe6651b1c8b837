// Pure helpers used by video.js and player.js. Nothing in this file touches
// the DOM, so `npm test` can import it (and video.js) under plain Node.

// The book's formatTime: milliseconds → "mm:ss" by way of `new Date(null)`
// (the epoch) and the minutes:seconds slice of its ISO string. Like the book,
// it wraps past one hour. The only addition is the guard: the book's version
// throws a RangeError from toISOString() when `at` is not a number, which
// would abort renderAnnotation; here such values show as "00:00".
export function formatTime(at){
  let date = new Date(null)
  date.setSeconds(at / 1000)
  if(isNaN(date.getTime())){ return "00:00" }
  return date.toISOString().slice(14, 19)
}

// What the book's esc() produces (a text node's innerHTML: & < > and U+00A0
// escaped), plus the two quote characters. esc() output is placed inside an
// attribute as well (`data-seek="${esc(at)}"`), where an unescaped `"` would
// let a crafted `at` add attributes to the <a>; escaping quotes in text
// changes nothing a reader sees.
const ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;", "\u00a0": "&nbsp;"}

export function escapeHtml(str){
  return String(str).replace(/[&<>"'\u00a0]/g, ch => ENTITIES[ch])
}

// Only the quote part, applied after the DOM-based esc() in video.js.
export function escapeQuotes(html){
  return html.replace(/"/g, "&quot;").replace(/'/g, "&#39;")
}

// Channel join params that the book's code can mutate in place.
//
// The book (Phoenix 1.2) writes `vidChannel.params.last_seen_id = resp.id`.
// Since phoenix.js 1.3 a channel keeps its params wrapped in a closure that
// is called on every (re)join, so `vidChannel.params` is a function and a
// property set on it would never be sent. Passing this function as the
// params makes the book's line work as written: the function returns, at
// each (re)join, a copy of the properties that were set on it.
export function mutableParams(initial = {}){
  let params = function(){ return Object.assign({}, params) }
  Object.assign(params, initial)
  return params
}
