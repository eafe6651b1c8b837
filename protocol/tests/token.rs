//! Spec §9 known-answer vectors and §13 case 40 (Phoenix.Token).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{hex, unhex};
use phx_protocol::etf::{self, Term};
use phx_protocol::token::{self, Digest, MaxAge, TokenError, TokenKey};

const SECRET: &[u8] = b"abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz012345";
const SALT: &[u8] = b"user socket";
/// signed_at = 1 700 000 000 s.
const SIGNED_AT_MS: i64 = 1_700_000_000_000;
/// A fixed "today" (2027-01-15) so the tests do not depend on the clock.
const TODAY_MS: i64 = 1_800_000_000_000;

const TOKEN_42: &str =
    "SFMyNTY.g2gDYSpuBgAAaOXPiwFiAAFRgA.K6UIXyFlmjQPpD3Oci8lEY8U2aDAOKDqG0kQKcbLMHY";
const TOKEN_USER1: &str =
    "SFMyNTY.g2gDbQAAAAZ1c2VyOjFuBgAAaOXPiwFiAAFRgA.HwtGZ8bJTq-Odjp6va8vO8oQoVnfaBEDfcYFoPybpLo";
const TOKEN_MAP: &str =
    "SFMyNTY.g2gDdAAAAAFtAAAAAmlkYQduBgAAaOXPiwFiAAFRgA.mhc4GgDmkQAv2JSyoywZA1uWQqTSMq73lKhKfk8A7rc";

fn key() -> TokenKey {
    TokenKey::derive(SECRET, SALT)
}

fn bin(s: &str) -> Term {
    Term::Binary(s.as_bytes().to_vec())
}

fn user1() -> Term {
    bin("user:1")
}

fn id7() -> Term {
    Term::Map(vec![(bin("id"), Term::Int(7))])
}

#[test]
fn spec_9_derived_key() {
    assert_eq!(
        hex(key().as_bytes()).replace(' ', ""),
        "cfc881aa5a06c22d0943ab591b90dfb1afea1fcc26f4c2da57a47a7b270ae608"
    );
}

#[test]
fn spec_9_sign_42() {
    let t = token::sign(
        &key(),
        &Term::Int(42),
        SIGNED_AT_MS,
        MaxAge::Seconds(86_400),
    );
    assert_eq!(t, TOKEN_42);
}

#[test]
fn spec_9_sign_user1() {
    let t = token::sign(&key(), &user1(), SIGNED_AT_MS, MaxAge::Seconds(86_400));
    assert_eq!(t, TOKEN_USER1);
}

#[test]
fn spec_9_user1_payload_bytes() {
    let payload = etf::encode(&Term::Tuple(vec![
        user1(),
        Term::Int(SIGNED_AT_MS),
        Term::Int(86_400),
    ]));
    assert_eq!(
        payload,
        unhex("83 68 03 6d 00000006 757365723a31 6e 06 00 0068e5cf8b01 62 00015180")
    );
}

#[test]
fn spec_9_sign_map() {
    let t = token::sign(&key(), &id7(), SIGNED_AT_MS, MaxAge::Seconds(86_400));
    assert_eq!(t, TOKEN_MAP);
}

#[test]
fn spec_9_user1_expired_today_with_embedded_max_age() {
    assert_eq!(
        token::verify(&key(), TOKEN_USER1, None, TODAY_MS),
        Err(TokenError::Expired)
    );
}

#[test]
fn spec_9_user1_ok_with_infinity() {
    assert_eq!(
        token::verify(&key(), TOKEN_USER1, Some(MaxAge::Infinity), TODAY_MS),
        Ok(user1())
    );
}

#[test]
fn spec_9_user1_expired_with_max_age_0() {
    assert_eq!(
        token::verify(&key(), TOKEN_USER1, Some(MaxAge::Seconds(0)), SIGNED_AT_MS),
        Err(TokenError::Expired)
    );
}

#[test]
fn spec_9_user1_invalid_with_other_salt() {
    let other = TokenKey::derive(SECRET, b"other");
    assert_eq!(
        token::verify(&other, TOKEN_USER1, Some(MaxAge::Infinity), TODAY_MS),
        Err(TokenError::Invalid)
    );
}

#[test]
fn spec_13_case_40_all_vectors_verify_with_infinity() {
    for (t, data) in [
        (TOKEN_42, Term::Int(42)),
        (TOKEN_USER1, user1()),
        (TOKEN_MAP, id7()),
    ] {
        assert_eq!(
            token::verify(&key(), t, Some(MaxAge::Infinity), TODAY_MS),
            Ok(data)
        );
    }
}

#[test]
fn spec_13_case_40_within_embedded_max_age() {
    let now = SIGNED_AT_MS + 86_400_000; // exactly at the limit: not yet expired
    assert_eq!(
        token::verify(&key(), TOKEN_42, None, now),
        Ok(Term::Int(42))
    );
    assert_eq!(
        token::verify(&key(), TOKEN_42, None, now + 1),
        Err(TokenError::Expired)
    );
}

