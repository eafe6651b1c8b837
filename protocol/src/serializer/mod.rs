//! Serializers (spec §2.2–§2.5) and `vsn` negotiation (§1.3).
//!
//! Incoming frames are decoded into [`Message`]; outgoing shapes ([`Message`] as a push,
//! [`Reply`], [`Broadcast`]) are encoded into a [`Frame`] whose bytes are cheap to clone, so a
//! broadcast is encoded once per serializer and the same bytes are queued to every subscriber.

use bytes::Bytes;

use crate::json::{Body, EncodedObject};
use crate::message::{Broadcast, Message, Payload, Reply};

mod binary;
mod v1;
mod v2;
mod vsn;

/// An encoded frame, ready for the transport. Cloning it is a reference-count bump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame; the bytes are valid UTF-8.
    Text(Bytes),
    /// A binary frame (V2 binary kinds 0/1/2).
    Binary(Bytes),
}

/// A borrowed incoming frame as the transport received it.
#[derive(Debug, Clone, Copy)]
pub enum FrameRef<'a> {
    /// A text frame.
    Text(&'a str),
    /// A binary frame.
    Binary(&'a [u8]),
}

/// The serializer a socket negotiated with `vsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Serializer {
    /// `vsn` absent or `~> 1.0.0`: JSON objects, no join_ref on output, no binary.
    V1,
    /// `~> 2.0.0`: JSON arrays, plus binary frames.
    V2,
}

/// Why a `vsn` was refused (the server answers 403 and never calls connect).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported serializer vsn {0:?}")]
pub struct VsnError(pub String);

/// A decoded server→client frame, for test clients and load generators ([`Serializer::decode_server`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// A push, or any text frame that is not a reply. Text broadcasts are indistinguishable from
    /// pushes with null refs on the wire, so they come back here too.
    Push(Message),
    /// A `phx_reply` (text with a `{"response":..,"status":..}` payload, or binary kind 1).
    Reply(Reply),
    /// A binary broadcast (kind 2).
    Broadcast(Broadcast),
}

/// Why an incoming frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The JSON has the wrong shape (not an array of ≥5, missing V1 key, ...).
    #[error("malformed message: {0}")]
    Shape(&'static str),
    /// A binary frame is truncated or its declared lengths overrun the frame.
    #[error("truncated binary frame")]
    Truncated,
    /// A binary frame with a kind other than 0 (push) from a client.
    #[error("unknown binary frame kind {0}")]
    UnknownKind(u8),
    /// A string field of a binary frame is not UTF-8.
    #[error("binary frame field is not UTF-8")]
    Utf8,
    /// The serializer does not support binary frames (V1).
    #[error("binary frames are not supported by this serializer")]
    BinaryUnsupported,
}

/// Why an outgoing message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A binary frame field (topic, event, refs, status) is longer than 255 bytes.
    #[error("binary frame field {field} is {len} bytes (max 255)")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A ref/join_ref that is not a string or null cannot be written into a binary frame.
    #[error("binary frame ref must be a string or null")]
    BinaryRef,
    /// The serializer does not support binary payloads (V1).
    #[error("binary payloads are not supported by this serializer")]
    BinaryUnsupported,
    /// A binary push (kind 0, server→client) has no ref field, so a push whose ref is not null
    /// cannot be written without silently dropping it.
    #[error("a binary push cannot carry a ref (it must be null)")]
    PushRefNotNull,
}

impl Serializer {
    /// Negotiates a serializer from the `vsn` query parameter with Elixir `~>` semantics (§1.3).
    ///
    /// `None` means the parameter was absent, which Phoenix treats as `"1.0.0"`. `Some("")` is a
    /// present-but-empty vsn and is refused, as Elixir's `Version.parse("")` fails.
    pub fn negotiate(vsn: Option<&str>) -> Result<Serializer, VsnError> {
        vsn::negotiate(vsn)
    }

