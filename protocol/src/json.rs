//! A JSON writer whose output is byte-identical to Jason's (spec §2.4).
//!
//! serde_json cannot be used for outgoing frames: it writes `\u001f` (lowercase hex) where Jason
//! writes `\u001F`, and it prints floats as `1e20` where Jason prints `1.0e20`. Clients do not care,
//! but the conformance suite compares envelopes byte for byte, and a server that matches the
//! reference bytes exactly never has to argue about which difference is harmless.
//!
//! What the writer guarantees:
//! * no whitespace;
//! * object keys in the order the [`serde_json::Map`] iterates them. With serde_json's default
//!   `BTreeMap` map that is bytewise order, which is what Erlang uses for binary keys in maps of
//!   ≤32 keys. (If some crate in the build enabled serde_json's `preserve_order` feature, the order
//!   would become insertion order; `tests/json_writer.rs` fails loudly if that happens);
//! * escaping like Jason's default `:json` mode: `"` and `\`, and the C0 controls as `\b \t \n \f
//!   \r` or `\u00XX` with uppercase hex. `/`, DEL, U+2028/U+2029 and all non-ASCII text are raw;
//! * floats like `:io_lib_format.fwrite_g/1` on OTP 25+ (see [`write_f64`]).
//!
//! Integers: serde_json (without `arbitrary_precision`) can only hold integers that fit `i64`/`u64`;
//! larger JSON integers arrive as floats. Jason would keep them exact. This is the one known
//! difference, and it only affects integers beyond ±1.8e19 that a client sent.

use bytes::Bytes;
use serde_json::{Map, Number, Value};

/// What each byte turns into inside a JSON string: 0 = itself, `u` = `\u00XX`, any other byte
/// `c` = `\c`. A table keeps the hot loop to one load and one branch per byte.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0A] = b'n';
    t[0x0C] = b'f';
    t[0x0D] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Uppercase, as Jason writes `\u001F`.
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Serializes `value` into a fresh buffer sized by [`size_hint`].
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint(value));
    write_value(&mut out, value);
    out
}

/// Serializes `value` into a `String` (the writer only ever emits UTF-8).
pub fn to_string(value: &Value) -> String {
    // The writer only copies `&str` contents and ASCII, so the lossy branch never runs; it exists
    // so that a bug here can never become a panic.
    String::from_utf8(to_vec(value))
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends the JSON text of `value` to `out`.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            let mut first = true;
            for item in items {
                if !first {
                    out.push(b',');
                }
                first = false;
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_map(out, map),
    }
}

/// A JSON object encoded once, to be copied into many frames.
///
/// Why: some payloads go to many sockets unchanged but cannot be broadcast, because each copy
/// is a push with its receiver's `join_ref` — a topic's `presence_state` during a join wave is
/// the example. Encoding such a payload per receiver costs O(size) of work each time; this
/// holds the encoded bytes so a frame costs one copy. It can only be made from a map, so the
/// bytes are always one well-formed JSON object written by [`write_value`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedObject(Bytes);

impl EncodedObject {
    /// Encodes `map` as [`write_value`] would encode `Value::Object(map)`.
    pub fn new(map: &Map<String, Value>) -> Self {
        let mut out = Vec::with_capacity(
            2 + map
                .iter()
                .map(|(k, v)| k.len() + 4 + size_hint(v))
                .sum::<usize>(),
        );
        write_map(&mut out, map);
        EncodedObject(Bytes::from(out))
    }

    /// The encoded JSON text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true (an object is at least `{}`); here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for EncodedObject {
    /// `{}`.
    fn default() -> Self {
        EncodedObject(Bytes::from_static(b"{}"))
    }
}

/// A frame's payload as the encoders take it: a value to encode, or one encoded already.
#[derive(Clone, Copy)]
pub(crate) enum Body<'a> {
    Value(&'a Value),
    Encoded(&'a EncodedObject),
}

impl Body<'_> {
    pub(crate) fn size_hint(self) -> usize {
        match self {
            Body::Value(v) => size_hint(v),
            Body::Encoded(e) => e.len(),
        }
    }

    pub(crate) fn write(self, out: &mut Vec<u8>) {
        match self {
            Body::Value(v) => write_value(out, v),
            Body::Encoded(e) => out.extend_from_slice(e.as_bytes()),
        }
    }
}

fn write_map(out: &mut Vec<u8>, map: &Map<String, Value>) {
    out.push(b'{');
    let mut first = true;
    for (k, v) in map {
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

/// Appends `s` as a quoted, Jason-escaped JSON string.
///
/// Most strings need no escaping at all, so the scan tests eight bytes at a time (a word-at-a-time
/// check for "any byte < 0x20, `"` or backslash") and only looks at single bytes in words that contain
/// one. Unescaped runs are copied with one `extend_from_slice` each.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes[i..].first_chunk::<8>() {
            if !word_needs_escape(u64::from_le_bytes(*word)) {
                i += 8;
                continue;
            }
        }
        let end = (i + 8).min(bytes.len());
        while i < end {
            let b = bytes[i];
            let esc = ESCAPE[b as usize];
            if esc != 0 {
                out.extend_from_slice(&bytes[start..i]);
                if esc == b'u' {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0x0F) as usize]);
                } else {
                    out.push(b'\\');
                    out.push(esc);
                }
                start = i + 1;
            }
            i += 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `x` is a control character, `"` or a backslash. Uses the classic exact tests
