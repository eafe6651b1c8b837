//! Phoenix.Token sign and verify, compatible with Plug.Crypto (spec §9).
//!
//! A token is `PROTECTED.B64URL(payload).B64URL(mac)` where the payload is the ETF encoding of
//! `{data, signed_at_ms, max_age_s}` and the MAC is HMAC-SHA2 over the first two parts *as text*.
//! The HMAC key is derived from the app's `secret_key_base` and a salt with PBKDF2; deriving costs
//! a thousand HMAC rounds, so [`TokenKey`] is derived once and cached by the caller.
//!
//! This module never reads a clock: the caller passes `now_ms`, which keeps the crate pure and the
//! expiry rules testable.

use std::sync::Arc;

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384, Sha512};

use crate::etf::{self, Term};

/// Base64url without padding on output; padding optional on input, as Plug.Crypto accepts both.
const B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `PROTECTED` for each digest: the base64url text of `HS256`, `HS384`, `HS512`.
const HS256: &str = "SFMyNTY";
const HS384: &str = "SFMzODQ";
const HS512: &str = "SFM1MTI";

/// The max_age Plug.Crypto signs in when none is given, and assumes for legacy payloads.
pub const DEFAULT_MAX_AGE_SECS: u64 = 86_400;

/// Plug.Crypto's key derivation defaults: PBKDF2-HMAC-SHA256, 1000 iterations, 32 bytes.
pub const KEY_ITERATIONS: u32 = 1000;
/// See [`KEY_ITERATIONS`].
pub const KEY_LENGTH: usize = 32;

/// A derived token key. Cloning is two reference-count bumps' worth of copying.
///
/// Besides the raw key it keeps an HMAC-SHA256 instance already keyed with it: keying HMAC hashes
/// the padded key twice, and doing that once here instead of on every verify is a measurable part
/// of a token check.
#[derive(Clone)]
pub struct TokenKey {
    /// The PBKDF2 output; HS384/HS512 tokens are keyed with it too.
    key: Arc<[u8]>,
    /// HMAC-SHA256 keyed with `key`, cloned per use (the common HS256 path).
    hs256: Hmac<Sha256>,
}

impl std::fmt::Debug for TokenKey {
    /// Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("len", &self.key.len())
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// Derives the key Plug.Crypto uses by default: PBKDF2-HMAC-SHA256, 1000 iterations, 32 bytes.
    pub fn derive(secret_key_base: &[u8], salt: &[u8]) -> TokenKey {
        TokenKey::derive_with(secret_key_base, salt, KEY_ITERATIONS, KEY_LENGTH)
    }

    /// Derives with Plug.Crypto's `key_iterations` and `key_length` options (digest SHA-256).
    pub fn derive_with(
        secret_key_base: &[u8],
        salt: &[u8],
        iterations: u32,
        length: usize,
    ) -> TokenKey {
        let mut key = vec![0u8; length.max(1)];
        pbkdf2::pbkdf2_hmac::<Sha256>(secret_key_base, salt, iterations.max(1), &mut key);
        TokenKey::from_bytes(&key)
    }

    /// Wraps an already derived key (for example one read from configuration).
    pub fn from_bytes(key: &[u8]) -> TokenKey {
        // HMAC accepts keys of any length (long keys are hashed), so this cannot fail.
        let hs256 = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
            Ok(mac) => mac,
            Err(_) => <Hmac<Sha256> as KeyInit>::new(&Default::default()),
        };
        TokenKey {
            key: Arc::from(key),
            hs256,
        }
    }

    /// The derived key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.key
    }
}

/// A token's maximum age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxAge {
    /// Seconds after signing. `0` means already expired, as in Plug.Crypto.
    Seconds(u64),
    /// Never expires (the atom `:infinity`).
    Infinity,
}

impl MaxAge {
    fn to_term(self) -> Term {
        match self {
            MaxAge::Seconds(s) => match i64::try_from(s) {
                Ok(i) => Term::Int(i),
                Err(_) => Term::BigInt {
                    negative: false,
                    magnitude_le: s.to_le_bytes().to_vec(),
                },
            },
            MaxAge::Infinity => Term::Atom("infinity".to_owned()),
        }
    }
}

/// The HMAC digest named by a token's first part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// HS256, the default.
    Sha256,
    /// HS384.
    Sha384,
    /// HS512.
    Sha512,
}

impl Digest {
    fn protected(self) -> &'static str {
        match self {
            Digest::Sha256 => HS256,
            Digest::Sha384 => HS384,
            Digest::Sha512 => HS512,
        }
    }

    fn from_protected(p: &str) -> Option<Digest> {
        match p {
            HS256 => Some(Digest::Sha256),
            HS384 => Some(Digest::Sha384),
            HS512 => Some(Digest::Sha512),
            _ => None,
        }
    }
}

