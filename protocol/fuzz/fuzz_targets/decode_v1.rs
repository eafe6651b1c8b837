//! V1 JSON object frames: decoding never panics, and whatever decodes re-encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phx_protocol::{FrameRef, Serializer};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = Serializer::V1.decode(FrameRef::Binary(data));
        return;
    };
    if let Ok(msg) = Serializer::V1.decode(FrameRef::Text(text)) {
        // JSON payloads always encode, in both directions.
        assert!(Serializer::V1.encode_push(&msg).is_ok());
        assert!(Serializer::V1.encode_client(&msg).is_ok());
    }
    let _ = Serializer::V1.decode_server(FrameRef::Text(text));
});
