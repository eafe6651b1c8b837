//! Spec §2.3 (V2 binary frames) and §13 cases 23–26, compared byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{assert_bytes, binary, spec_bytes};
use phx_protocol::{
    Broadcast, DecodeError, EncodeError, FrameRef, Message, Payload, Reply, Serializer,
    ServerMessage,
};
use serde_json::{json, Value};

const V2: Serializer = Serializer::V2;

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn bin(b: &[u8]) -> Payload {
    Payload::Binary(Bytes::copy_from_slice(b))
}

fn bpush(join_ref: Value, topic: &str, event: &str, data: &[u8]) -> Message {
    Message {
        join_ref,
        ref_: Value::Null,
        topic: topic.into(),
        event: event.into(),
        payload: bin(data),
    }
}

#[test]
fn spec_2_3_push() {
    let f = V2
        .encode_push(&bpush(s("3"), "t", "e", &[1, 2, 3]))
        .unwrap();
    assert_bytes(binary(&f), &spec_bytes("00 01 01 01 33 74 65 01 02 03"));
}

#[test]
fn spec_2_3_push_nil_join_ref() {
    let f = V2
        .encode_push(&bpush(Value::Null, "t", "e", &[1, 2, 3]))
        .unwrap();
    assert_bytes(binary(&f), &spec_bytes("00 00 01 01 74 65 01 02 03"));
}

#[test]
fn spec_2_3_reply() {
    let r = Reply {
        join_ref: s("3"),
        ref_: s("4"),
        topic: "t".into(),
        status: "ok".into(),
        response: bin(&[1, 2, 3]),
    };
    let f = V2.encode_reply(&r).unwrap();
    assert_bytes(
        binary(&f),
        &spec_bytes("01 01 01 01 02 33 34 74 6f 6b 01 02 03"),
    );
}

#[test]
fn spec_2_3_broadcast() {
    let b = Broadcast {
        topic: "t".into(),
        event: "e".into(),
        payload: bin(&[1, 2, 3]),
    };
    let f = V2.encode_broadcast(&b).unwrap();
    assert_bytes(binary(&f), &spec_bytes("02 01 01 74 65 01 02 03"));
}

#[test]
fn spec_13_case_23_binary_push_in() {
    let frame = spec_bytes("00 01 02 0a 04 33 34 30 room:lobby ping DE AD");
    let m = V2.decode(FrameRef::Binary(&frame)).unwrap();
    assert_eq!(
        m,
        Message {
            join_ref: s("3"),
            ref_: s("40"),
            topic: "room:lobby".into(),
            event: "ping".into(),
            payload: bin(&[0xDE, 0xAD]),
        }
    );
}

#[test]
fn spec_13_case_23_binary_reply_out() {
    let r = Reply {
        join_ref: s("3"),
        ref_: s("40"),
        topic: "room:lobby".into(),
        status: "ok".into(),
        response: bin(&[0xDE, 0xAD]),
    };
    let f = V2.encode_reply(&r).unwrap();
    assert_bytes(
        binary(&f),
        &spec_bytes("01 01 02 0a 02 33 34 30 room:lobby 6f 6b DE AD"),
    );
}

#[test]
fn spec_13_case_24_binary_push_out() {
    let f = V2
        .encode_push(&bpush(s("3"), "room:lobby", "img", &[1, 2, 3]))
        .unwrap();
    assert_bytes(
        binary(&f),
        &spec_bytes("00 01 0a 03 33 room:lobby img 01 02 03"),
    );
}

#[test]
fn spec_13_case_25_binary_broadcast() {
    let b = Broadcast {
        topic: "room:lobby".into(),
        event: "img".into(),
        payload: bin(&[9]),
    };
    let f = V2.encode_broadcast(&b).unwrap();
    assert_bytes(binary(&f), &spec_bytes("02 0a 03 room:lobby img 09"));
}

#[test]
fn spec_13_case_26_oversized_field_is_an_error() {
    let topic = "t".repeat(256);
    let err = V2
        .encode_push(&bpush(s("3"), &topic, "e", &[1]))
        .unwrap_err();
    assert_eq!(
        err,
        EncodeError::FieldTooLong {
            field: "topic",
            len: 256
        }
    );
    // 255 is still fine.
    let topic = "t".repeat(255);
    assert!(V2.encode_push(&bpush(s("3"), &topic, "e", &[1])).is_ok());
}

#[test]
fn oversized_fields_in_every_kind() {
    let long = "x".repeat(300);
    let r = Reply {
        join_ref: s("1"),
        ref_: s("2"),
        topic: "t".into(),
        status: long.clone(),
        response: bin(&[]),
    };
    assert_eq!(
        V2.encode_reply(&r).unwrap_err(),
        EncodeError::FieldTooLong {
            field: "status",
            len: 300
        }
    );
    let r = Reply {
        status: "ok".into(),
        ref_: s(&long),
        ..r
    };
    assert_eq!(
        V2.encode_reply(&r).unwrap_err(),
        EncodeError::FieldTooLong {
            field: "ref",
            len: 300
        }
    );
    let b = Broadcast {
        topic: "t".into(),
        event: long.clone(),
        payload: bin(&[]),
    };
    assert_eq!(
        V2.encode_broadcast(&b).unwrap_err(),
        EncodeError::FieldTooLong {
            field: "event",
            len: 300
        }
    );
    let m = bpush(s(&long), "t", "e", &[]);
    assert_eq!(
        V2.encode_push(&m).unwrap_err(),
        EncodeError::FieldTooLong {
            field: "join_ref",
            len: 300
        }
    );
}

