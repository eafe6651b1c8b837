//! V1 JSON text frames (spec §2.5): objects in, objects out, no join_ref on output, no binary.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::v2::{write_reply_payload, StrField};
use super::DecodeError;
use crate::json::{size_hint, write_str, write_value, Body};
use crate::message::{Message, Payload};

/// Decodes `{"topic":..,"event":..,"payload":..,"ref":..[,"join_ref":..]}`.
///
/// Unknown keys are ignored and a repeated key keeps its last value, as with Phoenix's decoder.
/// A missing `join_ref` is null.
pub(super) fn decode(text: &str) -> Result<Message, DecodeError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let outcome = de
        .deserialize_map(ObjectVisitor)
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => DecodeError::Shape("expected a JSON object"),
            _ => DecodeError::Json(e.to_string()),
        })?;
    de.end().map_err(|e| DecodeError::Json(e.to_string()))?;
    outcome.map_err(DecodeError::Shape)
}

/// The keys a V1 message may carry; everything else is skipped without building a value.
enum Key {
    Topic,
    Event,
    Payload,
    Ref,
    JoinRef,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "topic" => Key::Topic,
                    "event" => Key::Event,
                    "payload" => Key::Payload,
                    "ref" => Key::Ref,
                    "join_ref" => Key::JoinRef,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Result<Message, &'static str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with topic, event, payload and ref")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut topic: Option<Option<String>> = None;
        let mut event: Option<Option<String>> = None;
        let mut payload: Option<Value> = None;
        let mut ref_: Option<Value> = None;
        let mut join_ref: Option<Value> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Topic => topic = Some(map.next_value_seed(StrField)?),
                Key::Event => event = Some(map.next_value_seed(StrField)?),
                Key::Payload => payload = Some(map.next_value()?),
                Key::Ref => ref_ = Some(map.next_value()?),
                Key::JoinRef => join_ref = Some(map.next_value()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let Some(topic) = topic else {
            return Ok(Err("V1 message is missing \"topic\""));
        };
        let Some(event) = event else {
            return Ok(Err("V1 message is missing \"event\""));
        };
        let Some(payload) = payload else {
            return Ok(Err("V1 message is missing \"payload\""));
        };
        let Some(ref_) = ref_ else {
            return Ok(Err("V1 message is missing \"ref\""));
        };
        let Some(topic) = topic else {
            return Ok(Err("topic must be a string"));
        };
        let Some(event) = event else {
            return Ok(Err("event must be a string"));
        };
        Ok(Ok(Message {
            join_ref: join_ref.unwrap_or(Value::Null),
            ref_,
            topic,
            event,
            payload: Payload::Json(payload),
        }))
    }
}

const ENVELOPE: usize = 48;

/// `{"event":"..","payload":..,"ref":..,"topic":".."}`: the keys in alphabetical order, no join_ref.
pub(super) fn encode(ref_: &Value, topic: &str, event: &str, payload: Body<'_>) -> Bytes {
    let cap = ENVELOPE + size_hint(ref_) + topic.len() + event.len() + payload.size_hint();
    let mut out = Vec::with_capacity(cap);
    out.extend_from_slice(b"{\"event\":");
    write_str(&mut out, event);
    out.extend_from_slice(b",\"payload\":");
    payload.write(&mut out);
    out.extend_from_slice(b",\"ref\":");
    write_value(&mut out, ref_);
    out.extend_from_slice(b",\"topic\":");
    write_str(&mut out, topic);
    out.push(b'}');
    Bytes::from(out)
}

/// A V1 reply: event `phx_reply`, payload `{"response":..,"status":..}`.
pub(super) fn encode_reply(ref_: &Value, topic: &str, status: &str, response: &Value) -> Bytes {
    let cap = ENVELOPE + 48 + size_hint(ref_) + topic.len() + status.len() + size_hint(response);
    let mut out = Vec::with_capacity(cap);
    out.extend_from_slice(b"{\"event\":\"phx_reply\",\"payload\":");
    write_reply_payload(&mut out, status, response);
    out.extend_from_slice(b",\"ref\":");
    write_value(&mut out, ref_);
    out.extend_from_slice(b",\"topic\":");
    write_str(&mut out, topic);
    out.push(b'}');
    Bytes::from(out)
}

/// The client's V1 object, with `join_ref` (alphabetical like the rest).
pub(super) fn encode_client(msg: &Message, payload: &Value) -> Bytes {
    let cap = ENVELOPE
        + 16
        + size_hint(&msg.join_ref)
        + size_hint(&msg.ref_)
        + msg.topic.len()
        + msg.event.len()
        + size_hint(payload);
    let mut out = Vec::with_capacity(cap);
    out.extend_from_slice(b"{\"event\":");
    write_str(&mut out, &msg.event);
    out.extend_from_slice(b",\"join_ref\":");
    write_value(&mut out, &msg.join_ref);
    out.extend_from_slice(b",\"payload\":");
    write_value(&mut out, payload);
    out.extend_from_slice(b",\"ref\":");
    write_value(&mut out, &msg.ref_);
    out.extend_from_slice(b",\"topic\":");
    write_str(&mut out, &msg.topic);
    out.push(b'}');
    Bytes::from(out)
}
