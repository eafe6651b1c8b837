//! Connect params (spec "Connect params"): the query string as `Plug.Conn.Query.decode/1`
//! decodes it, plus the bounds that make the decoder safe to run before `connect`.
//!
//! Query in, params out. The Plug cases are restated from its documented behaviour; the
//! bounds are this server's (depth ≤ 32, pairs ≤ 1000, over either → an error the transports
//! answer with HTTP 400).

use phx_protocol::params::{decode_query, ParamsError, MAX_DEPTH, MAX_PAIRS};
use serde_json::{json, Value};

fn decode(q: &str) -> Value {
    Value::Object(decode_query(q).unwrap_or_else(|e| panic!("{q:?} refused: {e}")))
}

/// `a[b][b]…=1` with `depth` levels (`a` is level 1).
fn nested(depth: usize) -> String {
    format!("a{}=1", "[b]".repeat(depth - 1))
}

fn pairs(n: usize) -> String {
    (0..n)
        .map(|i| format!("k{i}=1"))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn flat_pairs() {
    assert_eq!(
        decode("foo=bar&baz=bat"),
        json!({"foo": "bar", "baz": "bat"})
    );
    assert_eq!(decode(""), json!({}));
}

#[test]
fn one_level_maps() {
    assert_eq!(
        decode("users[name]=hello&users[age]=17"),
        json!({"users": {"name": "hello", "age": "17"}})
    );
}

#[test]
fn many_level_maps() {
    assert_eq!(
        decode("users[name]=hello&users[age]=17&users[address][street]=Mourato"),
        json!({"users": {"name": "hello", "age": "17", "address": {"street": "Mourato"}}})
    );
    assert_eq!(decode("x[y][z]=1"), json!({"x": {"y": {"z": "1"}}}));
}

#[test]
fn form_encoding_plus_and_percent() {
    assert_eq!(
        decode("my+weird+field=q1%212%22%27w%245%267%2Fz8%29%3F"),
        json!({"my weird field": "q1!2\"'w$5&7/z8)?"})
    );
    assert_eq!(decode("user%5Bid%5D=1"), json!({"user": {"id": "1"}}));
    assert_eq!(decode("s=%F0%9F%92%A9"), json!({"s": "💩"}));
    // Not hex, or cut short: kept as typed (Elixir ≥ 1.13's URI.decode_www_form).
    assert_eq!(
        decode("p=100%&q=%zz&r=%4"),
        json!({"p": "100%", "q": "%zz", "r": "%4"})
    );
}

#[test]
fn bytes_that_are_not_utf8_refuse_the_query() {
    // Plug's fetch_query_params validates UTF-8: InvalidQueryError, HTTP 400.
    assert_eq!(decode_query("r=%ff"), Err(ParamsError::InvalidUtf8));
    assert_eq!(decode_query("%C3=1"), Err(ParamsError::InvalidUtf8));
    assert_eq!(
        decode_query("ok=1&bad=%ED%A0%80"),
        Err(ParamsError::InvalidUtf8)
    );
    assert_eq!(decode("s=%C3%A9"), json!({"s": "é"}));
}

#[test]
fn empty_keys_values_and_segments() {
    assert_eq!(decode("="), json!({"": ""}));
    assert_eq!(decode("key="), json!({"key": ""}));
    assert_eq!(decode("=value"), json!({"": "value"}));
    // A pair without `=` is Elixir's nil.
    assert_eq!(decode("key"), json!({"key": null}));
    assert_eq!(decode("a=1&&b=x+y&"), json!({"a": "1", "b": "x y"}));
}

#[test]
fn last_value_wins() {
    assert_eq!(decode("foo=bar&foo=baz"), json!({"foo": "baz"}));
    assert_eq!(
        decode("users[name]=bar&users[name]=baz"),
        json!({"users": {"name": "baz"}})
    );
    assert_eq!(
        decode("x[y][z]=1&x[y][z]=2"),
        json!({"x": {"y": {"z": "2"}}})
    );
    // LongPoll: the client appends its session token after the user's params.
    assert_eq!(
        decode("token=user&vsn=2.0.0&token=session"),
        json!({"token": "session", "vsn": "2.0.0"})
    );
}

#[test]
fn lists() {
    assert_eq!(decode("foo[]"), json!({"foo": []}));
    assert_eq!(decode("foo[]="), json!({"foo": [""]}));
    assert_eq!(
        decode("foo[]=bar&foo[]=baz"),
        json!({"foo": ["bar", "baz"]})
    );
    assert_eq!(
        decode("foo[]=bar&foo[]=baz&bat[]=1&bat[]=2"),
        json!({"foo": ["bar", "baz"], "bat": ["1", "2"]})
    );
    assert_eq!(decode("x[y][z][]=1"), json!({"x": {"y": {"z": ["1"]}}}));
    assert_eq!(
        decode("x[y][z][]=1&x[y][z][]=2"),
        json!({"x": {"y": {"z": ["1", "2"]}}})
    );
}

#[test]
fn lists_of_maps() {
    assert_eq!(decode("x[y][][z]=1"), json!({"x": {"y": [{"z": "1"}]}}));
    assert_eq!(decode("x[y][][z][]=1"), json!({"x": {"y": [{"z": ["1"]}]}}));
    assert_eq!(
        decode("u[][n]=a&u[][n]=b"),
        json!({"u": [{"n": "a"}, {"n": "b"}]})
    );
}

#[test]
fn clashes_keep_the_later_shape_or_the_map() {
    assert_eq!(decode("x[]=1&x[y]=1"), json!({"x": {"y": "1"}}));
    assert_eq!(decode("x[y][][w]=2&x[y]=1"), json!({"x": {"y": "1"}}));
    assert_eq!(decode("x=1&x[y]=1"), json!({"x": {"y": "1"}}));
    // A map beats a scalar whichever comes last.
    assert_eq!(decode("x[y]=1&x=2"), json!({"x": {"y": "1"}}));
    // A list after a scalar, and a scalar after a list: the later one wins.
    assert_eq!(decode("x=1&x[]=2"), json!({"x": ["2"]}));
    assert_eq!(decode("x[]=1&x=2"), json!({"x": "2"}));
    // Nine hundred map entries and a scalar, the hostile suite's shape: still the map.
    let q = format!("{}a=1", "a[b]=1&".repeat(900));
    assert_eq!(decode(&q), json!({"a": {"b": "1"}}));
    let q = format!("a=1&{}", "a[b]=1&".repeat(900));
    assert_eq!(decode(&q), json!({"a": {"b": "1"}}));
}

#[test]
fn unbalanced_brackets_are_literal_keys() {
    assert_eq!(decode("a[b=1"), json!({"a[b": "1"}));
    assert_eq!(decode("a[b]c=1"), json!({"a[b]c": "1"}));
    assert_eq!(decode("[[[=1"), json!({"[[[": "1"}));
    // Only the trailing `]` and the first `[` split: what is between is one part.
    assert_eq!(decode("a[b[c]=1"), json!({"a": {"b[c": "1"}}));
    assert_eq!(decode("a[b]c]=1"), json!({"a": {"b]c": "1"}}));
    assert_eq!(decode("a]=1"), json!({"a": "1"}));
    assert_eq!(decode("a]]]=1"), json!({"a]]": "1"}));
    // A key that opens with `[` names a list element at the top level, which is a map.
    assert_eq!(decode("[a]=1&b=2"), json!({"b": "2"}));
    assert_eq!(decode("]=1&]"), json!({}));
}

#[test]
fn depth_32_decodes_and_33_is_refused() {
    let ok = decode(&nested(MAX_DEPTH));
    let mut v = &ok["a"];
    for _ in 1..MAX_DEPTH - 1 {
        v = &v["b"];
    }
    assert_eq!(v["b"], json!("1"));
    assert_eq!(
        decode_query(&nested(MAX_DEPTH + 1)),
        Err(ParamsError::TooDeep)
    );
    // Lists count as levels too: `a` + 31 × `[]` is 32 levels.
    assert!(decode_query(&format!("a{}=1", "[]".repeat(MAX_DEPTH - 1))).is_ok());
    assert_eq!(
        decode_query(&format!("a{}=1", "[]".repeat(MAX_DEPTH))),
        Err(ParamsError::TooDeep)
    );
}

#[test]
fn one_deep_key_refuses_the_whole_query() {
    let q = format!("vsn=2.0.0&{}&token=x", nested(MAX_DEPTH + 1));
    assert_eq!(decode_query(&q), Err(ParamsError::TooDeep));
}

#[test]
fn a_hundred_thousand_levels_is_an_error_not_a_stack_overflow() {
    // On a small thread stack (64 KiB), so a decoder that recursed per level would overflow.
    let q = nested(100_000);
    let handle = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || decode_query(&q))
        .expect("spawn");
    assert_eq!(
        handle.join().expect("no overflow"),
        Err(ParamsError::TooDeep)
    );
    let q = format!("a{}=1", "[]".repeat(100_000));
    assert_eq!(decode_query(&q), Err(ParamsError::TooDeep));
}

