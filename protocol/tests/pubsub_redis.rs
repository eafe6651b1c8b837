//! The phoenix_pubsub_redis envelope against bytes captured from Elixir nodes
//! (`shared/protocol/PUBSUB_REDIS.md`; the captures are copied to `fixtures/pubsub-redis/`, one
//! Redis message per line, with what the Elixir side made of it).
//!
//! Tests are named by file and 0-based line, as annotated.txt numbers them (the spec's
//! "capture 1" is broadcast-v3.1.0 line 0). Each is one capture: its bytes decode to the envelope the spec describes, and, where
//! phx-server could have published it, phx-server's encoder writes the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{hex, unhex};
use phx_protocol::etf::{self, AtomEncoding, DecodeLimits, EtfError, Term};
use phx_protocol::pubsub_redis::{
    self, channel_name, Dispatcher, EncodeOptions, Envelope, EnvelopeError, Ignored, Message, Mode,
    NodeName,
};
use phx_protocol::{Broadcast, Payload};
use serde_json::{json, Value};
use std::io::Read;

/// One captured Redis message.
struct Capture {
    label: String,
    bytes: Vec<u8>,
    /// What the Elixir receiver reported (`mode`, `target_node_type`, `topic`, ...), where the
    /// capture has it.
    elixir: Option<Value>,
}

fn fixture(file: &str) -> &'static str {
    match file {
        "broadcast-v3.1.0" => include_str!("fixtures/pubsub-redis/broadcast-v3.1.0.jsonl"),
        "broadcast-v3.0.1" => include_str!("fixtures/pubsub-redis/broadcast-v3.0.1.jsonl"),
        "compressed-v3.1.0" => include_str!("fixtures/pubsub-redis/compressed-v3.1.0.jsonl"),
        "otp26-encoding" => include_str!("fixtures/pubsub-redis/otp26-encoding.jsonl"),
        "presence-v2.2.0" => include_str!("fixtures/pubsub-redis/presence-v2.2.0.jsonl"),
        other => panic!("no fixture {other}"),
    }
}

const FILES: [&str; 5] = [
    "broadcast-v3.1.0",
    "broadcast-v3.0.1",
    "compressed-v3.1.0",
    "otp26-encoding",
    "presence-v2.2.0",
];

fn captures(file: &str) -> Vec<Capture> {
    fixture(file)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let bytes = unhex(v["hex"].as_str().unwrap());
            assert_eq!(Some(bytes.len() as u64), v["bytes"].as_u64(), "{l}");
            Capture {
                label: v["label"].as_str().unwrap().to_owned(),
                bytes,
                elixir: v.get("elixir").cloned(),
            }
        })
        .collect()
}

fn capture(file: &str, line: usize) -> Capture {
    captures(file).swap_remove(line)
}

fn dec(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    pubsub_redis::decode(bytes, &DecodeLimits::default())
}

/// Encodes as the captured OTP 25 node did (ATOM_EXT atoms, no compression).
fn enc(e: &Envelope<Broadcast>) -> Vec<u8> {
    pubsub_redis::encode(e, &EncodeOptions::default())
}

fn atom(s: &str) -> NodeName {
    NodeName::Atom(s.to_owned())
}

fn binary(s: &str) -> NodeName {
    NodeName::Binary(s.to_owned())
}

fn broadcast(
    mode: Mode,
    node: NodeName,
    topic: &str,
    event: &str,
    payload: Payload,
) -> Envelope<Broadcast> {
    Envelope {
        mode,
        node,
        topic: topic.to_owned(),
        message: Broadcast {
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
        },
        dispatcher: Dispatcher::ChannelServer,
    }
}

/// `%Broadcast{topic: "room:lobby", event: "shout", payload: %{"body" => body}}`.
fn shout(mode: Mode, node: NodeName, body: &str) -> Envelope<Broadcast> {
    broadcast(
        mode,
        node,
        "room:lobby",
        "shout",
        Payload::Json(json!({ "body": body })),
    )
}