#[test]
fn spec_13_case_40_tampered_mac_is_invalid() {
    let last = TOKEN_USER1.len() - 1;
    let flipped = if TOKEN_USER1.ends_with('A') { "B" } else { "A" };
    let tampered = format!("{}{}", &TOKEN_USER1[..last], flipped);
    assert_eq!(
        token::verify(&key(), &tampered, Some(MaxAge::Infinity), TODAY_MS),
        Err(TokenError::Invalid)
    );
    // A changed payload character is invalid too.
    let tampered = TOKEN_USER1.replacen("g2gD", "g2gE", 1);
    assert_eq!(
        token::verify(&key(), &tampered, Some(MaxAge::Infinity), TODAY_MS),
        Err(TokenError::Invalid)
    );
}

#[test]
fn spec_13_case_40_future_signed_at_is_invalid() {
    let now = TODAY_MS;
    let t = token::sign(&key(), &user1(), now + 3_600_000, MaxAge::Seconds(86_400));
    assert_eq!(
        token::verify(&key(), &t, None, now),
        Err(TokenError::Invalid)
    );
    assert_eq!(
        token::verify(&key(), &t, Some(MaxAge::Seconds(86_400)), now),
        Err(TokenError::Invalid)
    );
    // Plug.Crypto checks :infinity before the future check.
    assert_eq!(
        token::verify(&key(), &t, Some(MaxAge::Infinity), now),
        Ok(user1())
    );
}

/// `{data, signed, :infinity}` with the atom written as `tag` (100 = latin-1, OTP ≤25;
/// 119 = small UTF-8, OTP 26+; 115 and 118 for completeness), and `data` the atom `:admin`.
fn payload_with_atoms(tag: u8) -> Vec<u8> {
    let atom = |name: &str| -> Vec<u8> {
        let mut v = vec![tag];
        match tag {
            100 | 118 => v.extend_from_slice(&(name.len() as u16).to_be_bytes()),
            _ => v.push(name.len() as u8),
        }
        v.extend_from_slice(name.as_bytes());
        v
    };
    let mut p = vec![131, 104, 3];
    p.extend(atom("admin"));
    p.extend_from_slice(&[110, 6, 0]);
    p.extend_from_slice(&SIGNED_AT_MS.to_le_bytes()[..6]);
    p.extend(atom("infinity"));
    p
}

#[test]
fn spec_13_case_40_atoms_tag_100_and_119_both_verify() {
    for tag in [100u8, 119, 115, 118] {
        let t = token::sign_raw(&key(), &payload_with_atoms(tag), Digest::Sha256);
        assert_eq!(
            token::verify(&key(), &t, None, TODAY_MS),
            Ok(Term::Atom("admin".into())),
            "atom tag {tag}"
        );
    }
}

#[test]
fn opts_max_age_overrides_embedded_infinity() {
    let t = token::sign_raw(&key(), &payload_with_atoms(100), Digest::Sha256);
    assert_eq!(
        token::verify(&key(), &t, Some(MaxAge::Seconds(60)), TODAY_MS),
        Err(TokenError::Expired)
    );
}

#[test]
fn hs384_and_hs512_tokens_verify() {
    for digest in [Digest::Sha384, Digest::Sha512] {
        let t = token::sign_with(
            &key(),
            &user1(),
            SIGNED_AT_MS,
            MaxAge::Infinity,
            digest,
            false,
        );
        assert!(t.starts_with(if digest == Digest::Sha384 {
            "SFMzODQ."
        } else {
            "SFM1MTI."
        }));
        assert_eq!(token::verify(&key(), &t, None, TODAY_MS), Ok(user1()));
        let other = TokenKey::derive(SECRET, b"other");
        assert_eq!(
            token::verify(&other, &t, None, TODAY_MS),
            Err(TokenError::Invalid)
        );
    }
}

#[test]
fn compressed_payloads_verify() {
    let big = Term::Binary(vec![b'x'; 4000]);
    let t = token::sign_with(
        &key(),
        &big,
        SIGNED_AT_MS,
        MaxAge::Infinity,
        Digest::Sha256,
        true,
    );
    let payload_b64 = t.split('.').nth(1).unwrap();
    assert!(
        payload_b64.starts_with("g1A"),
        "131,80 prefix: {payload_b64}"
    );
    assert_eq!(token::verify(&key(), &t, None, TODAY_MS), Ok(big));
}

