//! Per-mount transport switches (`socket "/socket", UserSocket, websocket: false`) and
//! `SOCKET_TRANSPORTS`, over real HTTP on 127.0.0.1:0 with the Rumbl server wired exactly as
//! `phx-server serve` wires it: a disabled transport has no route (404, as in Phoenix), the
//! other one keeps working.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use phx_channels::config::SocketOptions;
use phx_channels::{Config, Endpoint};
use phx_protocol::etf::Term;
use rumbl::{app, user_socket, RumblConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Server {
    addr: SocketAddr,
    endpoint: Endpoint,
    _dir: TempDir,
    _stop: oneshot::Sender<()>,
}

impl Server {
    /// A user token for jose (id 1), as the watch page would carry it.
    fn user_token(&self) -> String {
        self.endpoint
            .sign_token(user_socket::USER_SALT, &Term::Int(1))
    }
}

/// The `serve` server (Rumbl endpoint and routes) on a seeded temporary SQLite database.
async fn start(transports: SocketOptions) -> Server {
    let dir = TempDir(std::env::temp_dir().join(format!(
        "phx_transports_{}_{}",
        std::process::id(),
        rand::random::<u64>()
    )));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let config = Config {
        port: 0,
        socket_transports: transports,
        ..Config::default()
    };
    let rumbl = RumblConfig {
        database_url: Some(format!(
            "sqlite://{}",
            dir.0.join("rumbl.sqlite3").display()
        )),
        assets_dir: dir.0.join("assets"),
        ..RumblConfig::default()
    };
    let store = app::open_demo_store(&rumbl, false).await.expect("store");
    let endpoint = app::endpoint(config, &rumbl, store.clone());
    let router = app::router(&endpoint, &rumbl, store);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(phx_channels::http::serve(
        endpoint.clone(),
        listener,
        router,
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        endpoint,
        _dir: dir,
        _stop: tx,
    }
}

struct Resp {
    status: u16,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`, body read to EOF).
async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    Resp {
        status,
        body: body.to_string(),
    }
}

/// A raw WebSocket upgrade request for `/socket/websocket` (what a browser sends).
async fn upgrade(s: &Server) -> Resp {
    let target = format!("/socket/websocket?vsn=2.0.0&token={}", s.user_token());
    request(
        s.addr,
        "GET",
        &target,
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        "",
    )
    .await
}

/// Joins `videos:2` over LongPoll with the user's token, as phoenix.js's LongPoll does: a GET
/// that opens a session (410 + session token), a POST of the join, then polls until the reply.
async fn longpoll_join(s: &Server) -> Value {
    let user = s.user_token();
    let r = request(
        s.addr,
        "GET",
        &format!("/socket/longpoll?vsn=2.0.0&token={user}"),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], 410, "{}", r.body);
    let session = r.json()["token"]
        .as_str()
        .expect("session token")
        .to_string();
    let lp = format!("/socket/longpoll?vsn=2.0.0&token={user}&token={session}");
    let r = request(
        s.addr,
        "POST",
        &lp,
        &[("Content-Type", "application/x-ndjson")],
        r#"["1","1","videos:2","phx_join",{}]"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (200, 200.into()),
        "{}",
        r.body
    );
    for _ in 0..5 {
        let r = request(s.addr, "GET", &lp, &[], "").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        if let Some(m) = v["messages"].as_array().and_then(|m| m.first()) {
            return serde_json::from_str(m.as_str().expect("a frame string")).expect("frame JSON");
        }
        assert_eq!(v["status"], 204, "{}", r.body);
    }
    panic!("no join reply over LongPoll");
}

fn assert_join_ok(frame: &Value) {
    assert_eq!(frame[2], "videos:2", "{frame}");
    assert_eq!(frame[3], "phx_reply", "{frame}");
    assert_eq!(frame[4]["status"], "ok", "{frame}");
    assert!(
        frame[4]["response"]["annotations"].is_array(),
        "the seeded annotations come with the join: {frame}"
    );
}

async fn websocket_join(s: &Server) -> Value {
    let url = format!(
        "ws://{}/socket/websocket?vsn=2.0.0&token={}",
        s.addr,
        s.user_token()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("socket");
    ws.send(Message::Text(
        r#"["1","1","videos:2","phx_join",{}]"#.into(),
    ))
    .await
    .expect("send");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).expect("json"),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no join reply: {other:?}"),
        }
    }
}

const LONGPOLL_ONLY: SocketOptions = SocketOptions {
    websocket: false,
    longpoll: true,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_disabled_refuses_the_upgrade_and_longpoll_works() {
    let s = start(LONGPOLL_ONLY).await;
    assert_eq!(s.endpoint.mounts()[0].transports, LONGPOLL_ONLY);

    // No route: 404 as Phoenix answers for a transport that is not mounted; connect never ran.
    let r = upgrade(&s).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let url = format!(
        "ws://{}/socket/websocket?vsn=2.0.0&token={}",
        s.addr,
        s.user_token()
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 404)
        }
        other => panic!("the upgrade must be refused: {other:?}"),
    }
    assert_eq!(s.endpoint.live_sockets(), 0);

    assert_join_ok(&longpoll_join(&s).await);
    assert_eq!(s.endpoint.live_sockets(), 1);

    // The rest of the server is untouched.
    assert_eq!(
        request(s.addr, "GET", "/healthz", &[], "").await.status,
        200
    );
    assert_eq!(request(s.addr, "GET", "/login", &[], "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longpoll_disabled_answers_404_and_websocket_works() {
    let s = start(SocketOptions {
        websocket: true,
        longpoll: false,
    })
    .await;
    let user = s.user_token();
    for method in ["GET", "POST", "OPTIONS"] {
        let r = request(
            s.addr,
            method,
            &format!("/socket/longpoll?vsn=2.0.0&token={user}"),
            &[],
            "",
        )
        .await;
        assert_eq!(r.status, 404, "{method}: {}", r.body);
    }
    assert_join_ok(&websocket_join(&s).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_transports_by_default() {
    assert_eq!(
        Config::default().socket_transports,
        SocketOptions::default()
    );
    let s = start(SocketOptions::default()).await;
    assert_join_ok(&websocket_join(&s).await);
    assert_join_ok(&longpoll_join(&s).await);
}

#[test]
fn socket_transports_parse() {
    let both = SocketOptions::default();
    assert!(both.websocket && both.longpoll);
    assert_eq!(SocketOptions::parse("longpoll"), Ok(LONGPOLL_ONLY));
    assert_eq!(SocketOptions::parse("websocket,longpoll"), Ok(both));
    assert_eq!(SocketOptions::parse(" longpoll , websocket ,"), Ok(both));
    assert_eq!(
        SocketOptions::parse("websocket"),
        Ok(SocketOptions {
            websocket: true,
            longpoll: false
        })
    );
    for bad in ["", ",", "sse", "websocket,sse", "LongPoll"] {
        assert!(SocketOptions::parse(bad).is_err(), "{bad:?}");
    }
}

/// The only test in this binary that touches the environment (the others never read it).
#[test]
fn socket_transports_from_env() {
    std::env::set_var("SOCKET_TRANSPORTS", "longpoll");
    let parsed = Config::from_env().map(|c| c.socket_transports);
    std::env::set_var("SOCKET_TRANSPORTS", "websocket,bogus");
    let bad = Config::from_env().map(|c| c.socket_transports);
    std::env::remove_var("SOCKET_TRANSPORTS");
    let unset = Config::from_env().map(|c| c.socket_transports);
    assert_eq!(parsed.expect("valid"), LONGPOLL_ONLY);
    let err = bad.expect_err("unknown transport").to_string();
    assert!(err.contains("SOCKET_TRANSPORTS"), "{err}");
    assert_eq!(unset.expect("valid"), SocketOptions::default());
}
