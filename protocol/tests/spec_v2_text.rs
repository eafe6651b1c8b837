//! Spec §2.2 and §2.4: V2 JSON text frames, byte for byte, and the §13 cases built from them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::text;
use phx_protocol::{
    Broadcast, DecodeError, FrameRef, Message, Payload, Reply, Serializer, ServerMessage,
};
use serde_json::{json, Value};

const V2: Serializer = Serializer::V2;

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn reply(join_ref: Value, ref_: &str, topic: &str, status: &str, response: Value) -> Reply {
    Reply {
        join_ref,
        ref_: s(ref_),
        topic: topic.into(),
        status: status.into(),
        response: Payload::Json(response),
    }
}

fn push(join_ref: Value, ref_: Value, topic: &str, event: &str, payload: Value) -> Message {
    Message {
        join_ref,
        ref_,
        topic: topic.into(),
        event: event.into(),
        payload: Payload::Json(payload),
    }
}

#[track_caller]
fn assert_reply(r: &Reply, want: &str) {
    let frame = V2.encode_reply(r).unwrap();
    assert_eq!(text(&frame), want);
}

#[track_caller]
fn assert_push(m: &Message, want: &str) {
    let frame = V2.encode_push(m).unwrap();
    assert_eq!(text(&frame), want);
}

// ---- §2.4 envelopes -------------------------------------------------------------------------

#[test]
fn spec_2_4_heartbeat_reply() {
    assert_reply(
        &reply(Value::Null, "5", "phoenix", "ok", json!({})),
        r#"[null,"5","phoenix","phx_reply",{"response":{},"status":"ok"}]"#,
    );
}

#[test]
fn spec_2_4_join_ok() {
    assert_reply(
        &reply(s("3"), "3", "room:lobby", "ok", json!({})),
        r#"["3","3","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#,
    );
}

#[test]
fn spec_2_4_join_error() {
    assert_reply(
        &reply(
            s("3"),
            "3",
            "room:lobby",
            "error",
            json!({"reason": "unauthorized"}),
        ),
        r#"["3","3","room:lobby","phx_reply",{"response":{"reason":"unauthorized"},"status":"error"}]"#,
    );
}

#[test]
fn spec_2_4_unmatched_topic() {
    assert_reply(
        &reply(
            Value::Null,
            "7",
            "nope",
            "error",
            json!({"reason": "unmatched topic"}),
        ),
        r#"[null,"7","nope","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#,
    );
}

#[test]
fn spec_2_4_phx_close() {
    assert_push(
        &push(s("3"), s("3"), "room:lobby", "phx_close", json!({})),
        r#"["3","3","room:lobby","phx_close",{}]"#,
    );
}

#[test]
fn spec_2_4_phx_error() {
    assert_push(
        &push(
            s("3"),
            s("3"),
            "room:lobby",
            "phx_error",
            json!({"reason": "channel_crash"}),
        ),
        r#"["3","3","room:lobby","phx_error",{"reason":"channel_crash"}]"#,
    );
}

#[test]
fn spec_2_4_server_push() {
    assert_push(
        &push(
            s("3"),
            Value::Null,
            "room:lobby",
            "new_msg",
            json!({"z": null, "body": "hi", "at": 1, "a": [1.5, true]}),
        ),
        r#"["3",null,"room:lobby","new_msg",{"a":[1.5,true],"at":1,"body":"hi","z":null}]"#,
    );
}

