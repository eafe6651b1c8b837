//! `/metrics` on the admin listener, scraped and parsed with a real Prometheus text-format
//! parser (`prometheus-parse`): joins count under the router pattern (`room:*`), never the
//! topic; refusals under their reason; `handle_in` and join latencies are histograms; the
//! process series are there; and the public port has no `/metrics`. Then the fan-out, outbox,
//! Presence and store series, each with values the server must get exactly right.

mod common_http;
mod common_ws;

use common_ws::*;
use phx_channels::{http, Config};
use prometheus_parse::{Sample, Scrape, Value};
use tokio::net::TcpListener;

/// GET `path` on `addr` with `Connection: close`: (status, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, "").await
}

/// `method path` with `body` on `addr`: (status, body).
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let r = common_http::exchange(addr, method, "localhost", path, body).await;
    (r.status, r.body)
}

fn scrape(body: &str) -> Scrape {
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parse")
}

/// The value of the one sample `name` with every label in `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = s
        .samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    match &found[0].value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name}: not a number: {other:?}"),
    }
}

/// The observation count of the histogram `name` with `labels`.
fn histogram_count(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let h = s
        .samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no {name} {labels:?}"));
    match &h.value {
        Value::Histogram(buckets) => {
            buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .expect("+Inf bucket")
                .count
        }
        other => panic!("{name}: not a histogram: {other:?}"),
    }
}

