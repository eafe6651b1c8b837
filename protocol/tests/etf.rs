//! The ETF subset of spec §9: exact encodings and defensive decoding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::unhex;
use phx_protocol::etf::{self, EtfError, Term};
use serde_json::json;

fn enc(t: &Term) -> Vec<u8> {
    etf::encode(t)
}

#[test]
fn spec_9_integer_encodings() {
    assert_eq!(enc(&Term::Int(0)), unhex("83 61 00"));
    assert_eq!(enc(&Term::Int(255)), unhex("83 61 ff"));
    assert_eq!(enc(&Term::Int(256)), unhex("83 62 00000100"));
    assert_eq!(enc(&Term::Int(-1)), unhex("83 62 ffffffff"));
    assert_eq!(
        enc(&Term::Int(i64::from(i32::MAX))),
        unhex("83 62 7fffffff")
    );
    assert_eq!(
        enc(&Term::Int(i64::from(i32::MIN))),
        unhex("83 62 80000000")
    );
    assert_eq!(enc(&Term::Int(1 << 31)), unhex("83 6e 04 00 00000080"));
    assert_eq!(
        enc(&Term::Int(-(1 << 31) - 1)),
        unhex("83 6e 04 01 01000080")
    );
    // signed_at_ms always takes six bytes.
    assert_eq!(
        enc(&Term::Int(1_700_000_000_000)),
        unhex("83 6e 06 00 0068e5cf8b01")
    );
    assert_eq!(
        enc(&Term::Int(i64::MIN)),
        unhex("83 6e 08 01 0000000000000080")
    );
}

#[test]
fn big_integers_round_trip_and_normalise() {
    let big = Term::BigInt {
        negative: false,
        magnitude_le: vec![0xff; 9],
    };
    let bytes = enc(&big);
    assert_eq!(bytes, unhex("83 6e 09 00 ffffffffffffffffff"));
    assert_eq!(etf::decode(&bytes).unwrap(), big);
    // A 300-byte magnitude uses the large form (111).
    let huge = Term::BigInt {
        negative: true,
        magnitude_le: vec![1; 300],
    };
    let bytes = enc(&huge);
    assert_eq!(&bytes[..7], &unhex("83 6f 0000012c 01")[..]);
    assert_eq!(etf::decode(&bytes).unwrap(), huge);
    // Non-minimal big encodings of small values decode to Int.
    assert_eq!(
        etf::decode(&unhex("83 6e 08 00 2a00000000000000")).unwrap(),
        Term::Int(42)
    );
    // u64::MAX does not fit i64.
    let t = etf::decode(&unhex("83 6e 08 00 ffffffffffffffff")).unwrap();
    assert_eq!(t.as_i64(), None);
    assert_eq!(t.to_json().unwrap(), json!(u64::MAX));
    // BigInt values that fit i32 are re-encoded minimally.
    let small = Term::BigInt {
        negative: true,
        magnitude_le: vec![5, 0, 0],
    };
    assert_eq!(enc(&small), unhex("83 62 fffffffb"));
}

#[test]
fn spec_9_other_encodings() {
    assert_eq!(
        enc(&Term::Binary(b"ab".to_vec())),
        unhex("83 6d 00000002 6162")
    );
    assert_eq!(enc(&Term::Float(1.5)), unhex("83 46 3ff8000000000000"));
    assert_eq!(enc(&Term::Atom("nil".into())), unhex("83 77 03 6e696c"));
    assert_eq!(
        enc(&Term::Map(vec![(
            Term::Binary(b"id".to_vec()),
            Term::Int(7)
        )])),
        unhex("83 74 00000001 6d 00000002 6964 61 07")
    );
    assert_eq!(enc(&Term::Nil), unhex("83 6a"));
    assert_eq!(enc(&Term::List(vec![])), unhex("83 6a"));
    // A list of bytes is a "string" (107), as the VM writes it.
    assert_eq!(
        enc(&Term::List(vec![Term::Int(1), Term::Int(2), Term::Int(3)])),
        unhex("83 6b 0003 010203")
    );
    assert_eq!(
        enc(&Term::List(vec![Term::Int(1), Term::Int(256)])),
        unhex("83 6c 00000002 61 01 62 00000100 6a")
    );
    assert_eq!(
        enc(&Term::Tuple(vec![Term::Int(1), Term::Nil])),
        unhex("83 68 02 61 01 6a")
    );
}

#[test]
fn spec_9_atoms_in_all_four_tags() {
    for bytes in [
        unhex("83 64 0008 696e66696e697479"),
        unhex("83 73 08 696e66696e697479"),
        unhex("83 76 0008 696e66696e697479"),
        unhex("83 77 08 696e66696e697479"),
    ] {
        assert_eq!(etf::decode(&bytes).unwrap(), Term::Atom("infinity".into()));
    }
    // Latin-1 atoms are mapped to Unicode; UTF-8 atoms must be valid UTF-8.
    assert_eq!(
        etf::decode(&unhex("83 73 01 e9")).unwrap(),
        Term::Atom("é".into())
    );
    assert_eq!(
        etf::decode(&unhex("83 77 01 e9")).unwrap_err(),
        EtfError::InvalidAtom
    );
}