/// "has a byte less than n" (valid for n ≤ 128) and "has a zero byte" (after XOR with the
/// character); false negatives are impossible, and the scalar loop sorts out the rest.
#[inline]
fn word_needs_escape(x: u64) -> bool {
    let ctrl = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
    let q = x ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q & HIGHS;
    let b = x ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b & HIGHS;
    (ctrl | quote | backslash) != 0
}

fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        let mut buf = itoa::Buffer::new();
        out.extend_from_slice(buf.format(u).as_bytes());
    } else if let Some(i) = n.as_i64() {
        let mut buf = itoa::Buffer::new();
        out.extend_from_slice(buf.format(i).as_bytes());
    } else if let Some(f) = n.as_f64() {
        write_f64(out, f);
    } else {
        // Only reachable with serde_json's `arbitrary_precision`: keep the literal text.
        out.extend_from_slice(n.to_string().as_bytes());
    }
}

/// 2^53: OTP prints floats at or above this magnitude in scientific notation, because they are
/// past the range where every integer is representable.
const TWO_POW_53: f64 = 9_007_199_254_740_992.0;

/// Appends a float the way Erlang/OTP 25+ `:io_lib_format.fwrite_g/1` (and so Jason) prints it.
///
/// The digits are the shortest that round-trip (Ryu, the same algorithm OTP uses). The layout
/// rule, restated from OTP's documented behaviour: with `digits × 10^place`,
/// * numbers with a fractional part print in plain notation (`1.5`, `0.001`) unless the leading
///   zeros would cost more than an exponent (`1.0e-4`);
/// * integral values print as `123.0` unless the trailing zeros would cost more than an exponent
///   (`1.0e3`, `1.0e20`), and always in scientific notation from 2^53 up;
/// * the mantissa always has a fractional part (`1.0e20`, never `1e20`); zero is `0.0`/`-0.0`.
///
/// OTP 24 and older used a slightly different cut-over for small numbers (`0.0001` instead of
/// `1.0e-4`, and no 2^53 rule). We follow current OTP; spec §2.4's examples (`1.5`, `1.0`, `1.0e20`)
/// agree under both.
pub fn write_f64(out: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        // serde_json never builds a non-finite Number; be total anyway.
        out.extend_from_slice(b"null");
        return;
    }
    if f.is_sign_negative() {
        out.push(b'-');
    }
    let a = f.abs();
    if a == 0.0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    let mut rbuf = ryu::Buffer::new();
    let text = rbuf.format_finite(a).as_bytes();
    // Split Ryu's text ("123.45", "1e20", "1.5e-7") into significant digits and a power of ten.
    let (mant, exp10) = match text.iter().position(|&c| c == b'e') {
        Some(i) => (&text[..i], parse_exp(&text[i + 1..])),
        None => (text, 0),
    };
    let mut digits = [0u8; 32];
    let mut n = 0usize;
    let mut frac_len = 0i32;
    let mut after_dot = false;
    for &c in mant {
        if c == b'.' {
            after_dot = true;
            continue;
        }
        if after_dot {
            frac_len += 1;
        }
        if n == 0 && c == b'0' {
            continue; // leading zero: no value
        }
        if n < digits.len() {
            digits[n] = c;
            n += 1;
        }
    }
    let mut place = exp10 - frac_len;
    while n > 1 && digits[n - 1] == b'0' {
        n -= 1;
        place += 1;
    }
    if n == 0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    let s = &digits[..n];
    let l = n as i32;
    let exp = place + l - 1;
    let mut ebuf = itoa::Buffer::new();
    let exp_text = ebuf.format(exp).as_bytes();
    let exp_cost = exp_text.len() as i32 + 2;
    if place < 0 {
        if exp >= 0 {
            let split = (l + place) as usize;
            out.extend_from_slice(&s[..split]);
            out.push(b'.');
            out.extend_from_slice(&s[split..]);
        } else if 2 - place - l <= exp_cost {
            out.extend_from_slice(b"0.");
            for _ in 0..(-place - l) {
                out.push(b'0');
            }
            out.extend_from_slice(s);
        } else {
            write_sci(out, s, exp_text);
        }
    } else {
        let dot = i32::from(l == 1);
        if exp_cost + dot >= place + 2 && a < TWO_POW_53 {
            out.extend_from_slice(s);
            for _ in 0..place {
                out.push(b'0');
            }
            out.extend_from_slice(b".0");
        } else {
            write_sci(out, s, exp_text);
        }
    }
}

fn write_sci(out: &mut Vec<u8>, s: &[u8], exp_text: &[u8]) {
    out.push(s[0]);
    out.push(b'.');
    if s.len() == 1 {
        out.push(b'0');
    } else {
        out.extend_from_slice(&s[1..]);
    }
    out.push(b'e');
    out.extend_from_slice(exp_text);
}

fn parse_exp(t: &[u8]) -> i32 {
    let (neg, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i32 = 0;
    for &d in digits {
        v = v
            .saturating_mul(10)
            .saturating_add(i32::from(d.wrapping_sub(b'0')));
    }
    if neg {
        -v
    } else {
        v
    }
}

/// A cheap upper-ish estimate of the encoded size, used to size output buffers once.
///
/// It does not look inside strings for escapes, so strings full of control characters will still
/// grow the buffer; everything else lands within a few bytes.
pub fn size_hint(value: &Value) -> usize {
    hint(value, 0)
}

fn hint(value: &Value, depth: u32) -> usize {
    if depth > 8 {
        return 64;
    }
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 20,
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|v| hint(v, depth + 1) + 1).sum::<usize>(),
        Value::Object(m) => {
            2 + m
                .iter()
                .map(|(k, v)| k.len() + 4 + hint(v, depth + 1))
                .sum::<usize>()
        }
    }
}
