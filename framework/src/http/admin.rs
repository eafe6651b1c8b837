//! The admin listener (`ADMIN_PORT`, on `ADMIN_HOST`, loopback by default): `/metrics` for
//! Prometheus and the live `/dashboard` ([`crate::dashboard`]), kept off the public port so
//! that only the operator's side can reach them.

use std::sync::Arc;
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

/// HTTP connections the admin listener serves at once; more wait in the backlog (each must
/// send its head within `HTTP_HEADER_TIMEOUT_MS`). A dashboard's socket leaves its slot once
/// upgraded (hyper hands the connection over), so open dashboards do not use these up.
const ADMIN_CONNECTIONS: usize = 32;

/// The admin routes: `/metrics` (every series of [`Metrics`], OpenMetrics text, through
/// [`Endpoint::render_metrics`] so the scrape-time series are current), `/healthz` and the
/// dashboard (`/dashboard`, its assets and its socket; see [`crate::dashboard`]).
/// Applications may merge their own operator-only routes into it.
pub fn admin_router(endpoint: &Endpoint) -> Router {
    let ep = endpoint.clone();
    let admin_host: Arc<str> = endpoint.config().admin_host.as_str().into();
    crate::dashboard::routes(endpoint)
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let ep = ep.clone();
                async move { ([(CONTENT_TYPE, Metrics::CONTENT_TYPE)], ep.render_metrics()) }
            }),
        )
        .layer(axum::middleware::from_fn(move |req, next| {
            let admin_host = admin_host.clone();
            async move { host_guard(&admin_host, req, next).await }
        }))
}

/// DNS rebinding: a page on `evil.example`, re-pointed at 127.0.0.1, would reach this
/// listener through an operator's browser as a same-origin page of `evil.example`. The
/// admin routes answer only requests addressed to an IP literal, `localhost` or `ADMIN_HOST`
/// (a name an attacker cannot make the browser send); anything else gets 421.
async fn host_guard(
    admin_host: &str,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if host_allowed(host, admin_host) {
        next.run(req).await
    } else {
        (
            axum::http::StatusCode::MISDIRECTED_REQUEST,
            "the admin listener answers requests to its IP address, localhost or ADMIN_HOST only\n",
        )
            .into_response()
    }
}

/// Whether a `Host` header (`name[:port]`, `[v6]:port`) names this listener safely.
fn host_allowed(host: &str, admin_host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    !name.is_empty()
        && (name.parse::<std::net::IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || name.eq_ignore_ascii_case(admin_host.trim_matches(|c| c == '[' || c == ']')))
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

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn only_ip_literals_localhost_and_admin_host_are_answered() {
        assert!(host_allowed("127.0.0.1:4001", "127.0.0.1"));
        assert!(host_allowed("[::1]:4001", "127.0.0.1"));
        assert!(host_allowed("localhost:4001", "127.0.0.1"));
        assert!(host_allowed("ops.internal:4001", "ops.internal"));
        assert!(host_allowed("10.0.0.5", "0.0.0.0"));
        assert!(!host_allowed("evil.example:4001", "127.0.0.1"));
        assert!(!host_allowed("", "127.0.0.1"));
        assert!(!host_allowed(":4001", "127.0.0.1"));
    }
}
