//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use phx_protocol::Frame;

/// Parses spec-style hex (`"00 01 0a"`), where a bare word like `room:lobby` stands for its ASCII
/// bytes, exactly as §13 writes frames.
pub fn spec_bytes(spec: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for word in spec.split_whitespace() {
        let is_hex = word.len() == 2 && word.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex {
            out.push(u8::from_str_radix(word, 16).unwrap());
        } else {
            out.extend_from_slice(word.as_bytes());
        }
    }
    out
}

/// Lowercase hex with spaces, for readable assertion failures.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Unhyphenated hex → bytes.
pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The text of a text frame; panics (with the frame) on a binary one.
pub fn text(frame: &Frame) -> &str {
    match frame {
        Frame::Text(b) => std::str::from_utf8(b).unwrap(),
        Frame::Binary(b) => panic!("expected a text frame, got binary {}", hex(b)),
    }
}

/// The bytes of a binary frame; panics (with the frame) on a text one.
pub fn binary(frame: &Frame) -> &Bytes {
    match frame {
        Frame::Binary(b) => b,
        Frame::Text(t) => panic!(
            "expected a binary frame, got text {}",
            String::from_utf8_lossy(t)
        ),
    }
}

/// Asserts two byte strings are equal, printing both as hex when they are not.
#[track_caller]
pub fn assert_bytes(got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "frames differ\n  got:  {}\n  want: {}",
        hex(got),
        hex(want)
    );
}
