//! The subset of Erlang's external term format (ETF) that Phoenix.Token payloads (spec §9) and
//! phoenix_pubsub_redis envelopes ([`crate::pubsub_redis`]) carry.
//!
//! A token's payload is `:erlang.term_to_binary({data, signed_at_ms, max_age})`, so signing needs
//! an encoder that writes exactly what `term_to_binary` writes (the MAC covers those bytes), and
//! verifying needs a decoder for anything a Phoenix app may have put in `data`. A Redis PubSub
//! envelope is `term_to_binary` of a tuple that Elixir nodes on the same Redis channel decode;
//! the encoder is checked against what Elixir publishes byte for byte, which takes the
//! [`EncodeOptions`]: OTP ≤ 25's atom tags, small maps in term order ([`term_order`]), and zlib
//! compression that keeps the plain form when it does not shrink.
//!
//! The decoder reads untrusted bytes (after the MAC for tokens, straight off Redis for
//! envelopes) as if an attacker controlled the input ([`DecodeLimits`]): it never panics, does
//! not recurse (containers wait on an explicit stack), bounds nesting at [`MAX_DEPTH`], bounds
//! the total number of elements and the size of any one binary, never allocates for a declared
//! length before the bytes are there (a length larger than the bytes left is an error, and
//! capacity is reserved in small steps), caps decompressed size, and refuses executable terms
//! (funs, exports), as `Plug.Crypto.non_executable_binary_to_term/1` does.

use std::cmp::Ordering;
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
const FLOAT_OLD: u8 = 99;
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

