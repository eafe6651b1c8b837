//! The message model of spec §2.1.
//!
//! Refs are kept as opaque JSON values because the server must echo them verbatim: the JS client
//! sends decimal strings, other clients may send numbers or null, and join_refs are compared with
//! strict equality (`"3"` is not `3`).

use bytes::Bytes;
use serde_json::Value;

/// A message payload: any JSON value, or raw bytes (V2 binary frames, Elixir's `{:binary, b}`).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A JSON value. Incoming payloads may be any JSON value; outgoing ones are maps by convention.
    Json(Value),
    /// Raw bytes, carried by a V2 binary frame.
    Binary(Bytes),
}

impl Payload {
    /// The empty map `{}`, the payload of most control frames.
    pub fn empty() -> Self {
        Payload::Json(Value::Object(serde_json::Map::new()))
    }
}

impl From<Value> for Payload {
    fn from(v: Value) -> Self {
        Payload::Json(v)
    }
}

/// A message in either direction: `[join_ref, ref, topic, event, payload]`.
///
/// Server pushes have `ref = null`; `phx_close`/`phx_error` reuse the join_ref as their ref.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The join_ref, echoed verbatim (string, number or null).
    pub join_ref: Value,
    /// The ref, echoed verbatim (string, number or null).
    pub ref_: Value,
    /// The topic, e.g. `room:lobby`.
    pub topic: String,
    /// The event, e.g. `phx_join`.
    pub event: String,
    /// The payload.
    pub payload: Payload,
}

/// A reply to a client message: event `phx_reply`, payload `{"response": .., "status": ..}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The join_ref to put on the reply (null for heartbeat and unmatched-topic replies).
    pub join_ref: Value,
    /// The ref of the message being answered.
    pub ref_: Value,
    /// The topic.
    pub topic: String,
    /// The status atom as a string, conventionally `ok` or `error`.
    pub status: String,
    /// The response: a JSON value (a map by convention) or binary.
    pub response: Payload,
}

/// A fastlane broadcast: `[null, null, topic, event, payload]`, or binary kind 2.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    /// The topic.
    pub topic: String,
    /// The event.
    pub event: String,
    /// The payload.
    pub payload: Payload,
}
