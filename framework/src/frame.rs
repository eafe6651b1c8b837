//! The frames a socket sends, in the project's own types: what the session and channels queue,
//! independent of the transport that writes them. The WebSocket transport turns them into
//! tungstenite frames and LongPoll into a JSON poll body, each at its own edge, without
//! copying or validating the bytes again.

use bytes::Bytes;
use bytestring::ByteString;
use phx_protocol::Frame;

/// The text of a text frame: UTF-8 checked once, when the frame is encoded, and then shared
/// (a reference-count bump per subscriber).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(ByteString);

impl Text {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The encoded bytes (for a transport writing them as they are).
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Bytes> for Text {
    type Error = std::str::Utf8Error;
    fn try_from(b: Bytes) -> Result<Text, Self::Error> {
        ByteString::try_from(b).map(Text)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(ByteString::from(s))
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text(ByteString::from_static(s))
    }
}

/// An encoded frame as the transport writes it. Cloning is a reference-count bump, so one
/// encoded broadcast serves every subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutFrame {
    /// A text frame (V1/V2 JSON).
    Text(Text),
    /// A binary frame (V2 binary kinds 0/1/2).
    Binary(Bytes),
}

impl OutFrame {
    /// Converts a protocol frame; text frames are validated as UTF-8 once, here, so that the
    /// per-subscriber path never looks at the bytes again.
    pub fn from_frame(frame: Frame) -> Option<OutFrame> {
        match frame {
            Frame::Text(b) => Text::try_from(b).ok().map(OutFrame::Text),
            Frame::Binary(b) => Some(OutFrame::Binary(b)),
        }
    }

    /// The frame's text, if it is a text frame (LongPoll can only carry text).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            OutFrame::Text(t) => Some(t.as_str()),
            OutFrame::Binary(_) => None,
        }
    }

    /// The frame's size in bytes (what it weighs in a socket's outbound queue).
    pub fn len(&self) -> usize {
        match self {
            OutFrame::Text(t) => t.len(),
            OutFrame::Binary(b) => b.len(),
        }
    }

    /// Whether the frame is empty (never, for a Phoenix frame).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A WebSocket close code with the reason we document for it (README, "Close codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode(pub u16, pub &'static str);

impl CloseCode {
    /// Server stopping without a drain; also our answer to a client's Close.
    pub const NORMAL: CloseCode = CloseCode(1000, "");
    /// `"disconnect"` broadcast on the socket id (Phoenix 1.8.8+).
    pub const DISCONNECT: CloseCode = CloseCode(1001, "disconnected");
    /// No frame received for the idle timeout (Bandit uses 1002).
    pub const IDLE_TIMEOUT: CloseCode = CloseCode(1002, "idle timeout");
    /// A text frame that is not UTF-8.
    pub const INVALID_UTF8: CloseCode = CloseCode(1007, "invalid utf-8");
    /// A frame larger than the configured maximum.
    pub const TOO_BIG: CloseCode = CloseCode(1009, "frame too large");
    /// A frame that is not a Phoenix message (Phoenix crashes the socket process here).
    pub const MALFORMED: CloseCode = CloseCode(1011, "malformed message");
    /// The server is shutting down and drained this socket (Phoenix's drainer).
    pub const DRAIN: CloseCode = CloseCode(1012, "draining");
    /// The client did not read its frames fast enough and the outbound queue filled up.
    pub const OVERFLOW: CloseCode = CloseCode(1013, "outbound queue full");
    /// A frame broke a documented limit (a field longer than 255 bytes, a ref that is not a
    /// string, an integer or null).
    pub const POLICY: CloseCode = CloseCode(1008, "policy violation");
    /// A WebSocket protocol error (unmasked client frame, bad opcode, bad close code, ...).
    pub const PROTOCOL: CloseCode = CloseCode(1002, "protocol error");
}
