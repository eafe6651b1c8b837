//! The session state machine (spec §3/§4) without a network: the input is a sequence of client
//! frames, one per line (a line starting with byte 0 is a V2 binary frame, any other a V2 text
//! frame), fed to a `Session` over the fixture's routes (`room:*`, `presence:*`) exactly as the
//! WebSocket task feeds it: `handle_frame`/`dispatch`, each `Wait` awaited and resumed, the
//! outbound queue drained (channel exits handed back to the session).
//!
//! Every decodable message gets a unique ref (`fz<i>`) so its answers can be counted.
//! Invariants: no panic; no message is answered more than once; the channel count never
//! exceeds `max_channels`; a frame the serializer refuses ends the session with an error.
//! Tokio runs on one thread with a paused clock (timers fire as soon as the runtime is idle),
//! a fresh runtime per input so no channel task outlives its input.
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use phx_channels::conn::{ConnHandle, OutFrame};
use phx_channels::endpoint::Endpoint;
use phx_channels::mailbox::Bounds;
use phx_channels::session::{Out, Session};
use phx_channels::{Assigns, Config};
use phx_fixture as fixture;
use phx_protocol::{FrameRef, Serializer, ServerMessage};
use serde_json::Value;

/// Frames per input: enough to join, flood and leave several channels.
const MAX_FRAMES: usize = 64;
const MAX_CHANNELS: usize = 3;

/// Takes the outbound queue as a transport does (the session applies channel exits itself):
/// counts the replies to our refs. Returns false once the socket was asked to close.
fn drain(session: &mut Session, answered: &mut HashMap<String, usize>) -> bool {
    let mut open = true;
    for item in session.take_outgoing() {
        match item {
            Out::Frame(f) => {
                let decoded = match &f {
                    OutFrame::Text(t) => Serializer::V2.decode_server(FrameRef::Text(t.as_str())),
                    OutFrame::Binary(b) => Serializer::V2.decode_server(FrameRef::Binary(b)),
                };
                let decoded = decoded.expect("the server's own frames decode");
                if let ServerMessage::Reply(r) = decoded {
                    if let Value::String(rf) = &r.ref_ {
                        if rf.starts_with("fz") {
                            let n = answered.entry(rf.clone()).or_default();
                            *n += 1;
                            assert!(*n <= 1, "{rf} answered {n} times");
                        }
                    }
                }
            }
            Out::Close(_) => open = false,
            // A latency sample's marker: nothing to check here.
            Out::Published(_) => {}
        }
    }
    open
}

async fn run(data: &[u8]) {
    let mut config = fixture::configure(Config::default());
    config.max_channels = MAX_CHANNELS;
    let endpoint = Endpoint::builder(config)
        .socket("/socket", fixture::FixtureSocket, fixture::router())
        .build();
    let mount = endpoint.mounts()[0].clone();
    let cfg = endpoint.config();
    let conn = Arc::new(ConnHandle::new(
        Serializer::V2,
        Bounds::new(cfg.outbox_capacity, cfg.outbox_max_bytes),
        endpoint.metrics().clone(),
    ));
    let mut session = Session::new(endpoint.clone(), mount, conn.clone(), Assigns::new(), None);
    let mut answered = HashMap::new();
    'frames: for (i, line) in data.split(|&b| b == b'\n').take(MAX_FRAMES).enumerate() {
        let frame = match line.first() {
            Some(0) => FrameRef::Binary(line),
            _ => match std::str::from_utf8(line) {
                Ok(t) => FrameRef::Text(t),
                Err(_) => continue,
            },
        };
        let outcome = match Serializer::V2.decode(frame) {
            Ok(mut msg) => {
                msg.ref_ = Value::String(format!("fz{i}"));
                if phx_protocol::limits::check_client_message(&msg).is_err() {
                    break;
                }
                Ok(session.dispatch(msg, line.len()))
            }
            Err(_) => session.handle_frame(frame),
        };
        let mut wait = match outcome {
            Ok(w) => w,
            Err(e) => {
                assert!(
                    Serializer::V2.decode(frame).is_err(),
                    "refused a valid frame: {e}"
                );
                break;
            }
        };
        while let Some(w) = wait.take() {
            match tokio::time::timeout(Duration::from_secs(30), w).await {
                Ok(resume) => wait = session.resume(resume),
                // A join or a full inbox that never completes: report it as a hang.
                Err(_) => panic!("a session wait did not complete"),
            }
            if !drain(&mut session, &mut answered) {
                break 'frames;
            }
        }
        // Let the channel tasks run (the clock is paused: this costs no wall time).
        tokio::time::sleep(Duration::from_millis(1)).await;
        let open = drain(&mut session, &mut answered);
        assert!(session.channel_count() <= MAX_CHANNELS);
        if !open {
            break;
        }
    }
    // Close as a transport does, then let every channel and timer (presence batching) finish,
    // so nothing is left for the runtime's teardown to cut short.
    drop(session);
    tokio::time::sleep(Duration::from_secs(10)).await;
}

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(run(data));
});
