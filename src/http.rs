//! HTTP routes: the mounted sockets' transports, `/healthz`, `/metrics`; and the server loop
//! with graceful shutdown (drain, then stop).

use std::future::Future;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, Request};
use axum::http::{HeaderMap, Method};
use axum::routing::{any, get};
use axum::Router;
use tokio::net::TcpListener;

use crate::endpoint::Endpoint;
use crate::transport::longpoll::LongPoll;
use crate::transport::websocket;

/// The endpoint's routes: `<mount>/websocket` and `<mount>/longpoll` for every mounted socket
/// (each only if that transport is enabled on the mount), plus `/healthz` and `/metrics`.
/// Applications merge their own routes into it.
pub fn router(endpoint: &Endpoint) -> Router {
    let mut app = Router::new();
    for mount in endpoint.mounts() {
        // A disabled transport gets no route, so its path answers 404 as in Phoenix.
        if mount.transports.websocket {
            let ep = endpoint.clone();
            let m = mount.clone();
            app = app.route(
                &format!("{}/websocket", mount.path),
                any(
                    move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request| {
                        websocket::handle(ep, m, Some(peer), req)
                    },
                ),
            );
        }
        if mount.transports.longpoll {
            let lp = LongPoll::new(endpoint.clone(), mount.clone());
            app = app.route(
                &format!("{}/longpoll", mount.path),
                any(
                    move |method: Method,
                          RawQuery(query): RawQuery,
                          headers: HeaderMap,
                          ConnectInfo(peer): ConnectInfo<SocketAddr>,
                          body: Body| {
                        lp.clone().handle(method, query, headers, Some(peer), body)
                    },
                ),
            );
        }
    }
    let ep = endpoint.clone();
    app.route("/healthz", get(|| async { "ok" })).route(
        "/metrics",
        get(move || {
            let ep = ep.clone();
            async move { ep.metrics().render() }
        }),
    )
}

/// Serves `app` on `listener` until `shutdown` completes; then drains every socket (1012, in
/// batches) and returns once they are gone.
pub async fn serve(
    endpoint: Endpoint,
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ep = endpoint.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        ep.drain().await;
    })
    .await
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}
