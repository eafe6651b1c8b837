//! ETF: decoding any bytes never panics (nor overflows the stack, nor allocates for lengths
//! the input does not hold); a term that decodes encodes to bytes that decode to a term with
//! the same encoding (bytes are compared, so NaN floats round-trip too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phx_protocol::etf;

fuzz_target!(|data: &[u8]| {
    let Ok(term) = etf::decode(data) else {
        return;
    };
    let bytes = etf::encode(&term);
    let back = etf::decode(&bytes)
        .unwrap_or_else(|e| panic!("{term:?} encodes to bytes that do not decode: {e}"));
    assert_eq!(etf::encode(&back), bytes, "round trip of {term:?}");
    let compressed = etf::encode_compressed(&term);
    let back = etf::decode(&compressed).expect("compressed round trip");
    assert_eq!(etf::encode(&back), bytes);
    if let Some(json) = term.to_json() {
        let _ = etf::Term::from_json(&json);
    }
    let _ = term.as_i64();
    let _ = term.map_get("data");
});
