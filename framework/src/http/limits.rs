//! The per-request limits that hyper does not enforce itself: the request-target length
//! (`HTTP_MAX_URI_BYTES` → 414) and the whole-body deadline (`HTTP_BODY_TIMEOUT_MS` → 408).
//! (The head's size and line count and its read timeout are hyper's, set in `serve.rs`.)
//!
//! Both run before the router, so they hold on every route — a WebSocket upgrade, a LongPoll
//! request, the fixture's, an unknown path — and the URI check runs before any query is
//! decoded.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::config::Config;

/// The limits applied to each request before it reaches the router.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `HTTP_MAX_URI_BYTES`.
    pub max_uri_bytes: usize,
    /// `HTTP_BODY_TIMEOUT_MS`.
    pub body_timeout: Duration,
}

impl Limits {
    /// The limits `config` sets.
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            max_uri_bytes: config.http_max_uri_bytes,
            body_timeout: config.http_body_timeout,
        }
    }
}

pub use crate::body_timeout::{is_body_timeout, BodyTimeout};

/// The length of the request target as the client sent it: path and query (origin form), or
/// the whole absolute URI.
pub fn target_len(uri: &Uri) -> usize {
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(auth)) => scheme.len() + "://".len() + auth.as_str().len() + path,
        (None, Some(auth)) => auth.as_str().len() + path,
        _ => path,
    }
}

/// An empty response with `status` that ends the connection.
fn closing(status: StatusCode) -> Response<Body> {
    let mut resp = status.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The app behind the limits, shared by every connection.
pub struct Limited {
    app: Router,
    limits: Limits,
}

impl Limited {
    /// `app` behind `limits`.
    pub fn new(app: Router, limits: Limits) -> Arc<Limited> {
        Arc::new(Limited { app, limits })
    }

    /// Answers one request from `peer`: 414 for a target over the cap; otherwise the router,
    /// with `ConnectInfo<SocketAddr>` for the handlers and a deadline on the body.
    pub fn call(
        &self,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'static {
        let too_long = target_len(req.uri()) > self.limits.max_uri_bytes;
        let timeout = self.limits.body_timeout;
        let mut app = self.app.clone();
        async move {
            if too_long {
                crate::warn_limited!("refusing a request: URI longer than HTTP_MAX_URI_BYTES");
                return Ok(closing(StatusCode::URI_TOO_LONG));
            }
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            // Plug.Logger's lines, the path only: a query string may carry a token.
            let started = std::time::Instant::now();
            let level = if crate::logger::is_socket_path(parts.uri.path()) {
                crate::logger::LogLevel::Debug
            } else {
                crate::logger::LogLevel::Info
            };
            crate::log_at!(level, "{} {}", parts.method, parts.uri.path());
            // Most requests (GETs, upgrades, polls) have no body: no timer, no flag.
            let (body, expired) = if body.is_end_stream() {
                (Body::new(body), None)
            } else {
                let deadline = Deadline::new(body, timeout);
                let expired = Arc::clone(&deadline.expired);
                (Body::new(deadline), Some(expired))
            };
            let resp =
                tower_service::Service::call(&mut app, Request::from_parts(parts, body)).await?;
            crate::log_at!(
                level,
                "Sent {} in {}",
                resp.status().as_u16(),
                crate::logger::duration(started.elapsed())
            );
            match expired {
                Some(flag) if flag.load(Ordering::Acquire) => Ok(expired_answer(resp)),
                _ => Ok(resp),
            }
        }
    }
}

/// The answer to a request whose body missed its deadline. A handler that failed because its
/// read failed (any error status — axum's extractors say 400) is answered 408; a handler that
/// answered the timeout in its own protocol (LongPoll's `{"status":408}` in a 200) keeps its
/// answer. Either way the connection ends: the rest of the body is still on the wire.
fn expired_answer(resp: Response<Body>) -> Response<Body> {
    crate::warn_limited!(
        "closing a connection: request body not received within HTTP_BODY_TIMEOUT_MS"
    );
    if resp.status().is_client_error() || resp.status().is_server_error() {
        return closing(StatusCode::REQUEST_TIMEOUT);
    }
    let mut resp = resp;
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes, however steadily
/// its bytes trickle in (a per-read timeout would be reset by each byte).
struct Deadline {
    inner: Incoming,
    timeout: Duration,
    at: Instant,
    /// Made the first time the body has to wait: a body that arrives at once costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Set when the deadline fired, for the answer ([`expired_answer`]).
    expired: Arc<AtomicBool>,
}

impl Deadline {
    fn new(inner: Incoming, timeout: Duration) -> Deadline {
        Deadline {
            inner,
            timeout,
            at: Instant::now() + timeout,
            sleep: None,
            expired: Arc::new(AtomicBool::new(false)),
        }
    }

    fn fire(&self) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.expired.store(true, Ordering::Release);
        Poll::Ready(Some(Err(Box::new(BodyTimeout(self.timeout)))))
    }
}

type BodyError = Box<dyn StdError + Send + Sync>;

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.expired.load(Ordering::Acquire) {
            return this.fire();
        }
        if let Some(sleep) = &mut this.sleep {
            if sleep.as_mut().poll(cx).is_ready() {
                return this.fire();
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                if this.sleep.is_none() {
                    let mut sleep = Box::pin(tokio::time::sleep_until(this.at));
                    if sleep.as_mut().poll(cx).is_ready() {
                        return this.fire();
                    }
                    this.sleep = Some(sleep);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_len_is_the_target_as_sent() {
        let origin: Uri = "/socket/websocket?vsn=2.0.0".parse().expect("uri");
        assert_eq!(target_len(&origin), "/socket/websocket?vsn=2.0.0".len());
        let absolute: Uri = "http://example.com:4000/a?b=c".parse().expect("uri");
        assert_eq!(target_len(&absolute), "http://example.com:4000/a?b=c".len());
    }

    #[test]
    fn a_wrapped_body_timeout_is_recognised() {
        let inner: BodyError = Box::new(BodyTimeout(Duration::from_secs(1)));
        let wrapped = axum::Error::new(inner);
        assert!(is_body_timeout(&wrapped));
        let other = axum::Error::new(std::io::Error::other("reset"));
        assert!(!is_body_timeout(&other));
    }
}
