//! The subset of Erlang's external term format (ETF) that Phoenix.Token payloads carry (spec §9).
//!
//! A token's payload is `:erlang.term_to_binary({data, signed_at_ms, max_age})`, so signing needs
//! an encoder that writes exactly what `term_to_binary` writes (the MAC covers those bytes), and
//! verifying needs a decoder for anything a Phoenix app may have put in `data`.
//!
//! The decoder reads untrusted bytes only *after* the MAC has checked out, but it is still written
//! as if an attacker controlled the input ([`DecodeLimits`]): it never panics, does not recurse
//! (containers wait on an explicit stack), bounds nesting at [`MAX_DEPTH`], bounds the total number of elements and the size of any one
//! binary, never allocates for a declared length before the bytes are there (a length larger
//! than the bytes left is an error, and capacity is reserved in small steps), caps decompressed
//! size, and refuses executable terms (funs, exports), as
//! `Plug.Crypto.non_executable_binary_to_term/1` does.

use std::io::Read;

/// The version byte every external term starts with.
pub const VERSION: u8 = 131;

/// How deep tuples, lists and maps may nest. Real token data is a few levels deep. The decoder
/// itself is iterative, but a decoded [`Term`] is walked recursively (drop, `to_json`,
/// `encode`), so its depth stays bounded.
pub const MAX_DEPTH: usize = 128;

/// The default bound on the size a compressed term may inflate to (1 MiB).
pub const MAX_UNCOMPRESSED: usize = 1 << 20;

/// The default bound on the number of terms in one decoded value (every element of every list,
/// tuple and map, and every atom, integer and binary count one). A token's data is a handful.
pub const MAX_ELEMENTS: usize = 1 << 16;

/// The default bound on one binary, atom text or big-integer magnitude (1 MiB).
pub const MAX_BINARY: usize = 1 << 20;

/// The longest atom the VM accepts, in characters.
const MAX_ATOM_CHARS: usize = 255;

/// The most capacity reserved up front for a declared element count; beyond it, vectors grow as
/// elements actually decode, so a forged count costs nothing until its elements are there.
const PREALLOC_MAX: usize = 256;

/// Bounds on what [`decode_with_limits`] accepts; each exceeded bound is an [`EtfError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// How deep tuples, lists and maps may nest (the decoder recurses once per level).
    pub max_depth: usize,
    /// How many terms the whole value may hold.
    pub max_elements: usize,
    /// The largest binary, atom or big-integer magnitude, in bytes.
    pub max_binary: usize,
    /// The largest size a compressed term may inflate to.
    pub max_uncompressed: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_depth: MAX_DEPTH,
            max_elements: MAX_ELEMENTS,
            max_binary: MAX_BINARY,
            max_uncompressed: MAX_UNCOMPRESSED,
        }
    }
}

const SMALL_INTEGER: u8 = 97;
const INTEGER: u8 = 98;
const FLOAT_NEW: u8 = 70;
const ATOM_LATIN1: u8 = 100;
const SMALL_ATOM_LATIN1: u8 = 115;
const ATOM_UTF8: u8 = 118;
const SMALL_ATOM_UTF8: u8 = 119;
const SMALL_TUPLE: u8 = 104;
const LARGE_TUPLE: u8 = 105;
const NIL: u8 = 106;
const STRING: u8 = 107;
const LIST: u8 = 108;
const BINARY: u8 = 109;
const SMALL_BIG: u8 = 110;
const LARGE_BIG: u8 = 111;
const MAP: u8 = 116;
const PID_OLD: u8 = 103;
const PID_NEW: u8 = 88;
const REFERENCE_NEW: u8 = 114;
const REFERENCE_NEWER: u8 = 90;
const COMPRESSED: u8 = 80;
const FUN_NEW: u8 = 112;
const EXPORT: u8 = 113;
const FUN_OLD: u8 = 117;