    /// Decodes an incoming client frame.
    ///
    /// V1 accepts only text frames holding a JSON object; V2 accepts text frames holding a JSON
    /// array of at least five elements, and binary frames of kind 0 (client layout).
    pub fn decode(self, frame: FrameRef<'_>) -> Result<Message, DecodeError> {
        match (self, frame) {
            (Serializer::V1, FrameRef::Text(text)) => v1::decode(text),
            (Serializer::V1, FrameRef::Binary(_)) => Err(DecodeError::BinaryUnsupported),
            (Serializer::V2, FrameRef::Text(text)) => v2::decode(text),
            (Serializer::V2, FrameRef::Binary(bytes)) => binary::decode_client(bytes),
        }
    }

    /// Encodes a server push, or any message with explicit refs (phx_close, phx_error).
    ///
    /// A binary payload becomes a binary kind-0 frame, which has no ref field: its ref must be
    /// null ([`EncodeError::PushRefNotNull`]).
    pub fn encode_push(self, msg: &Message) -> Result<Frame, EncodeError> {
        match (self, &msg.payload) {
            (Serializer::V1, Payload::Json(payload)) => Ok(Frame::Text(v1::encode(
                &msg.ref_,
                &msg.topic,
                &msg.event,
                Body::Value(payload),
            ))),
            (Serializer::V2, Payload::Json(payload)) => Ok(Frame::Text(v2::encode(
                &msg.join_ref,
                &msg.ref_,
                &msg.topic,
                &msg.event,
                Body::Value(payload),
            ))),
            (Serializer::V1, Payload::Binary(_)) => Err(EncodeError::BinaryUnsupported),
            (Serializer::V2, Payload::Binary(data)) => {
                if !msg.ref_.is_null() {
                    return Err(EncodeError::PushRefNotNull);
                }
                binary::encode_push(&msg.join_ref, &msg.topic, &msg.event, data).map(Frame::Binary)
            }
        }
    }

    /// [`Serializer::encode_push`] of a JSON payload encoded already: the frame's bytes are
    /// exactly those `encode_push` writes for the same object, for one copy of `payload`
    /// instead of an encode. Always a text frame (V1 and V2).
    pub fn encode_push_encoded(
        self,
        join_ref: &serde_json::Value,
        ref_: &serde_json::Value,
        topic: &str,
        event: &str,
        payload: &EncodedObject,
    ) -> Frame {
        let body = Body::Encoded(payload);
        Frame::Text(match self {
            Serializer::V1 => v1::encode(ref_, topic, event, body),
            Serializer::V2 => v2::encode(join_ref, ref_, topic, event, body),
        })
    }

    /// Encodes a reply (`phx_reply`, response before status).
    pub fn encode_reply(self, reply: &Reply) -> Result<Frame, EncodeError> {
        match (self, &reply.response) {
            (Serializer::V1, Payload::Json(response)) => Ok(Frame::Text(v1::encode_reply(
                &reply.ref_,
                &reply.topic,
                &reply.status,
                response,
            ))),
            (Serializer::V2, Payload::Json(response)) => Ok(Frame::Text(v2::encode_reply(
                &reply.join_ref,
                &reply.ref_,
                &reply.topic,
                &reply.status,
                response,
            ))),
            (Serializer::V1, Payload::Binary(_)) => Err(EncodeError::BinaryUnsupported),
            (Serializer::V2, Payload::Binary(data)) => binary::encode_reply(
                &reply.join_ref,
                &reply.ref_,
                &reply.topic,
                &reply.status,
                data,
            )
            .map(Frame::Binary),
        }
    }

    /// Encodes a fastlane broadcast once; clone the returned frame for each subscriber.
    pub fn encode_broadcast(self, bcast: &Broadcast) -> Result<Frame, EncodeError> {
        self.encode_broadcast_parts(&bcast.topic, &bcast.event, &bcast.payload)
    }