/// Why a token was refused, in Plug.Crypto's three words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was given (`nil`).
    #[error("missing token")]
    Missing,
    /// Malformed, wrong MAC, wrong key or salt, undecodable payload, or signed in the future.
    #[error("invalid token")]
    Invalid,
    /// Older than its max_age (or max_age ≤ 0).
    #[error("expired token")]
    Expired,
}

/// Signs `data` as `Phoenix.Token.sign/4` does with HS256: `signed_at_ms` is the signing time in
/// milliseconds (Plug.Crypto's `signed_at:` option is seconds × 1000).
pub fn sign(key: &TokenKey, data: &Term, signed_at_ms: i64, max_age: MaxAge) -> String {
    sign_with(key, data, signed_at_ms, max_age, Digest::Sha256, false)
}

/// [`sign`] with a choice of digest, and optional ETF compression (plug_crypto 2.2's
/// `compressed: true`; the compressed bytes differ from the VM's, which verifiers do not mind).
pub fn sign_with(
    key: &TokenKey,
    data: &Term,
    signed_at_ms: i64,
    max_age: MaxAge,
    digest: Digest,
    compressed: bool,
) -> String {
    let payload_term = Term::Tuple(vec![
        data.clone(),
        Term::Int(signed_at_ms),
        max_age.to_term(),
    ]);
    let payload = if compressed {
        etf::encode_compressed(&payload_term)
    } else {
        etf::encode(&payload_term)
    };
    sign_raw(key, &payload, digest)
}

/// Signs already-encoded ETF payload bytes. For interop tests and tools that must reproduce a
/// payload byte for byte (for example one written by an older OTP with latin-1 atom tags).
pub fn sign_raw(key: &TokenKey, payload: &[u8], digest: Digest) -> String {
    let protected = digest.protected();
    let mut token = String::with_capacity(protected.len() + payload.len() * 4 / 3 + 96);
    token.push_str(protected);
    token.push('.');
    B64.encode_string(payload, &mut token);
    let mac = mac_bytes(key, digest, token.as_bytes());
    token.push('.');
    B64.encode_string(&mac, &mut token);
    token
}

fn mac_bytes(key: &TokenKey, digest: Digest, text: &[u8]) -> Vec<u8> {
    match digest {
        Digest::Sha256 => {
            let mut m = key.hs256.clone();
            m.update(text);
            m.finalize().into_bytes().to_vec()
        }
        Digest::Sha384 => keyed::<Sha384>(key)
            .map(|mut m| {
                m.update(text);
                m.finalize().into_bytes().to_vec()
            })
            .unwrap_or_default(),
        Digest::Sha512 => keyed::<Sha512>(key)
            .map(|mut m| {
                m.update(text);
                m.finalize().into_bytes().to_vec()
            })
            .unwrap_or_default(),
    }
}

fn keyed<D: hmac::EagerHash>(key: &TokenKey) -> Option<Hmac<D>>
where
    Hmac<D>: KeyInit,
{
    <Hmac<D> as KeyInit>::new_from_slice(&key.key).ok()
}

/// Constant-time MAC check of `text` against `sig` with the digest the token names.
fn mac_ok(key: &TokenKey, digest: Digest, text: &[u8], sig: &[u8]) -> bool {
    match digest {
        Digest::Sha256 => {
            let mut m = key.hs256.clone();
            m.update(text);
            m.verify_slice(sig).is_ok()
        }
        Digest::Sha384 => keyed::<Sha384>(key).is_some_and(|mut m| {
            m.update(text);
            m.verify_slice(sig).is_ok()
        }),
        Digest::Sha512 => keyed::<Sha512>(key).is_some_and(|mut m| {
            m.update(text);
            m.verify_slice(sig).is_ok()
        }),
    }
}

/// [`verify`] for an optional token: `None` is [`TokenError::Missing`], like a `nil` token.
pub fn verify_opt(
    key: &TokenKey,
    token: Option<&str>,
    max_age: Option<MaxAge>,
    now_ms: i64,
) -> Result<Term, TokenError> {
    verify(key, token.ok_or(TokenError::Missing)?, max_age, now_ms)
}