#[tokio::test]
async fn admin_metrics_are_labelled_by_pattern_and_parse() {
    let server = start(Config::default(), |r| r).await;
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_addr = admin.local_addr().expect("addr");
    let ep = server.endpoint.clone();
    tokio::spawn(async move { http::serve_admin(&ep, admin, http::admin_router(&ep)).await });

    // Never on the public port.
    assert_eq!(get(server.addr, "/metrics").await.0, 404);

    let mut ws = server.v2().await;
    join(&mut ws, "1", "room:lobby").await;
    join(&mut ws, "2", "room:other").await;
    send(&mut ws, r#"["3","3","room:private","phx_join",{}]"#).await;
    let _refused_join = next_text(&mut ws).await;
    send(&mut ws, r#"["1","4","room:lobby","ping",{"a":1}]"#).await;
    let _pong = next_text(&mut ws).await;
    // A refused connection: no serializer for this vsn.
    let refused = tokio_tungstenite::connect_async(server.url("vsn=9.9.9")).await;
    assert!(refused.is_err());

    let (status, body) = get(admin_addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let s = scrape(&body);
    let room = [("socket", "/socket"), ("pattern", "room:*")];
    assert_eq!(value(&s, "phx_sockets", &[("transport", "websocket")]), 1.0);
    assert_eq!(value(&s, "phx_connects_total", &[]), 1.0);
    assert_eq!(value(&s, "phx_channels", &room), 2.0);
    let ok = [room[0], room[1], ("outcome", "ok")];
    assert_eq!(value(&s, "phx_joins_total", &ok), 2.0);
    let error = [room[0], room[1], ("outcome", "error")];
    assert_eq!(value(&s, "phx_joins_total", &error), 1.0);
    assert_eq!(histogram_count(&s, "phx_join_duration_seconds", &room), 3.0);
    assert_eq!(
        histogram_count(&s, "phx_handle_in_duration_seconds", &room),
        1.0
    );
    let vsn = [("transport", "websocket"), ("reason", "vsn")];
    assert_eq!(value(&s, "phx_refused_total", &vsn), 1.0);
    // Unlabelled series the cluster tests read with `^name value$`.
    for name in ["phx_cluster_lost_total", "phx_cluster_ignored_total"] {
        assert!(
            body.lines().any(|l| l == format!("{name} 0")),
            "{name}: {body}"
        );
    }
    // Labelled by pattern, never by topic.
    let ws_label = [("transport", "websocket")];
    assert_eq!(
        value(&s, "phx_messages_in_total", &ws_label),
        4.0,
        "three joins and a ping"
    );
    assert!(
        value(&s, "phx_messages_out_total", &ws_label) >= 4.0,
        "three join replies and the ping's reply at least"
    );
    assert_eq!(value(&s, "phx_longpoll_sessions", &[]), 0.0);
    assert!(!body.contains("room:lobby"), "{body}");
    assert!(value(&s, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(value(&s, "process_open_fds", &[]) > 0.0);
}

/// Starts the admin listener of `endpoint` on 127.0.0.1:0.
async fn admin(endpoint: &phx_channels::Endpoint) -> std::net::SocketAddr {
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = admin.local_addr().expect("addr");
    let ep = endpoint.clone();
    tokio::spawn(async move { http::serve_admin(&ep, admin, http::admin_router(&ep)).await });
    addr
}

/// Scrapes `/metrics` on `addr`.
async fn metrics(addr: std::net::SocketAddr) -> Scrape {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    scrape(&body)
}

/// The first frame on `ws` that is a `["..", ref, .., "phx_reply", ..]` with `reference`,
/// skipping (and counting) the broadcasts before it.
async fn reply_to(ws: &mut Ws, reference: &str) -> usize {
    reply_frame(ws, reference).await.0
}

/// [`reply_to`], with the reply's status.
async fn reply_frame(ws: &mut Ws, reference: &str) -> (usize, String) {
    let mut skipped = 0;
    loop {
        let frame: serde_json::Value =
            serde_json::from_str(&next_text(ws).await).expect("a JSON frame");
        if frame[1] == reference && frame[3] == "phx_reply" {
            let status = frame[4]["status"].as_str().unwrap_or_default().to_string();
            return (skipped, status);
        }
        skipped += 1;
    }
}

#[tokio::test]
async fn fanout_size_and_sampled_broadcast_to_write() {
    let server = start(Config::default(), |r| r).await;
    let admin = admin(&server.endpoint).await;
    let mut socks = Vec::new();
    for _ in 0..3 {
        let mut ws = server.v2().await;
        join(&mut ws, "1", "room:fan").await;
        socks.push(ws);
    }
    let s = metrics(admin).await;
    assert_eq!(histogram_count(&s, "phx_fanout_size", &[]), 0.0);
    assert_eq!(
        value(&s, "phx_outbox_bytes", &[]),
        0.0,
        "idle: nothing queued"
    );

    // One broadcast to the three joined sockets: one observation of 3.
    send(&mut socks[0], r#"["1","2","room:fan","shout",{"n":0}]"#).await;
    assert_eq!(reply_to(&mut socks[0], "2").await, 1, "its own shout first");
    for ws in &mut socks[1..] {
        let got = next_text(ws).await;
        assert_eq!(got, r#"[null,null,"room:fan","shout",{"n":0}]"#);
    }
    let s = metrics(admin).await;
    assert_eq!(histogram_count(&s, "phx_fanout_size", &[]), 1.0);
    assert_eq!(value(&s, "phx_fanout_size_sum", &[]), 3.0);

    // 21 more: 66 fastlane deliveries in all, on the test's one runtime thread, so one or two
    // of them (one in 64, wherever the thread's countdown stood) are timed — not all 66.
    for n in 1..22 {
        send(
            &mut socks[0],
            &format!(r#"["1","r{n}","room:fan","shout",{{"n":{n}}}]"#),
        )
        .await;
        assert_eq!(reply_to(&mut socks[0], &format!("r{n}")).await, 1);
        for ws in &mut socks[1..] {
            let _shout = next_text(ws).await;
        }
    }
    // A round trip on each socket: its reply is written after every earlier batch, so the
    // observations made after those batches' writes are in.
    for ws in &mut socks {
        send(ws, r#"["1","p","room:fan","ping",{}]"#).await;
        assert_eq!(reply_to(ws, "p").await, 0);
    }
    let s = metrics(admin).await;
    assert_eq!(histogram_count(&s, "phx_fanout_size", &[]), 22.0);
    assert_eq!(value(&s, "phx_fanout_size_sum", &[]), 66.0);
    assert_eq!(value(&s, "phx_deliveries_total", &[]), 66.0);
    let timed = histogram_count(&s, "phx_broadcast_to_write_seconds", &[]);
    assert!((1.0..=2.0).contains(&timed), "sampled 1 in 64: {timed}");
    assert_eq!(value(&s, "phx_outbox_bytes", &[]), 0.0, "all read");
}

#[tokio::test]
async fn outbox_bytes_count_what_waits_for_a_longpoll_client_and_its_write_is_timed() {
    let server = start(Config::default(), |r| r).await;
    let admin = admin(&server.endpoint).await;
    let lp = "/socket/longpoll?vsn=2.0.0";
    let (_, body) = get(server.addr, lp).await;
    let token = serde_json::from_str::<serde_json::Value>(&body).expect("json")["token"]
        .as_str()
        .expect("a session token")
        .to_string();
    let with_token = format!("{lp}&token={token}");
    let join = r#"["1","1","room:lp","phx_join",{}]"#;
    let (status, ack) = request(server.addr, "POST", &with_token, join).await;
    assert_eq!((status, ack.as_str()), (200, r#"{"status":200}"#));
    // 64 broadcasts the client has not polled for yet.
    for n in 0..64 {
        let b = format!(r#"{{"topic":"room:lp","event":"e","payload":{{"n":{n}}}}}"#);
        assert_eq!(
            request(server.addr, "POST", "/fixture/broadcast", &b)
                .await
                .0,
            204
        );
    }
    // Everything the session holds (the join reply and the 64 broadcasts) is counted.
    let waiting = value(&metrics(admin).await, "phx_outbox_bytes", &[]);
    let mut polled = Vec::new();
    while polled.len() < 65 {
        let (status, body) = get(server.addr, &with_token).await;
        assert_eq!(status, 200, "{body}");
        let r: serde_json::Value = serde_json::from_str(&body).expect("json");
        for m in r["messages"].as_array().expect("messages") {
            polled.push(m.as_str().expect("a frame").to_string());
        }
    }
    assert_eq!(polled.len(), 65, "{polled:?}");
    let bytes: usize = polled.iter().map(String::len).sum();
    assert_eq!(waiting, bytes as f64, "the bytes the polls then carried");
    let s = metrics(admin).await;
    assert_eq!(value(&s, "phx_outbox_bytes", &[]), 0.0, "all polled");
    // 64 consecutive deliveries on one thread: exactly one is sampled, timed when its poll
    // response took it.
    assert_eq!(
        histogram_count(&s, "phx_broadcast_to_write_seconds", &[]),
        1.0
    );
    assert_eq!(histogram_count(&s, "phx_fanout_size", &[]), 64.0);
    assert_eq!(value(&s, "phx_fanout_size_sum", &[]), 64.0);
}

#[tokio::test]
async fn presence_entries_follow_tracks_and_leaves() {
    use phx_channels::pubsub::{BroadcastMsg, Subscriber, SubscriberKind};
    use phx_channels::Payload;
    use std::sync::Arc;

    let server = start(Config::default(), |r| r).await;
    let admin = admin(&server.endpoint).await;
    // The diffs of the topic, seen by a listener of the test's own (it tracks nothing).
    let (tx, mut diffs) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    server.endpoint.pubsub().subscribe(
        "presence:m",
        Subscriber {
            id: server.endpoint.next_id(),
            kind: SubscriberKind::Callback(Arc::new(move |m: &Arc<BroadcastMsg>| {
                if let (true, Payload::Json(v)) = (m.event == "presence_diff", &m.payload) {
                    let _ = tx.send(v.clone());
                }
            })),
        },
    );
    let mut socks = Vec::new();
    for name in ["a", "b"] {
        let mut ws = server.v2().await;
        send(
            &mut ws,
            &format!(r#"["1","1","presence:m","phx_join",{{"name":"{name}"}}]"#),
        )
        .await;
        assert_eq!(reply_to(&mut ws, "1").await, 0);
        // presence_state is pushed after the track: once it is here, the entry is counted.
        loop {
            let f: serde_json::Value =
                serde_json::from_str(&next_text(&mut ws).await).expect("json");
            if f[3] == "presence_state" {
                break;
            }
        }
        socks.push(ws);
    }
    let s = metrics(admin).await;
    assert_eq!(value(&s, "phx_presence_entries", &[]), 2.0);
    // The joins' diffs first: a leave in the same window as its join would cancel it.
    assert_eq!(
        keys_in(&mut diffs, "joins").await,
        keys(&["anon-a", "anon-b"])
    );

    for ws in &mut socks {
        send(ws, r#"["1","2","presence:m","phx_leave",{}]"#).await;
        reply_to(ws, "2").await;
    }
    // Untracked once both leaves were diffed.
    assert_eq!(
        keys_in(&mut diffs, "leaves").await,
        keys(&["anon-a", "anon-b"])
    );
    let s = metrics(admin).await;
    assert_eq!(value(&s, "phx_presence_entries", &[]), 0.0);
}

fn keys(names: &[&str]) -> std::collections::HashSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Reads diffs until two keys were seen under `side` (`joins` or `leaves`).
async fn keys_in(
    diffs: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    side: &str,
) -> std::collections::HashSet<String> {
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2 {
        let diff = tokio::time::timeout(std::time::Duration::from_secs(10), diffs.recv())
            .await
            .expect("a diff in time")
            .expect("listener alive");
        if let Some(side) = diff[side].as_object() {
            seen.extend(side.keys().cloned());
        }
    }
    seen
}

#[tokio::test]
async fn store_operations_are_timed_by_name() {
    use phx_protocol::etf::Term;

    let dir = std::env::temp_dir().join(format!(
        "phx_metrics_store_{}_{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("rumbl.sqlite3").display());
    let store = rumbl::store::open(Some(&url), 2).await.expect("sqlite");
    let config = Config {
        port: 0,
        ..Config::default()
    };
    let endpoint = phx_server::fixture_app::endpoint(config, store.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(http::serve(
        endpoint.clone(),
        listener,
        phx_server::fixture_app::router(&endpoint),
        std::future::pending(),
    ));
    let admin = admin(&endpoint).await;
    let s = metrics(admin).await;
    let insert = [("operation", "insert_annotation")];
    let list = [("operation", "list_annotations")];
    assert!(
        !s.samples
            .iter()
            .any(|x| x.metric == "phx_store_duration_seconds"
                && x.labels.get("operation") == Some("insert_annotation")
                && matches!(&x.value, Value::Histogram(b) if b.iter().any(|c| c.count > 0.0))),
        "nothing timed yet"
    );

    let token = endpoint.sign_token(rumbl::user_socket::USER_SALT, &Term::Int(42));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{addr}/socket/websocket?vsn=2.0.0&token={token}"
    ))
    .await
    .expect("connect");
    send(&mut ws, r#"["1","1","videos:7","phx_join",{}]"#).await;
    assert_eq!(reply_frame(&mut ws, "1").await, (0, "ok".to_string()));
    send(
        &mut ws,
        r#"["1","2","videos:7","new_annotation",{"body":"hi","at":3}]"#,
    )
    .await;
    // The viewers' presence and the annotation's broadcast come first.
    assert_eq!(reply_frame(&mut ws, "2").await.1, "ok", "committed");
    let s = metrics(admin).await;
    assert_eq!(
        histogram_count(&s, "phx_store_duration_seconds", &list),
        1.0
    );
    assert_eq!(
        histogram_count(&s, "phx_store_duration_seconds", &insert),
        1.0
    );
    let ensured = [("operation", "ensure_video")];
    assert!(histogram_count(&s, "phx_store_duration_seconds", &ensured) >= 1.0);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