/// An Erlang term, as far as tokens need them.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    /// An integer that fits `i64` (decoders normalise big-integer encodings of such values here).
    Int(i64),
    /// An integer outside `i64`: sign and little-endian magnitude without trailing zero bytes.
    BigInt {
        /// Whether the integer is negative.
        negative: bool,
        /// Magnitude bytes, least significant first.
        magnitude_le: Vec<u8>,
    },
    /// A float.
    Float(f64),
    /// An atom (`nil`, `true`, `false`, `infinity`, map keys, ...), whichever tag it came in.
    Atom(String),
    /// A binary (an Elixir string when it is UTF-8).
    Binary(Vec<u8>),
    /// A proper, non-empty list. (`[1,2,3]` may arrive as a byte string, tag 107; it decodes here.)
    List(Vec<Term>),
    /// An improper list `[a, b | tail]`.
    ImproperList {
        /// The elements before the tail.
        elems: Vec<Term>,
        /// The tail, which is not `[]`.
        tail: Box<Term>,
    },
    /// A tuple.
    Tuple(Vec<Term>),
    /// A map, pairs in wire order (verification does not depend on map order).
    Map(Vec<(Term, Term)>),
    /// The empty list `[]`.
    Nil,
    /// A process identifier (only in LongPoll tokens; carried so such payloads still decode).
    Pid {
        /// The node name atom.
        node: String,
        /// Process number.
        id: u32,
        /// Serial.
        serial: u32,
        /// Node incarnation.
        creation: u32,
    },
    /// A reference (only in LongPoll tokens).
    Reference {
        /// The node name atom.
        node: String,
        /// Node incarnation.
        creation: u32,
        /// The reference words.
        ids: Vec<u32>,
    },
}

/// Why bytes are not an acceptable external term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtfError {
    /// The first byte is not 131.
    #[error("not an external term (missing version byte 131)")]
    BadVersion,
    /// The input ends inside a term, or a declared length exceeds what is left.
    #[error("truncated external term")]
    Truncated,
    /// A tag this decoder does not read (ports, bit strings, old floats, ...).
    #[error("unsupported external term tag {0}")]
    UnsupportedTag(u8),
    /// A fun or export: refused like `non_executable_binary_to_term`.
    #[error("executable terms (funs) are refused")]
    Executable,
    /// Nesting deeper than [`DecodeLimits::max_depth`] (default [`MAX_DEPTH`]).
    #[error("term nests too deep")]
    TooDeep,
    /// More terms than [`DecodeLimits::max_elements`].
    #[error("term has too many elements")]
    TooManyElements,
    /// A binary, atom or big integer longer than [`DecodeLimits::max_binary`].
    #[error("binary longer than the limit")]
    BinaryTooLong,
    /// Bytes left over after the term.
    #[error("trailing bytes after the term")]
    TrailingBytes,
    /// A UTF-8 atom whose bytes are not UTF-8, or an atom of more than 255 characters.
    #[error("atom text is not valid UTF-8 or longer than 255 characters")]
    InvalidAtom,
    /// A compressed term that is corrupt, inflates to another size than declared, or is too big.
    #[error("bad compressed term: {0}")]
    Compressed(&'static str),
}

