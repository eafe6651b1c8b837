//! Shared harness for the in-process WebSocket tests: a fixture server on 127.0.0.1:0 and a
//! raw-frame client (tokio-tungstenite) whose assertions print both frames on mismatch.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use phx_channels::{http, Config, Endpoint, Router};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running server; dropping it does not stop it (tests are short-lived processes).
pub struct Server {
    pub addr: SocketAddr,
    pub endpoint: Endpoint,
    pub stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the fixture endpoint with `extra` routes added after the fixture's.
pub async fn start(config: Config, extra: impl FnOnce(Router) -> Router) -> Server {
    let config = phx_fixture::configure(config);
    let endpoint = Endpoint::builder(config)
        .socket(
            "/socket",
            phx_fixture::FixtureSocket,
            extra(phx_fixture::router()),
        )
        .build();
    let app = http::router(&endpoint).merge(phx_fixture::routes(&endpoint));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let ep = endpoint.clone();
    let done = tokio::spawn(http::serve(ep, listener, app, async move {
        let _ = rx.await;
    }));
    Server {
        addr,
        endpoint,
        stop: Some(tx),
        done,
    }
}

impl Server {
    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/socket/websocket?{}", self.addr, query)
    }

    pub async fn connect(&self, query: &str) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(self.url(query))
            .await
            .expect("connect");
        ws
    }

    pub async fn v2(&self) -> Ws {
        self.connect("vsn=2.0.0").await
    }
}

pub async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.expect("send");
}

/// The next data frame (text or binary); pings/pongs skipped. Panics on close.
pub async fn next(ws: &mut Ws) -> Message {
    next_within(ws, Duration::from_secs(10)).await
}

/// The next data frame within `limit` of the test's clock.
pub async fn next_within(ws: &mut Ws, limit: Duration) -> Message {
    loop {
        let m = tokio::time::timeout(limit, ws.next())
            .await
            .expect("a frame in time")
            .expect("stream open")
            .expect("frame ok");
        match m {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

pub async fn next_text(ws: &mut Ws) -> String {
    match next(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Asserts the next frame is exactly `expected` (byte for byte).
pub async fn expect(ws: &mut Ws, expected: &str) {
    let got = next_text(ws).await;
    assert_eq!(got, expected, "\n  expected: {expected}\n  actual:   {got}");
}

/// Asserts no data frame arrives within `ms` (of the test's clock).
pub async fn expect_none(ws: &mut Ws, ms: u64) {
    match tokio::time::timeout(Duration::from_millis(ms), ws.next()).await {
        Err(_) => {}
        Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
        Ok(other) => panic!("expected no frame, got {other:?}"),
    }
}

/// Reads until the server closes; returns the close code (None if the TCP stream just ended).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(120), ws.next()).await {
            Err(_) => panic!("socket did not close"),
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Joins `topic` with join_ref = ref = `jr` and asserts the ok reply.
pub async fn join(ws: &mut Ws, jr: &str, topic: &str) {
    send(ws, &format!(r#"["{jr}","{jr}","{topic}","phx_join",{{}}]"#)).await;
    expect(
        ws,
        &format!(r#"["{jr}","{jr}","{topic}","phx_reply",{{"response":{{}},"status":"ok"}}]"#),
    )
    .await;
}
