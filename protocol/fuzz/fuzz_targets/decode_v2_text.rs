//! V2 JSON array frames: decoding never panics, and whatever decodes re-encodes and decodes again
//! with the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phx_protocol::{Frame, FrameRef, Serializer};
use serde_json::Value;

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(msg) = Serializer::V2.decode(FrameRef::Text(text)) {
        let frame = Serializer::V2
            .encode_push(&msg)
            .expect("JSON payloads always encode");
        let Frame::Text(bytes) = frame else {
            panic!("a JSON payload must give a text frame");
        };
        let again = std::str::from_utf8(&bytes).expect("the writer emits UTF-8");
        let back = Serializer::V2
            .decode(FrameRef::Text(again))
            .expect("our own output must decode");
        // Floats may move by an ULP or two through serde_json's parser; nothing else may.
        assert_eq!(back.topic, msg.topic);
        assert_eq!(back.event, msg.event);
        for (a, b) in [(&back.join_ref, &msg.join_ref), (&back.ref_, &msg.ref_)] {
            if !has_float(b) {
                assert_eq!(a, b);
            }
        }
    }
    let _ = Serializer::V2.decode_server(FrameRef::Text(text));
});