#[test]
fn spec_2_4_server_push_keys_sorted_even_when_parsed_out_of_order() {
    let payload: Value =
        serde_json::from_str(r#"{"z":null,"body":"hi","a":[1.5,true],"at":1}"#).unwrap();
    assert_push(
        &push(s("3"), Value::Null, "room:lobby", "new_msg", payload),
        r#"["3",null,"room:lobby","new_msg",{"a":[1.5,true],"at":1,"body":"hi","z":null}]"#,
    );
}

#[test]
fn spec_2_4_fastlane_broadcast() {
    let b = Broadcast {
        topic: "room:lobby".into(),
        event: "new_msg".into(),
        payload: Payload::Json(json!({"body": "hi"})),
    };
    let frame = V2.encode_broadcast(&b).unwrap();
    assert_eq!(
        text(&frame),
        r#"[null,null,"room:lobby","new_msg",{"body":"hi"}]"#
    );
}

#[test]
fn spec_2_4_bytewise_key_order_uppercase_first() {
    // Erlang orders binary keys bytewise: "A" (0x41) < "Z" (0x5A) < "a" < "b".
    assert_push(
        &push(
            s("1"),
            Value::Null,
            "t",
            "e",
            json!({"b": 1, "a": 2, "A": 3, "Z": 4}),
        ),
        r#"["1",null,"t","e",{"A":3,"Z":4,"a":2,"b":1}]"#,
    );
}

#[test]
fn spec_2_4_floats() {
    assert_push(
        &push(
            Value::Null,
            Value::Null,
            "t",
            "e",
            json!({"a": 1.0, "b": 1.0e20}),
        ),
        r#"[null,null,"t","e",{"a":1.0,"b":1.0e20}]"#,
    );
}

#[test]
fn spec_2_4_escaping_in_envelope_fields() {
    assert_push(
        &push(
            s("\u{1f}"),
            Value::Null,
            "a\"b\\c/d",
            "\u{8}\n",
            json!({"k\u{0}": "é\u{2028}\u{7f}"}),
        ),
        "[\"\\u001F\",null,\"a\\\"b\\\\c/d\",\"\\b\\n\",{\"k\\u0000\":\"é\u{2028}\u{7f}\"}]",
    );
}

#[test]
fn spec_2_1_refs_echoed_verbatim_numbers_and_strings() {
    assert_reply(
        &Reply {
            join_ref: json!(3),
            ref_: json!(4),
            topic: "t".into(),
            status: "ok".into(),
            response: Payload::empty(),
        },
        r#"[3,4,"t","phx_reply",{"response":{},"status":"ok"}]"#,
    );
}

// ---- §2.2 decoding --------------------------------------------------------------------------

#[test]
fn spec_2_2_decode_join() {
    let m = V2
        .decode(FrameRef::Text(r#"["3","3","room:lobby","phx_join",{}]"#))
        .unwrap();
    assert_eq!(m, push(s("3"), s("3"), "room:lobby", "phx_join", json!({})));
}

#[test]
fn spec_2_2_extra_trailing_elements_ignored() {
    let m = V2
        .decode(FrameRef::Text(
            r#"[null,"1","phoenix","heartbeat",{},"extra",[1,{"x":2}],null]"#,
        ))
        .unwrap();
    assert_eq!(
        m,
        push(Value::Null, s("1"), "phoenix", "heartbeat", json!({}))
    );
}

#[test]
fn spec_2_2_payload_may_be_any_json_value() {
    for (frame, payload) in [
        (r#"[null,"1","t","e","str"]"#, json!("str")),
        (r#"[null,"1","t","e",[1,2]]"#, json!([1, 2])),
        (r#"[null,"1","t","e",null]"#, Value::Null),
        (r#"[null,"1","t","e",12.5]"#, json!(12.5)),
    ] {
        let m = V2.decode(FrameRef::Text(frame)).unwrap();
        assert_eq!(m.payload, Payload::Json(payload), "{frame}");
    }
}

#[test]
fn spec_2_2_refs_may_be_numbers() {
    let m = V2.decode(FrameRef::Text(r#"[3,4,"t","e",{}]"#)).unwrap();
    assert_eq!((m.join_ref, m.ref_), (json!(3), json!(4)));
}

#[test]
fn spec_13_case_34_malformed_frame_is_an_error() {
    let err = V2
        .decode(FrameRef::Text(r#"["1","1","t","e"]"#))
        .unwrap_err();
    assert!(matches!(err, DecodeError::Shape(_)), "{err:?}");
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    type Check = fn(&DecodeError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| matches!(e, DecodeError::Json(_))),
        ("[", |e| matches!(e, DecodeError::Json(_))),
        ("[]", |e| matches!(e, DecodeError::Shape(_))),
        ("{}", |e| matches!(e, DecodeError::Shape(_))),
        (
            r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}"#,
            |e| matches!(e, DecodeError::Shape(_)),
        ),
        ("\"x\"", |e| matches!(e, DecodeError::Shape(_))),
        ("42", |e| matches!(e, DecodeError::Shape(_))),
        (r#"[null,"1",1,"e",{}]"#, |e| {
            matches!(e, DecodeError::Shape(_))
        }),
        (r#"[null,"1","t",null,{}]"#, |e| {
            matches!(e, DecodeError::Shape(_))
        }),
        (r#"[null,"1",{"a":[1]},"e",{}]"#, |e| {
            matches!(e, DecodeError::Shape(_))
        }),
        (r#"[null,"1","t","e",{}] x"#, |e| {
            matches!(e, DecodeError::Json(_))
        }),
        (r#"[null,"1","t","e",{]"#, |e| {
            matches!(e, DecodeError::Json(_))
        }),
    ];
    for (frame, ok) in cases {
        let err = V2.decode(FrameRef::Text(frame)).unwrap_err();
        assert!(ok(&err), "{frame:?} gave {err:?}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!(
        "[null,\"1\",\"t\",\"e\",{}{}]",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(V2.decode(FrameRef::Text(&deep)).is_err());
}

// ---- §13 cases expressed as codec round trips ------------------------------------------------

/// §13 cases 1–22: every envelope the conformance suite expects, encoded from the message model.
#[test]
fn spec_13_envelopes() {
    let ok = |jr: Value, r: &str, topic: &str, resp: Value| reply(jr, r, topic, "ok", resp);
    let cases: Vec<(Reply, &str)> = vec![
        (
            ok(Value::Null, "1", "phoenix", json!({})),
            r#"[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]"#,
        ),
        (
            ok(Value::Null, "2", "phoenix", json!({})),
            r#"[null,"2","phoenix","phx_reply",{"response":{},"status":"ok"}]"#,
        ),
        (
            ok(s("4"), "4", "room:greet", json!({"hello":"world"})),
            r#"["4","4","room:greet","phx_reply",{"response":{"hello":"world"},"status":"ok"}]"#,
        ),
        (
            reply(
                s("5"),
                "5",
                "room:private",
                "error",
                json!({"reason":"unauthorized"}),
            ),
            r#"["5","5","room:private","phx_reply",{"response":{"reason":"unauthorized"},"status":"error"}]"#,
        ),
        (
            reply(
                Value::Null,
                "7",
                "nope:1",
                "error",
                json!({"reason":"unmatched topic"}),
            ),
            r#"[null,"7","nope:1","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#,
        ),
        (
            ok(s("3"), "10", "room:lobby", json!({"x":1})),
            r#"["3","10","room:lobby","phx_reply",{"response":{"x":1},"status":"ok"}]"#,
        ),
        (
            ok(s("20"), "21", "room:none", json!({})),
            r#"["20","21","room:none","phx_reply",{"response":{},"status":"ok"}]"#,
        ),
        (
            reply(
                s("999"),
                "999",
                "room:101",
                "error",
                json!({"reason":"too many channels joined"}),
            ),
            r#"["999","999","room:101","phx_reply",{"response":{"reason":"too many channels joined"},"status":"error"}]"#,
        ),
    ];
    for (r, want) in cases {
        assert_reply(&r, want);
    }
    assert_push(
        &push(s("3"), Value::Null, "room:lobby", "tick", json!({"n": 1})),
        r#"["3",null,"room:lobby","tick",{"n":1}]"#,
    );
    assert_push(
        &push(
            s("3"),
            Value::Null,
            "room:lobby",
            "filtered",
            json!({"v": 1, "seen": true}),
        ),
        r#"["3",null,"room:lobby","filtered",{"seen":true,"v":1}]"#,
    );
    let b = Broadcast {
        topic: "room:lobby".into(),
        event: "e".into(),
        payload: Payload::empty(),
    };
    assert_eq!(
        text(&V2.encode_broadcast(&b).unwrap()),
        r#"[null,null,"room:lobby","e",{}]"#
    );
}

#[test]
fn decode_server_classifies_replies_and_pushes() {
    let r = reply(s("3"), "3", "room:lobby", "ok", json!({"a": 1}));
    let frame = V2.encode_reply(&r).unwrap();
    let got = V2.decode_server(FrameRef::Text(text(&frame))).unwrap();
    assert_eq!(got, ServerMessage::Reply(r));

    let m = push(s("3"), Value::Null, "room:lobby", "tick", json!({"n": 1}));
    let frame = V2.encode_push(&m).unwrap();
    let got = V2.decode_server(FrameRef::Text(text(&frame))).unwrap();
    assert_eq!(got, ServerMessage::Push(m));
}
