//! Property tests: round trips through every codec, and no decoder panics on any input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use bytes::Bytes;
use phx_protocol::etf::{self, Term};
use phx_protocol::token::{self, Digest, MaxAge, TokenKey};
use phx_protocol::{
    json, Broadcast, EncodedObject, Frame, FrameRef, Message, Payload, Reply, Serializer,
    ServerMessage,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::Value;

// ---- strategies ------------------------------------------------------------------------------

fn json_leaf(floats: bool) -> BoxedStrategy<Value> {
    let base = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    if floats {
        prop_oneof![
            4 => base,
            1 => any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
        ]
        .boxed()
    } else {
        base.boxed()
    }
}

fn json_value(floats: bool) -> BoxedStrategy<Value> {
    json_leaf(floats)
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
}

/// Text that fits a binary field (≤255 bytes: at most 60 chars of up to 4 bytes).
fn short_text() -> impl Strategy<Value = String> {
    "(?s).{0,60}"
}

fn text_message() -> impl Strategy<Value = Message> {
    (
        json_leaf(false),
        json_leaf(false),
        any::<String>(),
        any::<String>(),
        json_value(false),
    )
        .prop_map(|(join_ref, ref_, topic, event, payload)| Message {
            join_ref,
            ref_,
            topic,
            event,
            payload: Payload::Json(payload),
        })
}

fn binary_client_message() -> impl Strategy<Value = Message> {
    (
        short_text(),
        short_text(),
        short_text(),
        short_text(),
        vec(any::<u8>(), 0..512),
    )
        .prop_map(|(jr, r, topic, event, data)| Message {
            join_ref: Value::String(jr),
            ref_: Value::String(r),
            topic,
            event,
            payload: Payload::Binary(Bytes::from(data)),
        })
}

fn term() -> BoxedStrategy<Term> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Term::Int),
        (any::<bool>(), vec(any::<u8>(), 9..40)).prop_map(|(negative, mut magnitude_le)| {
            if let Some(last) = magnitude_le.last_mut() {
                *last |= 1;
            }
            Term::BigInt {
                negative,
                magnitude_le,
            }
        }),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
            .prop_map(Term::Float),
        "(?s).{0,40}".prop_map(Term::Atom),
        "(?s).{64,100}".prop_map(Term::Atom),
        vec(any::<u8>(), 0..64).prop_map(Term::Binary),
        Just(Term::Nil),
        (
            "[a-z]{1,10}@[a-z]{1,10}",
            any::<u32>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(node, id, serial, creation)| Term::Pid {
                node,
                id,
                serial,
                creation
            }),
        ("[a-z]{1,10}", any::<u32>(), vec(any::<u32>(), 0..5)).prop_map(|(node, creation, ids)| {
            Term::Reference {
                node,
                creation,
                ids,
            }
        }),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 1..6).prop_map(Term::List),
            vec(0i64..=255, 1..20).prop_map(|b| Term::List(b.into_iter().map(Term::Int).collect())),
            vec(inner.clone(), 0..6).prop_map(Term::Tuple),
            vec((inner.clone(), inner.clone()), 0..5).prop_map(Term::Map),
            (vec(inner, 1..4), any::<i64>()).prop_map(|(elems, t)| Term::ImproperList {
                elems,
                tail: Box::new(Term::Int(t)),
            }),
        ]
    })
    .boxed()
}

/// Compares JSON values, allowing floats to differ in the last bits: serde_json's default float
/// parser is not always correctly rounded, while our writer prints exact shortest digits (checked
/// separately against Rust's correctly rounded parser).
fn json_close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        // Exact: the writer prints the shortest text that reads back to the same bits, and
        // serde_json (with `float_roundtrip`, as the workspace builds it) reads it exactly —
        // subnormals included, where a relative tolerance means nothing.
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x.to_bits() == y.to_bits() || (x == 0.0 && y == 0.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_close(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && json_close(va, vb))
        }
        _ => a == b,
    }
}

fn frame_ref(f: &Frame) -> FrameRef<'_> {
    match f {
        Frame::Text(b) => FrameRef::Text(std::str::from_utf8(b).unwrap()),
        Frame::Binary(b) => FrameRef::Binary(b),
    }
}

fn key() -> TokenKey {
    TokenKey::from_bytes(&[7u8; 32])
}

// ---- round trips -----------------------------------------------------------------------------