impl Term {
    /// The integer, if this is one that fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Term::Int(i) => Some(*i),
            Term::BigInt {
                negative,
                magnitude_le,
            } => big_to_i64(*negative, magnitude_le),
            _ => None,
        }
    }

    /// The text of a UTF-8 binary (an Elixir string). Atoms are not strings: see [`Term::as_atom`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Term::Binary(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The name of an atom.
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Term::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// Looks up a map entry whose key is the binary or the atom `key` (Elixir code uses both).
    pub fn map_get(&self, key: &str) -> Option<&Term> {
        let Term::Map(pairs) = self else {
            return None;
        };
        pairs.iter().find_map(|(k, v)| match k {
            Term::Binary(b) if b == key.as_bytes() => Some(v),
            Term::Atom(a) if a == key => Some(v),
            _ => None,
        })
    }

    /// Converts to JSON the way Jason would encode the term, or `None` when Jason could not
    /// (tuples, pids, non-UTF-8 binaries, integers beyond `u64`, maps with non-scalar keys).
    ///
    /// Atoms `nil`/`true`/`false` become null/booleans, other atoms strings; `[]` is `[]`.
    pub fn to_json(&self) -> Option<serde_json::Value> {
        use serde_json::Value;
        Some(match self {
            Term::Int(i) => Value::from(*i),
            Term::BigInt {
                negative: false,
                magnitude_le,
            } => Value::from(big_to_u64(magnitude_le)?),
            Term::BigInt { .. } => return self.as_i64().map(Value::from),
            Term::Float(f) => Value::Number(serde_json::Number::from_f64(*f)?),
            Term::Atom(a) => match a.as_str() {
                "nil" => Value::Null,
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                other => Value::String(other.to_owned()),
            },
            Term::Binary(b) => Value::String(String::from_utf8(b.clone()).ok()?),
            Term::Nil => Value::Array(Vec::new()),
            Term::List(items) => Value::Array(
                items
                    .iter()
                    .map(Term::to_json)
                    .collect::<Option<Vec<_>>>()?,
            ),
            Term::Map(pairs) => {
                let mut map = serde_json::Map::new();
                for (k, v) in pairs {
                    let key = match k {
                        Term::Binary(b) => String::from_utf8(b.clone()).ok()?,
                        Term::Atom(a) => a.clone(),
                        Term::Int(i) => i.to_string(),
                        _ => return None,
                    };
                    map.insert(key, v.to_json()?);
                }
                Value::Object(map)
            }
            Term::ImproperList { .. }
            | Term::Tuple(_)
            | Term::Pid { .. }
            | Term::Reference { .. } => return None,
        })
    }

    /// Converts JSON to the term a Phoenix app would hold after decoding it with Jason: strings
    /// are binaries, objects are maps with binary keys, null/true/false are atoms, `[]` is nil.
    pub fn from_json(v: &serde_json::Value) -> Term {
        use serde_json::Value;
        match v {
            Value::Null => Term::Atom("nil".to_owned()),
            Value::Bool(b) => Term::Atom(if *b { "true" } else { "false" }.to_owned()),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Term::Int(i)
                } else if let Some(u) = n.as_u64() {
                    big_from_u64(false, u)
                } else {
                    Term::Float(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => Term::Binary(s.as_bytes().to_vec()),
            Value::Array(items) if items.is_empty() => Term::Nil,
            Value::Array(items) => Term::List(items.iter().map(Term::from_json).collect()),
            Value::Object(map) => Term::Map(
                map.iter()
                    .map(|(k, v)| (Term::Binary(k.as_bytes().to_vec()), Term::from_json(v)))
                    .collect(),
            ),
        }
    }
}

fn big_to_u64(mag: &[u8]) -> Option<u64> {
    let significant = mag.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if significant > 8 {
        return None;
    }
    Some(
        mag[..significant]
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
    )
}

fn big_to_i64(negative: bool, mag: &[u8]) -> Option<i64> {
    let u = big_to_u64(mag)?;
    if negative {
        0i64.checked_sub_unsigned(u)
    } else {
        i64::try_from(u).ok()
    }
}

