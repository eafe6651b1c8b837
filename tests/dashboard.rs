//! The dashboard on the admin listener: `/dashboard` refuses everyone (403) without
//! `ADMIN_TOKEN`; its socket refuses a wrong or missing token at the upgrade, as any Phoenix
//! socket refuses; with the right one, a client that joins `dashboard:stats` gets this node's
//! snapshots, with every key the page charts, and they follow the load.

mod common_http;
mod common_ws;

use common_ws::*;
use phx_channels::{http, Config};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Error as WsError;

const TOKEN: &str = "dashboard-test-token-0123456789";

/// GET `path` on `addr` with `Connection: close`, addressed to `addr`: (status, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    get_as(addr, &addr.to_string(), path).await
}

/// GET `path` on `addr` with the `Host` header `host`: (status, body).
async fn get_as(addr: std::net::SocketAddr, host: &str, path: &str) -> (u16, String) {
    let r = common_http::exchange(addr, "GET", host, path, "").await;
    (r.status, r.body)
}

/// A fixture server with an admin listener; returns (server, admin address).
async fn start_with_admin(token: Option<&str>) -> (Server, std::net::SocketAddr) {
    let config = Config {
        admin_token: token.map(Into::into),
        ..Config::default()
    };
    let server = start(config, |r| r).await;
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = admin.local_addr().expect("addr");
    let ep = server.endpoint.clone();
    tokio::spawn(async move { http::serve_admin(&ep, admin, http::admin_router(&ep)).await });
    (server, addr)
}

fn socket_url(admin: std::net::SocketAddr, query: &str) -> String {
    format!("ws://{admin}/dashboard/socket/websocket?vsn=2.0.0{query}")
}

/// The HTTP status the upgrade was refused with.
async fn refused_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Err(WsError::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("{url}: connected, expected a refusal"),
    }
}

/// The next `snapshot` push on `dashboard:stats` (skipping anything else).
async fn next_snapshot(ws: &mut Ws) -> Value {
    loop {
        let frame: Value = serde_json::from_str(&next_text(ws).await).expect("json frame");
        if frame[2] == "dashboard:stats" && frame[3] == "snapshot" {
            return frame[4].clone();
        }
    }
}

#[tokio::test]
async fn a_request_to_another_host_name_is_refused_dns_rebinding() {
    let (_server, admin) = start_with_admin(Some(TOKEN)).await;
    for path in ["/dashboard", "/metrics"] {
        let (status, body) = get_as(admin, "evil.example:4001", path).await;
        assert_eq!(status, 421, "{path}: {body}");
        let (status, _) = get_as(admin, &format!("localhost:{}", admin.port()), path).await;
        assert_ne!(status, 421, "{path} via localhost");
    }
}

#[tokio::test]
async fn without_admin_token_the_dashboard_is_forbidden_and_says_why() {
    let (_server, admin) = start_with_admin(None).await;
    let (status, body) = get(admin, "/dashboard").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("ADMIN_TOKEN"), "{body}");
    // Nobody's token opens the socket either.
    assert_eq!(
        refused_status(&socket_url(admin, "&token=anything")).await,
        403
    );
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_refused_at_connect() {
    let (_server, admin) = start_with_admin(Some(TOKEN)).await;
    assert_eq!(refused_status(&socket_url(admin, "")).await, 403);
    assert_eq!(
        refused_status(&socket_url(admin, "&token=wrong")).await,
        403
    );
    let almost = &TOKEN[..TOKEN.len() - 1];
    assert_eq!(
        refused_status(&socket_url(admin, &format!("&token={almost}"))).await,
        403
    );
    // A token that is not a plain string is refused, not guessed about.
    assert_eq!(
        refused_status(&socket_url(admin, &format!("&token[]={TOKEN}"))).await,
        403
    );
}

#[tokio::test]
async fn the_socket_opens_from_the_admin_listeners_own_origin_only() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (_server, admin) = start_with_admin(Some(TOKEN)).await;
    let url = socket_url(admin, &format!("&token={TOKEN}"));
    let with_origin = |origin: &str| {
        let mut req = url.as_str().into_client_request().expect("request");
        req.headers_mut()
            .insert("origin", origin.parse().expect("header value"));
        req
    };
    // Another page (here the public port's origin) may not use the operator's token.
    match tokio_tungstenite::connect_async(with_origin("http://127.0.0.1:1")).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        other => panic!("cross-origin: expected 403, got {:?}", other.map(|_| ())),
    }
    // The dashboard page's own origin (the admin listener) passes, whatever PHX_HOST is.
    let (mut ws, _) = tokio_tungstenite::connect_async(with_origin(&format!("http://{admin}")))
        .await
        .expect("same origin connects");
    join(&mut ws, "1", "dashboard:stats").await;
}

#[tokio::test]
async fn the_right_token_gets_snapshots_that_follow_the_load() {
    let (server, admin) = start_with_admin(Some(TOKEN)).await;
    let (mut dash, _) =
        tokio_tungstenite::connect_async(socket_url(admin, &format!("&token={TOKEN}")))
            .await
            .expect("the right token connects");
    join(&mut dash, "1", "dashboard:stats").await;

    let first = next_snapshot(&mut dash).await;
    for key in [
        "node",
        "at_ms",
        "sockets",
        "channels",
        "messages_in_per_sec",
        "messages_out_per_sec",
        "broadcasts_per_sec",
        "fanout_latency_ms",
        "slow_consumer_closes",
        "presence_entries",
        "outbox_bytes",
        "rss_bytes",
    ] {
        assert!(first.get(key).is_some(), "no {key:?} in {first}");
    }
    assert_eq!(first["node"], "local", "{first}");
    assert!(first["sockets"]["websocket"].is_i64(), "{first}");
    assert!(first["sockets"]["longpoll"].is_i64(), "{first}");
    let routes: Vec<(String, String)> = first["channels"]
        .as_array()
        .expect("channels list")
        .iter()
        .map(|c| {
            (
                c["socket"].as_str().expect("socket").to_string(),
                c["pattern"].as_str().expect("pattern").to_string(),
            )
        })
        .collect();
    assert!(
        routes.contains(&("/socket".into(), "room:*".into())),
        "{routes:?}"
    );
    assert!(
        routes.contains(&("/dashboard/socket".into(), "dashboard:stats".into())),
        "{routes:?}"
    );

    // Load on the public port: two more sockets, one in room:lobby, sending.
    let mut a = server.v2().await;
    let _b = server.v2().await;
    join(&mut a, "1", "room:lobby").await;
    for i in 0..20 {
        send(
            &mut a,
            &format!(r#"[null,"{}","room:lobby","ping",{{}}]"#, i + 2),
        )
        .await;
    }
    // Snapshots keep coming; one taken after the load shows it (the websocket gauge counts
    // the dashboard's own socket too, hence at least three).
    let mut seen = None;
    for _ in 0..10 {
        let s = next_snapshot(&mut dash).await;
        let joined = s["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .find(|c| c["pattern"] == "room:*")
            .and_then(|c| c["joined"].as_i64())
            .unwrap_or(0);
        if s["sockets"]["websocket"].as_i64().unwrap_or(0) >= 3
            && joined >= 1
            && s["messages_in_per_sec"].as_f64().unwrap_or(0.0) > 0.0
        {
            seen = Some(s);
            break;
        }
    }
    let seen = seen.expect("a snapshot showing the sockets, the join and the messages");
    assert!(
        seen["at_ms"].as_u64() > first["at_ms"].as_u64(),
        "{first} then {seen}"
    );
}
