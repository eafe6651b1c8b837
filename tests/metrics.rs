//! `/metrics` on the admin listener, scraped and parsed with a real Prometheus text-format
//! parser (`prometheus-parse`): joins count under the router pattern (`room:*`), never the
//! topic; refusals under their reason; `handle_in` and join latencies are histograms; the
//! process series are there; and the public port has no `/metrics`.

mod common_ws;

use common_ws::*;
use phx_channels::{http, Config};
use prometheus_parse::{Sample, Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// GET `path` on `addr` with `Connection: close`: (status, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head");
    let status = head
        .split(' ')
        .nth(1)
        .expect("status")
        .parse()
        .expect("code");
    (status, body.to_string())
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