#[test]
fn a_thousand_pairs_decode_and_1001_are_refused() {
    assert_eq!(
        decode_query(&pairs(MAX_PAIRS)).map(|m| m.len()),
        Ok(MAX_PAIRS)
    );
    assert_eq!(
        decode_query(&pairs(MAX_PAIRS + 1)),
        Err(ParamsError::TooManyPairs)
    );
    // Empty segments are not pairs.
    let q = format!("{}&&&&", pairs(MAX_PAIRS));
    assert!(decode_query(&q).is_ok());
    // Repeats count: the bound is on work, not on distinct keys.
    assert_eq!(
        decode_query(&"a=1&".repeat(MAX_PAIRS + 1)),
        Err(ParamsError::TooManyPairs)
    );
}

#[test]
fn hostile_shapes_decode_or_are_refused_without_panicking() {
    let shapes = [
        format!("a{}=1", "[]".repeat(2000)),
        format!("{}=1", "[".repeat(4000)),
        format!("a{}=1", "]".repeat(4000)),
        format!("a{}=1", "%5Bb%5D".repeat(1000)),
        format!("a[{}]=1", "b".repeat(4000)),
        format!("a{}", "][".repeat(4000)),
        "%".repeat(4000),
        "&=&=&[]&[]=&][".to_owned(),
    ];
    for q in &shapes {
        let _ = decode_query(q);
    }
    // Percent-encoded brackets are brackets after decoding, and they count.
    assert_eq!(
        decode_query(&format!("a{}=1", "%5Bb%5D".repeat(1000))),
        Err(ParamsError::TooDeep)
    );
    assert_eq!(
        decode(&format!("{}=1", "[".repeat(4000)))[&"[".repeat(4000)],
        json!("1")
    );
}
