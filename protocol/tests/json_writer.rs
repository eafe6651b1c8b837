//! The Jason-compatible JSON writer (spec §2.4 "JSON details").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use phx_protocol::json;
use serde_json::{json, Value};

fn float(f: f64) -> String {
    let mut out = Vec::new();
    json::write_f64(&mut out, f);
    String::from_utf8(out).unwrap()
}

#[test]
fn spec_2_4_no_whitespace_and_sorted_keys() {
    let v = json!({"b": [1, {"d": null, "c": true}], "a": "x"});
    assert_eq!(
        json::to_string(&v),
        r#"{"a":"x","b":[1,{"c":true,"d":null}]}"#
    );
}

#[test]
fn map_order_is_bytewise_not_insertion() {
    // Guards against serde_json's `preserve_order` feature being switched on by any crate in the
    // build: it would silently change every payload's key order.
    let mut m = serde_json::Map::new();
    m.insert("b".into(), json!(1));
    m.insert("a".into(), json!(2));
    m.insert("Z".into(), json!(3));
    m.insert("é".into(), json!(4));
    m.insert("aa".into(), json!(5));
    assert_eq!(
        json::to_string(&Value::Object(m)),
        r#"{"Z":3,"a":2,"aa":5,"b":1,"é":4}"#
    );
}

#[test]
fn spec_2_4_escaping_like_jason() {
    let mut input = String::new();
    for c in 0u8..0x20 {
        input.push(char::from(c));
    }
    input.push_str("\"\\/\u{7f}é\u{2028}\u{2029}😀");
    let want = concat!(
        "\"",
        "\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007",
        "\\b\\t\\n\\u000B\\f\\r\\u000E\\u000F",
        "\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017",
        "\\u0018\\u0019\\u001A\\u001B\\u001C\\u001D\\u001E\\u001F",
        "\\\"\\\\/\u{7f}é\u{2028}\u{2029}😀",
        "\""
    );
    assert_eq!(json::to_string(&Value::String(input)), want);
}

#[test]
fn spec_2_4_uppercase_hex() {
    assert_eq!(json::to_string(&json!("\u{1f}")), "\"\\u001F\"");
    assert_eq!(json::to_string(&json!("\u{1b}[0m")), "\"\\u001B[0m\"");
}

#[test]
fn spec_2_4_floats() {
    assert_eq!(float(1.0), "1.0");
    assert_eq!(float(1.0e20), "1.0e20");
    assert_eq!(float(1.5), "1.5");
}

/// OTP 25+ `:io_lib_format.fwrite_g/1` layouts (what Jason prints on current OTP).
#[test]
fn float_layouts_follow_otp() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (-1.5, "-1.5"),
        (0.1, "0.1"),
        (0.5, "0.5"),
        (0.001, "0.001"),
        (0.0012, "0.0012"),
        (0.0001, "1.0e-4"),
        (0.00012, "1.2e-4"),
        (1.0e-10, "1.0e-10"),
        (10.0, "10.0"),
        (100.0, "100.0"),
        (120.0, "120.0"),
        (1000.0, "1.0e3"),
        (1200.0, "1.2e3"),
        (1234.0, "1234.0"),
        (123.456, "123.456"),
        (123_456_789.0, "123456789.0"),
        (1.0e15, "1.0e15"),
        (1.0e16, "1.0e16"),
        (123.0e15, "1.23e17"),
        (9_007_199_254_740_991.0, "9007199254740991.0"),
        (9_007_199_254_740_992.0, "9.007199254740992e15"),
        (0.30000000000000004, "0.30000000000000004"),
        (5.0e-324, "5.0e-324"),
        (f64::MAX, "1.7976931348623157e308"),
        (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
        (2.71, "2.71"),
        (-2.5e-7, "-2.5e-7"),
    ];
    for (f, want) in cases {
        assert_eq!(float(*f), *want, "{f:e}");
    }
}

#[test]
fn integers() {
    assert_eq!(json::to_string(&json!(0)), "0");
    assert_eq!(json::to_string(&json!(-7)), "-7");
    assert_eq!(json::to_string(&json!(u64::MAX)), "18446744073709551615");
    assert_eq!(json::to_string(&json!(i64::MIN)), "-9223372036854775808");
}

#[test]
fn scalars_and_empty_containers() {
    assert_eq!(
        json::to_string(&json!([null, true, false, [], {}, ""])),
        r#"[null,true,false,[],{},""]"#
    );
}

/// A byte-at-a-time reference for the escaping rules, to check the word-at-a-time scanner with
/// every special character at every offset around the 8-byte boundaries.
fn reference_escape(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[test]
fn word_scanner_matches_reference_at_every_offset() {
    let specials = [
        '"', '\\', '\u{0}', '\u{1f}', '\n', '\u{7f}', 'é', '\u{2028}', ' ', '~',
    ];
    for len in 0..40 {
        for pos in 0..len.max(1) {
            for &c in &specials {
                let mut s: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"[..len].to_owned();
                if len > 0 {
                    s.replace_range(pos..pos + 1, &c.to_string());
                }
                let mut out = Vec::new();
                json::write_str(&mut out, &s);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    reference_escape(&s),
                    "{s:?}"
                );
            }
        }
    }
}
