//! ETF decoding never panics (nor blows the stack or the heap), and decoded terms re-encode into
//! bytes that decode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phx_protocol::etf;

fuzz_target!(|data: &[u8]| {
    if let Ok(term) = etf::decode(data) {
        let again = etf::encode(&term);
        assert!(etf::decode(&again).is_ok(), "re-encoded term must decode");
    }
});
