//! Why a transport refused to open a socket, as one typed error, and the one place that turns
//! it into the answer that transport gives (spec §1.4, §7): a WebSocket answers with an HTTP
//! status and an empty body; LongPoll answers protocol refusals as HTTP 200 with
//! `{"status":403}` (what the JS client reads) and the rest with a bare HTTP status.
//!
//! Both transports run the same checks (query params, `vsn`, check_origin, `connect`), in the
//! order spec'd for each; here they only say which check failed.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use phx_protocol::VsnError;

use super::longpoll;
use super::SubprotocolError;
use crate::metrics::Metrics;
use crate::params::ParamsError;
use crate::socket::{ConnectError, ConnectInfo};

/// Which transport is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<mount>/websocket`.
    WebSocket,
    /// `<mount>/longpoll`.
    LongPoll,
}

impl Kind {
    /// The name in `connect_info.transport` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::WebSocket => "websocket",
            Kind::LongPoll => "longpoll",
        }
    }
}

/// A socket the transport did not open.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A method the transport does not serve (WebSocket: not GET; LongPoll: not GET, POST or
    /// OPTIONS): 400.
    #[error("method not allowed")]
    Method,
    /// The endpoint is draining: 503, so the client retries elsewhere or later.
    #[error("the endpoint is draining")]
    Draining,
    /// `LP_MAX_SESSIONS` live LongPoll sessions already: 503 (the JS client backs off).
    #[error("too many LongPoll sessions (LP_MAX_SESSIONS = {0})")]
    TooManySessions(usize),
    /// The query string is not decodable params: 400.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// `vsn` names no serializer: 403 (`connect` never runs).
    #[error(transparent)]
    Vsn(#[from] VsnError),
    /// check_origin refused the `Origin` header: 403.
    #[error("origin check failed (origin {0:?})")]
    Origin(Option<String>),
    /// The authToken subprotocol is not base64: 400.
    #[error(transparent)]
    Subprotocol(#[from] SubprotocolError),
    /// Subprotocols were offered and none is `phoenix`: 403.
    #[error("no offered subprotocol is `phoenix`")]
    NoPhoenixSubprotocol,
    /// `connect` refused: 403, or the handler's status on a WebSocket.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The request passed every check but is not a valid RFC 6455 upgrade: 400.
    #[error("not a valid WebSocket upgrade")]
    NotUpgrade,
}

impl Refusal {
    /// The `reason` label of `phx_refused_total`.
    fn reason(&self) -> &'static str {
        match self {
            Refusal::Method => "method",
            Refusal::Draining => "draining",
            Refusal::TooManySessions(_) => "too_many_sessions",
            Refusal::Params(_) => "params",
            Refusal::Vsn(_) => "vsn",
            Refusal::Origin(_) => "origin",
            Refusal::Subprotocol(_) => "subprotocol",
            Refusal::NoPhoenixSubprotocol => "no_phoenix_subprotocol",
            Refusal::Connect(_) => "connect",
            Refusal::NotUpgrade => "not_upgrade",
        }
    }

    /// The answer `kind` gives, after logging and counting the refusal.
    pub fn into_response(self, kind: Kind, metrics: &Metrics) -> Response {
        metrics.refusal(kind.name(), self.reason());
        match &self {
            Refusal::Connect(e) => crate::info_limited!("connect refused: {e}"),
            Refusal::Method | Refusal::Draining | Refusal::NotUpgrade => {
                tracing::debug!(transport = kind.name(), "refusing connection: {self}")
            }
            _ => crate::warn_limited!("refusing {} connection: {self}", kind.name()),
        }
        match kind {
            Kind::WebSocket => self.websocket_answer(),
            Kind::LongPoll => self.longpoll_answer(),
        }
    }

    fn websocket_answer(self) -> Response {
        let code = match self {
            Refusal::Method | Refusal::Params(_) | Refusal::Subprotocol(_) => {
                StatusCode::BAD_REQUEST
            }
            Refusal::NotUpgrade => {
                return (StatusCode::BAD_REQUEST, "not a valid WebSocket upgrade").into_response()
            }
            Refusal::Draining | Refusal::TooManySessions(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Vsn(_)
            | Refusal::Origin(_)
            | Refusal::NoPhoenixSubprotocol
            | Refusal::Connect(ConnectError::Refused) => StatusCode::FORBIDDEN,
            // Phoenix's error_handler: the handler's status (403 if it is not a status).
            Refusal::Connect(ConnectError::WithStatus { status, .. }) => {
                StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN)
            }
        };
        code.into_response()
    }

    fn longpoll_answer(self) -> Response {
        match self {
            Refusal::Method
            | Refusal::Params(_)
            | Refusal::Subprotocol(_)
            | Refusal::NotUpgrade => longpoll::plain(StatusCode::BAD_REQUEST),
            Refusal::Draining | Refusal::TooManySessions(_) => {
                longpoll::plain(StatusCode::SERVICE_UNAVAILABLE)
            }
            // What Phoenix's LongPoll answers a refused connect, whatever its reason.
            Refusal::Vsn(_)
            | Refusal::Origin(_)
            | Refusal::NoPhoenixSubprotocol
            | Refusal::Connect(_) => longpoll::status_json(403),
        }
    }
}

/// Collects the connect info every transport provides.
pub(crate) fn connect_info(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    auth_token: Option<String>,
    kind: Kind,
) -> ConnectInfo {
    let get = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    ConnectInfo {
        auth_token,
        peer,
        host: get(header::HOST),
        user_agent: get(header::USER_AGENT),
        x_headers: headers
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-"))
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        transport: kind.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(r: Refusal) -> StatusCode {
        r.into_response(Kind::WebSocket, &Metrics::default())
            .status()
    }

    #[test]
    fn websocket_refusals_are_http_statuses() {
        assert_eq!(ws(Refusal::Method), StatusCode::BAD_REQUEST);
        assert_eq!(ws(Refusal::Draining), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            ws(Refusal::Vsn(VsnError("9.0.0".into()))),
            StatusCode::FORBIDDEN
        );
        assert_eq!(ws(Refusal::Origin(None)), StatusCode::FORBIDDEN);
        assert_eq!(
            ws(Refusal::Subprotocol(SubprotocolError::BadToken)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ws(Refusal::Connect(ConnectError::Refused)),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            ws(Refusal::Connect(ConnectError::WithStatus {
                status: 401,
                reason: "expired".into()
            })),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn longpoll_answers_protocol_refusals_in_the_body_and_counts_them() {
        let metrics = Metrics::default();
        let r = Refusal::Connect(ConnectError::WithStatus {
            status: 401,
            reason: "expired".into(),
        })
        .into_response(Kind::LongPoll, &metrics);
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "the status travels in the JSON body"
        );
        let count = |reason| {
            let labels = crate::metrics::RefusalLabels {
                transport: "longpoll",
                reason,
            };
            metrics.refused.get(&labels).map_or(0, |c| c.get())
        };
        assert_eq!(count("connect"), 1);
        let r = Refusal::Draining.into_response(Kind::LongPoll, &metrics);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(count("connect"), 1);
        assert_eq!(count("draining"), 1, "counted under its own reason");
    }
}
