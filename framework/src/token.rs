//! `Phoenix.Token` bound to one `secret_key_base`: sign and verify with a derived key per salt.
//!
//! Named [`Tokens`] after the module it stands for: `Phoenix.Token` both signs and verifies,
//! so "signer" would name half of it, and `Token` is what it hands out (a string). The codec
//! itself (the bytes, the MAC, the expiry rules) is `phx_protocol::token`, which never reads a
//! clock or caches anything; this is the stateful half Phoenix keeps in the endpoint — the
//! secret and the derived keys — and the wall clock the tokens carry.

use dashmap::DashMap;
use phx_protocol::etf::Term;
use phx_protocol::token::{self, MaxAge, TokenError, TokenKey};

/// The max_age Phoenix signs in when `Phoenix.Token.sign/3` is given none (one day).
const DEFAULT_MAX_AGE: MaxAge = MaxAge::Seconds(token::DEFAULT_MAX_AGE_SECS);

/// Signs and verifies Phoenix tokens with one `secret_key_base`, as `Phoenix.Token.sign/4` and
/// `verify/4` do given an endpoint.
///
/// Deriving a key is PBKDF2 — a thousand HMAC rounds, deliberately slow — and every socket
/// connect verifies a token, so each salt's key is derived once and kept (Plug.Crypto caches
/// them the same way).
pub struct Tokens {
    /// The secret every key is derived from (`SECRET_KEY_BASE`).
    secret_key_base: Vec<u8>,
    /// Derived keys per salt.
    keys: DashMap<Vec<u8>, TokenKey>,
}

impl std::fmt::Debug for Tokens {
    /// Never prints the secret or key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("salts", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens signed with `secret_key_base`: an Elixir app with the same secret verifies what
    /// this signs, and the other way round.
    pub fn new(secret_key_base: impl AsRef<[u8]>) -> Self {
        Tokens {
            secret_key_base: secret_key_base.as_ref().to_vec(),
            keys: DashMap::new(),
        }
    }

    /// The key for `salt`, derived on first use.
    fn key(&self, salt: &str) -> TokenKey {
        if let Some(k) = self.keys.get(salt.as_bytes()) {
            return k.clone();
        }
        let key = TokenKey::derive(&self.secret_key_base, salt.as_bytes());
        self.keys.insert(salt.as_bytes().to_vec(), key.clone());
        key
    }

    /// `Phoenix.Token.sign(endpoint, salt, data)` (max_age 86400 s embedded, Phoenix's default).
    pub fn sign(&self, salt: &str, data: &Term) -> String {
        self.sign_with(salt, data, DEFAULT_MAX_AGE)
    }

    /// `Phoenix.Token.sign(endpoint, salt, data, max_age: max_age)`: the token records its own
    /// lifetime, which a verifier uses when it passes no max_age of its own.
    pub fn sign_with(&self, salt: &str, data: &Term, max_age: MaxAge) -> String {
        token::sign(&self.key(salt), data, now_ms(), max_age)
    }

    /// `Phoenix.Token.verify(endpoint, salt, token, max_age: max_age)`.
    pub fn verify(
        &self,
        salt: &str,
        token: &str,
        max_age: Option<MaxAge>,
    ) -> Result<Term, TokenError> {
        token::verify(&self.key(salt), token, max_age, now_ms())
    }
}

/// Wall-clock milliseconds since the Unix epoch (tokens carry OS time).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_max_age_is_the_one_a_verifier_without_its_own_uses() {
        let tokens = Tokens::new("a secret key base");
        let data = Term::Int(7);
        let expired = tokens.sign_with("s", &data, MaxAge::Seconds(0));
        assert_eq!(tokens.verify("s", &expired, None), Err(TokenError::Expired));
        let forever = tokens.sign_with("s", &data, MaxAge::Infinity);
        assert_eq!(tokens.verify("s", &forever, None), Ok(data.clone()));
        // The verifier's own max_age overrides the embedded one.
        assert_eq!(
            tokens.verify("s", &expired, Some(MaxAge::Seconds(60))),
            Ok(data)
        );
        assert_eq!(
            tokens.verify("other", &forever, None),
            Err(TokenError::Invalid)
        );
    }
}
