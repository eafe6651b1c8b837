//! Limits on decoded client messages.
//!
//! Every client frame, whatever its transport (WebSocket, LongPoll POST) and serializer (V1
//! JSON, V2 JSON, V2 binary), is decoded in one place, the session's `handle_frame`, which
//! calls [`check_client_message`] on the result; a V2 binary frame's one-byte lengths keep its
//! fields under the limit already, and the check runs on it all the same. Nesting is bounded
//! by the decoders themselves (serde_json's 128-level recursion limit).

use serde_json::Value;

use crate::message::Message;

/// Longest topic, event, ref or join_ref. Not the V2 binary frames' 255 (Phoenix accepts
/// longer fields in text frames, and the conformance suite checks a 256-byte topic works), but
/// small enough that 100 channels' worth of them is nothing next to a socket's other bounds.
pub const MAX_FIELD_BYTES: usize = 1024;

/// Why a decoded client message breaks a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A field is longer than [`MAX_FIELD_BYTES`].
    #[error("{field} is {len} bytes (max {MAX_FIELD_BYTES})")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A ref or join_ref that is not a string, an integer or null.
    #[error("{0} must be a string, an integer or null")]
    BadRef(&'static str),
}

fn check_ref(field: &'static str, v: &Value) -> Result<(), LimitError> {
    match v {
        Value::Null => Ok(()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
        Value::String(s) if s.len() <= MAX_FIELD_BYTES => Ok(()),
        Value::String(s) => Err(LimitError::TooLong {
            field,
            len: s.len(),
        }),
        _ => Err(LimitError::BadRef(field)),
    }
}

/// Checks a decoded client message against the field limits.
pub fn check_client_message(msg: &Message) -> Result<(), LimitError> {
    for (field, s) in [("topic", &msg.topic), ("event", &msg.event)] {
        if s.len() > MAX_FIELD_BYTES {
            return Err(LimitError::TooLong {
                field,
                len: s.len(),
            });
        }
    }
    check_ref("ref", &msg.ref_)?;
    check_ref("join_ref", &msg.join_ref)
}
