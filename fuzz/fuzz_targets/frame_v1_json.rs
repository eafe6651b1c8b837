//! V1 JSON frames: decoding any text never panics, and a frame that decodes survives
//! encode (as a client would send it) → decode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phx_protocol::{Frame, FrameRef, Serializer};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Serializer::V1.decode_server(FrameRef::Text(text));
    let Ok(msg) = Serializer::V1.decode(FrameRef::Text(text)) else {
        return;
    };
    let _ = phx_protocol::limits::check_client_message(&msg);
    let Ok(Frame::Text(bytes)) = Serializer::V1.encode_client(&msg) else {
        panic!("a decoded V1 message must encode as text");
    };
    let again = std::str::from_utf8(&bytes).expect("the encoder writes UTF-8");
    let back = Serializer::V1
        .decode(FrameRef::Text(again))
        .unwrap_or_else(|e| panic!("re-encoded frame {again:?} does not decode: {e}"));
    assert_eq!(back, msg, "round trip through {again}");
});