fn big_from_u64(negative: bool, u: u64) -> Term {
    let mut magnitude_le = u.to_le_bytes().to_vec();
    while magnitude_le.last() == Some(&0) {
        magnitude_le.pop();
    }
    Term::BigInt {
        negative,
        magnitude_le,
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Encodes a term as `term_to_binary/1` does (with the 131 version byte, uncompressed).
///
/// Atoms are written with the OTP 26+ UTF-8 tags (119, or 118 when longer than 255 bytes);
/// integers use the smallest encoding (97, 98, then 110/111 with a minimal magnitude); a list of
/// 1..=65535 integers in 0..=255 is written as a byte string (107), exactly as the VM does.
pub fn encode(term: &Term) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    encode_into(&mut out, term);
    out
}

/// Encodes and zlib-compresses a term as `term_to_binary(t, [:compressed])` does
/// (`131, 80, u32 size, zlib`). The compressed bytes depend on the zlib implementation, so they
/// are not byte-identical to the VM's; verifiers do not care, because the MAC covers whatever was
/// sent.
pub fn encode_compressed(term: &Term) -> Vec<u8> {
    let mut raw = Vec::with_capacity(64);
    encode_into(&mut raw, term);
    let mut out = Vec::with_capacity(raw.len() / 2 + 16);
    out.push(VERSION);
    out.push(COMPRESSED);
    out.extend_from_slice(&u32::try_from(raw.len()).unwrap_or(u32::MAX).to_be_bytes());
    let mut enc = flate2::write::ZlibEncoder::new(out, flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = std::io::Write::write_all(&mut enc, &raw);
    enc.finish().unwrap_or_default()
}

/// Appends the encoding of `term` without the version byte.
pub fn encode_into(out: &mut Vec<u8>, term: &Term) {
    match term {
        Term::Int(i) => encode_int(out, *i),
        Term::BigInt {
            negative,
            magnitude_le,
        } => encode_big(out, *negative, magnitude_le),
        Term::Float(f) => {
            out.push(FLOAT_NEW);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Term::Atom(name) => encode_atom(out, name),
        Term::Binary(b) => {
            out.push(BINARY);
            put_len_u32(out, b.len());
            out.extend_from_slice(b);
        }
        Term::Nil => out.push(NIL),
        Term::List(items) if items.is_empty() => out.push(NIL),
        Term::List(items) => {
            if items.len() <= usize::from(u16::MAX)
                && items
                    .iter()
                    .all(|t| matches!(t, Term::Int(i) if (0..=255).contains(i)))
            {
                out.push(STRING);
                out.extend_from_slice(&(items.len() as u16).to_be_bytes());
                for t in items {
                    if let Term::Int(i) = t {
                        out.push(*i as u8);
                    }
                }
            } else {
                out.push(LIST);
                put_len_u32(out, items.len());
                for t in items {
                    encode_into(out, t);
                }
                out.push(NIL);
            }
        }
        Term::ImproperList { elems, tail } => {
            out.push(LIST);
            put_len_u32(out, elems.len());
            for t in elems {
                encode_into(out, t);
            }
            encode_into(out, tail);
        }
        Term::Tuple(items) => {
            if let Ok(n) = u8::try_from(items.len()) {
                out.push(SMALL_TUPLE);
                out.push(n);
            } else {
                out.push(LARGE_TUPLE);
                put_len_u32(out, items.len());
            }
            for t in items {
                encode_into(out, t);
            }
        }
        Term::Map(pairs) => {
            out.push(MAP);
            put_len_u32(out, pairs.len());
            for (k, v) in pairs {
                encode_into(out, k);
                encode_into(out, v);
            }
        }
        Term::Pid {
            node,
            id,
            serial,
            creation,
        } => {
            out.push(PID_NEW);
            encode_atom(out, node);
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&serial.to_be_bytes());
            out.extend_from_slice(&creation.to_be_bytes());
        }
        Term::Reference {
            node,
            creation,
            ids,
        } => {
            out.push(REFERENCE_NEWER);
            out.extend_from_slice(&u16::try_from(ids.len()).unwrap_or(u16::MAX).to_be_bytes());
            encode_atom(out, node);
            out.extend_from_slice(&creation.to_be_bytes());
            for w in ids.iter().take(usize::from(u16::MAX)) {
                out.extend_from_slice(&w.to_be_bytes());
            }
        }
    }
}

/// Lengths beyond u32 cannot be expressed in ETF; terms that large are not token material, so
/// the length saturates rather than panicking.
fn put_len_u32(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn encode_int(out: &mut Vec<u8>, i: i64) {
    if (0..=255).contains(&i) {
        out.push(SMALL_INTEGER);
        out.push(i as u8);
    } else if let Ok(i) = i32::try_from(i) {
        out.push(INTEGER);
        out.extend_from_slice(&i.to_be_bytes());
    } else {
        let bytes = i.unsigned_abs().to_le_bytes();
        encode_big(out, i < 0, &bytes);
    }
}

fn encode_big(out: &mut Vec<u8>, negative: bool, magnitude_le: &[u8]) {
    let n = magnitude_le
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    let mag = &magnitude_le[..n];
    // A value that fits i32 must use the small encodings, or the bytes would differ from the VM's.
    if let Some(i) = big_to_i64(negative, mag) {
        if i32::try_from(i).is_ok() {
            return encode_int(out, i);
        }
    }
    if let Ok(n8) = u8::try_from(n) {
        out.push(SMALL_BIG);
        out.push(n8);
    } else {
        out.push(LARGE_BIG);
        put_len_u32(out, n);
    }
    out.push(u8::from(negative));
    out.extend_from_slice(mag);
}

fn encode_atom(out: &mut Vec<u8>, name: &str) {
    if let Ok(n) = u8::try_from(name.len()) {
        out.push(SMALL_ATOM_UTF8);
        out.push(n);
        out.extend_from_slice(name.as_bytes());
    } else {
        let bytes = &name.as_bytes()[..name.len().min(usize::from(u16::MAX))];
        out.push(ATOM_UTF8);
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes an external term (version byte first) within the default [`DecodeLimits`].
pub fn decode(bytes: &[u8]) -> Result<Term, EtfError> {
    decode_with_limits(bytes, &DecodeLimits::default())
}

/// [`decode`] with an explicit bound on the inflated size of a compressed term.
pub fn decode_with_limit(bytes: &[u8], max_uncompressed: usize) -> Result<Term, EtfError> {
    decode_with_limits(
        bytes,
        &DecodeLimits {
            max_uncompressed,
            ..DecodeLimits::default()
        },
    )
}

/// [`decode`] within explicit [`DecodeLimits`].
pub fn decode_with_limits(bytes: &[u8], limits: &DecodeLimits) -> Result<Term, EtfError> {
    let max_uncompressed = limits.max_uncompressed;
    match bytes {
        [VERSION, COMPRESSED, rest @ ..] => {
            let (size, zdata) = rest.split_first_chunk::<4>().ok_or(EtfError::Truncated)?;
            let size = u32::from_be_bytes(*size) as usize;
            if size > max_uncompressed {
                return Err(EtfError::Compressed("declared size exceeds the limit"));
            }
            let mut inflated = Vec::with_capacity(size.min(zdata.len().saturating_mul(64)));
            flate2::read::ZlibDecoder::new(zdata)
                .take(size as u64 + 1)
                .read_to_end(&mut inflated)
                .map_err(|_| EtfError::Compressed("corrupt zlib stream"))?;
            if inflated.len() != size {
                return Err(EtfError::Compressed(
                    "inflated size differs from the declared size",
                ));
            }
            decode_body(&inflated, limits)
        }
        [VERSION, rest @ ..] => decode_body(rest, limits),
        _ => Err(EtfError::BadVersion),
    }
}

fn decode_body(body: &[u8], limits: &DecodeLimits) -> Result<Term, EtfError> {
    let mut d = Decoder {
        buf: body,
        pos: 0,
        limits,
        elements: 0,
    };
    let term = d.term()?;
    if d.pos != body.len() {
        return Err(EtfError::TrailingBytes);
    }
    Ok(term)
}

/// What [`Decoder::head`] read.
enum Head {
    /// A whole term.
    Done(Term),
    /// A container whose elements follow.
    Open(Pending),
}

/// A container waiting for its elements (one entry of the decoder's explicit stack).
enum Pending {
    /// `left` more elements, then the tail (`left == 0`: the next term is the tail).
    List { elems: Vec<Term>, left: usize },
    /// `left` more items (never 0 while pending).
    Tuple { items: Vec<Term>, left: usize },
    /// `left` more pairs; `key` is the current pair's key once read.
    Map {
        pairs: Vec<(Term, Term)>,
        key: Option<Term>,
        left: usize,
    },
}

/// What handing a finished term to a pending container did.
enum Step {
    /// The container needs more terms.
    More(Pending),
    /// The term completed the container.
    Closed(Term),
}

impl Pending {
    fn push(self, value: Term) -> Step {
        match self {
            Pending::List { elems, left: 0 } => Step::Closed(match value {
                Term::Nil if elems.is_empty() => Term::Nil,
                Term::Nil => Term::List(elems),
                tail => Term::ImproperList {
                    elems,
                    tail: Box::new(tail),
                },
            }),
            Pending::List { mut elems, left } => {
                elems.push(value);
                Step::More(Pending::List {
                    elems,
                    left: left - 1,
                })
            }
            Pending::Tuple { mut items, left } => {
                items.push(value);
                if left <= 1 {
                    Step::Closed(Term::Tuple(items))
                } else {
                    Step::More(Pending::Tuple {
                        items,
                        left: left - 1,
                    })
                }
            }
            Pending::Map {
                pairs,
                key: None,
                left,
            } => Step::More(Pending::Map {
                pairs,
                key: Some(value),
                left,
            }),
            Pending::Map {
                mut pairs,
                key: Some(key),
                left,
            } => {
                pairs.push((key, value));
                if left <= 1 {
                    Step::Closed(Term::Map(pairs))
                } else {
                    Step::More(Pending::Map {
                        pairs,
                        key: None,
                        left: left - 1,
                    })
                }
            }
        }
    }
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: &'a DecodeLimits,
    /// Terms decoded so far, against [`DecodeLimits::max_elements`].
    elements: usize,
}

impl<'a> Decoder<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], EtfError> {
        if n > self.remaining() {
            return Err(EtfError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EtfError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, EtfError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<usize, EtfError> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn u32(&mut self) -> Result<u32, EtfError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn len32(&mut self) -> Result<usize, EtfError> {
        Ok(self.u32()? as usize)
    }

    /// A count of elements, each at least `min_bytes` long, checked against the input left and
    /// the element budget, so a forged length is an error before anything is allocated for it.
    fn count(&self, n: usize, min_bytes: usize) -> Result<usize, EtfError> {
        if n.saturating_mul(min_bytes) > self.remaining() {
            return Err(EtfError::Truncated);
        }
        if n > self.limits.max_elements.saturating_sub(self.elements) {
            return Err(EtfError::TooManyElements);
        }
        Ok(n)
    }

    /// `take` for a binary-like body: refused past [`DecodeLimits::max_binary`].
    /// A length past the end of the input is [`EtfError::Truncated`] whatever the limit.
    fn take_binary(&mut self, n: usize) -> Result<&'a [u8], EtfError> {
        if n <= self.remaining() && n > self.limits.max_binary {
            return Err(EtfError::BinaryTooLong);
        }
        self.take(n)
    }

    /// Decodes one term without recursion: containers waiting for their elements live on an
    /// explicit stack whose height is the nesting depth, so the call stack stays flat whatever
    /// the input, and [`DecodeLimits::max_depth`] bounds the heap stack instead.
    fn term(&mut self) -> Result<Term, EtfError> {
        let mut stack: Vec<Pending> = Vec::new();
        loop {
            // Read one term header: a finished scalar, or a container to fill.
            let mut value = match self.head(stack.len())? {
                Head::Done(t) => t,
                Head::Open(p) => {
                    stack.push(p);
                    continue;
                }
            };
            // Hand the finished value to the containers waiting for it, closing each one it
            // completes, until one still needs more terms (or the outermost term is done).
            loop {
                let Some(top) = stack.pop() else {
                    return Ok(value);
                };
                match top.push(value) {
                    Step::More(p) => {
                        stack.push(p);
                        break;
                    }
                    Step::Closed(t) => value = t,
                }
            }
        }
    }

    /// Reads a term's tag and whatever belongs to it alone; a non-empty container comes back
    /// open, to be filled by the terms that follow.
    fn head(&mut self, depth: usize) -> Result<Head, EtfError> {
        if depth > self.limits.max_depth {
            return Err(EtfError::TooDeep);
        }
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(EtfError::TooManyElements);
        }
        let tag = self.u8()?;
        Ok(Head::Done(match tag {
            SMALL_INTEGER => Term::Int(i64::from(self.u8()?)),
            INTEGER => Term::Int(i64::from(i32::from_be_bytes(self.array()?))),
            SMALL_BIG => {
                let n = usize::from(self.u8()?);
                self.big(n)?
            }
            LARGE_BIG => {
                let n = self.len32()?;
                self.big(n)?
            }
            FLOAT_NEW => Term::Float(f64::from_bits(u64::from_be_bytes(self.array()?))),
            ATOM_LATIN1 | SMALL_ATOM_LATIN1 | ATOM_UTF8 | SMALL_ATOM_UTF8 => {
                Term::Atom(self.atom_body(tag)?)
            }
            BINARY => {
                let n = self.len32()?;
                Term::Binary(self.take_binary(n)?.to_vec())
            }
            NIL => Term::Nil,
            STRING => {
                let n = self.u16()?;
                let n = self.count(n, 1)?;
                let bytes = self.take(n)?;
                self.elements += n;
                if bytes.is_empty() {
                    Term::Nil
                } else {
                    Term::List(bytes.iter().map(|&b| Term::Int(i64::from(b))).collect())
                }
            }
            LIST => {
                let n = self.len32()?;
                // n elements plus the tail, each at least one byte.
                let n = self.count(n, 1)?;
                return Ok(Head::Open(Pending::List {
                    elems: Vec::with_capacity(n.min(PREALLOC_MAX)),
                    left: n,
                }));
            }
            SMALL_TUPLE | LARGE_TUPLE => {
                let n = if tag == SMALL_TUPLE {
                    usize::from(self.u8()?)
                } else {
                    self.len32()?
                };
                let n = self.count(n, 1)?;
                if n == 0 {
                    Term::Tuple(Vec::new())
                } else {
                    return Ok(Head::Open(Pending::Tuple {
                        items: Vec::with_capacity(n.min(PREALLOC_MAX)),
                        left: n,
                    }));
                }
            }
            MAP => {
                let n = self.len32()?;
                let n = self.count(n, 2)?;
                if n == 0 {
                    Term::Map(Vec::new())
                } else {
                    return Ok(Head::Open(Pending::Map {
                        pairs: Vec::with_capacity(n.min(PREALLOC_MAX)),
                        key: None,
                        left: n,
                    }));
                }
            }
            PID_NEW | PID_OLD => {
                let node = self.node_atom()?;
                let id = self.u32()?;
                let serial = self.u32()?;
                let creation = if tag == PID_NEW {
                    self.u32()?
                } else {
                    u32::from(self.u8()?)
                };
                Term::Pid {
                    node,
                    id,
                    serial,
                    creation,
                }
            }
            REFERENCE_NEW | REFERENCE_NEWER => {
                let n = self.u16()?;
                let node = self.node_atom()?;
                let creation = if tag == REFERENCE_NEWER {
                    self.u32()?
                } else {
                    u32::from(self.u8()?)
                };
                let n = self.count(n, 4)?;
                let mut ids = Vec::with_capacity(n.min(PREALLOC_MAX));
                for _ in 0..n {
                    ids.push(self.u32()?);
                }
                Term::Reference {
                    node,
                    creation,
                    ids,
                }
            }
            FUN_NEW | EXPORT | FUN_OLD => return Err(EtfError::Executable),
            other => return Err(EtfError::UnsupportedTag(other)),
        }))
    }

    /// A node name inside a pid or reference: any atom encoding.
    fn node_atom(&mut self) -> Result<String, EtfError> {
        let tag = self.u8()?;
        match tag {
            ATOM_LATIN1 | SMALL_ATOM_LATIN1 | ATOM_UTF8 | SMALL_ATOM_UTF8 => self.atom_body(tag),
            other => Err(EtfError::UnsupportedTag(other)),
        }
    }

    /// Atom text after its tag. Latin-1 atoms (OTP ≤25 writers) are mapped byte→char.
    fn atom_body(&mut self, tag: u8) -> Result<String, EtfError> {
        let n = match tag {
            ATOM_LATIN1 | ATOM_UTF8 => self.u16()?,
            _ => usize::from(self.u8()?),
        };
        let bytes = self.take_binary(n)?;
        let text: String = match tag {
            ATOM_LATIN1 | SMALL_ATOM_LATIN1 => bytes.iter().map(|&b| char::from(b)).collect(),
            _ => std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|_| EtfError::InvalidAtom)?,
        };
        // The VM refuses atoms of more than 255 characters (`binary_to_term` raises badarg);
        // refusing them here also keeps every decoded atom encodable without truncation.
        if text.chars().count() > MAX_ATOM_CHARS {
            return Err(EtfError::InvalidAtom);
        }
        Ok(text)
    }

    /// A big integer with `n` magnitude bytes; normalised to [`Term::Int`] when it fits.
    fn big(&mut self, n: usize) -> Result<Term, EtfError> {
        let negative = self.u8()? != 0;
        let mag = self.take_binary(n)?;
        if let Some(i) = big_to_i64(negative, mag) {
            return Ok(Term::Int(i));
        }
        let len = mag.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        Ok(Term::BigInt {
            negative,
            magnitude_le: mag[..len].to_vec(),
        })
    }
}
