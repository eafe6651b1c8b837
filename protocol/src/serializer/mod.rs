//! Serializers (spec §2.2–§2.5) and `vsn` negotiation (§1.3).
//!
//! Incoming frames are decoded into [`Message`]; outgoing shapes ([`Message`] as a push,
//! [`Reply`], [`Broadcast`]) are encoded into a [`Frame`] whose bytes are cheap to clone, so a
//! broadcast is encoded once per serializer and the same bytes are queued to every subscriber.

use bytes::Bytes;

use crate::message::{Broadcast, Message, Reply};

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
}

impl Serializer {
    /// Negotiates a serializer from the `vsn` query parameter with Elixir `~>` semantics.
    pub fn negotiate(vsn: Option<&str>) -> Result<Serializer, VsnError> {
        let _ = vsn;
        todo!()
    }

    /// Decodes an incoming client frame.
    pub fn decode(self, frame: FrameRef<'_>) -> Result<Message, DecodeError> {
        let _ = frame;
        todo!()
    }

    /// Encodes a server push, or any message with explicit refs (phx_close, phx_error).
    pub fn encode_push(self, msg: &Message) -> Result<Frame, EncodeError> {
        let _ = msg;
        todo!()
    }

    /// Encodes a reply (`phx_reply`, response before status).
    pub fn encode_reply(self, reply: &Reply) -> Result<Frame, EncodeError> {
        let _ = reply;
        todo!()
    }

    /// Encodes a fastlane broadcast once; clone the returned frame for each subscriber.
    pub fn encode_broadcast(self, bcast: &Broadcast) -> Result<Frame, EncodeError> {
        let _ = bcast;
        todo!()
    }
}
