//! Hostile input to every decoder: frames and terms in, a typed error out, no panic, no stack
//! overflow, no allocation for what a length merely claims.
//!
//! Each decoder runs on a thread with a small stack, so a regression to unbounded recursion
//! overflows here instead of passing on the test harness's large default stack: 256 KiB for the
//! iterative ETF decoder; 1 MiB for JSON, because serde_json does recurse, up to its 128-level
//! limit, and a debug build with the workspace's features spends a few KiB per level (the
//! server's tokio workers have 2 MiB; 100,000 levels unbounded would need hundreds of MiB).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use phx_protocol::etf::{self, DecodeLimits, EtfError, Term};
use phx_protocol::limits::{check_client_message, MAX_FIELD_BYTES};
use phx_protocol::{DecodeError, FrameRef, Serializer};

const ETF_STACK: usize = 256 * 1024;
const JSON_STACK: usize = 1024 * 1024;

/// Runs `f` on a `stack`-byte stack and returns its answer.
fn small_stack<T: Send + 'static>(stack: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the decoder must not crash")
}

fn deep_array(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn deep_object(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

/// A V2 frame whose payload nests `depth` arrays.
fn v2_with_payload(payload: &str) -> String {
    format!("[null,\"1\",\"room:lobby\",\"new_msg\",{payload}]")
}

/// A V1 frame whose payload is `payload`.
fn v1_with_payload(payload: &str) -> String {
    format!(
        "{{\"topic\":\"room:lobby\",\"event\":\"new_msg\",\"payload\":{payload},\"ref\":\"1\"}}"
    )
}

#[test]
fn json_frames_nested_100_000_deep_are_malformed_on_every_text_decoder() {
    for nested in [deep_array(100_000), deep_object(100_000)] {
        let frames = [
            (Serializer::V2, nested.clone()),
            (Serializer::V2, v2_with_payload(&nested)),
            (Serializer::V1, nested.clone()),
            (Serializer::V1, v1_with_payload(&nested)),
            // In a field that is skipped without building a value.
            (
                Serializer::V1,
                format!("{{\"x\":{nested},\"topic\":\"t\"}}"),
            ),
            (Serializer::V2, format!("[{nested},\"1\",\"t\",\"e\",{{}}]")),
        ];
        for (ser, frame) in frames {
            let answer = small_stack(JSON_STACK, move || {
                (
                    ser.decode(FrameRef::Text(&frame)),
                    ser.decode_server(FrameRef::Text(&frame)).err(),
                )
            });
            assert!(
                matches!(answer.0, Err(DecodeError::Json(_) | DecodeError::Shape(_))),
                "{ser:?}: {:?}",
                answer.0
            );
            assert!(answer.1.is_some(), "{ser:?} decode_server accepted it");
        }
    }
}

#[test]
fn json_payloads_within_serde_json_depth_still_decode() {
    // serde_json's recursion limit is 128 levels for the whole frame; the frame array is one.
    let ok = v2_with_payload(&deep_array(100));
    assert!(Serializer::V2.decode(FrameRef::Text(&ok)).is_ok());
    let ok = v1_with_payload(&deep_object(100));
    assert!(Serializer::V1.decode(FrameRef::Text(&ok)).is_ok());
}

#[test]
fn field_limit_applies_to_every_decoder() {
    let long = "t".repeat(MAX_FIELD_BYTES + 1);
    let v2 = format!("[null,\"1\",\"{long}\",\"e\",{{}}]");
    let v1 = format!("{{\"topic\":\"{long}\",\"event\":\"e\",\"payload\":{{}},\"ref\":\"1\"}}");
    for (ser, frame) in [(Serializer::V2, v2), (Serializer::V1, v1)] {
        let msg = ser.decode(FrameRef::Text(&frame)).expect("decodes");
        assert!(check_client_message(&msg).is_err(), "{ser:?}");
    }
    let long_ref = format!(
        "[null,\"{}\",\"t\",\"e\",{{}}]",
        "r".repeat(MAX_FIELD_BYTES + 1)
    );
    let msg = Serializer::V2.decode(FrameRef::Text(&long_ref)).unwrap();
    assert!(check_client_message(&msg).is_err());
    // A V2 binary frame's one-byte lengths hold at most 255 bytes, under the limit; the check
    // runs on it all the same (the session calls it for every decoded message).
    let mut bin = vec![0u8, 0, 1, 255, 1, b'1'];
    bin.extend(std::iter::repeat_n(b't', 255));
    bin.extend_from_slice(b"e payload");
    let msg = Serializer::V2.decode(FrameRef::Binary(&bin)).unwrap();
    assert_eq!(msg.topic.len(), 255);
    assert_eq!(check_client_message(&msg), Ok(()));
}

#[test]
fn binary_frames_with_lengths_past_the_end_are_truncated() {
    for frame in [
        &[][..],
        &[0][..],
        &[0, 255, 255, 255, 255][..],
        &[0, 0, 0, 1, 1, b't'][..],
        &[0, 1, 0, 0, 0, 0xff][..],
    ] {
        let answer = Serializer::V2.decode(FrameRef::Binary(frame));
        assert!(
            matches!(answer, Err(DecodeError::Truncated | DecodeError::Utf8)),
            "{frame:?}: {answer:?}"
        );
    }
    assert_eq!(
        Serializer::V2.decode(FrameRef::Binary(&[1, 0, 0, 0, 0])),
        Err(DecodeError::UnknownKind(1))
    );
}

#[test]
fn etf_nested_100_000_deep_is_too_deep() {
    // 100,000 one-element lists, then nil: `[[[[…]]]]`.
    let mut list = vec![131];
    for _ in 0..100_000 {
        list.extend_from_slice(&[108, 0, 0, 0, 1]);
    }
    list.extend(std::iter::repeat_n(106, 100_001));
    // 100,000 one-element tuples around an integer.
    let mut tuple = vec![131];
    for _ in 0..100_000 {
        tuple.extend_from_slice(&[104, 1]);
    }
    tuple.extend_from_slice(&[97, 1]);
    // 100,000 one-entry maps, nested in the value.
    let mut map = vec![131];
    for _ in 0..100_000 {
        map.extend_from_slice(&[116, 0, 0, 0, 1, 97, 0]);
    }
    map.extend_from_slice(&[97, 1]);
    for bytes in [list, tuple, map] {
        assert_eq!(
            small_stack(ETF_STACK, move || etf::decode(&bytes)),
            Err(EtfError::TooDeep)
        );
    }
}

#[test]
fn etf_nesting_at_the_depth_limit_decodes() {
    let limits = DecodeLimits::default();
    let mut bytes = vec![131];
    for _ in 0..limits.max_depth {
        bytes.extend_from_slice(&[104, 1]);
    }
    bytes.extend_from_slice(&[97, 7]);
    let term = small_stack(ETF_STACK, move || etf::decode(&bytes)).expect("decodes");
    let mut t = &term;
    for _ in 0..limits.max_depth {
        let Term::Tuple(items) = t else {
            panic!("not a tuple: {t:?}")
        };
        t = &items[0];
    }
    assert_eq!(t, &Term::Int(7));
}

#[test]
fn etf_a_4_gb_length_in_ten_bytes_allocates_nothing() {
    // Binary, list, tuple, map, big integer, atom: each claims u32::MAX of something.
    for bytes in [
        &[131, 109, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4][..],
        &[131, 108, 0xff, 0xff, 0xff, 0xff, 97, 1, 97, 2][..],
        &[131, 105, 0xff, 0xff, 0xff, 0xff, 97, 1, 97, 2][..],
        &[131, 116, 0xff, 0xff, 0xff, 0xff, 97, 1, 97, 2][..],
        &[131, 111, 0xff, 0xff, 0xff, 0xff, 0, 1, 2, 3][..],
        &[131, 118, 0xff, 0xff, b'a', b'b', b'c', b'd', b'e', b'f'][..],
        &[131, 90, 0xff, 0xff, 119, 1, b'n', 0, 0, 0][..],
        &[131, 107, 0xff, 0xff, 1, 2, 3, 4, 5, 6][..],
    ] {
        assert_eq!(etf::decode(bytes), Err(EtfError::Truncated), "{bytes:?}");
    }
    // A compressed term claiming 4 GB inflated: refused before inflating.
    assert!(matches!(
        etf::decode(&[131, 80, 0xff, 0xff, 0xff, 0xff, 0x78, 0x9c, 3, 0]),
        Err(EtfError::Compressed(_))
    ));
}

#[test]
fn etf_element_and_binary_limits() {
    let limits = DecodeLimits {
        max_elements: 10,
        max_binary: 4,
        ..DecodeLimits::default()
    };
    let ten = etf::encode(&Term::Tuple((0..9).map(Term::Int).collect()));
    assert!(etf::decode_with_limits(&ten, &limits).is_ok());
    let eleven = etf::encode(&Term::Tuple((0..10).map(Term::Int).collect()));
    assert_eq!(
        etf::decode_with_limits(&eleven, &limits),
        Err(EtfError::TooManyElements)
    );
    // A byte string counts its bytes as elements.
    let string = etf::encode(&Term::List((0..10).map(Term::Int).collect()));
    assert_eq!(string[1], 107);
    assert_eq!(
        etf::decode_with_limits(&string, &limits),
        Err(EtfError::TooManyElements)
    );
    let bin = etf::encode(&Term::Binary(b"abcd".to_vec()));
    assert!(etf::decode_with_limits(&bin, &limits).is_ok());
    let bin = etf::encode(&Term::Binary(b"abcde".to_vec()));
    assert_eq!(
        etf::decode_with_limits(&bin, &limits),
        Err(EtfError::BinaryTooLong)
    );
    let atom = etf::encode(&Term::Atom("hello".to_owned()));
    assert_eq!(
        etf::decode_with_limits(&atom, &limits),
        Err(EtfError::BinaryTooLong)
    );
}

#[test]
fn etf_refuses_funs_and_unknown_tags_without_panicking() {
    assert_eq!(etf::decode(&[131, 113]), Err(EtfError::Executable));
    assert_eq!(
        etf::decode(&[131, 77, 0, 0, 0, 1, 1, 0]),
        Err(EtfError::UnsupportedTag(77))
    );
    assert_eq!(etf::decode(&[]), Err(EtfError::BadVersion));
    assert_eq!(etf::decode(&[131]), Err(EtfError::Truncated));
    assert_eq!(etf::decode(&[131, 97, 1, 0]), Err(EtfError::TrailingBytes));
}

#[test]
fn etf_atoms_longer_than_255_characters_are_refused_as_the_vm_does() {
    // 255 × `é` in a UTF-8 atom (510 bytes, tag 118) is the longest atom there is.
    let longest = "é".repeat(255);
    let bytes = etf::encode(&Term::Atom(longest.clone()));
    assert_eq!(bytes[1], 118);
    assert_eq!(etf::decode(&bytes), Ok(Term::Atom(longest)));
    let mut too_long = vec![131, 118, 0x02, 0x00];
    too_long.extend("é".repeat(256).as_bytes());
    assert_eq!(etf::decode(&too_long), Err(EtfError::InvalidAtom));
    // A Latin-1 atom of 256 bytes (tag 100) as well.
    let mut latin1 = vec![131, 100, 0x01, 0x00];
    latin1.extend(std::iter::repeat_n(0xe9, 256));
    assert_eq!(etf::decode(&latin1), Err(EtfError::InvalidAtom));
}

/// Fuzzer find (frame_v2_json): serde_json's default float parser is not correctly rounded, so
/// `19E66` decoded one ULP off (as 1.8999999999999998e67, which itself decoded as 1.9e67) and the payload the server relays was not the
/// number the client sent. Jason parses exactly; so must we (serde_json `float_roundtrip`).
#[test]
fn floats_in_payloads_decode_exactly_and_re_encode_to_the_same_digits() {
    for (text, exact) in [
        ("1.8999999999999998e67", 1.899_999_999_999_999_8e67_f64),
        ("1.9e67", 1.9e67),
        // The fuzzer's input: 19E66 came out as 1.8999999999999998e67.
        ("19E66", 1.9e67),
        ("2.2250738585072014e-308", 2.225_073_858_507_201_4e-308),
        ("0.30000000000000004", 0.300_000_000_000_000_04),
    ] {
        let frame = format!("[\"3\",\"4\",\"t\",\"e\",{{\"a\":{text}}}]");
        let msg = Serializer::V2.decode(FrameRef::Text(&frame)).unwrap();
        let phx_protocol::Payload::Json(payload) = &msg.payload else {
            panic!("not JSON")
        };
        assert_eq!(payload["a"].as_f64(), Some(exact), "{text}");
        let out = Serializer::V2.encode_client(&msg).unwrap();
        let phx_protocol::Frame::Text(bytes) = out else {
            panic!("not text")
        };
        let again = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(
            Serializer::V2.decode(FrameRef::Text(again)).unwrap(),
            msg,
            "{again}"
        );
    }
}