#[test]
fn charlists_and_improper_lists_decode() {
    assert_eq!(
        etf::decode(&unhex("83 6b 0003 010203")).unwrap(),
        Term::List(vec![Term::Int(1), Term::Int(2), Term::Int(3)])
    );
    let improper = etf::decode(&unhex("83 6c 00000001 61 01 61 02")).unwrap();
    assert_eq!(
        improper,
        Term::ImproperList {
            elems: vec![Term::Int(1)],
            tail: Box::new(Term::Int(2))
        }
    );
    assert_eq!(etf::decode(&enc(&improper)).unwrap(), improper);
}

#[test]
fn pids_and_references_decode() {
    let pid = Term::Pid {
        node: "nonode@nohost".into(),
        id: 1,
        serial: 2,
        creation: 3,
    };
    assert_eq!(etf::decode(&enc(&pid)).unwrap(), pid);
    let r = Term::Reference {
        node: "n@h".into(),
        creation: 9,
        ids: vec![1, 2, 3],
    };
    assert_eq!(etf::decode(&enc(&r)).unwrap(), r);
}

#[test]
fn executable_terms_are_refused() {
    for tag in [112u8, 113, 117] {
        assert_eq!(
            etf::decode(&[131, tag, 0, 0, 0]).unwrap_err(),
            EtfError::Executable
        );
    }
}

#[test]
fn hostile_inputs_are_errors() {
    assert_eq!(etf::decode(&[]).unwrap_err(), EtfError::BadVersion);
    assert_eq!(
        etf::decode(&[130, 97, 1]).unwrap_err(),
        EtfError::BadVersion
    );
    assert_eq!(etf::decode(&[131]).unwrap_err(), EtfError::Truncated);
    assert_eq!(
        etf::decode(&[131, 97, 1, 0]).unwrap_err(),
        EtfError::TrailingBytes
    );
    // Declared lengths far beyond the input must fail before allocating.
    assert_eq!(
        etf::decode(&unhex("83 6d ffffffff")).unwrap_err(),
        EtfError::Truncated
    );
    assert_eq!(
        etf::decode(&unhex("83 6c ffffffff 6a")).unwrap_err(),
        EtfError::Truncated
    );
    assert_eq!(
        etf::decode(&unhex("83 74 ffffffff")).unwrap_err(),
        EtfError::Truncated
    );
    assert_eq!(
        etf::decode(&unhex("83 69 ffffffff")).unwrap_err(),
        EtfError::Truncated
    );
    assert_eq!(
        etf::decode(&unhex("83 6f ffffffff 00")).unwrap_err(),
        EtfError::Truncated
    );
    assert_eq!(
        etf::decode(&unhex("83 5a ffff 77 01 61 00000000")).unwrap_err(),
        EtfError::Truncated
    );
    // FLOAT_EXT (99) is read now (31 bytes of text); bit strings (77) are not.
    assert_eq!(etf::decode(&[131, 99]).unwrap_err(), EtfError::Truncated);
    assert_eq!(
        etf::decode(&[131, 77, 0, 0, 0, 1, 3, 0xe0]).unwrap_err(),
        EtfError::UnsupportedTag(77)
    );
    // Deep nesting is bounded.
    let mut deep = vec![131];
    for _ in 0..10_000 {
        deep.extend_from_slice(&[104, 1]);
    }
    deep.push(106);
    assert_eq!(etf::decode(&deep).unwrap_err(), EtfError::TooDeep);
}

#[test]
fn compressed_terms() {
    let t = Term::Tuple(vec![Term::Binary(vec![7; 1000]), Term::Int(1)]);
    let c = etf::encode_compressed(&t);
    assert_eq!(&c[..2], &[131, 80]);
    assert!(c.len() < 100);
    assert_eq!(etf::decode(&c).unwrap(), t);
    // The declared size must match and stay within the limit.
    let mut wrong = c.clone();
    wrong[5] ^= 1;
    assert!(matches!(
        etf::decode(&wrong).unwrap_err(),
        EtfError::Compressed(_)
    ));
    assert!(matches!(
        etf::decode_with_limit(&c, 100).unwrap_err(),
        EtfError::Compressed(_)
    ));
    let mut corrupt = c;
    let n = corrupt.len();
    corrupt[n - 6] ^= 0xff;
    assert!(matches!(
        etf::decode(&corrupt).unwrap_err(),
        EtfError::Compressed(_)
    ));
    // A bomb: 0xffffffff declared.
    assert!(matches!(
        etf::decode(&unhex("83 50 ffffffff 789c")).unwrap_err(),
        EtfError::Compressed(_)
    ));
}

#[test]
fn json_conversions() {
    let v = json!({"a": [1, -2, 2.5, "s", true, false, null, []], "b": {"c": {}}});
    let t = Term::from_json(&v);
    assert_eq!(t.to_json().unwrap(), v);
    assert_eq!(etf::decode(&enc(&t)).unwrap().to_json().unwrap(), v);
    assert_eq!(Term::from_json(&json!(null)), Term::Atom("nil".into()));
    assert_eq!(Term::from_json(&json!([])), Term::Nil);
    assert_eq!(Term::from_json(&json!("x")).as_str(), Some("x"));
    assert_eq!(Term::Tuple(vec![]).to_json(), None);
    assert_eq!(Term::Binary(vec![0xff]).to_json(), None);
    assert_eq!(Term::Atom("ok".into()).to_json(), Some(json!("ok")));
    let m = Term::Map(vec![(Term::Atom("user_id".into()), Term::Int(7))]);
    assert_eq!(m.map_get("user_id"), Some(&Term::Int(7)));
    assert_eq!(m.to_json(), Some(json!({"user_id": 7})));
}
