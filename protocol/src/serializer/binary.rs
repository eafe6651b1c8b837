//! V2 binary frames (spec §2.3).
//!
//! The layouts are asymmetric: a client push (kind 0) carries a ref, a server push (kind 0) does
//! not; kinds 1 (reply) and 2 (broadcast) only travel server→client. Every string field has a
//! one-byte length, so 255 bytes is a hard limit, and the payload runs to the end of the frame.

use bytes::Bytes;
use serde_json::Value;

use super::{DecodeError, EncodeError, ServerMessage};
use crate::message::{Broadcast, Message, Payload, Reply};

const KIND_PUSH: u8 = 0;
const KIND_REPLY: u8 = 1;
const KIND_BROADCAST: u8 = 2;

/// A field's bytes if it fits the one-byte length.
fn field<'a>(name: &'static str, s: &'a str) -> Result<&'a [u8], EncodeError> {
    if s.len() > 255 {
        return Err(EncodeError::FieldTooLong {
            field: name,
            len: s.len(),
        });
    }
    Ok(s.as_bytes())
}

/// A ref as binary-frame text: null is `""` (length 0), strings are themselves. Numbers cannot be
/// written because the frame has no way to say "this was a number".
fn ref_field<'a>(name: &'static str, v: &'a Value) -> Result<&'a [u8], EncodeError> {
    match v {
        Value::Null => Ok(b""),
        Value::String(s) => field(name, s),
        _ => Err(EncodeError::BinaryRef),
    }
}

/// Writes `kind`, one length byte per field, the fields, then the payload, into one exact-size
/// buffer. Callers have already checked every field is ≤255 bytes.
fn assemble(kind: u8, fields: &[&[u8]], payload: &[u8]) -> Bytes {
    let len = 1 + fields.len() + fields.iter().map(|f| f.len()).sum::<usize>() + payload.len();
    let mut out = Vec::with_capacity(len);
    out.push(kind);
    for f in fields {
        // Lossless: `field`/`ref_field` refused anything over 255.
        out.push(u8::try_from(f.len()).unwrap_or(u8::MAX));
    }
    for f in fields {
        out.extend_from_slice(f);
    }
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Server push, kind 0: `0, join_ref_len, topic_len, event_len, join_ref, topic, event, payload`.
pub(super) fn encode_push(
    join_ref: &Value,
    topic: &str,
    event: &str,
    data: &[u8],
) -> Result<Bytes, EncodeError> {
    let jr = ref_field("join_ref", join_ref)?;
    let t = field("topic", topic)?;
    let e = field("event", event)?;
    Ok(assemble(KIND_PUSH, &[jr, t, e], data))
}

/// Reply, kind 1: `1, join_ref_len, ref_len, topic_len, status_len, join_ref, ref, topic, status, payload`.
pub(super) fn encode_reply(
    join_ref: &Value,
    ref_: &Value,
    topic: &str,
    status: &str,
    data: &[u8],
) -> Result<Bytes, EncodeError> {
    let jr = ref_field("join_ref", join_ref)?;
    let r = ref_field("ref", ref_)?;
    let t = field("topic", topic)?;
    let s = field("status", status)?;
    Ok(assemble(KIND_REPLY, &[jr, r, t, s], data))
}

/// Broadcast, kind 2: `2, topic_len, event_len, topic, event, payload`.
pub(super) fn encode_broadcast(
    topic: &str,
    event: &str,
    data: &[u8],
) -> Result<Bytes, EncodeError> {
    let t = field("topic", topic)?;
    let e = field("event", event)?;
    Ok(assemble(KIND_BROADCAST, &[t, e], data))
}

/// Client push, kind 0 with the ref: `0, join_ref_len, ref_len, topic_len, event_len, ...`.
pub(super) fn encode_client(
    join_ref: &Value,
    ref_: &Value,
    topic: &str,
    event: &str,
    data: &[u8],
) -> Result<Bytes, EncodeError> {
    let jr = ref_field("join_ref", join_ref)?;
    let r = ref_field("ref", ref_)?;
    let t = field("topic", topic)?;
    let e = field("event", event)?;
    Ok(assemble(KIND_PUSH, &[jr, r, t, e], data))
}

/// A cursor over a frame: reads the length header, then the fields it declares.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn header<const N: usize>(&mut self) -> Result<[usize; N], DecodeError> {
        let end = self.pos + N;
        let head = self
            .bytes
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated)?;
        self.pos = end;
        let mut lens = [0usize; N];
        for (l, b) in lens.iter_mut().zip(head) {
            *l = usize::from(*b);
        }
        Ok(lens)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos + len;
        let s = self
            .bytes
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn text(&mut self, len: usize) -> Result<String, DecodeError> {
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Utf8)
    }

    fn rest(&self) -> Bytes {
        Bytes::copy_from_slice(self.bytes.get(self.pos..).unwrap_or_default())
    }
}

/// Decodes a client frame. Only kind 0 is valid from a client; an empty join_ref or ref field is
/// kept as the string `""`, as Phoenix keeps the empty binary (it does not become nil).
pub(super) fn decode_client(bytes: &[u8]) -> Result<Message, DecodeError> {
    let (&kind, _) = bytes.split_first().ok_or(DecodeError::Truncated)?;
    if kind != KIND_PUSH {
        return Err(DecodeError::UnknownKind(kind));
    }
    let mut r = Reader { bytes, pos: 1 };
    let [jr, rf, t, e] = r.header::<4>()?;
    let join_ref = r.text(jr)?;
    let ref_ = r.text(rf)?;
    let topic = r.text(t)?;
    let event = r.text(e)?;
    Ok(Message {
        join_ref: Value::String(join_ref),
        ref_: Value::String(ref_),
        topic,
        event,
        payload: Payload::Binary(r.rest()),
    })
}

/// Decodes a server frame the way the JS client does (§2.3).
pub(super) fn decode_server(bytes: &[u8]) -> Result<ServerMessage, DecodeError> {
    let (&kind, _) = bytes.split_first().ok_or(DecodeError::Truncated)?;
    let mut r = Reader { bytes, pos: 1 };
    match kind {
        KIND_PUSH => {
            let [jr, t, e] = r.header::<3>()?;
            let join_ref = r.text(jr)?;
            let topic = r.text(t)?;
            let event = r.text(e)?;
            Ok(ServerMessage::Push(Message {
                join_ref: Value::String(join_ref),
                ref_: Value::Null,
                topic,
                event,
                payload: Payload::Binary(r.rest()),
            }))
        }
        KIND_REPLY => {
            let [jr, rf, t, s] = r.header::<4>()?;
            let join_ref = r.text(jr)?;
            let ref_ = r.text(rf)?;
            let topic = r.text(t)?;
            let status = r.text(s)?;
            Ok(ServerMessage::Reply(Reply {
                join_ref: Value::String(join_ref),
                ref_: Value::String(ref_),
                topic,
                status,
                response: Payload::Binary(r.rest()),
            }))
        }
        KIND_BROADCAST => {
            let [t, e] = r.header::<2>()?;
            let topic = r.text(t)?;
            let event = r.text(e)?;
            Ok(ServerMessage::Broadcast(Broadcast {
                topic,
                event,
                payload: Payload::Binary(r.rest()),
            }))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}
