//! The accept loop: hyper's HTTP/1 server with a timer, so its head-read and keep-alive
//! timeouts are real; the connection cap; and shutdown in three steps — drain the sockets (new
//! connections still accepted, and answered 503 by the transports), stop accepting and let the
//! remaining connections finish (`SHUTDOWN_GRACE_MS`), then abort what is left.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::connections::{refuse, Counted, Slot, Slots, REFUSALS_LINGERING};
use super::limits::{Limited, Limits};
use crate::config::Config;
use crate::endpoint::Endpoint;

/// hyper's default number of header lines; asking for exactly this keeps them on the stack.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// The smallest read buffer cap taken (hyper's minimum is 8 KiB; bodies read faster with more).
const MIN_BUF_SIZE: usize = 64 * 1024;

/// Where the server is in its life; every connection task watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Serving (the drain included: sockets are drained, connections are not).
    Serving,
    /// Finish the request in flight, then close; idle connections close now.
    Closing,
    /// Close now.
    Abort,
}

/// hyper's HTTP/1 settings from the `HTTP limits` block of `config`.
fn builder(config: &Config) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        // Starts when the connection opens and again whenever it goes idle after a response:
        // the same timeout bounds a slow head and an idle keep-alive connection. On expiry
        // hyper closes the connection without a response.
        .header_read_timeout(config.http_header_timeout)
        .keep_alive(true)
        // Counted over the request line and the headers; over it hyper answers 431 and closes.
        .max_header_size(config.http_max_header_bytes)
        .max_buf_size(config.http_max_header_bytes.max(MIN_BUF_SIZE));
    if config.http_max_headers != HYPER_DEFAULT_MAX_HEADERS {
        // More lines than this → 431 and closed (hyper's own count, 100 by default).
        b.max_headers(config.http_max_headers);
    }
    b
}

/// Serves `app` on `listener` until `shutdown` completes; then drains every socket (1012, in
/// batches, within `DRAIN_MAX_MS`), gives the remaining connections `SHUTDOWN_GRACE_MS` to
/// finish, aborts the rest and returns.
pub async fn serve(
    endpoint: Endpoint,
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = endpoint.config().clone();
    let builder = Arc::new(builder(&config));
    let app = Limited::new(app, Limits::from_config(&config));
    let slots = Slots::new(config.max_connections);
    let lingering = Slots::new(REFUSALS_LINGERING);
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);

    let ep = endpoint.clone();
    let drained = async move {
        shutdown.await;
        ep.drain().await;
    };
    tokio::pin!(drained);
    loop {
        tokio::select! {
            () = &mut drained => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.try_take() {
                    Some(slot) => spawn_connection(stream, peer, slot, &builder, &app, &phase_rx),
                    None => {
                        crate::warn_limited!(
                            max = config.max_connections,
                            "refusing a connection: MAX_CONNECTIONS reached"
                        );
                        refuse(stream, &lingering);
                    }
                },
                Err(e) => accept_failed(e).await,
            },
        }
    }
    drop(listener);

    let open = slots.live();
    if open > 0 {
        tracing::info!(connections = open, "closing connections");
        let _ = phase_tx.send(Phase::Closing);
        if tokio::time::timeout(config.shutdown_grace, slots.all_free())
            .await
            .is_err()
        {
            tracing::warn!(
                connections = slots.live(),
                "aborting connections still open after SHUTDOWN_GRACE_MS"
            );
            let _ = phase_tx.send(Phase::Abort);
        }
    }
    Ok(())
}

/// An `accept` that failed. Per-connection errors (the client gave up in the backlog) are
/// skipped; others — out of descriptors above all — are logged and waited out briefly, so the
/// loop does not spin while nothing can be accepted.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    crate::error_limited!("accept failed: {e}");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

/// Serves one connection in its own task, holding `slot` in the stream.
fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    builder: &Arc<http1::Builder>,
    app: &Arc<Limited>,
    phase: &watch::Receiver<Phase>,
) {
    // Small frames (heartbeats, replies) go out at once rather than waiting on the last ACK.
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Counted::new(stream, slot));
    let builder = Arc::clone(builder);
    let app = Arc::clone(app);
    let mut phase = phase.clone();
    tokio::spawn(async move {
        let service = service_fn(move |req| app.call(peer, req));
        let conn = builder.serve_connection(io, service).with_upgrades();
        tokio::pin!(conn);
        loop {
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(%peer, "HTTP connection ended: {e}");
                    }
                    return;
                }
                changed = phase.changed() => {
                    let now = match changed {
                        Ok(()) => *phase.borrow_and_update(),
                        Err(_) => Phase::Abort,
                    };
                    match now {
                        Phase::Serving => {}
                        Phase::Closing => conn.as_mut().graceful_shutdown(),
                        // Dropping the connection closes the socket.
                        Phase::Abort => return,
                    }
                }
            }
        }
    });
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

/// What an application's `main` needs: binds `HOST:PORT` from the endpoint's config, logs the
/// address, and [`serve`]s `app` until SIGTERM or Ctrl-C, draining sockets on the way out —
/// `Phoenix.Endpoint`'s `start_link` in one call.
pub async fn listen_and_serve(endpoint: Endpoint, app: Router) -> std::io::Result<()> {
    let (host, port) = (endpoint.config().host.clone(), endpoint.config().port);
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("cannot resolve {host}:{port}"),
            )
        })?;
    let listener = crate::listener::bind(addr)?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    serve(endpoint, listener, app, shutdown_signal()).await
}
