//! V2 binary frames: decoding any bytes never panics; a client frame that decodes re-encodes to
//! the very same bytes, and so does a server frame decoded the way the JS client does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phx_protocol::{Frame, FrameRef, Serializer, ServerMessage};

fuzz_target!(|data: &[u8]| {
    let v2 = Serializer::V2;
    if let Ok(msg) = v2.decode(FrameRef::Binary(data)) {
        let _ = phx_protocol::limits::check_client_message(&msg);
        let frame = v2
            .encode_client(&msg)
            .expect("a decoded client frame re-encodes");
        assert_eq!(
            frame,
            Frame::Binary(data.to_vec().into()),
            "client frame round trip"
        );
        let Frame::Binary(bytes) = frame else {
            unreachable!()
        };
        assert_eq!(v2.decode(FrameRef::Binary(&bytes)).ok(), Some(msg));
    }
    if let Ok(server) = v2.decode_server(FrameRef::Binary(data)) {
        let frame = match &server {
            ServerMessage::Push(m) => v2.encode_push(m),
            ServerMessage::Reply(r) => v2.encode_reply(r),
            ServerMessage::Broadcast(b) => v2.encode_broadcast(b),
        }
        .expect("a decoded server frame re-encodes");
        assert_eq!(
            frame,
            Frame::Binary(data.to_vec().into()),
            "server frame round trip"
        );
    }
});
