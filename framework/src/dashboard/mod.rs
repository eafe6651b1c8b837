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

use std::sync::Arc;

use axum::extract::{Path, Request};
use axum::routing::{any, get};
use axum::Router;

use crate::config::{CheckOrigin, SocketOptions};
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
        // The endpoint's `check_origin` is about the public host (`PHX_HOST`), which the
        // admin listener usually is not (`127.0.0.1:ADMIN_PORT`, a tunnel, a port-forward):
        // the page may open this socket from the admin listener's own origin only.
        check_origin: Some(CheckOrigin::Conn),
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
                async move { websocket::handle(ep, mount, None, req).await }
            }),
        )
}
