//! Connect params: query strings decoded as `Plug.Conn.Query.decode/1` does, bounded.
//!
//! `a=1&user[id]=7&ids[]=1&ids[]=2` → `{"a":"1","user":{"id":"7"},"ids":["1","2"]}`, so a
//! socket's `connect` sees the params it would see in Phoenix. The decoder runs on every
//! WebSocket upgrade and LongPoll request *before* `connect`, without any token, so it is
//! written for hostile input: it is iterative (no recursion on the key's nesting), a key may
//! nest at most [`MAX_DEPTH`] levels and a query may hold at most [`MAX_PAIRS`] pairs; past
//! either bound the whole query is refused ([`ParamsError`]), which the transports answer with
//! HTTP 400 as Plug answers its own `InvalidQueryError`.
//!
//! Plug's rules, kept here:
//! - pairs are applied last to first, and an assignment never overwrites what a later pair
//!   already put there, so the last value of a repeated key wins (LongPoll relies on it: the
//!   client appends its session `token` after the user's params);
//! - `k[]=v` appends to a list, `k[][x]=v` appends a one-entry map, `k[x]=v` nests a map;
//! - only a key that ends in `]` is split; `a[b`, `a[b]c` and `[[[` are literal keys, and a key
//!   that opens with `[` (`[a]=1`) is dropped, as a top level that is a map has no list to put
//!   it in;
//! - when a key is both a map and a scalar (`a[b]=1&a=2`), the map wins in either order; a list
//!   and a scalar: the later one wins only if it came first in reverse order, never a panic;
//! - a pair without `=` has the value `null` (Elixir `nil`); `+` is a space; `%XX` is a byte,
//!   and a `%` not followed by two hex digits is kept as typed (Elixir ≥ 1.13's
//!   `URI.decode_www_form/1` no longer raises on it);
//! - a key or value that is not UTF-8 once decoded refuses the whole query
//!   ([`ParamsError::InvalidUtf8`]), as `fetch_query_params` validates UTF-8 by default.

use serde_json::{Map, Value};

/// How many levels a key may nest: `a` is one level, `a[b][c]` three, `a[]` two.
pub const MAX_DEPTH: usize = 32;

/// How many `key=value` pairs a query may hold (empty `&&` segments do not count).
pub const MAX_PAIRS: usize = 1000;

/// Why a query string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// A key nests deeper than [`MAX_DEPTH`] levels.
    #[error("a query key nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// More than [`MAX_PAIRS`] pairs.
    #[error("more than {MAX_PAIRS} query pairs")]
    TooManyPairs,
    /// A key or value is not UTF-8 once percent-decoded (`%FF`).
    #[error("invalid UTF-8 in query params")]
    InvalidUtf8,
}

/// Decodes a raw query string (without the `?`) into a params map.
pub fn decode_query(query: &str) -> Result<Map<String, Value>, ParamsError> {
    let mut pairs = Vec::new();
    for segment in query.split('&').filter(|s| !s.is_empty()) {
        if pairs.len() == MAX_PAIRS {
            return Err(ParamsError::TooManyPairs);
        }
        let (key, value) = match segment.split_once('=') {
            Some((k, v)) => (www_form_decode(k)?, Value::String(www_form_decode(v)?)),
            None => (www_form_decode(segment)?, Value::Null),
        };
        pairs.push((key, value));
    }
    // Split every key first, so a query is refused as a whole before anything is built.
    let mut split = Vec::with_capacity(pairs.len());
    for (key, value) in &pairs {
        split.push((split_key(key)?, value));
    }
    let mut out = Map::new();
    for (key, value) in split.into_iter().rev() {
        match key {
            Key::Plain(k) => assign_map(&mut out, k, value.clone()),
            Key::Parts(parts) => assign_parts(&mut out, &parts, value),
        }
    }
    Ok(out)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte. A `%` not
/// followed by two hex digits is kept as it is (as Elixir's `URI.decode_www_form/1` since
/// 1.13); a result that is not UTF-8 is refused.
fn www_form_decode(s: &str) -> Result<String, ParamsError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ParamsError::InvalidUtf8)
}

