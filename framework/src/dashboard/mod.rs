//! The live dashboard (LiveDashboard's role) on the admin listener, behind `ADMIN_TOKEN`:
//! sockets by transport, channels by topic pattern, messages per second in and out, fan-out
//! latency (broadcast → write), slow-consumer closes, Presence entries and RSS, one line per
//! node once clustered.
//!
//! - [`page`]: `/dashboard` (the HTML shell, or why it cannot open) and its bundle;
//! - [`socket`]: `/dashboard/socket`, a Phoenix socket of the server's own, whose `connect`
//!   checks the token, and the [`socket::TOPIC`] channel the page joins with the `phoenix`
//!   client;
//! - [`snapshot`]: one node's numbers at one instant, read from [`Metrics`](crate::metrics);
//! - [`publisher`]: each node broadcasts its snapshot every second through the PubSub, so
//!   every node's dashboard sees every node.

pub mod page;
pub mod publisher;
pub mod snapshot;
pub mod socket;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use crate::config::SocketOptions;
use crate::endpoint::{Endpoint, SocketMount};
use crate::transport::websocket;

/// Where the dashboard's socket is mounted (its WebSocket is `<path>/websocket`).
pub const SOCKET_PATH: &str = "/dashboard/socket";

/// The dashboard's routes, for the admin listener: `/dashboard`, `/dashboard/assets/{file}`
/// and `/dashboard/socket/websocket`.
pub fn routes(endpoint: &Endpoint) -> Router {
    let token = endpoint
        .config()
        .admin_token
        .as_ref()
        .map(|t| t.expose().to_owned());
    let assets = endpoint.config().dashboard_assets_dir.clone();
    let mount = Arc::new(SocketMount {
        path: SOCKET_PATH.into(),
        handler: Arc::new(socket::DashboardSocket::new(token.clone())),
        router: crate::router::Router::new().channel(socket::TOPIC, || socket::DashboardChannel),
        // WebSocket only: the page runs in a browser that has it, and the admin listener
        // keeps no LongPoll sessions.
        transports: SocketOptions {
            websocket: true,
            longpoll: false,
        },
    });
    let page_dir = assets.clone();
    let ep = endpoint.clone();
    Router::new()
        .route(
            "/dashboard",
            get(move || {
                let dir = page_dir.clone();
                let enabled = token.is_some();
                async move {
                    if enabled {
                        page::page(&dir)
                    } else {
                        page::disabled()
                    }
                }
            }),
        )
        .route(
            "/dashboard/assets/{file}",
            get(move |Path(file): Path<String>| {
                let dir = assets.clone();
                async move { page::asset(dir, &file).await }
            }),
        )
        .route(
            &format!("{SOCKET_PATH}/websocket"),
            any(move |req: Request| {
                let ep = ep.clone();
                let mount = mount.clone();
                async move { open_socket(ep, mount, req).await }
            }),
        )
}

/// The dashboard socket's upgrade: same-origin only, then the endpoint's WebSocket handshake.
///
/// The endpoint's `check_origin` is about the public host (`PHX_HOST`), which the admin
/// listener usually is not (`127.0.0.1:ADMIN_PORT`, a tunnel, a port-forward); so the rule
/// here is the browser's own: a page may open this socket only from the admin listener's own
/// origin. Once that holds, the `Origin` header is dropped before the shared handshake so its
/// public-host check does not refuse the operator. Clients without an `Origin` (not a
/// browser) are let through to `connect`, which checks the token either way.
async fn open_socket(endpoint: Endpoint, mount: Arc<SocketMount>, mut req: Request) -> Response {
    if !same_origin(req.headers()) {
        return (
            StatusCode::FORBIDDEN,
            "cross-origin dashboard socket refused\n",
        )
            .into_response();
    }
    req.headers_mut().remove(header::ORIGIN);
    let peer: Option<SocketAddr> = None;
    websocket::handle(endpoint, mount, peer, req).await
}

/// Whether the request has no `Origin`, or one whose `host[:port]` is the request's `Host`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (
        origin.to_str(),
        headers.get(header::HOST).map(|h| h.to_str()),
    ) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    !authority.is_empty() && authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&'static str>, host: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static(host));
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_static(o));
        }
        h
    }

    #[test]
    fn only_the_admin_listeners_own_origin_may_open_the_socket() {
        assert!(same_origin(&headers(None, "127.0.0.1:4001")));
        assert!(same_origin(&headers(
            Some("http://127.0.0.1:4001"),
            "127.0.0.1:4001"
        )));
        assert!(same_origin(&headers(
            Some("http://LOCALHOST:4001"),
            "localhost:4001"
        )));
        assert!(!same_origin(&headers(
            Some("http://127.0.0.1:4000"),
            "127.0.0.1:4001"
        )));
        assert!(!same_origin(&headers(
            Some("http://evil.example"),
            "127.0.0.1:4001"
        )));
        assert!(!same_origin(&headers(Some("null"), "127.0.0.1:4001")));
    }
}
