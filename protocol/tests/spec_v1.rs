//! Spec §2.5 (V1 JSON) and §13 case 27.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::text;
use phx_protocol::{Broadcast, DecodeError, FrameRef, Message, Payload, Reply, Serializer};
use serde_json::{json, Value};

const V1: Serializer = Serializer::V1;

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

#[test]
fn spec_2_5_reply() {
    let r = Reply {
        join_ref: s("3"), // never written by V1
        ref_: s("4"),
        topic: "t".into(),
        status: "ok".into(),
        response: Payload::Json(json!({"a": 1})),
    };
    assert_eq!(
        text(&V1.encode_reply(&r).unwrap()),
        r#"{"event":"phx_reply","payload":{"response":{"a":1},"status":"ok"},"ref":"4","topic":"t"}"#
    );
}

#[test]
fn spec_2_5_push_and_broadcast_look_the_same() {
    let m = Message {
        join_ref: s("3"),
        ref_: Value::Null,
        topic: "t".into(),
        event: "e".into(),
        payload: Payload::empty(),
    };
    let want = r#"{"event":"e","payload":{},"ref":null,"topic":"t"}"#;
    assert_eq!(text(&V1.encode_push(&m).unwrap()), want);
    let b = Broadcast {
        topic: "t".into(),
        event: "e".into(),
        payload: Payload::empty(),
    };
    assert_eq!(text(&V1.encode_broadcast(&b).unwrap()), want);
}

#[test]
fn spec_13_case_27_v1_heartbeat() {
    let m = V1
        .decode(FrameRef::Text(
            r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}"#,
        ))
        .unwrap();
    assert_eq!(
        m,
        Message {
            join_ref: Value::Null,
            ref_: s("1"),
            topic: "phoenix".into(),
            event: "heartbeat".into(),
            payload: Payload::empty(),
        }
    );
    let r = Reply {
        join_ref: Value::Null,
        ref_: m.ref_,
        topic: m.topic,
        status: "ok".into(),
        response: Payload::empty(),
    };
    assert_eq!(
        text(&V1.encode_reply(&r).unwrap()),
        r#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"phoenix"}"#
    );
}

#[test]
fn spec_2_5_optional_join_ref_and_unknown_keys() {
    let m = V1
        .decode(FrameRef::Text(
            r#"{"x":[1,{"y":2}],"join_ref":"3","topic":"room:lobby","event":"ping","payload":[1],"ref":7}"#,
        ))
        .unwrap();
    assert_eq!(
        m,
        Message {
            join_ref: s("3"),
            ref_: json!(7),
            topic: "room:lobby".into(),
            event: "ping".into(),
            payload: Payload::Json(json!([1])),
        }
    );
}

#[test]
fn spec_2_5_missing_keys_and_non_objects_are_errors() {
    for frame in [
        r#"{"event":"e","payload":{},"ref":"1"}"#,
        r#"{"topic":"t","payload":{},"ref":"1"}"#,
        r#"{"topic":"t","event":"e","ref":"1"}"#,
        r#"{"topic":"t","event":"e","payload":{}}"#,
        r#"{"topic":1,"event":"e","payload":{},"ref":"1"}"#,
        r#"{"topic":"t","event":[],"payload":{},"ref":"1"}"#,
        r#"[null,"1","phoenix","heartbeat",{}]"#,
        r#""x""#,
        "null",
    ] {
        let err = V1.decode(FrameRef::Text(frame)).unwrap_err();
        assert!(matches!(err, DecodeError::Shape(_)), "{frame}: {err:?}");
    }
    for frame in ["", "{", r#"{"topic":"t"} x"#] {
        let err = V1.decode(FrameRef::Text(frame)).unwrap_err();
        assert!(matches!(err, DecodeError::Json(_)), "{frame}: {err:?}");
    }
}

#[test]
fn duplicate_keys_keep_the_last_value() {
    let m = V1
        .decode(FrameRef::Text(
            r#"{"topic":"a","topic":"b","event":"e","payload":{},"ref":"1"}"#,
        ))
        .unwrap();
    assert_eq!(m.topic, "b");
}

#[test]
fn encode_client_round_trips() {
    let m = Message {
        join_ref: s("3"),
        ref_: s("4"),
        topic: "t".into(),
        event: "e".into(),
        payload: Payload::Json(json!({"k": [1, "v"]})),
    };
    let f = V1.encode_client(&m).unwrap();
    assert_eq!(
        text(&f),
        r#"{"event":"e","join_ref":"3","payload":{"k":[1,"v"]},"ref":"4","topic":"t"}"#
    );
    assert_eq!(V1.decode(FrameRef::Text(text(&f))).unwrap(), m);
}
