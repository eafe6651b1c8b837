//! The HTTP layer's limits over raw TCP against an in-process fixture server: head and
//! keep-alive timeouts, the body deadline, the URI and head caps, `MAX_CONNECTIONS`, and
//! shutdown with half-open connections. Timeouts are configured small (300 ms); the waits
//! below are only there to turn a missing answer into a failure instead of a hang.

mod common_http;

use std::net::SocketAddr;
use std::time::Duration;

use phx_channels::http::connections::REFUSAL;
use phx_channels::{http, Config, Endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common_http::{parse_head, Resp};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The configured timeouts: small, so the tests are quick.
const SHORT: Duration = Duration::from_millis(300);
/// How long to wait for an answer before calling it missing.
const DETECT: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<std::io::Result<()>>,
}

async fn start_with(tune: impl FnOnce(&mut Config)) -> Server {
    let mut config = phx_fixture::configure(Config::default());
    config.http_header_timeout = SHORT;
    config.http_body_timeout = SHORT;
    tune(&mut config);
    let endpoint = Endpoint::builder(config)
        .socket("/socket", phx_fixture::FixtureSocket, phx_fixture::router())
        .build();
    let app = http::router(&endpoint).merge(phx_fixture::routes(&endpoint));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(http::serve(endpoint, listener, app, async move {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        done,
    }
}

async fn start() -> Server {
    start_with(|_| {}).await
}

async fn open(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Everything the server sends until it closes the connection (EOF or reset).
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(DETECT, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the server did not close the connection; got {:?} so far",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response (head + content-length body) from a keep-alive connection.
async fn read_response(stream: &mut TcpStream) -> Resp {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let (status, headers) = parse_head(&String::from_utf8_lossy(&buf[..end]));
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let start = end + 4;
            while buf.len() < start + len {
                let n = tokio::time::timeout(DETECT, stream.read(&mut chunk))
                    .await
                    .expect("the body in time")
                    .expect("read");
                assert!(n > 0, "EOF inside the body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[start..start + len]).to_string();
            return Resp {
                status,
                headers,
                body,
            };
        }
        let n = tokio::time::timeout(DETECT, stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap_or(0);
        assert!(
            n > 0,
            "connection closed before a complete response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `request` on a new connection and reads one response.
async fn request(addr: SocketAddr, request: &str) -> (Resp, TcpStream) {
    let mut s = open(addr).await;
    s.write_all(request.as_bytes()).await.expect("write");
    let r = read_response(&mut s).await;
    (r, s)
}

fn get(target: &str, extra: &[String]) -> String {
    let mut r = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n");
    for h in extra {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

fn upgrade(target: &str) -> String {
    get(
        target,
        &[
            "Upgrade: websocket".into(),
            "Connection: Upgrade".into(),
            "Sec-WebSocket-Version: 13".into(),
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into(),
        ],
    )
}

/// `path` padded with `&x=aaa…` to exactly `total` bytes.
fn target_of(path: &str, total: usize) -> String {
    let base = format!("{path}{}x=", if path.contains('?') { '&' } else { '?' });
    let t = format!("{base}{}", "a".repeat(total - base.len()));
    assert_eq!(t.len(), total);
    t
}

// ------------------------------------------------------------------------------------------------
// HTTP_HEADER_TIMEOUT_MS

#[tokio::test]
async fn a_silent_connection_and_a_half_request_line_are_closed_without_a_response() {
    let srv = start().await;
    let mut silent = open(srv.addr).await;
    let mut half = open(srv.addr).await;
    half.write_all(b"GET /fixture/tok").await.expect("write");
    let mut half_headers = open(srv.addr).await;
    half_headers
        .write_all(b"GET /fixture/token?user_id=1 HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .expect("write");
    for (what, conn) in [
        ("silent", &mut silent),
        ("half request line", &mut half),
        ("half headers", &mut half_headers),
    ] {
        let got = read_until_closed(conn).await;
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "{what}: closed after {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_its_response() {
    let srv = start().await;
    let (r, mut conn) = request(srv.addr, &get("/fixture/token?user_id=1", &[])).await;
    assert_eq!(r.status, 200);
    let after = read_until_closed(&mut conn).await;
    assert!(
        after.is_empty(),
        "an idle keep-alive connection got more than its response: {:?}",
        String::from_utf8_lossy(&after)
    );
}

// ------------------------------------------------------------------------------------------------
// HTTP_BODY_TIMEOUT_MS

/// Writes `body` a byte every 50 ms (well under the timeout each time) until the server stops
/// taking it.
fn trickle(mut w: tokio::net::tcp::OwnedWriteHalf, body: Vec<u8>) -> JoinHandle<()> {
    tokio::spawn(async move {
        for b in body {
            if w.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Reads one response from the read half of a trickling connection.
async fn response_on(r: tokio::net::tcp::OwnedReadHalf, w: JoinHandle<()>) -> Resp {
    // Reunite is not possible while the writer runs; read the raw bytes instead.
    let mut r = r;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let resp = loop {
        let n = tokio::time::timeout(DETECT, r.read(&mut chunk))
            .await
            .expect("an answer before the body ends")
            .unwrap_or(0);
        buf.extend_from_slice(&chunk[..n]);
        if n == 0 || buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break String::from_utf8_lossy(&buf).to_string();
        }
    };
    w.abort();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no response, got {resp:?}"));
    Resp {
        status,
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
        body: body.to_string(),
    }
}

#[tokio::test]
async fn a_trickled_fixture_body_is_answered_408_and_closed() {
    let srv = start().await;
    let conn = open(srv.addr).await;
    let (r, mut w) = conn.into_split();
    w.write_all(
        b"POST /fixture/broadcast HTTP/1.1\r\nHost: localhost\r\n\
          Content-Type: application/json\r\nContent-Length: 200\r\n\r\n",
    )
    .await
    .expect("write");
    let body = br#"{"topic":"room:lobby","event":"e","payload":{}}"#.to_vec();
    let writer = trickle(
        w,
        format!("{:<200}", String::from_utf8_lossy(&body)).into_bytes(),
    );
    let resp = response_on(r, writer).await;
    assert_eq!(resp.status, 408, "{resp:?}");
    assert_eq!(resp.header("connection"), Some("close"));
}

#[tokio::test]
async fn a_trickled_longpoll_body_is_answered_408() {
    let srv = start().await;
    let (hello, _) = request(
        srv.addr,
        "GET /socket/longpoll?vsn=2.0.0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&hello.body).expect("json");
    let token = v["token"].as_str().expect("a session token").to_string();
    let conn = open(srv.addr).await;
    let (r, mut w) = conn.into_split();
    w.write_all(
        format!(
            "POST /socket/longpoll?vsn=2.0.0&token={token} HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/x-ndjson\r\nContent-Length: 200\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let line = format!("{:<200}", r#"[null,"1","phoenix","heartbeat",{}]"#);
    let resp = response_on(r, trickle(w, line.into_bytes())).await;
    // LongPoll answers in its protocol: HTTP 200 with {"status":408}.
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, r#"{"status":408}"#);
    assert_eq!(resp.header("connection"), Some("close"));
}

#[tokio::test]
async fn a_body_sent_at_once_is_served() {
    let srv = start().await;
    let body = r#"{"topic":"room:lobby","event":"e","payload":{}}"#;
    let (r, _) = request(
        srv.addr,
        &format!(
            "POST /fixture/broadcast HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
}

// ------------------------------------------------------------------------------------------------
// HTTP_MAX_URI_BYTES

#[tokio::test]
async fn a_uri_of_8193_bytes_is_414_on_every_route_and_8192_is_served() {
    let srv = start().await;
    for (path, upgrade_req) in [
        ("/socket/websocket?vsn=2.0.0", true),
        ("/socket/longpoll?vsn=2.0.0", false),
        ("/fixture/token?user_id=1", false),
        ("/no-such-route", false),
    ] {
        let t = target_of(path, 8193);
        let req = if upgrade_req {
            upgrade(&t)
        } else {
            get(&t, &[])
        };
        let (r, _) = request(srv.addr, &req).await;
        assert_eq!(r.status, 414, "{path} with an 8,193-byte URI");
    }
    let (r, _) = request(
        srv.addr,
        &get(&target_of("/fixture/token?user_id=1", 8192), &[]),
    )
    .await;
    assert_eq!(r.status, 200, "an 8,192-byte URI is within the cap");
}

#[tokio::test]
async fn a_20_kb_nested_bracket_query_is_refused_not_crashed() {
    let srv = start().await;
    let q = format!("a{}=1&vsn=2.0.0", "[b]".repeat(6700));
    for req in [
        upgrade(&format!("/socket/websocket?{q}")),
        get(&format!("/socket/longpoll?{q}"), &[]),
    ] {
        let (r, _) = request(srv.addr, &req).await;
        assert!([414, 431].contains(&r.status), "HTTP {}", r.status);
    }
    let (r, _) = request(srv.addr, &get("/healthz", &[])).await;
    assert_eq!(r.status, 200, "the server is still there");
}

// ------------------------------------------------------------------------------------------------
// HTTP_MAX_HEADER_BYTES, HTTP_MAX_HEADERS

#[tokio::test]
async fn a_head_over_16_kib_is_431_and_closed() {
    let srv = start().await;
    let big = format!("X-Big: {}", "b".repeat(17 * 1024));
    let (r, mut conn) = request(srv.addr, &get("/fixture/token?user_id=1", &[big])).await;
    assert_eq!(r.status, 431);
    assert!(read_until_closed(&mut conn).await.is_empty());

    let ok = format!("X-Big: {}", "b".repeat(15 * 1024));
    let (r, _) = request(srv.addr, &get("/fixture/token?user_id=1", &[ok])).await;
    assert_eq!(r.status, 200, "15 KiB of headers is within the cap");
}

#[tokio::test]
async fn one_hundred_and_one_header_lines_are_431_and_closed() {
    let srv = start().await;
    // Host + 100 = 101 lines.
    let lines: Vec<String> = (0..100).map(|i| format!("X-H{i}: 1")).collect();
    let (r, mut conn) = request(srv.addr, &get("/fixture/token?user_id=1", &lines)).await;
    assert_eq!(r.status, 431);
    assert!(read_until_closed(&mut conn).await.is_empty());

    // Host + 99 = 100 lines.
    let (r, _) = request(srv.addr, &get("/fixture/token?user_id=1", &lines[..99])).await;
    assert_eq!(r.status, 200, "100 header lines are within the cap");
}

// ------------------------------------------------------------------------------------------------
// MAX_CONNECTIONS

#[tokio::test]
async fn over_max_connections_the_extra_connection_reads_one_503_then_eof() {
    let srv = start_with(|c| {
        c.max_connections = 2;
        // Keep-alive connections must outlive the test's steps.
        c.http_header_timeout = Duration::from_secs(60);
    })
    .await;
    // A WebSocket (counted for its whole life, after the upgrade too) and a keep-alive HTTP
    // connection take both slots.
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/socket/websocket?vsn=2.0.0", srv.addr))
            .await
            .expect("websocket");
    let (r, mut http_conn) = request(srv.addr, &get("/healthz", &[])).await;
    assert_eq!(r.status, 200);

    // Read without sending a byte: the answer comes unasked.
    let mut extra = open(srv.addr).await;
    assert_eq!(read_until_closed(&mut extra).await, REFUSAL);
    assert_eq!(
        String::from_utf8_lossy(REFUSAL),
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );

    // Established connections are untouched.
    http_conn
        .write_all(get("/healthz", &[]).as_bytes())
        .await
        .expect("write");
    assert_eq!(read_response(&mut http_conn).await.status, 200);

    // A freed slot is usable again (the release is asynchronous: retry until it is seen).
    drop(ws);
    let mut served = None;
    for _ in 0..100 {
        let mut c = open(srv.addr).await;
        c.write_all(get("/healthz", &[]).as_bytes()).await.ok();
        let mut head = [0u8; 12];
        if c.read_exact(&mut head).await.is_ok() && &head == b"HTTP/1.1 200" {
            served = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        served.is_some(),
        "no connection served after a slot was freed"
    );
}

// ------------------------------------------------------------------------------------------------
// shutdown: DRAIN_MAX_MS, then SHUTDOWN_GRACE_MS

#[tokio::test]
async fn shutdown_with_half_open_connections_completes() {
    let mut srv = start_with(|c| {
        // Half-open connections must not be closed by the head timeout before the shutdown.
        c.http_header_timeout = Duration::from_secs(60);
        c.http_body_timeout = Duration::from_secs(60);
        c.drain_max = Duration::from_millis(500);
        c.drain_interval = Duration::from_millis(10);
        c.shutdown_grace = SHORT;
    })
    .await;
    let mut half = open(srv.addr).await;
    half.write_all(b"GET /fix").await.expect("write");
    let (r, idle) = request(srv.addr, &get("/healthz", &[])).await;
    assert_eq!(r.status, 200);
    let mut body = open(srv.addr).await;
    body.write_all(
        b"POST /fixture/broadcast HTTP/1.1\r\nHost: localhost\r\nContent-Length: 500\r\n\r\n{",
    )
    .await
    .expect("write");
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/socket/websocket?vsn=2.0.0", srv.addr))
            .await
            .expect("websocket");
    tokio::time::sleep(Duration::from_millis(50)).await;

    let _ = srv.stop.take().expect("stop").send(());
    let served = tokio::time::timeout(DETECT, &mut srv.done)
        .await
        .expect("serve returned after drain + grace, half-open connections or not");
    assert!(matches!(served, Ok(Ok(()))), "{served:?}");
    // The half-open connections were let go of.
    assert!(read_until_closed(&mut half).await.is_empty());
    assert!(read_until_closed(&mut body).await.is_empty());
    drop((idle, ws));
}