proptest! {
    #[test]
    fn v1_round_trip(m in text_message()) {
        let f = Serializer::V1.encode_client(&m).unwrap();
        prop_assert_eq!(Serializer::V1.decode(frame_ref(&f)).unwrap(), m);
    }

    #[test]
    fn v2_text_round_trip(m in text_message()) {
        let f = Serializer::V2.encode_client(&m).unwrap();
        prop_assert!(matches!(f, Frame::Text(_)));
        prop_assert_eq!(Serializer::V2.decode(frame_ref(&f)).unwrap(), m);
    }

    #[test]
    fn v2_text_push_is_the_client_layout(m in text_message()) {
        let f = Serializer::V2.encode_push(&m).unwrap();
        prop_assert_eq!(Serializer::V2.decode(frame_ref(&f)).unwrap(), m);
    }

    #[test]
    fn a_pre_encoded_push_is_byte_identical_to_an_encoded_one(
        m in text_message(),
        payload in btree_map(any::<String>(), json_value(true), 0..6),
    ) {
        let payload: serde_json::Map<String, Value> = payload.into_iter().collect();
        let encoded = EncodedObject::new(&payload);
        let msg = Message { payload: Payload::Json(Value::Object(payload)), ..m };
        for s in [Serializer::V1, Serializer::V2] {
            let once = s.encode_push(&msg).unwrap();
            let shared = s.encode_push_encoded(
                &msg.join_ref, &msg.ref_, &msg.topic, &msg.event, &encoded,
            );
            prop_assert_eq!(once, shared);
        }
    }

    #[test]
    fn v2_binary_client_round_trip(m in binary_client_message()) {
        let f = Serializer::V2.encode_client(&m).unwrap();
        prop_assert!(matches!(f, Frame::Binary(_)));
        prop_assert_eq!(Serializer::V2.decode(frame_ref(&f)).unwrap(), m);
    }

    #[test]
    fn v2_binary_server_round_trips(m in binary_client_message()) {
        let v2 = Serializer::V2;
        let push = Message { ref_: Value::Null, ..m.clone() };
        let got = v2.decode_server(frame_ref(&v2.encode_push(&push).unwrap())).unwrap();
        prop_assert_eq!(got, ServerMessage::Push(push));

        let reply = Reply {
            join_ref: m.join_ref.clone(),
            ref_: m.ref_.clone(),
            topic: m.topic.clone(),
            status: m.event.clone(),
            response: m.payload.clone(),
        };
        let got = v2.decode_server(frame_ref(&v2.encode_reply(&reply).unwrap())).unwrap();
        prop_assert_eq!(got, ServerMessage::Reply(reply));

        let b = Broadcast { topic: m.topic, event: m.event, payload: m.payload };
        let got = v2.decode_server(frame_ref(&v2.encode_broadcast(&b).unwrap())).unwrap();
        prop_assert_eq!(got, ServerMessage::Broadcast(b));
    }

    #[test]
    fn text_replies_round_trip(m in text_message(), status in any::<String>()) {
        for ser in [Serializer::V1, Serializer::V2] {
            let r = Reply {
                join_ref: if ser == Serializer::V1 { Value::Null } else { m.join_ref.clone() },
                ref_: m.ref_.clone(),
                topic: m.topic.clone(),
                status: status.clone(),
                response: m.payload.clone(),
            };
            let got = ser.decode_server(frame_ref(&ser.encode_reply(&r).unwrap())).unwrap();
            prop_assert_eq!(got, ServerMessage::Reply(r));
        }
    }

    #[test]
    fn json_writer_output_parses_to_the_same_value(v in json_value(true)) {
        let text = json::to_string(&v);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        prop_assert!(json_close(&parsed, &v), "{} vs {:?}", text, v);
    }

    #[test]
    fn float_text_round_trips_exactly(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let mut out = Vec::new();
        json::write_f64(&mut out, f);
        let s = String::from_utf8(out).unwrap();
        let back: f64 = s.parse().unwrap();
        prop_assert_eq!(back.to_bits(), f.to_bits(), "{}", s);
        let mantissa = s.split('e').next().unwrap();
        prop_assert!(mantissa.contains('.'), "{}", s);
        prop_assert!(!s.contains('+'), "{}", s);
    }

    #[test]
    fn etf_round_trip(t in term()) {
        prop_assert_eq!(etf::decode(&etf::encode(&t)).unwrap(), t.clone());
        prop_assert_eq!(etf::decode(&etf::encode_compressed(&t)).unwrap(), t);
    }

    #[test]
    fn token_round_trip(t in term(), signed in 0i64..4_000_000_000_000, age in 1u64..1_000_000) {
        let tok = token::sign(&key(), &t, signed, MaxAge::Seconds(age));
        prop_assert_eq!(token::verify(&key(), &tok, None, signed).unwrap(), t.clone());
        let limit = signed + i64::try_from(age).unwrap() * 1000;
        prop_assert_eq!(token::verify(&key(), &tok, None, limit).unwrap(), t);
        prop_assert_eq!(
            token::verify(&key(), &tok, None, limit + 1).unwrap_err(),
            token::TokenError::Expired
        );
    }
}

// ---- no panics on hostile input --------------------------------------------------------------

/// Near-valid V2 frames: arrays of 0..8 arbitrary values.
fn near_v2_frame() -> impl Strategy<Value = String> {
    vec(json_value(true), 0..8).prop_map(|items| json::to_string(&Value::Array(items)))
}

