//! Outbound messages over `FRAGMENT_BYTES` leave as a first frame plus continuation frames,
//! read here at the byte level (a WebSocket client library would reassemble them): opcodes and
//! FIN bits as RFC 6455 §5.4 has them, no frame longer than `FRAGMENT_BYTES`, and the
//! reassembled message exactly the reply an unfragmented one would have been. Small messages
//! stay one frame.

mod common_ws;

use common_ws::*;
use phx_channels::transport::websocket::FRAGMENT_BYTES;
use phx_channels::Config;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One frame as it came off the wire (server frames are not masked).
struct RawFrame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).await.expect("read");
    buf
}

async fn read_frame(s: &mut TcpStream) -> RawFrame {
    let head = read_n(s, 2).await;
    let len = match head[1] & 0x7f {
        126 => {
            let b = read_n(s, 2).await;
            u16::from_be_bytes([b[0], b[1]]) as usize
        }
        127 => {
            let b = read_n(s, 8).await;
            u64::from_be_bytes(b.try_into().expect("8 bytes")) as usize
        }
        n => n as usize,
    };
    RawFrame {
        fin: head[0] & 0x80 != 0,
        opcode: head[0] & 0x0f,
        payload: read_n(s, len).await,
    }
}

/// Reads one whole message: its frames and the reassembled bytes.
async fn read_message(s: &mut TcpStream) -> (Vec<RawFrame>, Vec<u8>) {
    let mut frames = Vec::new();
    let mut data = Vec::new();
    loop {
        let f = read_frame(s).await;
        data.extend_from_slice(&f.payload);
        let fin = f.fin;
        frames.push(f);
        if fin {
            return (frames, data);
        }
    }
}

/// A masked client text frame.
fn client_text(text: &str) -> Vec<u8> {
    let p = text.as_bytes();
    let mut out = vec![0x81];
    match p.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x11u8, 0x22, 0x33, 0x44];
    out.extend_from_slice(&key);
    out.extend(p.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

async fn handshake(server: &Server) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    let req =
        "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n";
    s.write_all(req.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(read_n(&mut s, 1).await[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[tokio::test]
async fn a_large_reply_is_fragmented_and_reassembles_to_the_same_message() {
    let server = start(Config::default(), |r| r).await;
    let mut s = handshake(&server).await;
    s.write_all(&client_text(r#"["1","1","room:lobby","phx_join",{}]"#))
        .await
        .expect("join");
    let (frames, join) = read_message(&mut s).await;
    assert_eq!(frames.len(), 1, "a small reply is one frame");
    assert_eq!(frames[0].opcode, 1);
    let join: Value = serde_json::from_slice(&join).expect("json");
    assert_eq!(join[4]["status"], "ok");

    // A reply of 3.5 fragments' worth of body.
    let body = "x".repeat(FRAGMENT_BYTES * 7 / 2);
    let push = json!(["1", "2", "room:lobby", "ping", {"body": body}]).to_string();
    s.write_all(&client_text(&push)).await.expect("push");
    let (frames, reply) = read_message(&mut s).await;
    assert!(frames.len() >= 4, "{} frames", frames.len());
    assert_eq!(frames[0].opcode, 1, "first fragment is a text frame");
    assert!(
        frames[1..].iter().all(|f| f.opcode == 0),
        "then continuations"
    );
    assert!(
        frames[..frames.len() - 1].iter().all(|f| !f.fin),
        "FIN only on the last"
    );
    assert!(frames.iter().all(|f| f.payload.len() <= FRAGMENT_BYTES));
    let reply: Value = serde_json::from_slice(&reply).expect("reassembled JSON");
    assert_eq!(
        reply,
        json!(["1", "2", "room:lobby", "phx_reply", {"status": "ok", "response": {"body": body}}])
    );

    // The socket goes on as before: a heartbeat is answered in one frame.
    s.write_all(&client_text(r#"[null,"3","phoenix","heartbeat",{}]"#))
        .await
        .expect("heartbeat");
    let (frames, hb) = read_message(&mut s).await;
    assert_eq!(frames.len(), 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&hb).expect("json"),
        json!([null, "3", "phoenix", "phx_reply", {"status": "ok", "response": {}}])
    );
}
