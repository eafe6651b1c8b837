//! The HTTP layer: the routes ([`router`]: the mounted sockets' transports, `/healthz`,
//! `/readyz`) and the server that runs them ([`serve`]); the admin listener's routes
//! ([`admin_router`]: `/metrics`) and its server ([`serve_admin`]).
//!
//! Every connection is bounded before a handler sees it (the `HTTP limits` block of
//! [`Config`](crate::config::Config)):
//! - [`serve`] (hyper's HTTP/1 with a timer): the head must arrive within
//!   `HTTP_HEADER_TIMEOUT_MS`, which also closes an idle keep-alive connection; a head over
//!   `HTTP_MAX_HEADER_BYTES` or `HTTP_MAX_HEADERS` lines → 431; shutdown drains, then waits
//!   `SHUTDOWN_GRACE_MS`, then aborts;
//! - [`connections`]: `MAX_CONNECTIONS`, the extra connection gets one 503;
//! - [`limits`]: a target over `HTTP_MAX_URI_BYTES` → 414; a body not received within
//!   `HTTP_BODY_TIMEOUT_MS` → 408.

mod admin;
pub mod connections;
pub mod limits;
mod serve;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, Request};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{any, get};
use axum::Router;

use crate::endpoint::Endpoint;
use crate::transport::longpoll::LongPoll;
use crate::transport::websocket;

pub use admin::{admin_router, serve_admin};
pub use limits::{is_body_timeout, BodyTimeout};
pub use serve::{listen_and_serve, serve, shutdown_signal};

/// The endpoint's routes: `<mount>/websocket` and `<mount>/longpoll` for every mounted socket
/// (each only if that transport is enabled on the mount), plus `/healthz` and `/readyz`.
/// Applications merge their own routes into it. `/metrics` is not here: it is on the admin
/// listener ([`admin_router`]).
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
    let ready = endpoint.clone();
    let alive = endpoint.clone();
    // `/healthz`: alive (200) even while draining, which it says, so that a node shutting down
    // is not restarted; `/readyz`: whether to send it traffic, with every reason it should not.
    app.route(
        "/healthz",
        get(move || {
            let ep = alive.clone();
            async move {
                if ep.is_draining() {
                    "ok (draining)"
                } else {
                    "ok"
                }
            }
        }),
    )
    .route(
        "/readyz",
        get(move || {
            let ep = ready.clone();
            async move {
                match ep.readiness().await {
                    Ok(()) => (StatusCode::OK, "ready\n".to_string()),
                    Err(reasons) => (StatusCode::SERVICE_UNAVAILABLE, reasons.join("\n") + "\n"),
                }
            }
        }),
    )
}
