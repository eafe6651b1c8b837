// Message history for the unmodified `phoenix` client (phx-server, docs/history.md).
//
// A phx-server channel route declared with history answers every join with its position —
// `{recovered, epoch, offset}` merged into the join reply — and, when a join's params carry
// `since: {epoch, offset}`, pushes every broadcast the client missed after the reply. The
// broadcast frames carry no stamp (they are exactly what a channel without history sends), so
// the client knows where it is by counting: offsets are consecutive and every subscriber gets
// a topic's broadcasts in offset order. This helper keeps that count for one channel and hands
// it back through a join params *function*, which phoenix.js evaluates again on every rejoin.
//
// Apps that do not use it see exactly today's behaviour; against a server without history
// (real Phoenix) the join reply has no `epoch`, no cursor is ever kept and no `since` is sent.
//
//   import {withHistory} from "./history.js"
//   const {channel, cursor} = withHistory(socket, "room:42", {token})
//   channel.on("new_msg", render)
//   channel.join().receive("ok", reply => { if (!reply.recovered) refetchEverything() })
//
// `receive("ok")` hooks on the join push run on every rejoin too: `recovered: false` after a
// reconnect means "something may be missing" (trimmed, server restarted): refetch, as Rumbl's
// `last_seen_id` client would. Counting assumes every broadcast of the topic reaches this
// channel once: on the server, `broadcast_from` (the sender skips its own) and an intercepting
// `handle_out` that drops messages break it.

/**
 * Whether a message the channel's `onMessage` hook sees is one of the topic's broadcasts:
 * not a reply (`phx_reply`, or phoenix.js's internal `chan_reply_<ref>`), not a lifecycle event
 * (`phx_close`, `phx_error`), and not a push to this join (those carry its join_ref).
 * @param {string} event
 * @param {?string} joinRef
 */
export function isBroadcast(event, joinRef) {
  return joinRef == null && !event.startsWith("phx_") && !event.startsWith("chan_reply_")
}

/** One channel's position in its topic's history. */
export class HistoryCursor {
  constructor() {
    /** The topic's epoch as of the last join reply; null before one (or without history). */
    this.epoch = null
    /** The offset of the last broadcast received. */
    this.offset = 0
    /** Whether the last join was recovered; null before a join reply with a position. */
    this.recovered = null
    /** The `since` the pending join sent (null: none). */
    this.sent = null
  }

  /**
   * Join params for phoenix.js: `base` (an object or a function returning one) plus `since`
   * once a position is known. Evaluated by phoenix.js on every join and rejoin.
   * @param {Object|Function} base
   */
  params(base = {}) {
    return () => {
      const params = typeof base === "function" ? base() : base
      this.sent = this.epoch === null ? null : {epoch: this.epoch, offset: this.offset}
      return this.sent ? {...params, since: this.sent} : {...params}
    }
  }

  /**
   * A join reply: after a recovered join the missed broadcasts follow, so the position is
   * the `since` that was sent; otherwise it is the reply's `offset`.
   * @param {Object} reply
   */
  joined(reply) {
    if (!reply || typeof reply.epoch !== "string" || !Number.isSafeInteger(reply.offset)) {
      this.epoch = null
      this.offset = 0
      this.recovered = null
      return
    }
    const recovered = reply.recovered === true && this.sent !== null && this.sent.epoch === reply.epoch
    this.epoch = reply.epoch
    this.offset = recovered ? this.sent.offset : reply.offset
    this.recovered = recovered
  }

  /** One broadcast received. */
  received() {
    if (this.epoch !== null) this.offset += 1
  }

  /** `{epoch, offset}`, or null before the first join reply with a position. */
  position() {
    return this.epoch === null ? null : {epoch: this.epoch, offset: this.offset}
  }

  /**
   * Keeps this cursor for `channel` (made with `this.params(...)` as its params): updates it
   * on every join reply and counts the topic's broadcasts through the channel's overridable
   * `onMessage` hook (an `onMessage` already set is kept and called after). Returns `channel`.
   */
  attach(channel) {
    channel.joinPush.receive("ok", (reply) => this.joined(reply))
    const previous = channel.onMessage.bind(channel)
    channel.onMessage = (event, payload, ref, joinRef) => {
      if (isBroadcast(event, joinRef)) this.received()
      return previous(event, payload, ref, joinRef)
    }
    return channel
  }
}

/**
 * `socket.channel(topic, params)` with a history cursor kept for it: returns
 * `{channel, cursor}`; join it as usual.
 * @param {import("phoenix").Socket} socket
 * @param {string} topic
 * @param {Object|Function} params
 */
export function withHistory(socket, topic, params = {}) {
  const cursor = new HistoryCursor()
  const channel = cursor.attach(socket.channel(topic, cursor.params(params)))
  return {channel, cursor}
}
