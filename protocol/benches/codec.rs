//! Codec, fan-out and token benchmarks. Numbers and the command that produced them live in
//! `RESULTS.md` beside this file.
//!
//! The annotation frames are the Rumbl app's hot path: a client pushes `new_annotation` and the
//! channel broadcasts the stored annotation to every viewer of the video.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use phx_protocol::etf::Term;
use phx_protocol::token::{self, MaxAge, TokenKey};
use phx_protocol::{Broadcast, Frame, FrameRef, Message, Payload, Reply, Serializer};
use serde_json::{json, Value};

const ANNOTATION_V2: &str = r#"["5","6","videos:1","new_annotation",{"body":"first!","at":100}]"#;
const ANNOTATION_V1: &str = r#"{"event":"new_annotation","join_ref":"5","payload":{"at":100,"body":"first!"},"ref":"6","topic":"videos:1"}"#;

fn annotation_broadcast_payload() -> Value {
    json!({"at": 100, "body": "first!", "id": 1, "user": {"id": 1, "username": "jose"}})
}

/// A ~1 KB broadcast payload: a long body plus a handful of fields.
fn kilobyte_payload() -> Value {
    json!({
        "at": 12345,
        "body": "lorem ipsum dolor sit amet, consectetur adipiscing elit ".repeat(16),
        "id": 987654,
        "tags": ["a", "b", "c"],
        "user": {"id": 42, "username": "jose"}
    })
}