/// Verifies a token as `Phoenix.Token.verify/4` (plug_crypto 2.2) does, at time `now_ms`.
///
/// `max_age`, when given, overrides the one embedded in the token. The checks, in order:
/// three parts with a known `PROTECTED`; base64url (padding optional); the MAC in constant time;
/// an ETF payload `{data, signed, max_age}`, legacy `{data, signed}` or legacy map
/// `%{data: _, signed: _}` (both legacy forms imply 86400 s); then age: `:infinity` passes,
/// max_age ≤ 0 is expired, a future `signed` is invalid, and `signed + max_age·1000 < now` is
/// expired. Any payload Plug.Crypto would crash on is reported as invalid.
pub fn verify(
    key: &TokenKey,
    token: &str,
    max_age: Option<MaxAge>,
    now_ms: i64,
) -> Result<Term, TokenError> {
    let mut parts = token.split('.');
    let (Some(protected), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Invalid);
    };
    let digest = Digest::from_protected(protected).ok_or(TokenError::Invalid)?;
    let payload = B64.decode(payload_b64).map_err(|_| TokenError::Invalid)?;
    let sig = B64.decode(sig_b64).map_err(|_| TokenError::Invalid)?;
    // The MAC covers `PROTECTED.PAYLOAD` exactly as received.
    let signed_text = &token.as_bytes()[..protected.len() + 1 + payload_b64.len()];
    if !mac_ok(key, digest, signed_text, &sig) {
        return Err(TokenError::Invalid);
    }
    let term = etf::decode(&payload).map_err(|_| TokenError::Invalid)?;
    let (data, signed, embedded) = split_payload(term).ok_or(TokenError::Invalid)?;
    let age = match max_age {
        Some(MaxAge::Infinity) => Age::Infinity,
        Some(MaxAge::Seconds(s)) => Age::Millis(i128::from(s) * 1000, s > 0),
        None => age_of(&embedded).ok_or(TokenError::Invalid)?,
    };
    validate_age(signed, age, now_ms)?;
    Ok(data)
}

/// The three payload shapes Plug.Crypto accepts.
fn split_payload(term: Term) -> Option<(Term, Term, Term)> {
    match term {
        Term::Tuple(items) if items.len() == 3 => {
            let mut it = items.into_iter();
            Some((it.next()?, it.next()?, it.next()?))
        }
        Term::Tuple(items) if items.len() == 2 => {
            let mut it = items.into_iter();
            Some((it.next()?, it.next()?, default_max_age()))
        }
        Term::Map(pairs) => {
            let mut data = None;
            let mut signed = None;
            for (k, v) in pairs {
                match k.as_atom() {
                    Some("data") => data = Some(v),
                    Some("signed") => signed = Some(v),
                    _ => {}
                }
            }
            Some((data?, signed?, default_max_age()))
        }
        _ => None,
    }
}

fn default_max_age() -> Term {
    Term::Int(DEFAULT_MAX_AGE_SECS as i64)
}

/// A max_age normalised for comparison.
enum Age {
    Infinity,
    /// Milliseconds (after Elixir's `trunc(max_age * 1000)`), and whether max_age was > 0.
    Millis(i128, bool),
}

/// Reads an embedded max_age: an integer, a float, or `:infinity`. Anything else would make
/// Plug.Crypto raise, so it is refused.
fn age_of(t: &Term) -> Option<Age> {
    match t {
        Term::Atom(a) if a == "infinity" => Some(Age::Infinity),
        Term::Int(i) => Some(Age::Millis(i128::from(*i) * 1000, *i > 0)),
        Term::BigInt { negative, .. } => {
            // Beyond i64 seconds: effectively never (or always) expired.
            Some(Age::Millis(
                if *negative {
                    i128::MIN / 2
                } else {
                    i128::MAX / 2
                },
                !negative,
            ))
        }
        Term::Float(f) if f.is_finite() => {
            // `as` saturates, matching the intent of trunc() for absurd values.
            Some(Age::Millis((f * 1000.0).trunc() as i128, *f > 0.0))
        }
        _ => None,
    }
}

fn validate_age(signed: Term, age: Age, now_ms: i64) -> Result<(), TokenError> {
    let millis = match age {
        Age::Infinity => return Ok(()),
        Age::Millis(_, false) => return Err(TokenError::Expired),
        Age::Millis(ms, true) => ms,
    };
    let signed = match signed {
        Term::Int(i) => i128::from(i),
        Term::BigInt { negative, .. } => {
            if negative {
                i128::MIN / 2
            } else {
                i128::MAX / 2
            }
        }
        _ => return Err(TokenError::Invalid),
    };
    let now = i128::from(now_ms);
    if signed > now {
        return Err(TokenError::Invalid);
    }
    if signed + millis < now {
        return Err(TokenError::Expired);
    }
    Ok(())
}
