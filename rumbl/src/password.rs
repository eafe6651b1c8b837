//! Password checks for `POST /login` against the `users.password_hash` column.
//!
//! The book's Rumbl hashes passwords with Comeonin; the hashes an existing Rumbl database holds
//! are therefore one of:
//!
//! * pbkdf2_elixir's modular format `$pbkdf2-<digest>$<rounds>$<salt>$<hash>`, digest `sha512`
//!   (the default, 64-byte hash) or `sha256` (32 bytes), salt and hash in pbkdf2_elixir's
//!   adapted base64: the standard alphabet with `.` in place of `+`, no padding (the same
//!   encoding as passlib's `pbkdf2_sha512`);
//! * bcrypt (`$2b$`, `$2a$`, `$2y$`; bcrypt_elixir).
//!
//! Anything else (a NULL column, an unknown scheme, a malformed hash) never matches. Both are
//! deliberately slow, so callers run [`verify`] on a blocking thread; an unknown user is checked
//! against [`DUMMY_HASH`] so it costs the same time as a wrong password (Comeonin's
//! `no_user_verify`).

use base64::alphabet::Alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// The work a stored hash may ask for at most: a planted hash with absurd rounds must not pin a
/// CPU for minutes per login attempt.
const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;

/// A pbkdf2-sha512 hash (pbkdf2_elixir's default 160,000 rounds) of a password nobody has, to
/// spend the same time on an unknown user as on a known one.
pub const DUMMY_HASH: &str = "$pbkdf2-sha512$160000$B0t9/cUJL5hccibOiSyY6g$86pjsMcGNLtNYCMilep83jsel7REDHrWoD8N.OrWMrDLmevrO1sEHUt6c1lMAYurqjGUAFCJ5XOyDb75EpJ3Nw";

/// pbkdf2_elixir's base64 alphabet.
fn adapted_base64() -> Option<GeneralPurpose> {
    let alphabet =
        Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./").ok()?;
    Some(GeneralPurpose::new(
        &alphabet,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    ))
}

/// True when `password` matches `stored` (see the module doc for the accepted formats).
pub fn verify(password: &str, stored: &str) -> bool {
    if stored.starts_with("$pbkdf2-") {
        verify_pbkdf2(password, stored)
    } else if stored.starts_with("$2") {
        bcrypt::verify(password, stored).unwrap_or(false)
    } else {
        false
    }
}

/// The modular pbkdf2 format: `$pbkdf2-sha512$<rounds>$<salt>$<hash>`.
fn verify_pbkdf2(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(""), Some(scheme), Some(rounds), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let Some(b64) = adapted_base64() else {
        return false;
    };
    let (Ok(rounds), Ok(salt), Ok(expected)) =
        (rounds.parse::<u32>(), b64.decode(salt), b64.decode(hash))
    else {
        return false;
    };
    if rounds == 0 || rounds > MAX_PBKDF2_ROUNDS || expected.is_empty() || expected.len() > 1024 {
        return false;
    }
    let mut derived = vec![0u8; expected.len()];
    match scheme {
        "pbkdf2-sha512" => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), &salt, rounds, &mut derived)
        }
        "pbkdf2-sha256" => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, rounds, &mut derived)
        }
        _ => return false,
    }
    constant_time_eq(&derived, &expected)
}

/// Compares without an early exit, so the time taken says nothing about where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors made with Python's hashlib.pbkdf2_hmac and the PyPI `bcrypt` package by
    // scripts/password_vectors.py (independent of this code).
    const SHA512_1000: &str = "$pbkdf2-sha512$1000$AAECAwQFBgcICQoLDA0ODw$EFEdys9ZfcV9f0/GLMLvDalzZYpKPXK7CyNg0WV8..7HNGJUnjDXD/RhZkuoZpfsX.0iiYfKwIcryRQFr1UDAQ";
    const SHA256_1000: &str =
        "$pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0c2FsdA$RilxBxnvGa3JIyaXwlUUKmvuPzxjHerJeqIuhiIvKNU";
    const BCRYPT_4: &str = "$2b$04$z0et7XFcURuFCvc.LBa4we0CS2ESfUXdUTf8CgoWA50LAOG8aBE1K";

    #[test]
    fn pbkdf2_elixir_vectors() {
        assert!(verify("hunter2", SHA512_1000));
        assert!(!verify("hunter3", SHA512_1000));
        assert!(!verify("", SHA512_1000));
        assert!(verify("hunter2", SHA256_1000));
        assert!(!verify("Hunter2", SHA256_1000));
    }

    #[test]
    fn bcrypt_vector() {
        assert!(verify("hunter2", BCRYPT_4));
        assert!(!verify("hunter", BCRYPT_4));
    }

    #[test]
    fn malformed_hashes_never_match() {
        for stored in [
            "",
            "hunter2",
            "$pbkdf2-sha512$1000$AAECAwQFBgcICQoLDA0ODw",
            "$pbkdf2-md5$1000$AAECAwQFBgcICQoLDA0ODw$AAAA",
            "$pbkdf2-sha512$0$AAECAwQFBgcICQoLDA0ODw$AAAA",
            "$pbkdf2-sha512$99999999999$AAECAwQFBgcICQoLDA0ODw$AAAA",
            "$pbkdf2-sha512$1000$!!!$AAAA",
            "$2b$04$short",
        ] {
            assert!(!verify("hunter2", stored), "{stored}");
        }
    }
}