/// A key as Plug sees it.
#[derive(Debug, PartialEq)]
enum Key<'a> {
    /// Not split: no trailing `]`, or no `[` before it.
    Plain(&'a str),
    /// `users[address][street]` → `["users", "address", "street"]`; `ids[]` → `["ids", ""]`.
    Parts(Vec<&'a str>),
}

/// Splits a key, refusing more than [`MAX_DEPTH`] parts before collecting them all.
fn split_key(key: &str) -> Result<Key<'_>, ParamsError> {
    let Some(sub) = key.strip_suffix(']') else {
        return Ok(Key::Plain(key));
    };
    let Some((head, rest)) = sub.split_once('[') else {
        // `a]` is the key `a`; `]` alone is an empty list part at the top level (dropped).
        return Ok(if sub.is_empty() {
            Key::Parts(vec![""])
        } else {
            Key::Plain(sub)
        });
    };
    let mut parts = vec![head];
    for part in rest.split("][") {
        if parts.len() == MAX_DEPTH {
            return Err(ParamsError::TooDeep);
        }
        parts.push(part);
    }
    Ok(Key::Parts(parts))
}

/// Puts `key => value` unless a later pair already did (or put a map or list there).
fn assign_map(map: &mut Map<String, Value>, key: &str, value: Value) {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), value);
    }
}

/// Assigns a split key, walking down the existing structure with a loop (no recursion).
fn assign_parts(top: &mut Map<String, Value>, parts: &[&str], value: &Value) {
    let (first, rest) = match parts.split_first() {
        // An empty first part: a list element at the top level, which is a map. Dropped.
        Some((first, rest)) if !first.is_empty() => (*first, rest),
        _ => return,
    };
    let Some(mut cur) = top.get_mut(first) else {
        top.insert(first.to_owned(), fresh(rest, value));
        return;
    };
    let mut parts = rest;
    loop {
        let Some((&part, more)) = parts.split_first() else {
            return;
        };
        match (part.is_empty(), more.is_empty()) {
            // `…[]=v`: prepend to a non-empty list (pairs run last to first); `…[]` without a
            // value makes an empty list unless there is one.
            (true, true) => {
                match (&mut *cur, value) {
                    (Value::Array(items), Value::Null) if !items.is_empty() => {}
                    (_, Value::Null) => *cur = Value::Array(Vec::new()),
                    (Value::Array(items), v) if !items.is_empty() => items.insert(0, v.clone()),
                    _ => {}
                }
                return;
            }
            // `…[][x]=v`: a new element built from the rest.
            (true, false) => {
                if let Value::Array(items) = cur {
                    if !items.is_empty() {
                        items.insert(0, fresh(more, value));
                    }
                }
                return;
            }
            // `…[x]…`: descend into a map, or replace a scalar or list with a new map.
            (false, _) => {
                if !cur.is_object() {
                    *cur = Value::Object(Map::from_iter([(part.to_owned(), fresh(more, value))]));
                    return;
                }
                let Value::Object(map) = cur else {
                    return;
                };
                if more.is_empty() {
                    assign_map(map, part, value.clone());
                    return;
                }
                if !map.contains_key(part) {
                    map.insert(part.to_owned(), fresh(more, value));
                    return;
                }
                let Some(next) = map.get_mut(part) else {
                    return;
                };
                cur = next;
                parts = more;
            }
        }
    }
}

/// What `parts = value` builds where nothing was: innermost first, so no recursion.
fn fresh(parts: &[&str], value: &Value) -> Value {
    let mut built = value.clone();
    for (i, part) in parts.iter().enumerate().rev() {
        let is_last = i + 1 == parts.len();
        built = match (part.is_empty(), is_last, built) {
            (true, true, Value::Null) => Value::Array(Vec::new()),
            (true, _, v) => Value::Array(vec![v]),
            (false, _, v) => Value::Object(Map::from_iter([((*part).to_owned(), v)])),
        };
    }
    built
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(q: &str) -> Value {
        Value::Object(decode_query(q).expect("decodes"))
    }

    #[test]
    fn split_key_follows_plug() {
        assert_eq!(split_key("a"), Ok(Key::Plain("a")));
        assert_eq!(split_key("a[b"), Ok(Key::Plain("a[b")));
        assert_eq!(split_key("a]"), Ok(Key::Plain("a")));
        assert_eq!(split_key("a[b][c]"), Ok(Key::Parts(vec!["a", "b", "c"])));
        assert_eq!(split_key("a[]"), Ok(Key::Parts(vec!["a", ""])));
        assert_eq!(split_key("a[b]c]"), Ok(Key::Parts(vec!["a", "b]c"])));
    }

    #[test]
    fn flat_and_last_wins() {
        assert_eq!(
            decode("token=a&vsn=2.0.0&token=b"),
            json!({"token": "b", "vsn": "2.0.0"})
        );
    }

    #[test]
    fn fresh_builds_inside_out() {
        assert_eq!(
            fresh(&["b", "", "c"], &json!("1")),
            json!({"b": [{"c": "1"}]})
        );
        assert_eq!(fresh(&[""], &Value::Null), json!([]));
    }
}
