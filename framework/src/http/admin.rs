//! The admin listener (`ADMIN_PORT`, on `ADMIN_HOST`, loopback by default): `/metrics` for
//! Prometheus and the live `/dashboard` ([`crate::dashboard`]), kept off the public port so
//! that only the operator's side can reach them.

use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower_service::Service;

use crate::endpoint::Endpoint;
use crate::metrics::Metrics;

/// Connections the admin listener serves at once; more wait in the backlog. Each open
/// dashboard page holds one for as long as it is open (its socket), and only a holder of
/// `ADMIN_TOKEN` can do that, so a few dozen leave room for the scrapes.
const ADMIN_CONNECTIONS: usize = 32;

/// The admin routes: `/metrics` (every series of [`Metrics`], OpenMetrics text, through
/// [`Endpoint::render_metrics`] so the scrape-time series are current), `/healthz` and the
/// dashboard (`/dashboard`, its assets and its socket; see [`crate::dashboard`]).
/// Applications may merge their own operator-only routes into it.
pub fn admin_router(endpoint: &Endpoint) -> Router {
    let ep = endpoint.clone();
    crate::dashboard::routes(endpoint)
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let ep = ep.clone();
                async move { ([(CONTENT_TYPE, Metrics::CONTENT_TYPE)], ep.render_metrics()) }
            }),
        )
}

/// Serves `app` (usually [`admin_router`]) on `listener` until the task is dropped: HTTP/1
/// with upgrades (the dashboard's WebSocket), a head within `HTTP_HEADER_TIMEOUT_MS`, at most
/// a few connections at once. With `ADMIN_TOKEN` set, this node's dashboard snapshots are
/// published meanwhile ([`crate::dashboard::publisher`]), for every node's dashboard.
pub async fn serve_admin(endpoint: &Endpoint, listener: TcpListener, app: Router) {
    let _publisher = endpoint
        .config()
        .admin_token
        .is_some()
        .then(|| AbortOnDrop(crate::dashboard::publisher::spawn(endpoint)));
    let header_timeout = endpoint.config().http_header_timeout;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(ADMIN_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let mut app = app.clone();
                async move { app.call(req).await }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            drop(permit);
        });
    }
}

/// Stops the publisher when the admin server's future is dropped (its documented way to end).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