fn frame_ref(f: &Frame) -> FrameRef<'_> {
    match f {
        Frame::Text(b) => FrameRef::Text(std::str::from_utf8(b).unwrap()),
        Frame::Binary(b) => FrameRef::Binary(b),
    }
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.bench_function("v2_text/annotation", |b| {
        b.iter(|| Serializer::V2.decode(FrameRef::Text(black_box(ANNOTATION_V2))))
    });
    g.bench_function("v1_text/annotation", |b| {
        b.iter(|| Serializer::V1.decode(FrameRef::Text(black_box(ANNOTATION_V1))))
    });
    let bin_msg = Message {
        join_ref: json!("5"),
        ref_: json!("6"),
        topic: "videos:1".into(),
        event: "new_annotation".into(),
        payload: Payload::Binary(Bytes::from_static(br#"{"body":"first!","at":100}"#)),
    };
    let bin = Serializer::V2.encode_client(&bin_msg).unwrap();
    g.bench_function("v2_binary/annotation", |b| {
        b.iter(|| Serializer::V2.decode(black_box(frame_ref(&bin))))
    });

    let kb = Message {
        join_ref: json!("5"),
        ref_: json!("6"),
        topic: "videos:1".into(),
        event: "new_annotation".into(),
        payload: Payload::Json(kilobyte_payload()),
    };
    for (name, ser, msg) in [
        ("v2_text/1kb", Serializer::V2, kb.clone()),
        ("v1_text/1kb", Serializer::V1, kb.clone()),
        (
            "v2_binary/1kb",
            Serializer::V2,
            Message {
                payload: Payload::Binary(Bytes::from(vec![7u8; 1024])),
                ..kb.clone()
            },
        ),
    ] {
        let f = ser.encode_client(&msg).unwrap();
        g.throughput(Throughput::Bytes(match &f {
            Frame::Text(b) | Frame::Binary(b) => b.len(),
        } as u64));
        g.bench_function(name, |b| b.iter(|| ser.decode(black_box(frame_ref(&f)))));
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let bcast = Broadcast {
        topic: "videos:1".into(),
        event: "new_annotation".into(),
        payload: Payload::Json(annotation_broadcast_payload()),
    };
    let bcast_bin = Broadcast {
        payload: Payload::Binary(Bytes::from(json_bytes(&annotation_broadcast_payload()))),
        ..bcast.clone()
    };
    g.bench_function("v2_text/annotation_broadcast", |b| {
        b.iter(|| Serializer::V2.encode_broadcast(black_box(&bcast)))
    });
    g.bench_function("v1_text/annotation_broadcast", |b| {
        b.iter(|| Serializer::V1.encode_broadcast(black_box(&bcast)))
    });
    g.bench_function("v2_binary/annotation_broadcast", |b| {
        b.iter(|| Serializer::V2.encode_broadcast(black_box(&bcast_bin)))
    });

    let reply = Reply {
        join_ref: json!("5"),
        ref_: json!("6"),
        topic: "videos:1".into(),
        status: "ok".into(),
        response: Payload::empty(),
    };
    g.bench_function("v2_text/annotation_reply", |b| {
        b.iter(|| Serializer::V2.encode_reply(black_box(&reply)))
    });

    let kb = Broadcast {
        topic: "videos:1".into(),
        event: "new_annotation".into(),
        payload: Payload::Json(kilobyte_payload()),
    };
    let kb_bin = Broadcast {
        payload: Payload::Binary(Bytes::from(vec![7u8; 1024])),
        ..kb.clone()
    };
    g.throughput(Throughput::Bytes(1024));
    g.bench_function("v2_text/1kb_broadcast", |b| {
        b.iter(|| Serializer::V2.encode_broadcast(black_box(&kb)))
    });
    g.bench_function("v1_text/1kb_broadcast", |b| {
        b.iter(|| Serializer::V1.encode_broadcast(black_box(&kb)))
    });
    g.bench_function("v2_binary/1kb_broadcast", |b| {
        b.iter(|| Serializer::V2.encode_broadcast(black_box(&kb_bin)))
    });
    g.finish();
}

fn json_bytes(v: &Value) -> Vec<u8> {
    phx_protocol::json::to_vec(v)
}

/// Encode a broadcast once, then hand a clone of the frame to each of 10 000 subscriber queues and
/// drop them again (what a writer task does after sending). Reported per subscriber.
fn fanout(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 10_000;
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    let bcast = Broadcast {
        topic: "videos:1".into(),
        event: "new_annotation".into(),
        payload: Payload::Json(annotation_broadcast_payload()),
    };
    g.bench_function("encode_once_clone_10k", |b| {
        b.iter_batched_ref(
            || {
                (0..SUBSCRIBERS)
                    .map(|_| Vec::<Frame>::with_capacity(4))
                    .collect::<Vec<_>>()
            },
            |queues| {
                let frame = Serializer::V2.encode_broadcast(&bcast).unwrap();
                for q in queues.iter_mut() {
                    q.push(frame.clone());
                }
                for q in queues.iter_mut() {
                    q.clear();
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn tokens(c: &mut Criterion) {
    const SECRET: &[u8] = b"abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz012345";
    const USER1: &str = "SFMyNTY.g2gDbQAAAAZ1c2VyOjFuBgAAaOXPiwFiAAFRgA.HwtGZ8bJTq-Odjp6va8vO8oQoVnfaBEDfcYFoPybpLo";
    let mut g = c.benchmark_group("token");
    let key = TokenKey::derive(SECRET, b"user socket");
    g.bench_function("verify_cached_key", |b| {
        b.iter(|| {
            token::verify(
                black_box(&key),
                black_box(USER1),
                Some(MaxAge::Infinity),
                1_700_000_000_000,
            )
        })
    });
    let data = Term::Binary(b"user:1".to_vec());
    g.bench_function("sign", |b| {
        b.iter(|| {
            token::sign(
                black_box(&key),
                black_box(&data),
                1_700_000_000_000,
                MaxAge::Seconds(86_400),
            )
        })
    });
    g.bench_function("derive_key", |b| {
        b.iter(|| TokenKey::derive(black_box(SECRET), black_box(b"user socket")))
    });
    g.finish();
}

criterion_group!(benches, decode, encode, fanout, tokens);
criterion_main!(benches);