#[test]
fn binary_push_with_a_ref_is_refused() {
    let mut m = bpush(s("3"), "t", "e", &[1]);
    m.ref_ = s("9");
    assert_eq!(V2.encode_push(&m).unwrap_err(), EncodeError::PushRefNotNull);
}

#[test]
fn numeric_refs_cannot_go_into_binary_frames() {
    let m = bpush(json!(3), "t", "e", &[1]);
    assert_eq!(V2.encode_push(&m).unwrap_err(), EncodeError::BinaryRef);
}

#[test]
fn binary_payload_is_unsupported_on_v1() {
    let m = bpush(s("3"), "t", "e", &[1]);
    assert_eq!(
        Serializer::V1.encode_push(&m).unwrap_err(),
        EncodeError::BinaryUnsupported
    );
    assert_eq!(
        Serializer::V1
            .decode(FrameRef::Binary(&[0, 0, 0, 1, 1, b't', b'e']))
            .unwrap_err(),
        DecodeError::BinaryUnsupported
    );
}

#[test]
fn client_kinds_other_than_push_are_refused() {
    for kind in [1u8, 2, 3, 255] {
        let frame = [kind, 0, 0, 1, 1, b't', b'e'];
        assert_eq!(
            V2.decode(FrameRef::Binary(&frame)).unwrap_err(),
            DecodeError::UnknownKind(kind)
        );
    }
}

#[test]
fn truncated_client_frames_are_errors() {
    let full = spec_bytes("00 01 02 0a 04 33 34 30 room:lobby ping");
    // Every strict prefix that cuts the header or a field is truncated; the full frame (with
    // an empty payload) decodes.
    for cut in 0..full.len() {
        let err = V2.decode(FrameRef::Binary(&full[..cut])).unwrap_err();
        assert_eq!(err, DecodeError::Truncated, "cut at {cut}");
    }
    let m = V2.decode(FrameRef::Binary(&full)).unwrap();
    assert_eq!(m.payload, bin(&[]));
}

#[test]
fn empty_binary_refs_decode_as_empty_strings() {
    // Phoenix keeps the empty binary; it does not turn into nil.
    let m = V2
        .decode(FrameRef::Binary(&spec_bytes("00 00 00 01 01 74 65 ff")))
        .unwrap();
    assert_eq!((m.join_ref, m.ref_), (s(""), s("")));
}

#[test]
fn non_utf8_fields_are_refused() {
    let frame = [0u8, 0, 0, 1, 1, 0xff, b'e'];
    assert_eq!(
        V2.decode(FrameRef::Binary(&frame)).unwrap_err(),
        DecodeError::Utf8
    );
}

#[test]
fn decode_server_reads_all_three_kinds() {
    let got = V2
        .decode_server(FrameRef::Binary(&spec_bytes(
            "00 01 01 01 33 74 65 01 02 03",
        )))
        .unwrap();
    assert_eq!(
        got,
        ServerMessage::Push(bpush(s("3"), "t", "e", &[1, 2, 3]))
    );
    let got = V2
        .decode_server(FrameRef::Binary(&spec_bytes(
            "01 01 01 01 02 33 34 74 6f 6b 01 02 03",
        )))
        .unwrap();
    assert_eq!(
        got,
        ServerMessage::Reply(Reply {
            join_ref: s("3"),
            ref_: s("4"),
            topic: "t".into(),
            status: "ok".into(),
            response: bin(&[1, 2, 3]),
        })
    );
    let got = V2
        .decode_server(FrameRef::Binary(&spec_bytes("02 01 01 74 65 01 02 03")))
        .unwrap();
    assert_eq!(
        got,
        ServerMessage::Broadcast(Broadcast {
            topic: "t".into(),
            event: "e".into(),
            payload: bin(&[1, 2, 3]),
        })
    );
    assert_eq!(
        V2.decode_server(FrameRef::Binary(&[3])).unwrap_err(),
        DecodeError::UnknownKind(3)
    );
}

#[test]
fn encode_client_uses_the_client_layout() {
    let m = Message {
        join_ref: s("3"),
        ref_: s("40"),
        topic: "room:lobby".into(),
        event: "ping".into(),
        payload: bin(&[0xDE, 0xAD]),
    };
    let f = V2.encode_client(&m).unwrap();
    assert_bytes(
        binary(&f),
        &spec_bytes("00 01 02 0a 04 33 34 30 room:lobby ping DE AD"),
    );
}