/// Asserts that `bytes` decode to `expected`, a broadcast, and that phx-server writes the same
/// bytes for it.
fn assert_byte_identical(bytes: &[u8], expected: &Envelope<Broadcast>) {
    let got = dec(bytes).unwrap();
    assert_eq!(got, Envelope::from(expected.clone()));
    assert_eq!(
        hex(&enc(expected)),
        hex(bytes),
        "phx-server's bytes differ from Elixir's"
    );
}

/// Inflates a compressed term (`131, 80, size, zlib`) to its plain form (`131, body`).
fn inflate(bytes: &[u8]) -> Vec<u8> {
    assert_eq!(&bytes[..2], &[131, 80], "not compressed: {}", hex(bytes));
    let size = u32::from_be_bytes(bytes[2..6].try_into().unwrap()) as usize;
    let mut body = vec![131];
    flate2::read::ZlibDecoder::new(&bytes[6..])
        .read_to_end(&mut body)
        .unwrap();
    assert_eq!(body.len(), size + 1);
    body
}

// ---------------------------------------------------------------------------------------------
// §1: the channel

#[test]
fn section_1_one_channel_per_pubsub_server() {
    assert_eq!(
        channel_name("MyApp.PubSub"),
        "phx:Elixir.MyApp.PubSub.Adapter"
    );
    // A plain atom name: Module.concat(:my_pubsub, "Adapter") = :"Elixir.my_pubsub.Adapter".
    assert_eq!(channel_name("my_pubsub"), "phx:Elixir.my_pubsub.Adapter");
    // The atom's full text is not prefixed twice.
    assert_eq!(
        channel_name("Elixir.MyApp.PubSub"),
        "phx:Elixir.MyApp.PubSub.Adapter"
    );
    // Every capture was on that channel.
    for file in FILES {
        for line in fixture(file).lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(ch) = v.get("channel") {
                assert_eq!(ch, "phx:Elixir.MyApp.PubSub.Adapter");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// §2–§4: broadcasts, byte for byte

#[test]
fn line0_endpoint_broadcast() {
    // MyAppWeb.Endpoint.broadcast("room:lobby", "shout", %{"body" => "hi"}) on node-a.
    let c = capture("broadcast-v3.1.0", 0);
    assert_eq!(c.bytes.len(), 194);
    assert_byte_identical(&c.bytes, &shout(Mode::Except, atom("node-a"), "hi"));
}

#[test]
fn line1_broadcast_from_is_the_same_bytes() {
    // The `from` pid is not transmitted: broadcast_from publishes what broadcast does.
    let c = capture("broadcast-v3.1.0", 1);
    assert_eq!(c.bytes, capture("broadcast-v3.1.0", 0).bytes);
    assert_byte_identical(&c.bytes, &shout(Mode::Except, atom("node-a"), "hi"));
}

#[test]
fn line2_direct_broadcast_names_the_target() {
    let c = capture("broadcast-v3.1.0", 2);
    assert_eq!(c.bytes.len(), 192);
    assert_eq!(
        &c.bytes[5..21],
        &unhex("64 0004 6f6e6c79 64 0006 6e6f64652d62")[..]
    );
    assert_byte_identical(&c.bytes, &shout(Mode::Only, atom("node-b"), "hi"));
}

#[test]
fn line3_a_plain_term_is_ignored() {
    // Phoenix.PubSub.broadcast(MyApp.PubSub, "room:lobby", {:hello, "world", 42}).
    let c = capture("broadcast-v3.1.0", 3);
    assert_eq!(
        dec(&c.bytes).unwrap(),
        Envelope {
            mode: Mode::Except,
            node: atom("node-a"),
            topic: "room:lobby".into(),
            message: Message::Other(Ignored::Term),
            dispatcher: Dispatcher::PubSub,
        }
    );
}

#[test]
fn line4_socket_disconnect_is_an_ordinary_broadcast() {
    // Endpoint.broadcast("users_socket:42", "disconnect", %{}) on node-b.
    let c = capture("broadcast-v3.1.0", 4);
    assert_byte_identical(
        &c.bytes,
        &broadcast(
            Mode::Except,
            atom("node-b"),
            "users_socket:42",
            "disconnect",
            Payload::empty(),
        ),
    );
}

#[test]
fn line5_rich_payload_with_atom_keys_decodes_as_jason_renders_it() {
    // %{at: 1.5, big: 70000, body: "héllo", neg: -1, none: nil, tags: ["a", "b"],
    //   user: %{id: 7, name: "ann"}}: server-side Elixir code with atom keys.
    let c = capture("broadcast-v3.1.0", 5);
    let expected = broadcast(
        Mode::Except,
        atom("node-a"),
        "room:lobby",
        "new_msg",
        Payload::Json(json!({
            "at": 1.5, "big": 70000, "body": "héllo", "neg": -1, "none": null,
            "tags": ["a", "b"], "user": {"id": 7, "name": "ann"}
        })),
    );
    assert_eq!(dec(&c.bytes).unwrap(), Envelope::from(expected.clone()));
    // Decode only: phx-server's payloads come from JSON, so its keys are binaries (what
    // Jason.decode! gives an Elixir channel), and `:at` is not `"at"` on the wire. What it
    // writes decodes to the same broadcast.
    let ours = enc(&expected);
    assert_ne!(ours, c.bytes);
    assert_eq!(dec(&ours).unwrap(), Envelope::from(expected));
}

#[test]
fn line6_binary_payload() {
    // Endpoint.broadcast("room:lobby", "bin", {:binary, <<1, 2, 3, 255>>}).
    let c = capture("broadcast-v3.1.0", 6);
    assert_eq!(
        &c.bytes[0x74..0x88],
        &unhex("68 02 64 0006 62696e617279 6d 00000004 010203ff")[..]
    );
    assert_byte_identical(
        &c.bytes,
        &broadcast(
            Mode::Except,
            atom("node-a"),
            "room:lobby",
            "bin",
            Payload::Binary(vec![1, 2, 3, 255].into()),
        ),
    );
}

#[test]
fn line7_datetime_and_byte_list() {
    // %{"at" => ~U[2026-01-02 03:04:05.678Z], "ids" => [1, 2, 3]}: a 13-key DateTime struct
    // and a STRING_EXT byte list.
    let c = capture("broadcast-v3.1.0", 7);
    let expected = broadcast(
        Mode::Except,
        atom("node-a"),
        "room:lobby",
        "when",
        Payload::Json(json!({"at": "2026-01-02T03:04:05.678Z", "ids": [1, 2, 3]})),
    );
    assert_eq!(dec(&c.bytes).unwrap(), Envelope::from(expected.clone()));
    // Decode only: JSON has no DateTime, so phx-server sends the string Jason would have.
    assert_eq!(dec(&enc(&expected)).unwrap(), Envelope::from(expected));
}

// ---------------------------------------------------------------------------------------------
// §7: node names have a type

#[test]
fn v3_0_1_binary_node_names() {
    let [s, t, a]: [Capture; 3] = captures("broadcast-v3.0.1").try_into().ok().unwrap();
    // node_name: "node-s": the sender is BINARY_EXT.
    assert_eq!(&s.bytes[0x0e..0x19], &unhex("6d 00000006 6e6f64652d73")[..]);
    assert_byte_identical(&s.bytes, &shout(Mode::Except, binary("node-s"), "hi"));
    // direct_broadcast("node-t", ...): a binary target.
    assert_byte_identical(&t.bytes, &shout(Mode::Only, binary("node-t"), "hi"));
    // direct_broadcast(:"node-t", ...): an atom target, which the node named "node-t" dropped.
    let atom_target = shout(Mode::Only, atom("node-t"), "atom target");
    assert_byte_identical(&a.bytes, &atom_target);
    assert!(!atom_target.is_for(&binary("node-t")));
    assert!(atom_target.is_for(&atom("node-t")));
    assert!(dec(&t.bytes).unwrap().is_for(&binary("node-t")));
}

#[test]
fn section_5_who_keeps_an_envelope() {
    let except = shout(Mode::Except, atom("node-a"), "hi");
    assert!(!except.is_for(&atom("node-a")), "a sender drops its own");
    assert!(except.is_for(&atom("node-b")));
    assert!(
        except.is_for(&binary("node-a")),
        "another type is another name"
    );
    let only = shout(Mode::Only, atom("node-b"), "hi");
    assert!(only.is_for(&atom("node-b")));
    assert!(!only.is_for(&atom("node-a")));
}

// ---------------------------------------------------------------------------------------------
// §2 notes: OTP 26 atoms

#[test]
fn otp26_utf8_atoms_decode_and_encode() {
    let [otp25, otp26]: [Capture; 2] = captures("otp26-encoding").try_into().ok().unwrap();
    assert_eq!(otp25.bytes, capture("broadcast-v3.1.0", 0).bytes);
    assert_eq!(otp26.bytes.len(), 186);
    assert_eq!(
        &otp26.bytes[..21],
        &unhex("83 68 06 61 03 77 06 657863657074 77 06 6e6f64652d61")[..]
    );
    let expected = shout(Mode::Except, atom("node-a"), "hi");
    assert_eq!(dec(&otp26.bytes).unwrap(), Envelope::from(expected.clone()));
    let utf8 = EncodeOptions {
        atoms: AtomEncoding::Utf8,
        ..EncodeOptions::default()
    };
    assert_eq!(
        hex(&pubsub_redis::encode(&expected, &utf8)),
        hex(&otp26.bytes)
    );
}

// ---------------------------------------------------------------------------------------------
// §6: compression

#[test]
fn compressed_captures_decode_and_encode_to_the_same_term() {
    let [long, short]: [Capture; 2] = captures("compressed-v3.1.0").try_into().ok().unwrap();
    let cases = [
        (
            long,
            shout(Mode::Except, atom("node-c"), &"hi ".repeat(40)),
            311,
        ),
        (short, shout(Mode::Except, atom("node-c"), "hi"), 193),
    ];
    let level6 = EncodeOptions {
        compression_level: 6,
        ..EncodeOptions::default()
    };
    for (c, expected, size) in cases {
        assert_eq!(
            &c.bytes[..6],
            &[&[131u8, 80][..], &u32::to_be_bytes(size)].concat()[..]
        );
        assert_eq!(
            dec(&c.bytes).unwrap(),
            Envelope::from(expected.clone()),
            "{}",
            c.label
        );
        // The term inside is byte-identical; the zlib stream around it is not (miniz_oxide is
        // not the VM's zlib: the same level finds other matches), which receivers do not see.
        let ours = pubsub_redis::encode(&expected, &level6);
        assert_eq!(&ours[..6], &c.bytes[..6], "{}", c.label);
        assert_eq!(hex(&inflate(&ours)), hex(&inflate(&c.bytes)), "{}", c.label);
        assert_eq!(inflate(&ours), enc(&expected));
        assert_eq!(dec(&ours).unwrap(), Envelope::from(expected));
    }
}

#[test]
fn compression_keeps_the_plain_form_unless_it_saves_the_header() {
    // Too small to shrink by the five header bytes: written plain, as erts does.
    let tiny = Term::Tuple(vec![Term::Int(1), Term::Atom("a".into())]);
    let opts = |compression| etf::EncodeOptions {
        compression,
        ..etf::EncodeOptions::default()
    };
    assert_eq!(etf::encode_with(&tiny, &opts(6)), etf::encode(&tiny));
    // Bytes zlib cannot shrink (a xorshift stream), likewise.
    let mut x = 0x2545_f491_u32;
    let noise: Vec<u8> = (0..256)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let noisy = Term::Binary(noise);
    assert_eq!(etf::encode_with(&noisy, &opts(9)), etf::encode(&noisy));
    // Something repetitive is compressed; level 0 never is.
    let text = Term::Binary(b"hi ".repeat(40));
    assert_eq!(&etf::encode_with(&text, &opts(1))[..2], &[131, 80]);
    assert_eq!(etf::encode_with(&text, &opts(0)), etf::encode(&text));
}

// ---------------------------------------------------------------------------------------------
// Presence rides the same channel

#[test]
fn tracker_traffic_decodes_to_ignored_tracker() {
    let all = captures("presence-v2.2.0");
    assert_eq!(all.len(), 18);
    for c in all {
        let e = dec(&c.bytes).unwrap_or_else(|err| panic!("{}: {err}", c.label));
        assert_eq!(e.message, Message::Other(Ignored::Tracker), "{}", c.label);
        assert_eq!(e.dispatcher, Dispatcher::PubSub);
        assert_eq!(e.topic, "phx_presence:Elixir.MyAppWeb.Presence_shard0");
    }
}

#[test]
fn every_capture_matches_what_the_elixir_receiver_saw() {
    let mut checked = 0;
    for file in FILES {
        for c in captures(file) {
            let Some(ex) = &c.elixir else { continue };
            let e = dec(&c.bytes).unwrap_or_else(|err| panic!("{}: {err}", c.label));
            assert_eq!(ex["vsn"], 3);
            let mode = match e.mode {
                Mode::Except => "except",
                Mode::Only => "only",
            };
            assert_eq!(ex["mode"], mode, "{}", c.label);
            assert_eq!(ex["topic"], e.topic.as_str(), "{}", c.label);
            assert_eq!(ex["dispatcher"], e.dispatcher.atom(), "{}", c.label);
            match (&e.node, ex["target_node_type"].as_str()) {
                (NodeName::Atom(n), Some("atom")) => {
                    assert_eq!(ex["target_node"]["__atom__"], n.as_str())
                }
                (NodeName::Binary(n), Some("binary")) => assert_eq!(ex["target_node"], n.as_str()),
                (n, t) => panic!("{}: node {n:?}, Elixir saw {t:?}", c.label),
            }
            match (&e.message, ex["kind"].as_str()) {
                (Message::Broadcast(b), Some("broadcast")) => {
                    let inspect = ex["inspect"].as_str().unwrap();
                    assert!(
                        inspect.starts_with("%Phoenix.Socket.Broadcast{"),
                        "{inspect}"
                    );
                    assert!(
                        inspect.contains(&format!("topic: {:?}", b.topic)),
                        "{inspect}"
                    );
                    assert!(
                        inspect.contains(&format!("event: {:?}", b.event)),
                        "{inspect}"
                    );
                }
                (Message::Other(_), Some("tuple")) => {}
                (m, k) => panic!("{}: {m:?}, Elixir saw {k:?}", c.label),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 8 + 18);
}

// ---------------------------------------------------------------------------------------------
// Payloads Jason could not render, and the calendar structs it can

/// broadcast-v3.1.0 line 0 (spec capture 1) with its payload replaced.
fn with_payload(payload: Term) -> Vec<u8> {
    let Term::Tuple(mut items) = etf::decode(&capture("broadcast-v3.1.0", 0).bytes).unwrap() else {
        panic!()
    };
    let Term::Map(pairs) = &mut items[4] else {
        panic!()
    };
    for (k, v) in pairs.iter_mut() {
        if k.as_atom() == Some("payload") {
            *v = payload.clone();
        }
    }
    etf::encode(&Term::Tuple(items))
}

fn map(pairs: &[(&str, Term)]) -> Term {
    Term::Map(
        pairs
            .iter()
            .map(|(k, v)| (Term::Atom((*k).to_owned()), v.clone()))
            .collect(),
    )
}

fn calendar(module: &str, fields: &[(&str, Term)]) -> Term {
    let mut all = vec![
        ("__struct__", Term::Atom(format!("Elixir.{module}"))),
        ("calendar", Term::Atom("Elixir.Calendar.ISO".into())),
    ];
    all.extend(fields.iter().cloned());
    map(&all)
}

fn cat<'a>(parts: &[&[(&'a str, Term)]]) -> Vec<(&'a str, Term)> {
    parts.concat()
}

fn payload_json(payload: Term) -> Option<Value> {
    match dec(&with_payload(payload)).unwrap().message {
        Message::Broadcast(Broadcast {
            payload: Payload::Json(v),
            ..
        }) => Some(v),
        Message::Other(Ignored::UnrenderableBroadcast) => None,
        other => panic!("{other:?}"),
    }
}

#[test]
fn broadcasts_jason_could_not_render_are_ignored() {
    let pid = Term::Pid {
        node: "nonode@nohost".into(),
        id: 260,
        serial: 0,
        creation: 0,
    };
    let big = Term::BigInt {
        negative: false,
        magnitude_le: vec![1; 9],
    };
    for payload in [
        Term::Tuple(vec![Term::Atom("ok".into()), Term::Int(1)]),
        map(&[("pid", pid)]),
        map(&[("raw", Term::Binary(vec![0xff]))]),
        map(&[("n", big)]),
        map(&[("__struct__", Term::Atom("Elixir.MyApp.User".into()))]),
        calendar(
            "Date",
            &[
                ("year", Term::Int(2026)),
                ("month", Term::Int(13)),
                ("day", Term::Int(1)),
            ],
        ),
        Term::Tuple(vec![Term::Atom("binary".into()), Term::Atom("x".into())]),
    ] {
        assert_eq!(payload_json(payload.clone()), None, "{payload:?}");
    }
    // A struct that is not a Broadcast is just a term; so is a Broadcast without its fields.
    let mut other = capture("broadcast-v3.1.0", 0).bytes;
    let at = other
        .windows(21)
        .position(|w| w == b"Elixir.Phoenix.Socket")
        .unwrap();
    other[at + 7] = b'Q'; // %Qhoenix.Socket.Broadcast{}
    assert_eq!(dec(&other).unwrap().message, Message::Other(Ignored::Term));
    let no_event = envelope_with(
        4,
        Some(map(&[
            (
                "__struct__",
                Term::Atom("Elixir.Phoenix.Socket.Broadcast".into()),
            ),
            ("topic", Term::Binary(b"room:lobby".to_vec())),
            ("payload", Term::Map(vec![])),
        ])),
        6,
    );
    assert_eq!(
        dec(&no_event).unwrap().message,
        Message::Other(Ignored::UnrenderableBroadcast)
    );
}

#[test]
fn calendar_structs_render_as_jason_writes_them() {
    let us = |v, p| ("microsecond", Term::Tuple(vec![Term::Int(v), Term::Int(p)]));
    let date = [
        ("year", Term::Int(2026)),
        ("month", Term::Int(1)),
        ("day", Term::Int(2)),
    ];
    let time = [
        ("hour", Term::Int(3)),
        ("minute", Term::Int(4)),
        ("second", Term::Int(5)),
    ];
    let zone = |utc, std, name: &str| {
        [
            ("utc_offset", Term::Int(utc)),
            ("std_offset", Term::Int(std)),
            ("time_zone", Term::Binary(name.as_bytes().to_vec())),
        ]
    };
    let cases: Vec<(Term, &str)> = vec![
        (calendar("Date", &date), "2026-01-02"),
        (
            calendar(
                "Date",
                &[
                    ("year", Term::Int(-5)),
                    ("month", Term::Int(3)),
                    ("day", Term::Int(9)),
                ],
            ),
            "-0005-03-09",
        ),
        (calendar("Time", &cat(&[&time, &[us(0, 0)]])), "03:04:05"),
        (
            calendar("Time", &cat(&[&time, &[us(120, 6)]])),
            "03:04:05.000120",
        ),
        (
            calendar("NaiveDateTime", &cat(&[&date, &time, &[us(678000, 3)]])),
            "2026-01-02T03:04:05.678",
        ),
        (
            calendar(
                "DateTime",
                &cat(&[&date, &time, &[us(5, 1)], &zone(0, 0, "Etc/UTC")]),
            ),
            "2026-01-02T03:04:05.0Z",
        ),
        (
            calendar(
                "DateTime",
                &cat(&[
                    &date,
                    &time,
                    &[us(0, 0)],
                    &zone(3600, 3600, "Europe/Berlin"),
                ]),
            ),
            "2026-01-02T03:04:05+02:00",
        ),
        (
            calendar(
                "DateTime",
                &cat(&[
                    &date,
                    &time,
                    &[us(0, 0)],
                    &zone(-12600, 0, "America/St_Johns"),
                ]),
            ),
            "2026-01-02T03:04:05-03:30",
        ),
        (
            calendar(
                "DateTime",
                &cat(&[&date, &time, &[us(0, 0)], &zone(0, 0, "Europe/London")]),
            ),
            "2026-01-02T03:04:05+00:00",
        ),
    ];
    for (t, want) in cases {
        assert_eq!(
            payload_json(map(&[("at", t)])),
            Some(json!({"at": want})),
            "{want}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// What is not an envelope

#[test]
fn garbage_is_an_error() {
    for bytes in [
        &b""[..],
        b"hello world",
        br#"{"topic":"room:lobby"}"#,
        &[131],
        &[131, 80, 0, 0, 0, 10, 1, 2, 3],
    ] {
        assert!(
            matches!(dec(bytes), Err(EnvelopeError::Etf(_))),
            "{bytes:?}: {:?}",
            dec(bytes)
        );
    }
    assert_eq!(dec(b"hello"), Err(EnvelopeError::Etf(EtfError::BadVersion)));
}

#[test]
fn every_truncation_and_every_byte_flip_is_an_error_or_an_envelope_never_a_panic() {
    for file in FILES {
        for c in captures(file) {
            for n in 0..c.bytes.len() {
                assert!(dec(&c.bytes[..n]).is_err(), "{} cut at {n}", c.label);
            }
            for i in 0..c.bytes.len() {
                let mut b = c.bytes.clone();
                b[i] ^= 0xff;
                let _ = dec(&b);
            }
        }
    }
}

#[test]
fn wrong_version_is_an_error() {
    let mut b = capture("broadcast-v3.1.0", 0).bytes;
    assert_eq!(&b[3..5], &[0x61, 0x03]);
    b[4] = 4;
    assert_eq!(dec(&b), Err(EnvelopeError::Version(4)));
}

/// broadcast-v3.1.0 line 0 with element `i` of the envelope tuple replaced, or the tuple cut to `keep`.
fn envelope_with(i: usize, t: Option<Term>, keep: usize) -> Vec<u8> {
    let Term::Tuple(mut items) = etf::decode(&capture("broadcast-v3.1.0", 0).bytes).unwrap() else {
        panic!()
    };
    if let Some(t) = t {
        items[i] = t;
    }
    items.truncate(keep);
    etf::encode(&Term::Tuple(items))
}

#[test]
fn unknown_dispatcher_is_an_error() {
    let b = envelope_with(5, Some(Term::Atom("Elixir.PhxServer.Dispatcher".into())), 6);
    assert_eq!(
        dec(&b),
        Err(EnvelopeError::UnknownDispatcher(
            "Elixir.PhxServer.Dispatcher".into()
        ))
    );
}

#[test]
fn misshapen_envelopes_are_errors() {
    let bin = |s: &str| Some(Term::Binary(s.as_bytes().to_vec()));
    for (bytes, why) in [
        (etf::encode(&Term::Atom("ok".into())), "not a tuple"),
        (envelope_with(0, None, 5), "5-tuple"),
        (envelope_with(0, bin("3"), 6), "version a binary"),
        (envelope_with(1, Some(Term::Atom("all".into())), 6), "mode"),
        (envelope_with(2, Some(Term::Int(1)), 6), "node an integer"),
        (
            envelope_with(2, Some(Term::Binary(vec![0xff])), 6),
            "node not UTF-8",
        ),
        (
            envelope_with(3, Some(Term::Atom("room".into())), 6),
            "topic an atom",
        ),
        (
            envelope_with(5, bin("Elixir.Phoenix.PubSub"), 6),
            "dispatcher a binary",
        ),
    ] {
        assert!(
            matches!(dec(&bytes), Err(EnvelopeError::Malformed(_))),
            "{why}: {:?}",
            dec(&bytes)
        );
    }
    // The limits apply: every capture has binaries longer than 4 bytes.
    let tight = DecodeLimits {
        max_binary: 4,
        ..DecodeLimits::default()
    };
    assert_eq!(
        pubsub_redis::decode(&capture("broadcast-v3.1.0", 0).bytes, &tight),
        Err(EnvelopeError::Etf(EtfError::BinaryTooLong))
    );
}

// ---------------------------------------------------------------------------------------------
// The ETF additions the envelope needs

#[test]
fn otp25_atoms_are_latin1_atom_ext() {
    let latin1 = etf::EncodeOptions {
        atoms: AtomEncoding::Latin1,
        ..etf::EncodeOptions::default()
    };
    let e = |s: &str| etf::encode_with(&Term::Atom(s.into()), &latin1);
    assert_eq!(e("nil"), unhex("83 64 0003 6e696c"));
    assert_eq!(e("é"), unhex("83 64 0001 e9"));
    // Not Latin-1: the UTF-8 tag, as OTP 25 writes it.
    assert_eq!(e("λ"), unhex("83 77 02 cebb"));
    for s in ["nil", "é", "λ"] {
        assert_eq!(etf::decode(&e(s)).unwrap(), Term::Atom(s.into()));
    }
    // The default is unchanged (tokens rely on it).
    assert_eq!(
        etf::encode(&Term::Atom("nil".into())),
        unhex("83 77 03 6e696c")
    );
}

#[test]
fn legacy_float_ext_decodes() {
    let mut b = vec![131, 99];
    let mut text = b"1.50000000000000000000e+00".to_vec();
    text.resize(31, 0);
    b.extend_from_slice(&text);
    assert_eq!(etf::decode(&b).unwrap(), Term::Float(1.5));
    let mut bad = vec![131, 99];
    bad.extend_from_slice(b"inf");
    bad.resize(33, 0);
    assert_eq!(etf::decode(&bad), Err(EtfError::InvalidFloat));
}

#[test]
fn small_maps_are_written_in_term_order() {
    use std::cmp::Ordering::Less;
    // number < atom < reference < pid < tuple < map < [] < list < binary.
    let r = Term::Reference {
        node: "n".into(),
        creation: 0,
        ids: vec![1],
    };
    let p = Term::Pid {
        node: "n".into(),
        id: 1,
        serial: 0,
        creation: 0,
    };
    let ascending = [
        Term::Int(-5),
        Term::Int(2),
        Term::BigInt {
            negative: false,
            magnitude_le: vec![0, 0, 0, 0, 0, 0, 0, 0, 1],
        },
        Term::Float(-1.0), // every integer before every float
        Term::Float(0.5),
        Term::Atom("__struct__".into()),
        Term::Atom("event".into()),
        r,
        p,
        Term::Tuple(vec![Term::Int(9)]),
        Term::Tuple(vec![Term::Int(1), Term::Int(1)]),
        Term::Map(vec![]),
        Term::Nil,
        Term::List(vec![Term::Int(1)]),
        Term::List(vec![Term::Int(1), Term::Int(0)]),
        Term::List(vec![Term::Int(2)]),
        Term::Binary(b"a".to_vec()),
        Term::Binary(b"ab".to_vec()),
        Term::Binary(b"b".to_vec()),
    ];
    for w in ascending.windows(2) {
        assert_eq!(
            etf::term_order(&w[0], &w[1]),
            Less,
            "{:?} < {:?}",
            w[0],
            w[1]
        );
    }
    let sorted = etf::EncodeOptions {
        sort_small_maps: true,
        ..etf::EncodeOptions::default()
    };
    let m = Term::Map(vec![
        (Term::Binary(b"b".to_vec()), Term::Int(1)),
        (Term::Atom("z".into()), Term::Int(2)),
        (Term::Binary(b"a".to_vec()), Term::Int(3)),
    ]);
    assert_eq!(
        etf::encode_with(&m, &sorted),
        unhex("83 74 00000003 77 01 7a 61 02 6d 00000001 61 61 03 6d 00000001 62 61 01")
    );
    // Unsorted by default, as before.
    assert_eq!(&etf::encode(&m)[6..12], &unhex("6d 00000001 62")[..]);
}
