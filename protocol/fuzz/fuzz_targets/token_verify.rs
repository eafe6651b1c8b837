//! Token verification never panics: on arbitrary token text, and on arbitrary payload bytes that
//! carry a valid MAC (which drives the input through the ETF decoder and the age rules).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phx_protocol::token::{self, Digest, MaxAge, TokenKey};

fuzz_target!(|data: &[u8]| {
    let key = TokenKey::from_bytes(&[7u8; 32]);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = token::verify(&key, text, None, 1_700_000_000_000);
    }
    let signed = token::sign_raw(&key, data, Digest::Sha256);
    let _ = token::verify(&key, &signed, None, 1_700_000_000_000);
    let _ = token::verify(&key, &signed, Some(MaxAge::Seconds(60)), i64::MAX);
});
