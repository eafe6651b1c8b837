//! V2 binary frames: decoding never panics, and a decoded client frame re-encodes to exactly the
//! input bytes (the client layout is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phx_protocol::{Frame, FrameRef, Serializer};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Serializer::V2.decode(FrameRef::Binary(data)) {
        let frame = Serializer::V2
            .encode_client(&msg)
            .expect("a decoded frame re-encodes");
        assert_eq!(frame, Frame::Binary(bytes::Bytes::copy_from_slice(data)));
    }
    let _ = Serializer::V2.decode_server(FrameRef::Binary(data));
});