#[test]
fn legacy_payload_shapes() {
    // {data, signed}: max_age 86400.
    let two = etf::encode(&Term::Tuple(vec![user1(), Term::Int(SIGNED_AT_MS)]));
    let t = token::sign_raw(&key(), &two, Digest::Sha256);
    assert_eq!(
        token::verify(&key(), &t, None, SIGNED_AT_MS + 1000),
        Ok(user1())
    );
    assert_eq!(
        token::verify(&key(), &t, None, TODAY_MS),
        Err(TokenError::Expired)
    );
    // %{data: _, signed: _}
    let map = etf::encode(&Term::Map(vec![
        (Term::Atom("signed".into()), Term::Int(SIGNED_AT_MS)),
        (Term::Atom("data".into()), user1()),
    ]));
    let t = token::sign_raw(&key(), &map, Digest::Sha256);
    assert_eq!(
        token::verify(&key(), &t, None, SIGNED_AT_MS + 1000),
        Ok(user1())
    );
    assert_eq!(
        token::verify(&key(), &t, None, TODAY_MS),
        Err(TokenError::Expired)
    );
    // Binary keys are not the legacy shape.
    let map = etf::encode(&Term::Map(vec![
        (bin("signed"), Term::Int(SIGNED_AT_MS)),
        (bin("data"), user1()),
    ]));
    let t = token::sign_raw(&key(), &map, Digest::Sha256);
    assert_eq!(
        token::verify(&key(), &t, None, SIGNED_AT_MS),
        Err(TokenError::Invalid)
    );
}

#[test]
fn float_and_negative_embedded_max_age() {
    let p = etf::encode(&Term::Tuple(vec![
        user1(),
        Term::Int(SIGNED_AT_MS),
        Term::Float(1.5),
    ]));
    let t = token::sign_raw(&key(), &p, Digest::Sha256);
    assert_eq!(
        token::verify(&key(), &t, None, SIGNED_AT_MS + 1500),
        Ok(user1())
    );
    assert_eq!(
        token::verify(&key(), &t, None, SIGNED_AT_MS + 1501),
        Err(TokenError::Expired)
    );
    let p = etf::encode(&Term::Tuple(vec![
        user1(),
        Term::Int(SIGNED_AT_MS),
        Term::Int(-5),
    ]));
    let t = token::sign_raw(&key(), &p, Digest::Sha256);
    assert_eq!(
        token::verify(&key(), &t, None, SIGNED_AT_MS),
        Err(TokenError::Expired)
    );
    let p = etf::encode(&Term::Tuple(vec![
        user1(),
        Term::Int(SIGNED_AT_MS),
        bin("x"),
    ]));
    let t = token::sign_raw(&key(), &p, Digest::Sha256);
    assert_eq!(
        token::verify(&key(), &t, None, SIGNED_AT_MS),
        Err(TokenError::Invalid)
    );
}

#[test]
fn padded_base64_is_accepted() {
    // Padding changes the signed text, so re-sign over the padded payload part.
    let payload = etf::encode(&Term::Tuple(vec![
        Term::Int(42),
        Term::Int(SIGNED_AT_MS),
        Term::Int(86_400),
    ]));
    use base64::Engine;
    let p64 = base64::engine::general_purpose::URL_SAFE.encode(&payload);
    assert!(p64.ends_with('='));
    let text = format!("SFMyNTY.{p64}");
    use hmac::{KeyInit, Mac};
    let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key().as_bytes()).unwrap();
    m.update(text.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE.encode(m.finalize().into_bytes());
    let t = format!("{text}.{sig}");
    assert_eq!(
        token::verify(&key(), &t, Some(MaxAge::Infinity), 0),
        Ok(Term::Int(42))
    );
}

#[test]
fn malformed_tokens_are_invalid() {
    for t in [
        "",
        "SFMyNTY",
        "SFMyNTY.g2gD",
        "SFMyNTY.a.b.c",
        "SFMxMjg.g2gDYSpuBgAAaOXPiwFiAAFRgA.K6UIXyFlmjQPpD3Oci8lEY8U2aDAOKDqG0kQKcbLMHY",
        "SFMyNTY.!!!.K6UIXyFlmjQPpD3Oci8lEY8U2aDAOKDqG0kQKcbLMHY",
        "SFMyNTY.g2gDYSpuBgAAaOXPiwFiAAFRgA.",
        "SFMyNTY.g2gDYSpuBgAAaOXPiwFiAAFRgA.K6UIXyFlmjQPpD3Oci8lEY8U2aDAOKDqG0kQKcbLMH",
        "SFMyNTY..",
    ] {
        assert_eq!(
            token::verify(&key(), t, Some(MaxAge::Infinity), TODAY_MS),
            Err(TokenError::Invalid),
            "{t:?}"
        );
    }
}

#[test]
fn missing_token() {
    assert_eq!(
        token::verify_opt(&key(), None, None, TODAY_MS),
        Err(TokenError::Missing)
    );
    assert_eq!(
        token::verify_opt(&key(), Some(TOKEN_42), Some(MaxAge::Infinity), TODAY_MS),
        Ok(Term::Int(42))
    );
}

#[test]
fn sign_verify_round_trip_of_json_data() {
    let data = Term::from_json(&serde_json::json!({"user_id": 7, "roles": ["a", "b"], "x": null}));
    let t = token::sign(&key(), &data, SIGNED_AT_MS, MaxAge::Seconds(60));
    let got = token::verify(&key(), &t, None, SIGNED_AT_MS + 59_000).unwrap();
    assert_eq!(
        got.to_json().unwrap(),
        serde_json::json!({"user_id": 7, "roles": ["a", "b"], "x": null})
    );
}

#[test]
fn token_key_debug_does_not_leak() {
    let d = format!("{:?}", key());
    assert!(!d.contains("cfc8"), "{d}");
}
