//! `/healthz` and `/readyz` as an orchestrator reads them: alive while draining (and saying
//! so); not ready, with every reason, while a registered check fails or the node drains.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use phx_channels::readiness::Check;
use phx_channels::{http, Config, Endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[tokio::test]
async fn readyz_names_a_failing_check_and_the_drain_and_healthz_stays_alive() {
    let db_up = Arc::new(AtomicBool::new(true));
    let up = db_up.clone();
    let config = Config {
        drain_max: Duration::from_millis(200),
        ..Config::default()
    };
    let endpoint = Endpoint::builder(config)
        .readiness_check(Check::new("store", move || {
            let up = up.load(Ordering::Relaxed);
            async move {
                if up {
                    Ok(())
                } else {
                    Err("connection refused".to_string())
                }
            }
        }))
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(http::serve(
        endpoint.clone(),
        listener,
        http::router(&endpoint),
        async move {
            let _ = stop_rx.await;
        },
    ));

    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_string()));
    assert_eq!(get(addr, "/healthz").await, (200, "ok".to_string()));

    db_up.store(false, Ordering::Relaxed);
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body, "store: connection refused\n");
    assert_eq!(
        get(addr, "/healthz").await.0,
        200,
        "a degraded node is still alive"
    );

    db_up.store(true, Ordering::Relaxed);
    assert_eq!(get(addr, "/readyz").await.0, 200, "ready again by itself");

    // The drain: not ready, alive, and both say why.
    let drain = {
        let endpoint = endpoint.clone();
        tokio::spawn(async move { endpoint.drain().await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.starts_with("draining"), "{body}");
    assert_eq!(
        get(addr, "/healthz").await,
        (200, "ok (draining)".to_string())
    );
    drain.await.expect("drain");
    let _ = stop_tx.send(());
    served.await.expect("join").expect("serve");
}