/// An Erlang term, as far as tokens and PubSub envelopes need them.
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
    /// A tag this decoder does not read (ports, bit strings, ...).
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
    /// A FLOAT_EXT (99, pre-R11B) whose text is not a finite number.
    #[error("bad float text")]
    InvalidFloat,
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
    /// (tuples, pids, non-UTF-8 binaries, integers beyond `u64`, maps with non-scalar keys) or
    /// when it would take the app's code to know (structs other than the calendar ones).
    ///
    /// Atoms `nil`/`true`/`false` become null/booleans, other atoms strings; `[]` is `[]`; map
    /// keys that are atoms or integers become their text. A struct (a map with a `__struct__`
    /// key) is rendered only when it is a `DateTime`, `NaiveDateTime`, `Date` or `Time` of the
    /// ISO calendar, as the ISO 8601 string Jason writes for it (`"2026-01-02T03:04:05.678Z"`);
    /// any other struct is `None`, because its JSON form is whatever its `Jason.Encoder`
    /// implementation says.
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
                if let Some(name) = self.map_get_atom_key("__struct__") {
                    return calendar_json(name.as_atom()?, self);
                }
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

    /// Looks up a map entry whose key is the atom `key` (struct fields are atom keys).
    fn map_get_atom_key(&self, key: &str) -> Option<&Term> {
        let Term::Map(pairs) = self else {
            return None;
        };
        pairs.iter().find_map(|(k, v)| match k {
            Term::Atom(a) if a == key => Some(v),
            _ => None,
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

/// The text of a FLOAT_EXT: `"%.20e"`, NUL-padded to 31 bytes. Only the characters of a decimal
/// float are accepted (so no `inf` or `nan`, which Rust would parse and the VM would not).
fn old_float(raw: &[u8; 31]) -> Result<f64, EtfError> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let text = std::str::from_utf8(&raw[..end])
        .map_err(|_| EtfError::InvalidFloat)?
        .trim_start_matches(' ');
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(EtfError::InvalidFloat);
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(f),
        _ => Err(EtfError::InvalidFloat),
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
// Calendar structs as Jason renders them

/// The ISO 8601 string Jason writes for a `DateTime`, `NaiveDateTime`, `Date` or `Time` struct
/// (it calls the module's `to_iso8601/1`), or `None` for any other struct, a calendar other
/// than `Calendar.ISO`, or fields out of their ranges.
fn calendar_json(module: &str, s: &Term) -> Option<serde_json::Value> {
    let field = |k: &str| s.map_get_atom_key(k);
    let int = |k: &str, lo: i64, hi: i64| field(k)?.as_i64().filter(|v| (lo..=hi).contains(v));
    if field("calendar")?.as_atom()? != "Elixir.Calendar.ISO" {
        return None;
    }
    let date = || -> Option<String> {
        let year = field("year")?.as_i64()?;
        let (month, day) = (int("month", 1, 12)?, int("day", 1, 31)?);
        Some(format!(
            "{}-{}-{}",
            zero_pad(year, 4),
            zero_pad(month, 2),
            zero_pad(day, 2)
        ))
    };
    let time = || -> Option<String> {
        let (hour, minute, second) = (
            int("hour", 0, 23)?,
            int("minute", 0, 59)?,
            int("second", 0, 60)?,
        );
        let Term::Tuple(us) = field("microsecond")? else {
            return None;
        };
        let [us, precision] = us.as_slice() else {
            return None;
        };
        let us = us.as_i64().filter(|v| (0..1_000_000).contains(v))?;
        let precision = precision.as_i64().filter(|p| (0..=6).contains(p))?;
        let mut out = format!(
            "{}:{}:{}",
            zero_pad(hour, 2),
            zero_pad(minute, 2),
            zero_pad(second, 2)
        );
        if precision > 0 {
            // The first `precision` of the six microsecond digits.
            let digits = format!("{us:06}");
            out.push('.');
            out.push_str(digits.get(..usize::try_from(precision).ok()?)?);
        }
        Some(out)
    };
    let text = match module {
        "Elixir.Date" => date()?,
        "Elixir.Time" => time()?,
        "Elixir.NaiveDateTime" => format!("{}T{}", date()?, time()?),
        "Elixir.DateTime" => {
            let utc = field("utc_offset")?.as_i64()?;
            let std = field("std_offset")?.as_i64()?;
            let zone = field("time_zone")?.as_str()?;
            let offset = if utc == 0 && std == 0 && zone == "Etc/UTC" {
                "Z".to_owned()
            } else {
                // ±HH:MM of the total offset; seconds of an offset are not shown.
                let total = utc.checked_add(std)?;
                let abs = total.unsigned_abs();
                let sign = if total < 0 { '-' } else { '+' };
                format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
            };
            format!("{}T{}{offset}", date()?, time()?)
        }
        _ => return None,
    };
    Some(serde_json::Value::String(text))
}

/// Elixir's `zero_pad/2` of Calendar.ISO: at least `width` digits, a minus sign before them.
fn zero_pad(v: i64, width: usize) -> String {
    if v < 0 {
        format!("-{:0width$}", v.unsigned_abs())
    } else {
        format!("{v:0width$}")
    }
}

// ---------------------------------------------------------------------------------------------
// Term order

/// Compares two terms in Erlang's exact term order, the order the VM keeps small map keys in:
/// number < atom < reference < fun < port < pid < tuple < map < `[]` < list < bit string.
///
/// Integers compare by value and all come before all floats (exact order, as map keys: `1` and
/// `1.0` are different keys); atoms compare by text, binaries bytewise, tuples by arity and then
/// element by element, maps by size, then keys, then values, lists element by element. Pids and
/// references, which only turn up as map keys in Phoenix.Tracker state, compare by node name
/// and then their numbers: consistent, but not guaranteed to be the VM's order.
pub fn term_order(a: &Term, b: &Term) -> Ordering {
    let (ra, rb) = (order_rank(a), order_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Term::Float(x), Term::Float(y)) => x.total_cmp(y),
        (Term::Float(_), _) => Ordering::Greater,
        (_, Term::Float(_)) => Ordering::Less,
        (Term::Int(_) | Term::BigInt { .. }, Term::Int(_) | Term::BigInt { .. }) => {
            cmp_integers(a, b)
        }
        (Term::Atom(x), Term::Atom(y)) => x.cmp(y),
        (
            Term::Reference {
                node: na,
                creation: ca,
                ids: ia,
            },
            Term::Reference {
                node: nb,
                creation: cb,
                ids: ib,
            },
        ) => na
            .cmp(nb)
            .then(ca.cmp(cb))
            .then_with(|| ia.len().cmp(&ib.len()))
            .then_with(|| ia.iter().rev().cmp(ib.iter().rev())),
        (
            Term::Pid {
                node: na,
                id: ia,
                serial: sa,
                creation: ca,
            },
            Term::Pid {
                node: nb,
                id: ib,
                serial: sb,
                creation: cb,
            },
        ) => na
            .cmp(nb)
            .then(ca.cmp(cb))
            .then(sa.cmp(sb))
            .then(ia.cmp(ib)),
        (Term::Tuple(x), Term::Tuple(y)) => x
            .len()
            .cmp(&y.len())
            .then_with(|| cmp_seq(x.iter(), y.iter())),
        (Term::Map(x), Term::Map(y)) => {
            let (sx, sy) = (sorted_pairs(x), sorted_pairs(y));
            x.len()
                .cmp(&y.len())
                .then_with(|| cmp_seq(sx.iter().map(|p| &p.0), sy.iter().map(|p| &p.0)))
                .then_with(|| cmp_seq(sx.iter().map(|p| &p.1), sy.iter().map(|p| &p.1)))
        }
        (Term::Binary(x), Term::Binary(y)) => x.cmp(y),
        (Term::List(_) | Term::ImproperList { .. }, Term::List(_) | Term::ImproperList { .. }) => {
            cmp_lists(a, b)
        }
        _ => Ordering::Equal,
    }
}

/// A map's pairs in the term order of their keys.
fn sorted_pairs(pairs: &[(Term, Term)]) -> Vec<&(Term, Term)> {
    let mut sorted: Vec<&(Term, Term)> = pairs.iter().collect();
    sorted.sort_by(|p, q| term_order(&p.0, &q.0));
    sorted
}

/// The class of a term in the term order (funs and ports are not [`Term`]s).
fn order_rank(t: &Term) -> u8 {
    match t {
        Term::Int(_) | Term::BigInt { .. } | Term::Float(_) => 0,
        Term::Atom(_) => 1,
        Term::Reference { .. } => 2,
        Term::Pid { .. } => 5,
        Term::Tuple(_) => 6,
        Term::Map(_) => 7,
        Term::Nil => 8,
        Term::List(_) | Term::ImproperList { .. } => 9,
        Term::Binary(_) => 10,
    }
}

fn cmp_seq<'a>(
    mut x: impl Iterator<Item = &'a Term>,
    mut y: impl Iterator<Item = &'a Term>,
) -> Ordering {
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => match term_order(p, q) {
                Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

/// Sign and little-endian magnitude of an integer term.
fn int_parts(t: &Term) -> (bool, Vec<u8>) {
    match t {
        Term::Int(i) => {
            let mut mag = i.unsigned_abs().to_le_bytes().to_vec();
            while mag.last() == Some(&0) {
                mag.pop();
            }
            (*i < 0, mag)
        }
        Term::BigInt {
            negative,
            magnitude_le,
        } => {
            let n = magnitude_le
                .iter()
                .rposition(|&b| b != 0)
                .map_or(0, |i| i + 1);
            (*negative && n > 0, magnitude_le[..n].to_vec())
        }
        _ => (false, Vec::new()),
    }
}

fn cmp_integers(a: &Term, b: &Term) -> Ordering {
    let ((na, ma), (nb, mb)) = (int_parts(a), int_parts(b));
    let by_magnitude = ma
        .len()
        .cmp(&mb.len())
        .then_with(|| ma.iter().rev().cmp(mb.iter().rev()));
    match (na, nb) {
        (false, false) => by_magnitude,
        (true, true) => by_magnitude.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    }
}

/// The elements of a list and what ends it (`None` for `[]`), following tails that are lists.
fn list_cells(t: &Term) -> (Vec<&Term>, Option<&Term>) {
    let mut elems = Vec::new();
    let mut cur = t;
    loop {
        match cur {
            Term::List(items) => {
                elems.extend(items);
                return (elems, None);
            }
            Term::ImproperList { elems: e, tail } => {
                elems.extend(e);
                cur = tail;
            }
            Term::Nil => return (elems, None),
            other => return (elems, Some(other)),
        }
    }
}

/// Lists compare cell by cell: heads first, then what follows them.
fn cmp_lists(a: &Term, b: &Term) -> Ordering {
    let ((ea, ta), (eb, tb)) = (list_cells(a), list_cells(b));
    for (p, q) in ea.iter().zip(&eb) {
        match term_order(p, q) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    // Where the shorter side ran out, compare what ends it (its tail, `[]` for a proper list)
    // with what the other side has left: its tail too if it ran out at the same cell, else
    // the rest of its cells, a non-empty list.
    let end_rank = |tail: Option<&Term>| tail.map_or(order_rank(&Term::Nil), order_rank);
    const LIST_RANK: u8 = 9;
    match ea.len().cmp(&eb.len()) {
        Ordering::Equal => match (ta, tb) {
            (None, None) => Ordering::Equal,
            (None, Some(t)) => term_order(&Term::Nil, t),
            (Some(t), None) => term_order(t, &Term::Nil),
            (Some(s), Some(t)) => term_order(s, t),
        },
        // A tail is never a list here (list_cells followed those), so the ranks differ.
        Ordering::Less => end_rank(ta).cmp(&LIST_RANK).then(Ordering::Less),
        Ordering::Greater => LIST_RANK.cmp(&end_rank(tb)).then(Ordering::Greater),
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// How atoms are written. The VM's default changed in OTP 26, and byte-identity with a given
/// Elixir node needs the form its OTP writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AtomEncoding {
    /// OTP 26+ (`minor_version: 2`, the default since OTP 26): every atom as
    /// SMALL_ATOM_UTF8_EXT (119), or ATOM_UTF8_EXT (118) past 255 bytes. What [`encode`] writes,
    /// so token bytes do not depend on this option.
    #[default]
    Utf8,
    /// OTP ≤ 25 (`minor_version: 1`): ATOM_EXT (100, two-byte length) with Latin-1 text when
    /// every character of the atom is Latin-1; only other atoms use the UTF-8 tags above.
    Latin1,
}

/// How [`encode_with`] writes a term. The default is exactly [`encode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeOptions {
    /// How atoms are written.
    pub atoms: AtomEncoding,
    /// Write the pairs of maps of at most [`SMALL_MAP_MAX_KEYS`] keys in Erlang term order of
    /// their keys ([`term_order`]), as the VM does: it stores such maps sorted and writes them
    /// as stored. Larger maps keep their pair order; the VM writes them in the order of its
    /// internal hash, which is not reproduced here.
    pub sort_small_maps: bool,
    /// zlib level 1..=9 (larger values count as 9), or 0 for no compression. As
    /// `term_to_binary(t, compressed: level)`, the compressed form is used only when it is not
    /// larger than the plain one.
    pub compression: u32,
}

/// The most keys a map may have and still be a "flatmap", stored (and written) sorted by key.
pub const SMALL_MAP_MAX_KEYS: usize = 32;

/// Encodes a term as `term_to_binary/1` does (with the 131 version byte, uncompressed).
///
/// Atoms are written with the OTP 26+ UTF-8 tags (119, or 118 when longer than 255 bytes);
/// integers use the smallest encoding (97, 98, then 110/111 with a minimal magnitude); a list of
/// 1..=65535 integers in 0..=255 is written as a byte string (107), exactly as the VM does.
/// Map pairs are written in the order given.
pub fn encode(term: &Term) -> Vec<u8> {
    encode_with(term, &EncodeOptions::default())
}

/// Encodes a term as `term_to_binary/2` does with the given [`EncodeOptions`].
///
/// The uncompressed bytes are the VM's. The compressed bytes are a valid zlib stream of them,
/// but not the same stream the VM's zlib writes (the deflate implementation here is
/// miniz_oxide), so a compressed term is byte-identical to the VM's only once inflated.
pub fn encode_with(term: &Term, opts: &EncodeOptions) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    encode_term(&mut body, term, opts);
    let level = opts.compression.min(9);
    if level > 0 {
        if let Some(compressed) = compress(&body, level) {
            return compressed;
        }
    }
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(VERSION);
    out.extend_from_slice(&body);
    out
}

/// `131, 80, u32 size, zlib(body)`, or `None` when that would not save at least the five bytes
/// of the compressed header: erts hands zlib an output buffer of `body.len() - 5` bytes and
/// writes the plain form when the stream does not fit.
fn compress(body: &[u8], level: u32) -> Option<Vec<u8>> {
    let size = u32::try_from(body.len()).ok()?;
    let mut head = Vec::with_capacity(body.len() + 6);
    head.push(VERSION);
    head.push(COMPRESSED);
    head.extend_from_slice(&size.to_be_bytes());
    let mut enc = flate2::write::ZlibEncoder::new(head, flate2::Compression::new(level));
    std::io::Write::write_all(&mut enc, body).ok()?;
    let out = enc.finish().ok()?;
    (out.len() - 6 <= body.len().saturating_sub(5)).then_some(out)
}

/// Encodes and zlib-compresses a term as `term_to_binary(t, [:compressed])` does
/// (`131, 80, u32 size, zlib`), whether or not that shrinks it. The compressed bytes depend on
/// the zlib implementation, so they are not byte-identical to the VM's; verifiers do not care,
/// because the MAC covers whatever was sent.
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

/// Appends the encoding of `term` without the version byte, as [`encode`] writes it.
pub fn encode_into(out: &mut Vec<u8>, term: &Term) {
    encode_term(out, term, &EncodeOptions::default());
}

/// Appends the encoding of `term` without the version byte, as [`encode_with`] writes it
/// (compression does not apply to a fragment).
pub fn encode_into_with(out: &mut Vec<u8>, term: &Term, opts: &EncodeOptions) {
    encode_term(out, term, opts);
}

fn encode_term(out: &mut Vec<u8>, term: &Term, opts: &EncodeOptions) {
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
        Term::Atom(name) => encode_atom(out, name, opts.atoms),
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
                    encode_term(out, t, opts);
                }
                out.push(NIL);
            }
        }
        Term::ImproperList { elems, tail } => {
            out.push(LIST);
            put_len_u32(out, elems.len());
            for t in elems {
                encode_term(out, t, opts);
            }
            encode_term(out, tail, opts);
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
                encode_term(out, t, opts);
            }
        }
        Term::Map(pairs) => {
            out.push(MAP);
            put_len_u32(out, pairs.len());
            if opts.sort_small_maps && pairs.len() <= SMALL_MAP_MAX_KEYS {
                for (k, v) in sorted_pairs(pairs) {
                    encode_term(out, k, opts);
                    encode_term(out, v, opts);
                }
            } else {
                for (k, v) in pairs {
                    encode_term(out, k, opts);
                    encode_term(out, v, opts);
                }
            }
        }
        Term::Pid {
            node,
            id,
            serial,
            creation,
        } => {
            out.push(PID_NEW);
            encode_atom(out, node, opts.atoms);
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
            encode_atom(out, node, opts.atoms);
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

fn encode_atom(out: &mut Vec<u8>, name: &str, how: AtomEncoding) {
    if how == AtomEncoding::Latin1 {
        // Latin-1 text is one byte per character; an atom with any other character falls
        // through to the UTF-8 tags, as the VM does.
        let latin1: Option<Vec<u8>> = name.chars().map(|c| u8::try_from(c).ok()).collect();
        if let Some(bytes) = latin1 {
            let bytes = &bytes[..bytes.len().min(usize::from(u16::MAX))];
            out.push(ATOM_LATIN1);
            out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(bytes);
            return;
        }
    }
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
            FLOAT_OLD => Term::Float(old_float(&self.array::<31>()?)?),
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
