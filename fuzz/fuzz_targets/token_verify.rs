//! Phoenix.Token: verifying any string with a fixed secret never panics; a token this crate
//! signs over data taken from the input verifies back to that data.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use phx_protocol::etf::Term;
use phx_protocol::token::{self, MaxAge, TokenKey};

const NOW_MS: i64 = 1_700_000_000_000;

fn key() -> &'static TokenKey {
    static KEY: OnceLock<TokenKey> = OnceLock::new();
    KEY.get_or_init(|| {
        TokenKey::derive(
            b"fuzz-secret-key-base-0123456789abcdefghijklmnopqrstuvwxyz",
            b"user socket",
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let key = key();
    let text = String::from_utf8_lossy(data);
    let _ = token::verify(key, &text, None, NOW_MS);
    let _ = token::verify(key, &text, Some(MaxAge::Seconds(60)), NOW_MS);
    let _ = token::verify(key, &text, Some(MaxAge::Infinity), NOW_MS);
    // A forged variant: the input as the payload part of a token with a real header.
    let _ = token::verify(key, &format!("SFMyNTY.{text}.c2ln"), None, NOW_MS);
    let data_term = Term::Binary(data.to_vec());
    let signed = token::sign(key, &data_term, NOW_MS, MaxAge::Seconds(60));
    assert_eq!(
        token::verify(key, &signed, None, NOW_MS + 1_000),
        Ok(data_term)
    );
});