/// Near-valid V1 frames: objects with some of the expected keys.
fn near_v1_frame() -> impl Strategy<Value = String> {
    btree_map(
        prop_oneof![
            Just("topic".to_owned()),
            Just("event".to_owned()),
            Just("payload".to_owned()),
            Just("ref".to_owned()),
            Just("join_ref".to_owned()),
            any::<String>(),
        ],
        json_value(false),
        0..7,
    )
    .prop_map(|m| json::to_string(&Value::Object(m.into_iter().collect())))
}

/// A valid encoding with one byte changed, or cut short.
fn mutated(bytes: Vec<u8>, pos: usize, val: u8, cut: bool) -> Vec<u8> {
    let mut b = bytes;
    if b.is_empty() {
        return b;
    }
    let i = pos % b.len();
    if cut {
        b.truncate(i);
    } else {
        b[i] = val;
    }
    b
}

proptest! {
    #[test]
    fn text_decoders_never_panic(s in any::<String>()) {
        for ser in [Serializer::V1, Serializer::V2] {
            let _ = ser.decode(FrameRef::Text(&s));
            let _ = ser.decode_server(FrameRef::Text(&s));
        }
    }

    #[test]
    fn near_valid_text_frames_never_panic(v2 in near_v2_frame(), v1 in near_v1_frame()) {
        for s in [&v2, &v1] {
            for ser in [Serializer::V1, Serializer::V2] {
                let _ = ser.decode(FrameRef::Text(s));
                let _ = ser.decode_server(FrameRef::Text(s));
            }
        }
    }

    #[test]
    fn binary_decoders_never_panic(b in vec(any::<u8>(), 0..600)) {
        for ser in [Serializer::V1, Serializer::V2] {
            let _ = ser.decode(FrameRef::Binary(&b));
            let _ = ser.decode_server(FrameRef::Binary(&b));
        }
        let _ = etf::decode(&b);
        let mut with_version = vec![131u8];
        with_version.extend_from_slice(&b);
        let _ = etf::decode(&with_version);
    }

    #[test]
    fn mutated_binary_frames_never_panic(
        m in binary_client_message(), pos in any::<usize>(), val in any::<u8>(), cut in any::<bool>()
    ) {
        let Frame::Binary(b) = Serializer::V2.encode_client(&m).unwrap() else { unreachable!() };
        let b = mutated(b.to_vec(), pos, val, cut);
        let _ = Serializer::V2.decode(FrameRef::Binary(&b));
        let _ = Serializer::V2.decode_server(FrameRef::Binary(&b));
    }

    #[test]
    fn mutated_etf_never_panics(
        t in term(), pos in any::<usize>(), val in any::<u8>(), cut in any::<bool>(), z in any::<bool>()
    ) {
        let bytes = if z { etf::encode_compressed(&t) } else { etf::encode(&t) };
        let _ = etf::decode(&mutated(bytes, pos, val, cut));
    }

    #[test]
    fn token_verify_never_panics_on_strings(s in any::<String>(), now in any::<i64>()) {
        let _ = token::verify(&key(), &s, None, now);
        let _ = token::verify(&key(), &s, Some(MaxAge::Seconds(5)), now);
    }

    #[test]
    fn token_verify_never_panics_on_shaped_tokens(
        payload in vec(any::<u8>(), 0..200), mac in vec(any::<u8>(), 0..70), now in any::<i64>()
    ) {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let t = format!("SFMyNTY.{}.{}", b64.encode(&payload), b64.encode(&mac));
        let _ = token::verify(&key(), &t, None, now);
    }

    #[test]
    fn token_verify_never_panics_on_validly_signed_garbage(
        payload in vec(any::<u8>(), 0..200), now in any::<i64>(), versioned in any::<bool>()
    ) {
        // A correct MAC over arbitrary bytes drives verification into the ETF decoder and the
        // age checks.
        let mut p = if versioned { vec![131u8] } else { vec![] };
        p.extend_from_slice(&payload);
        let t = token::sign_raw(&key(), &p, Digest::Sha256);
        let _ = token::verify(&key(), &t, None, now);
        let _ = token::verify(&key(), &t, Some(MaxAge::Infinity), now);
    }

    #[test]
    fn token_verify_never_panics_on_signed_odd_payload_shapes(
        data in term(), signed in term(), age in term(), now in any::<i64>()
    ) {
        for shape in [
            Term::Tuple(vec![data.clone(), signed.clone(), age.clone()]),
            Term::Tuple(vec![data.clone(), signed.clone()]),
            Term::Map(vec![(Term::Atom("data".into()), data), (Term::Atom("signed".into()), signed)]),
            age,
        ] {
            let t = token::sign_raw(&key(), &etf::encode(&shape), Digest::Sha256);
            let _ = token::verify(&key(), &t, None, now);
        }
    }
}