    /// [`Serializer::encode_broadcast`] from borrowed parts, so a server that keeps the
    /// broadcast in its own type need not copy the payload into a [`Broadcast`] first.
    pub fn encode_broadcast_parts(
        self,
        topic: &str,
        event: &str,
        payload: &Payload,
    ) -> Result<Frame, EncodeError> {
        match (self, payload) {
            (Serializer::V1, Payload::Json(payload)) => Ok(Frame::Text(v1::encode(
                &serde_json::Value::Null,
                topic,
                event,
                Body::Value(payload),
            ))),
            (Serializer::V2, Payload::Json(payload)) => Ok(Frame::Text(v2::encode(
                &serde_json::Value::Null,
                &serde_json::Value::Null,
                topic,
                event,
                Body::Value(payload),
            ))),
            (Serializer::V1, Payload::Binary(_)) => Err(EncodeError::BinaryUnsupported),
            (Serializer::V2, Payload::Binary(data)) => {
                binary::encode_broadcast(topic, event, data).map(Frame::Binary)
            }
        }
    }

    /// Encodes a message the way a *client* sends it, so that `decode(encode_client(m)) == m`.
    ///
    /// Not used by the server; it exists for load generators and round-trip tests. V1 writes an
    /// object with `join_ref` included; V2 text is the same array a push uses; a V2 binary payload
    /// uses the client→server kind-0 layout, which (unlike the server's) carries the ref.
    pub fn encode_client(self, msg: &Message) -> Result<Frame, EncodeError> {
        match (self, &msg.payload) {
            (Serializer::V1, Payload::Json(payload)) => {
                Ok(Frame::Text(v1::encode_client(msg, payload)))
            }
            (Serializer::V1, Payload::Binary(_)) => Err(EncodeError::BinaryUnsupported),
            (Serializer::V2, Payload::Json(_)) => self.encode_push(msg),
            (Serializer::V2, Payload::Binary(data)) => {
                binary::encode_client(&msg.join_ref, &msg.ref_, &msg.topic, &msg.event, data)
                    .map(Frame::Binary)
            }
        }
    }

    /// Decodes a frame the server sent, as a client would (for test clients and load generators).
    ///
    /// Text frames whose event is `phx_reply` and whose payload is `{"response":..,"status":"…"}`
    /// become [`ServerMessage::Reply`]; other text frames are [`ServerMessage::Push`]. Binary kinds
    /// 0/1/2 map to push/reply/broadcast; as in the JS client, an empty binary ref field is the
    /// string `""`, and a binary push has a null ref.
    pub fn decode_server(self, frame: FrameRef<'_>) -> Result<ServerMessage, DecodeError> {
        let msg = match (self, frame) {
            (_, FrameRef::Binary(bytes)) if self == Serializer::V2 => {
                return binary::decode_server(bytes)
            }
            (Serializer::V1, FrameRef::Binary(_)) => return Err(DecodeError::BinaryUnsupported),
            (_, FrameRef::Binary(_)) => return Err(DecodeError::BinaryUnsupported),
            (Serializer::V1, FrameRef::Text(text)) => v1::decode(text)?,
            (Serializer::V2, FrameRef::Text(text)) => v2::decode(text)?,
        };
        Ok(classify_text(msg))
    }
}

/// Turns a decoded text frame into a reply when it has the reply shape.
fn classify_text(msg: Message) -> ServerMessage {
    if msg.event != "phx_reply" {
        return ServerMessage::Push(msg);
    }
    let Message {
        join_ref,
        ref_,
        topic,
        event,
        payload,
    } = msg;
    match payload {
        Payload::Json(serde_json::Value::Object(mut map))
            if map.len() == 2
                && map.get("status").is_some_and(serde_json::Value::is_string)
                && map.contains_key("response") =>
        {
            let status = match map.remove("status") {
                Some(serde_json::Value::String(s)) => s,
                _ => String::new(),
            };
            let response = map.remove("response").unwrap_or(serde_json::Value::Null);
            ServerMessage::Reply(Reply {
                join_ref,
                ref_,
                topic,
                status,
                response: Payload::Json(response),
            })
        }
        payload => ServerMessage::Push(Message {
            join_ref,
            ref_,
            topic,
            event,
            payload,
        }),
    }
}
