//! LongPoll over real HTTP on 127.0.0.1:0 (spec §7, §13 cases 35–39) with a tiny HTTP/1.1
//! client on a TcpStream: exact response bytes for the protocol answers, then the bounds.

mod common_http;

use std::net::SocketAddr;
use std::time::Duration;

use phx_channels::channel::{async_trait, Channel, ChannelError, ChannelSocket, JoinReply};
use phx_channels::{http, Config, Endpoint, Payload, Router};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common_http::{parse_head, Resp};
use tokio::time::Instant;

// ------------------------------------------------------------------------------------------------
// harness

struct Server {
    addr: SocketAddr,
    endpoint: Endpoint,
}

/// A channel whose join takes 600 ms, to see the 408 of a frame not processed in time.
#[derive(Default)]
struct SlowChannel;

#[async_trait]
impl Channel for SlowChannel {
    async fn join(
        &mut self,
        _topic: &str,
        _payload: Payload,
        _socket: &mut ChannelSocket,
    ) -> Result<JoinReply, ChannelError> {
        tokio::time::sleep(Duration::from_millis(600)).await;
        Ok(JoinReply::ok())
    }
}

async fn start_with(tune: impl FnOnce(&mut Config)) -> Server {
    let mut config = phx_fixture::configure(Config::default());
    tune(&mut config);
    let router: Router = phx_fixture::router().channel("slow:*", SlowChannel::default);
    let endpoint = Endpoint::builder(config)
        .socket("/socket", phx_fixture::FixtureSocket, router)
        .build();
    let app = http::router(&endpoint).merge(phx_fixture::routes(&endpoint));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(http::serve(
        endpoint.clone(),
        listener,
        app,
        std::future::pending(),
    ));
    Server { addr, endpoint }
}

async fn start() -> Server {
    start_with(|_| {}).await
}

/// What these tests read off a LongPoll answer.
trait LongPollResp {
    fn json(&self) -> Value;
    fn token(&self) -> String;
    fn expect(&self, body: &str);
}

