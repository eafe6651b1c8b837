//! V2 JSON text frames (spec §2.2): `[join_ref, ref, topic, event, payload]`.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;

use super::DecodeError;
use crate::json::{size_hint, write_str, write_value, Body};
use crate::message::{Message, Payload};

/// Decodes a V2 text frame straight from the borrowed text into a [`Message`].
///
/// A hand-written visitor (instead of `Vec<Value>`) keeps the five fields without an intermediate
/// array, ignores extra trailing elements as Phoenix does, and reports "too short" and
/// "topic is not a string" as [`DecodeError::Shape`] rather than a parser error.
pub(super) fn decode(text: &str) -> Result<Message, DecodeError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let outcome = de.deserialize_seq(FrameVisitor).map_err(map_err)?;
    de.end().map_err(|e| DecodeError::Json(e.to_string()))?;
    outcome.map_err(DecodeError::Shape)
}

/// serde_json "data" errors (wrong JSON type at the top level) are shape errors; the rest
/// (syntax, EOF, recursion limit) are JSON errors.
fn map_err(e: serde_json::Error) -> DecodeError {
    match e.classify() {
        serde_json::error::Category::Data => {
            DecodeError::Shape("expected a JSON array [join_ref, ref, topic, event, payload]")
        }
        _ => DecodeError::Json(e.to_string()),
    }
}

struct FrameVisitor;

const TOO_SHORT: &str = "V2 frame has fewer than 5 elements";

impl<'de> Visitor<'de> for FrameVisitor {
    type Value = Result<Message, &'static str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array [join_ref, ref, topic, event, payload]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let Some(join_ref) = seq.next_element::<Value>()? else {
            return Ok(Err(TOO_SHORT));
        };
        let Some(ref_) = seq.next_element::<Value>()? else {
            return Ok(Err(TOO_SHORT));
        };
        let Some(topic) = seq.next_element_seed(StrField)? else {
            return Ok(Err(TOO_SHORT));
        };
        let Some(event) = seq.next_element_seed(StrField)? else {
            return Ok(Err(TOO_SHORT));
        };
        let Some(payload) = seq.next_element::<Value>()? else {
            return Ok(Err(TOO_SHORT));
        };
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        let Some(topic) = topic else {
            return Ok(Err("topic must be a string"));
        };
        let Some(event) = event else {
            return Ok(Err("event must be a string"));
        };
        Ok(Ok(Message {
            join_ref,
            ref_,
            topic,
            event,
            payload: Payload::Json(payload),
        }))
    }
}

/// Deserializes a string field, yielding `None` (after skipping it) for any other JSON type, so
/// that a wrong type becomes a shape error instead of aborting the parse.
pub(super) struct StrField;

impl<'de> DeserializeSeed<'de> for StrField {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(StrFieldVisitor)
    }
}

struct StrFieldVisitor;

impl<'de> Visitor<'de> for StrFieldVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// Fixed bytes around the fields: brackets, commas and quotes.
const ENVELOPE: usize = 16;

/// `[join_ref,ref,"topic","event",payload]`
pub(super) fn encode(
    join_ref: &Value,
    ref_: &Value,
    topic: &str,
    event: &str,
    payload: Body<'_>,
) -> Bytes {
    let cap = ENVELOPE
        + size_hint(join_ref)
        + size_hint(ref_)
        + topic.len()
        + event.len()
        + payload.size_hint();
    let mut out = Vec::with_capacity(cap);
    out.push(b'[');
    write_value(&mut out, join_ref);
    out.push(b',');
    write_value(&mut out, ref_);
    out.push(b',');
    write_str(&mut out, topic);
    out.push(b',');
    write_str(&mut out, event);
    out.push(b',');
    payload.write(&mut out);
    out.push(b']');
    Bytes::from(out)
}

/// `[join_ref,ref,"topic","phx_reply",{"response":..,"status":".."}]`
pub(super) fn encode_reply(
    join_ref: &Value,
    ref_: &Value,
    topic: &str,
    status: &str,
    response: &Value,
) -> Bytes {
    let cap = ENVELOPE
        + 48
        + size_hint(join_ref)
        + size_hint(ref_)
        + topic.len()
        + status.len()
        + size_hint(response);
    let mut out = Vec::with_capacity(cap);
    out.push(b'[');
    write_value(&mut out, join_ref);
    out.push(b',');
    write_value(&mut out, ref_);
    out.push(b',');
    write_str(&mut out, topic);
    out.extend_from_slice(b",\"phx_reply\",");
    write_reply_payload(&mut out, status, response);
    out.push(b']');
    Bytes::from(out)
}

/// `{"response":..,"status":".."}`: response first, because Erlang orders the atom keys
/// alphabetically.
pub(super) fn write_reply_payload(out: &mut Vec<u8>, status: &str, response: &Value) {
    out.extend_from_slice(b"{\"response\":");
    write_value(out, response);
    out.extend_from_slice(b",\"status\":");
    write_str(out, status);
    out.push(b'}');
}