impl LongPollResp for Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn token(&self) -> String {
        self.json()["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {}", self.body))
            .to_string()
    }

    /// Asserts a protocol answer: HTTP 200, JSON headers, exactly `body`.
    fn expect(&self, body: &str) {
        assert_eq!(self.status, 200, "HTTP status of {self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(self.header("cache-control"), Some("no-store"));
        assert_eq!(self.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            self.body, body,
            "\n  expected: {body}\n  actual:   {}",
            self.body
        );
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`, body read to EOF).
async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("response within 30 s")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let (status, headers) = parse_head(head);
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

const LP: &str = "/socket/longpoll";

async fn get(s: &Server, query: &str) -> Resp {
    request(s.addr, "GET", &format!("{LP}?{query}"), &[], b"").await
}

async fn poll(s: &Server, token: &str) -> Resp {
    get(s, &format!("vsn=2.0.0&token={token}")).await
}

/// A poll with the session token in `x-phoenix-longpoll-token`, not in the query: a token
/// that names no session then reaches `connect` without a `token` param (the fixture would
/// take a query `token` for a user token and refuse the connection).
async fn poll_h(s: &Server, token: &str) -> Resp {
    request(
        s.addr,
        "GET",
        &format!("{LP}?vsn=2.0.0"),
        &[("x-phoenix-longpoll-token", token)],
        b"",
    )
    .await
}

async fn post(s: &Server, token: &str, lines: &[&str]) -> Resp {
    post_raw(
        s,
        token,
        "application/x-ndjson",
        lines.join("\n").as_bytes(),
    )
    .await
}

async fn post_raw(s: &Server, token: &str, content_type: &str, body: &[u8]) -> Resp {
    request(
        s.addr,
        "POST",
        &format!("{LP}?vsn=2.0.0&token={token}"),
        &[("content-type", content_type)],
        body,
    )
    .await
}

/// A new V2 session; returns its token.
async fn session(s: &Server) -> String {
    let r = get(s, "vsn=2.0.0&").await;
    assert_eq!(r.json()["status"], 410, "{}", r.body);
    r.token()
}

fn messages(r: &Resp) -> Vec<String> {
    r.json()["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {}", r.body))
        .iter()
        .map(|m| m.as_str().expect("messages are strings").to_string())
        .collect()
}

fn heartbeat(r: &str) -> String {
    format!(r#"[null,"{r}","phoenix","heartbeat",{{}}]"#)
}

fn heartbeat_reply(r: &str) -> String {
    format!(r#"[null,"{r}","phoenix","phx_reply",{{"response":{{}},"status":"ok"}}]"#)
}

/// Polls until `n` messages arrived (each poll returns what is buffered).
async fn collect(s: &Server, token: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let r = poll(s, token).await;
        assert_eq!(
            r.json()["status"],
            200,
            "waiting for {n} messages: {}",
            r.body
        );
        out.extend(messages(&r));
    }
    out
}

// ------------------------------------------------------------------------------------------------
// §13 cases 35–39

#[tokio::test]
async fn case35_handshake_creates_a_session() {
    let s = start().await;
    let r = get(&s, "vsn=2.0.0&").await;
    let token = r.token();
    r.expect(&format!(
        r#"{{"messages":[],"status":410,"token":"{token}"}}"#
    ));
    assert!(token.starts_with("SFMyNTY."), "a Phoenix.Token: {token}");
    assert_eq!(s.endpoint.live_sockets(), 1, "registered for the drain");
}

#[tokio::test]
async fn case36_send_and_receive() {
    let s = start().await;
    let t = session(&s).await;
    post(
        &s,
        &t,
        &[&heartbeat("1"), r#"["3","3","room:lobby","phx_join",{}]"#],
    )
    .await
    .expect(r#"{"status":200}"#);
    poll(&s, &t).await.expect(&format!(
        r#"{{"messages":["[null,\"1\",\"phoenix\",\"phx_reply\",{{\"response\":{{}},\"status\":\"ok\"}}]","[\"3\",\"3\",\"room:lobby\",\"phx_reply\",{{\"response\":{{}},\"status\":\"ok\"}}]"],"status":200,"token":"{t}"}}"#
    ));
}

#[tokio::test]
async fn case37_idle_poll_is_204_after_the_window() {
    let s = start_with(|c| c.lp_window = Duration::from_millis(300)).await;
    let t = session(&s).await;
    let started = Instant::now();
    poll(&s, &t)
        .await
        .expect(&format!(r#"{{"messages":[],"status":204,"token":"{t}"}}"#));
    let held = started.elapsed();
    assert!(
        held >= Duration::from_millis(250) && held < Duration::from_secs(3),
        "held {held:?}"
    );
}

#[tokio::test]
async fn case38_bad_session() {
    let s = start().await;
    post(&s, "garbage", &[&heartbeat("1")])
        .await
        .expect(r#"{"status":410}"#);
    // (In the header: the fixture reads a query `token` as a user token, §7.1's collision.)
    let r = poll_h(&s, "garbage").await;
    let t2 = r.token();
    assert_ne!(t2, "garbage");
    r.expect(&format!(r#"{{"messages":[],"status":410,"token":"{t2}"}}"#));
    // A user token is signed with another salt: not a session token.
    let user = s.endpoint.sign_token(
        phx_fixture::USER_SALT,
        &phx_protocol::Term::Binary(vec![0; 16]),
    );
    post(&s, &user, &[&heartbeat("1")])
        .await
        .expect(r#"{"status":410}"#);
}

#[tokio::test]
async fn case39_refused_and_cors() {
    let s = start().await;
    get(&s, "reject=1&vsn=2.0.0&")
        .await
        .expect(r#"{"status":403}"#);
    get(&s, "token=not-a-user-token&vsn=2.0.0&")
        .await
        .expect(r#"{"status":403}"#);
    for vsn in ["3.0.0", "2.1.0", "abc"] {
        get(&s, &format!("vsn={vsn}&"))
            .await
            .expect(r#"{"status":403}"#);
    }
    let r = request(
        s.addr,
        "GET",
        &format!("{LP}?vsn=2.0.0&"),
        &[("origin", "https://evil.com")],
        b"",
    )
    .await;
    r.expect(r#"{"status":403}"#);
    assert_eq!(s.endpoint.live_sockets(), 0);

    let r = request(
        s.addr,
        "OPTIONS",
        LP,
        &[(
            "access-control-request-headers",
            "content-type, x-phoenix-authtoken",
        )],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type, x-phoenix-authtoken")
    );
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("get, post, options")
    );
    assert_eq!(r.header("access-control-max-age"), Some("3600"));

    let r = request(s.addr, "PUT", LP, &[], b"").await;
    assert_eq!((r.status, r.body.as_str()), (400, ""));
}

// ------------------------------------------------------------------------------------------------
// ordering, batching, framing

#[tokio::test]
async fn batches_are_processed_in_order_across_posts() {
    let s = start().await;
    let t = session(&s).await;
    post(
        &s,
        &t,
        &[
            r#"["3","3","room:lobby","phx_join",{}]"#,
            r#"["3","4","room:lobby","ping",{"n":1}]"#,
        ],
    )
    .await
    .expect(r#"{"status":200}"#);
    post(
        &s,
        &t,
        &[
            r#"["3","5","room:lobby","ping",{"n":2}]"#,
            r#"["3","6","room:lobby","ping",{"n":3}]"#,
        ],
    )
    .await
    .expect(r#"{"status":200}"#);
    // (Only frames of one channel have a defined order: a heartbeat is answered by the
    // session itself and may overtake a channel's reply, in Phoenix too.)
    let got = collect(&s, &t, 4).await;
    assert_eq!(
        got,
        vec![
            r#"["3","3","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#.to_string(),
            r#"["3","4","room:lobby","phx_reply",{"response":{"n":1},"status":"ok"}]"#.into(),
            r#"["3","5","room:lobby","phx_reply",{"response":{"n":2},"status":"ok"}]"#.into(),
            r#"["3","6","room:lobby","phx_reply",{"response":{"n":3},"status":"ok"}]"#.into(),
        ]
    );
}

#[tokio::test]
async fn a_held_poll_is_answered_when_a_frame_arrives() {
    let s = start().await;
    let t = session(&s).await;
    let held = {
        let addr = s.addr;
        let t = t.clone();
        tokio::spawn(async move {
            request(addr, "GET", &format!("{LP}?vsn=2.0.0&token={t}"), &[], b"").await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    post(&s, &t, &[&heartbeat("1")])
        .await
        .expect(r#"{"status":200}"#);
    let r = held.await.expect("poll task");
    assert!(started.elapsed() < Duration::from_secs(2));
    r.expect(&format!(
        r#"{{"messages":[{}],"status":200,"token":"{t}"}}"#,
        serde_json::to_string(&heartbeat_reply("1")).expect("json")
    ));
}

#[tokio::test]
async fn only_the_first_100_lines_are_used() {
    let s = start().await;
    let t = session(&s).await;
    let lines: Vec<String> = (1..=150).map(|i| heartbeat(&i.to_string())).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    post(&s, &t, &refs).await.expect(r#"{"status":200}"#);
    let got = collect(&s, &t, 100).await;
    let want: Vec<String> = (1..=100).map(|i| heartbeat_reply(&i.to_string())).collect();
    assert_eq!(got, want);
    // Nothing beyond line 100 was dispatched.
    post(&s, &t, &[&heartbeat("x")])
        .await
        .expect(r#"{"status":200}"#);
    assert_eq!(collect(&s, &t, 1).await, vec![heartbeat_reply("x")]);
}

#[tokio::test]
async fn crlf_lines_and_other_content_types() {
    let s = start().await;
    let t = session(&s).await;
    let body = format!("{}\r\n{}", heartbeat("1"), heartbeat("2"));
    post_raw(&s, &t, "application/x-ndjson", body.as_bytes())
        .await
        .expect(r#"{"status":200}"#);
    // Any other content type: the whole body is one text frame.
    post_raw(&s, &t, "application/json", heartbeat("3").as_bytes())
        .await
        .expect(r#"{"status":200}"#);
    assert_eq!(
        collect(&s, &t, 3).await,
        vec![
            heartbeat_reply("1"),
            heartbeat_reply("2"),
            heartbeat_reply("3")
        ]
    );
}

#[tokio::test]
async fn trailing_newline_kills_the_session() {
    let s = start().await;
    let t = session(&s).await;
    let body = format!("{}\n", heartbeat("1"));
    // The empty last line is an empty binary frame: malformed, the session stops (Phoenix's
    // session process crashes; its POST answers 408).
    post_raw(&s, &t, "application/x-ndjson", body.as_bytes())
        .await
        .expect(r#"{"status":408}"#);
    post(&s, &t, &[&heartbeat("2")])
        .await
        .expect(r#"{"status":410}"#);
    // Gone for the client too: its poll gets 410 (it reconnects with a fresh session).
    poll_h(&s, &t).await.expect(r#"{"status":410}"#);
}

#[tokio::test]
async fn binary_frames_in_and_binary_replies_skipped() {
    let s = start().await;
    let t = session(&s).await;
    post(&s, &t, &[r#"["3","3","room:lobby","phx_join",{}]"#])
        .await
        .expect(r#"{"status":200}"#);
    // V2 binary push: join_ref "3", ref "40", room:lobby, ping, payload DE AD (§13.23),
    // base64 on its line; the echo reply is a binary frame, which LongPoll cannot carry.
    let mut frame = vec![0u8, 1, 2, 10, 4];
    frame.extend_from_slice(b"340room:lobbyping");
    frame.extend_from_slice(&[0xDE, 0xAD]);
    use base64::Engine;
    let line = base64::engine::general_purpose::STANDARD.encode(&frame);
    post(&s, &t, &[&line, &heartbeat("41")])
        .await
        .expect(r#"{"status":200}"#);
    let got = collect(&s, &t, 2).await;
    assert_eq!(
        got,
        vec![
            r#"["3","3","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#.to_string(),
            heartbeat_reply("41"),
        ]
    );
}

#[tokio::test]
async fn v1_legacy_single_message_posts() {
    let s = start().await;
    let r = get(&s, "").await;
    let t = r.token();
    let msg = r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}"#;
    request(
        s.addr,
        "POST",
        &format!("{LP}?token={t}"),
        &[("content-type", "application/json")],
        msg.as_bytes(),
    )
    .await
    .expect(r#"{"status":200}"#);
    let r = get(&s, &format!("token={t}")).await;
    assert_eq!(
        messages(&r),
        vec![
            r#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"phoenix"}"#
        ]
    );
}

#[tokio::test]
async fn a_slow_frame_answers_408_and_its_reply_still_arrives() {
    let s = start_with(|c| c.lp_window = Duration::from_millis(200)).await;
    let t = session(&s).await;
    post(
        &s,
        &t,
        &[r#"["1","1","slow:1","phx_join",{}]"#, &heartbeat("2")],
    )
    .await
    .expect(r#"{"status":408}"#);
    // The join completes later (this poll also keeps the session from expiring meanwhile);
    // the heartbeat after it in the timed-out batch was skipped.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.is_empty() && Instant::now() < deadline {
        got.extend(messages(&poll(&s, &t).await));
    }
    post(&s, &t, &[&heartbeat("3")])
        .await
        .expect(r#"{"status":200}"#);
    got.extend(collect(&s, &t, 1).await);
    assert_eq!(
        got,
        vec![
            r#"["1","1","slow:1","phx_reply",{"response":{},"status":"ok"}]"#.to_string(),
            heartbeat_reply("3"),
        ]
    );
}

// ------------------------------------------------------------------------------------------------
// tokens and authToken

#[tokio::test]
async fn auth_token_header_and_session_token_header() {
    let s = start().await;
    let user = s
        .endpoint
        .sign_token(phx_fixture::USER_SALT, &phx_protocol::Term::Int(42));
    let r = request(
        s.addr,
        "GET",
        &format!("{LP}?vsn=2.0.0&"),
        &[("x-phoenix-authtoken", user.as_str())],
        b"",
    )
    .await;
    let t = r.token();
    // The session token in the 1.8.10+ header instead of the query.
    let r = request(
        s.addr,
        "POST",
        &format!("{LP}?vsn=2.0.0"),
        &[
            ("content-type", "application/x-ndjson"),
            ("x-phoenix-longpoll-token", t.as_str()),
        ],
        br#"["1","1","room:lobby","phx_join",{}]
["1","2","room:lobby","whoami",{}]"#,
    )
    .await;
    r.expect(r#"{"status":200}"#);
    let got = collect(&s, &t, 2).await;
    assert_eq!(
        got[1],
        r#"["1","2","room:lobby","phx_reply",{"response":{"user_id":42},"status":"ok"}]"#
    );
    // A bad authToken is refused like a bad token param.
    let r = request(
        s.addr,
        "GET",
        &format!("{LP}?vsn=2.0.0&"),
        &[("x-phoenix-authtoken", "forged")],
        b"",
    )
    .await;
    r.expect(r#"{"status":403}"#);
}

#[tokio::test]
async fn the_clients_token_param_wins_over_the_users() {
    let s = start().await;
    let user = s
        .endpoint
        .sign_token(phx_fixture::USER_SALT, &phx_protocol::Term::Int(7));
    // First GET: the user's `token` param is not a session token → connect with it.
    let r = get(&s, &format!("token={user}&vsn=2.0.0&")).await;
    let t = r.token();
    // Later requests carry both; the last one (the session's) wins.
    let q = format!("{LP}?token={user}&vsn=2.0.0&token={t}");
    request(
        s.addr,
        "POST",
        &q,
        &[("content-type", "application/x-ndjson")],
        br#"["1","1","room:lobby","phx_join",{}]
["1","2","room:lobby","whoami",{}]"#,
    )
    .await
    .expect(r#"{"status":200}"#);
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(messages(&request(s.addr, "GET", &q, &[], b"").await));
    }
    assert_eq!(
        got[1],
        r#"["1","2","room:lobby","phx_reply",{"response":{"user_id":7},"status":"ok"}]"#
    );
}

// ------------------------------------------------------------------------------------------------
// lifetime: expiry, disconnect, drain

#[tokio::test]
async fn an_idle_session_expires() {
    let s = start_with(|c| c.lp_window = Duration::from_millis(200)).await;
    let t = session(&s).await;
    post(&s, &t, &[r#"["3","3","room:lobby","phx_join",{}]"#])
        .await
        .expect(r#"{"status":200}"#);
    assert_eq!(s.endpoint.live_sockets(), 1);
    // 1.5 × 200 ms after the last poll started, with no poll since.
    tokio::time::sleep(Duration::from_millis(700)).await;
    post(&s, &t, &[&heartbeat("1")])
        .await
        .expect(r#"{"status":410}"#);
    assert_eq!(s.endpoint.live_sockets(), 0);
    // A poll with the dead session's token: the session is gone (410), and no new session is
    // started behind the client's back.
    poll(&s, &t).await.expect(r#"{"status":410}"#);
    assert_eq!(s.endpoint.live_sockets(), 0);
    // Its channels stopped with it: a broadcast reaches nobody.
    assert_eq!(
        s.endpoint
            .broadcast("room:lobby", "e", serde_json::json!({})),
        0
    );
}

#[tokio::test]
async fn polling_keeps_a_session_alive() {
    let s = start_with(|c| c.lp_window = Duration::from_millis(200)).await;
    let t = session(&s).await;
    for _ in 0..4 {
        poll(&s, &t)
            .await
            .expect(&format!(r#"{{"messages":[],"status":204,"token":"{t}"}}"#));
    }
    post(&s, &t, &[&heartbeat("1")])
        .await
        .expect(r#"{"status":200}"#);
}

#[tokio::test]
async fn disconnect_by_socket_id_stops_the_session() {
    let s = start().await;
    let user = s
        .endpoint
        .sign_token(phx_fixture::USER_SALT, &phx_protocol::Term::Int(5));
    let r = get(&s, &format!("token={user}&vsn=2.0.0&")).await;
    let t = r.token();
    let held = {
        let addr = s.addr;
        let t = t.clone();
        tokio::spawn(async move {
            request(addr, "GET", &format!("{LP}?vsn=2.0.0&token={t}"), &[], b"").await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.endpoint
        .broadcast("users_socket:5", "disconnect", serde_json::json!({}));
    let started = Instant::now();
    held.await.expect("poll").expect(r#"{"status":410}"#);
    assert!(started.elapsed() < Duration::from_secs(2));
    post(&s, &t, &[&heartbeat("1")])
        .await
        .expect(r#"{"status":410}"#);
    assert_eq!(s.endpoint.live_sockets(), 0);
}

#[tokio::test]
async fn drain_stops_sessions_and_refuses_new_ones() {
    let s = start().await;
    let t = session(&s).await;
    let ep = s.endpoint.clone();
    tokio::time::timeout(Duration::from_secs(10), ep.drain())
        .await
        .expect("drain finishes");
    assert_eq!(s.endpoint.live_sockets(), 0);
    post(&s, &t, &[&heartbeat("1")])
        .await
        .expect(r#"{"status":410}"#);
    let r = get(&s, "vsn=2.0.0&").await;
    assert_eq!((r.status, r.body.as_str()), (503, ""));
}

// ------------------------------------------------------------------------------------------------
// bounds

#[tokio::test]
async fn body_and_line_limits() {
    let s = start_with(|c| {
        c.lp_max_body = 1000;
        c.lp_max_line = 100;
    })
    .await;
    let t = session(&s).await;
    let big = vec![b'['; 1001];
    let r = post_raw(&s, &t, "application/x-ndjson", &big).await;
    assert_eq!((r.status, r.body.as_str()), (400, ""));
    let long = format!(
        r#"["1","1","room:lobby","ping",{{"pad":"{}"}}]"#,
        "x".repeat(100)
    );
    let r = post(&s, &t, &[&heartbeat("1"), &long]).await;
    assert_eq!((r.status, r.body.as_str()), (400, ""));
    let r = post(&s, &t, &[&heartbeat("1"), "!!not base64!!"]).await;
    assert_eq!((r.status, r.body.as_str()), (400, ""));
    // Nothing of a refused POST was dispatched, and the session lives on.
    post(&s, &t, &[&heartbeat("2")])
        .await
        .expect(r#"{"status":200}"#);
    assert_eq!(collect(&s, &t, 1).await, vec![heartbeat_reply("2")]);
}

#[tokio::test]
async fn buffer_overflow_closes_the_session() {
    let s = start_with(|c| c.lp_max_buffered = 5).await;
    let t = session(&s).await;
    let lines: Vec<String> = (1..=20).map(|i| heartbeat(&i.to_string())).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let r = post(&s, &t, &refs).await;
    assert!(
        r.body == r#"{"status":200}"# || r.body == r#"{"status":410}"#,
        "{}",
        r.body
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The overflowing session is gone: its client's next poll gets 410.
    poll_h(&s, &t).await.expect(r#"{"status":410}"#);
    assert_eq!(s.endpoint.live_sockets(), 0);
}

#[tokio::test]
async fn session_cap_refuses_with_503() {
    let s = start_with(|c| c.lp_max_sessions = 2).await;
    session(&s).await;
    session(&s).await;
    let r = get(&s, "vsn=2.0.0&").await;
    assert_eq!((r.status, r.body.as_str()), (503, ""));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn buffer_bytes_overflow_closes_the_session() {
    // 16 KiB of buffered frames at most: four 8 KiB echo replies never polled overflow it.
    let s = start_with(|c| c.lp_max_buffered_bytes = 16 * 1024).await;
    let t = session(&s).await;
    post(&s, &t, &[r#"["1","1","room:lobby","phx_join",{}]"#])
        .await
        .expect(r#"{"status":200}"#);
    let pad = "x".repeat(8 * 1024);
    let lines: Vec<String> = (2..=5)
        .map(|i| format!(r#"["1","{i}","room:lobby","ping",{{"pad":"{pad}"}}]"#))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let r = post(&s, &t, &refs).await;
    assert!(
        r.body == r#"{"status":200}"# || r.body == r#"{"status":410}"#,
        "{}",
        r.body
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    poll_h(&s, &t).await.expect(r#"{"status":410}"#);
    assert_eq!(s.endpoint.live_sockets(), 0);
}

#[tokio::test]
async fn frames_over_max_frame_size_are_refused_like_on_a_websocket() {
    let s = start_with(|c| c.max_frame_size = 256).await;
    let t = session(&s).await;
    let long = format!(
        r#"["1","1","room:lobby","ping",{{"pad":"{}"}}]"#,
        "x".repeat(300)
    );
    // An ndjson line over MAX_FRAME_SIZE, and a whole legacy body over it: 400, nothing run.
    let r = post(&s, &t, &[&heartbeat("1"), &long]).await;
    assert_eq!((r.status, r.body.as_str()), (400, ""));
    let r = post_raw(&s, &t, "application/json", long.as_bytes()).await;
    assert_eq!((r.status, r.body.as_str()), (400, ""));
    post(&s, &t, &[&heartbeat("2")])
        .await
        .expect(r#"{"status":200}"#);
    assert_eq!(collect(&s, &t, 1).await, vec![heartbeat_reply("2")]);
}

#[tokio::test]
async fn a_drain_hands_buffered_replies_to_the_next_poll() {
    let s = start().await;
    let t = session(&s).await;
    post(&s, &t, &[&heartbeat("7")])
        .await
        .expect(r#"{"status":200}"#);
    // The reply is buffered, not polled yet, when the drain starts.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ep = s.endpoint.clone();
    let drained = tokio::spawn(async move { ep.drain().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(collect(&s, &t, 1).await, vec![heartbeat_reply("7")]);
    tokio::time::timeout(Duration::from_secs(30), drained)
        .await
        .expect("drain finishes")
        .expect("task");
    assert_eq!(s.endpoint.live_sockets(), 0);
}
