//! `/socket/longpoll` (spec §7): the same [`Session`] behind GET and POST, for clients that
//! cannot open a WebSocket.
//!
//! Every protocol answer is HTTP 200 with the logical status in the JSON body
//! (`{"status":410,...}`), because that is what the JS client reads. Request order:
//! check_origin (`{"status":403}`) → method (OPTIONS: CORS preflight; not GET/POST: 400) →
//! session token (header `x-phoenix-longpoll-token`, else the query's `token`; Plug's
//! last-value-wins matters, since the client appends its own `token` after the user's params).
//!
//! * GET with a live session's token: the buffered frames at once, else the poll is held for
//!   `window` and answered 204. GET without one (none, forged, expired, or its session is gone):
//!   a new session, after the same handshake as a WebSocket (vsn, `connect` with the
//!   `x-phoenix-authtoken` header as `connect_info.auth_token`) → `{"messages":[],"status":410,
//!   "token":T}`, or `{"status":403}` when refused.
//! * POST: `{"status":410}` without a live session. `application/x-ndjson` bodies are split
//!   into lines (at most 100 used; `[` lines are text frames, others base64 binary frames);
//!   any other content type is one text frame. Acknowledged with `{"status":200}` once every
//!   frame was processed in order, `{"status":408}` if one was not within `window`.
//!
//! Bounds (all in [`Config`](crate::config::Config)): body size and line size (HTTP 400, like
//! Plug's `read_body` overflow), frames buffered per session (overflow closes the session),
//! live sessions per socket (HTTP 503, empty body: the JS client retries with backoff).
//!
//! Answers that Phoenix does not give, where the reason is ours:
//! * new sessions while draining or at the session cap: HTTP 503 with an empty body;
//! * a poll held when its session stops (disconnect, drain, expiry, overflow): `{"status":410}`
//!   at once instead of 204 after the window; the client reconnects either way;
//! * a malformed frame: Phoenix's session process crashes and the POST times out with 408 after
//!   the window; we close the session and answer 408 at once;
//! * a line that is not base64: HTTP 400 and nothing of the batch dispatched (Plug raises a
//!   bad-request error, 400, while decoding, before dispatching).

pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::conn::Text;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use dashmap::DashMap;
use phx_protocol::etf::Term;
use phx_protocol::token::MaxAge;
use phx_protocol::Serializer;
use tokio::sync::oneshot;

use self::server::{Ack, InFrame, Limits, Request, SessionHandle};
use super::handshake::{connect_info, Kind, Refusal};
use super::{negotiate, origin};
use crate::conn::ConnHandle;
use crate::endpoint::{Endpoint, SocketMount};
use crate::mailbox::{Bounds, SendError};
use crate::params::decode_query;
use crate::session::Session;
use crate::socket::{Assigns, Params};

/// Salt of LongPoll session tokens: a salt of their own, so that no other token the endpoint
/// signs (user tokens, say) can be replayed as a session token.
pub const SESSION_SALT: &str = "phx-server longpoll session";

/// Session tokens are accepted for two weeks (Phoenix's `crypto: [max_age: 1209600]`); the
/// session behind one dies long before that, after 1.5 × window without a poll.
const SESSION_MAX_AGE: MaxAge = MaxAge::Seconds(1_209_600);

/// Lines of an ndjson POST that are used; the rest are dropped (Phoenix 1.7.24+).
pub const MAX_LINES: usize = 100;

/// The content type that makes a POST body a batch of lines.
const NDJSON: &str = "application/x-ndjson";

/// Why a POST body was refused before any of it reached the session (HTTP 400).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than `LP_MAX_BODY`.
    #[error("POST body larger than {0} bytes")]
    TooLarge(usize),
    /// A line is longer than `LP_MAX_LINE`.
    #[error("ndjson line larger than {0} bytes")]
    LineTooLong(usize),
    /// A non-`[` line is not standard base64.
    #[error("ndjson line is not valid base64")]
    BadBase64,
    /// A frame (an ndjson line, decoded, or a whole non-ndjson body) is larger than
    /// `MAX_FRAME_SIZE` — what closes a WebSocket with 1009.
    #[error("frame larger than MAX_FRAME_SIZE ({0} bytes)")]
    FrameTooLarge(usize),
    /// The body did not arrive within `HTTP_BODY_TIMEOUT_MS` (answered `{"status":408}`).
    #[error("POST body not received within HTTP_BODY_TIMEOUT_MS")]
    Timeout,
}

/// What a request's session token names.
enum Lookup {
    /// A live session.
    Live(Arc<SessionHandle>),
    /// A session this server issued, which has ended.
    Gone,
    /// No token, or not one of ours (forged, expired, another secret).
    Unknown,
}

/// The LongPoll transport of one mounted socket: its live sessions.
pub struct LongPoll {
    /// The endpoint (config, tokens, registry for the drain).
    endpoint: Endpoint,
    /// The socket behind the transport.
    mount: Arc<SocketMount>,
    /// Live sessions by id. The id is 128 random bits carried in the signed token, so it is
    /// neither guessable nor reused by a restarted server that shares the secret.
    sessions: DashMap<u128, Arc<SessionHandle>>,
}

impl LongPoll {
    /// The transport for `mount`.
    pub fn new(endpoint: Endpoint, mount: Arc<SocketMount>) -> Arc<LongPoll> {
        Arc::new(LongPoll {
            endpoint,
            mount,
            sessions: DashMap::new(),
        })
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The HTTP handler for `<mount>/longpoll`.
    pub async fn handle(
        self: Arc<Self>,
        method: Method,
        query: Option<String>,
        headers: HeaderMap,
        peer: Option<SocketAddr>,
        body: Body,
    ) -> Response {
        let params = match self.check(&method, query.as_deref(), &headers) {
            Ok(Some(params)) => params,
            Ok(None) => return preflight(&headers),
            Err(refusal) => return refusal.into_response(Kind::LongPoll, self.endpoint.metrics()),
        };
        let token = session_token(&headers, &params);
        let found = match token.as_deref() {
            Some(t) => self.resume(t),
            None => Lookup::Unknown,
        };
        if method == Method::GET {
            match (found, token.as_deref()) {
                (Lookup::Live(handle), Some(token)) => match self.listen(&handle, token).await {
                    Some(resp) => resp,
                    None => status_json(410),
                },
                // A session token we issued whose session has ended: the client's session is
                // gone, and it reconnects on 410 (spec §7.5). Phoenix starts a new session here
                // and answers 410 with its token, which a client holding a token discards; not
                // running `connect` again with the stale request's params (its `token` query
                // param is the dead session's, which a socket reading `params["token"]` would
                // take for a user token and refuse with 403) gives the client the same 410
                // without a session nobody will poll.
                (Lookup::Gone, _) => status_json(410),
                _ => self.new_session(params, &headers, peer).await,
            }
        } else {
            match found {
                Lookup::Live(handle) => self.publish(&handle, &headers, body).await,
                _ => status_json(410),
            }
        }
    }

    /// The checks every LongPoll request passes first, in Phoenix's order: check_origin, then
    /// the method (`None`: an OPTIONS preflight, answered as such), then the query params.
    fn check(
        &self,
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Option<Params>, Refusal> {
        let cfg = self.endpoint.config();
        let origin_header = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let host_header = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let check = self
            .mount
            .check_origin
            .as_ref()
            .unwrap_or(&cfg.check_origin);
        if !origin::allowed(check, &cfg.url_host, host_header, origin_header) {
            return Err(Refusal::Origin(origin_header.map(str::to_string)));
        }
        if method == Method::OPTIONS {
            return Ok(None);
        }
        if method != Method::GET && method != Method::POST {
            return Err(Refusal::Method);
        }
        Ok(Some(decode_query(query.unwrap_or(""))?))
    }

    /// What a session token names.
    fn resume(&self, token: &str) -> Lookup {
        let Ok(Term::Binary(bytes)) =
            self.endpoint
                .verify_token(SESSION_SALT, token, Some(SESSION_MAX_AGE))
        else {
            return Lookup::Unknown;
        };
        let Ok(id) = <[u8; 16]>::try_from(bytes.as_slice()).map(u128::from_be_bytes) else {
            return Lookup::Unknown;
        };
        match self.sessions.get(&id) {
            Some(h) => Lookup::Live(h.clone()),
            None => Lookup::Gone,
        }
    }

    /// A poll on a live session. `None` if the session stopped before it saw the poll (the
    /// caller answers 410: the session is gone).
    async fn listen(&self, handle: &SessionHandle, token: &str) -> Option<Response> {
        let (tx, mut rx) = oneshot::channel();
        match handle.requests.send(Request::Poll(tx), 0) {
            Ok(()) => {}
            Err(SendError::Closed) => return None,
            Err(SendError::Full) => return Some(poll_json(204, &[], token)),
        }
        let window = self.endpoint.config().lp_window;
        let frames = match tokio::time::timeout(window, &mut rx).await {
            Ok(Ok(frames)) => frames,
            // The session stopped while the poll was held.
            Ok(Err(_)) => return Some(status_json(410)),
            Err(_) => {
                // Close first, so frames the session is handing over right now are either
                // received here or stay in its buffer for the next poll — never lost.
                rx.close();
                rx.try_recv().unwrap_or_default()
            }
        };
        Some(if frames.is_empty() {
            poll_json(204, &[], token)
        } else {
            poll_json(200, &frames, token)
        })
    }

    /// The checks of a session-creating GET, as for a WebSocket: the serializer and the
    /// assigns `connect` gave, or why not.
    async fn handshake(
        &self,
        params: &Params,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<(Serializer, Assigns), Refusal> {
        let endpoint = &self.endpoint;
        let max = endpoint.config().lp_max_sessions;
        if endpoint.is_draining() {
            return Err(Refusal::Draining);
        }
        if self.sessions.len() >= max {
            return Err(Refusal::TooManySessions(max));
        }
        let serializer = negotiate(params)?;
        let auth_token = headers
            .get("x-phoenix-authtoken")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let info = connect_info(headers, peer, auth_token, Kind::LongPoll);
        let started = std::time::Instant::now();
        let assigns = self
            .mount
            .handler
            .connect(endpoint.context(), params, &info)
            .await?;
        crate::logger::connected(
            self.mount.handler.name(),
            started.elapsed(),
            "longpoll",
            serializer,
            params,
        );
        Ok((serializer, assigns))
    }

    /// The handshake of a session-creating GET.
    async fn new_session(
        self: Arc<Self>,
        params: Params,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Response {
        let endpoint = &self.endpoint;
        let cfg = endpoint.config();
        let (serializer, assigns) = match self.handshake(&params, headers, peer).await {
            Ok(accepted) => accepted,
            Err(refusal) => return refusal.into_response(Kind::LongPoll, endpoint.metrics()),
        };
        let socket_id = self.mount.handler.id(&assigns);
        let conn = Arc::new(ConnHandle::new(
            serializer,
            Bounds::new(cfg.lp_max_buffered, cfg.lp_max_buffered_bytes),
            endpoint.metrics().clone(),
        ));
        let session = Session::new(
            endpoint.clone(),
            self.mount.clone(),
            conn.clone(),
            assigns,
            socket_id,
        );
        let id: u128 = rand::random();
        let handle = Arc::new(SessionHandle::new());
        self.sessions.insert(id, handle.clone());
        endpoint.metrics().longpoll_sessions.inc();
        let conn_id = endpoint.next_id();
        let registered = endpoint.register(conn_id, conn.clone(), "longpoll");
        let limits = Limits {
            window: cfg.lp_window,
            max_buffered: cfg.lp_max_buffered,
            max_buffered_bytes: cfg.lp_max_buffered_bytes,
            drain_max: cfg.drain_max,
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _registered = registered;
            let ended = server::run(session, handle, limits).await;
            match ended {
                server::Ended::Overflow => {
                    this.endpoint.metrics().overflow_closes.inc();
                    crate::warn_limited!(
                        max = limits.max_buffered,
                        max_bytes = limits.max_buffered_bytes,
                        "closing LongPoll session: its client did not poll its frames \
                         (LP_MAX_BUFFERED / LP_MAX_BUFFERED_BYTES)"
                    );
                }
                server::Ended::Malformed => {
                    this.endpoint.metrics().bad_frames.inc();
                }
                _ => tracing::debug!(?ended, "LongPoll session stopped"),
            }
            if this.sessions.remove(&id).is_some() {
                this.endpoint.metrics().longpoll_sessions.dec();
            }
        });
        let token = endpoint.sign_token(SESSION_SALT, &Term::Binary(id.to_be_bytes().to_vec()));
        poll_json(410, &[], &token)
    }

    /// A POST on a live session.
    async fn publish(&self, handle: &SessionHandle, headers: &HeaderMap, body: Body) -> Response {
        let cfg = self.endpoint.config();
        let limits = BodyLimits {
            max_body: cfg.lp_max_body,
            max_line: cfg.lp_max_line,
            max_frame: cfg.max_frame_size,
        };
        let frames = match read_frames(headers, body, limits).await {
            Ok(f) => f,
            // A client too slow to send its batch: the protocol's own "not in time".
            Err(BodyError::Timeout) => return status_json(408),
            Err(e) => {
                crate::warn_limited!("refusing LongPoll POST: {e}");
                self.endpoint.metrics().bad_frames.inc();
                return plain(StatusCode::BAD_REQUEST);
            }
        };
        let (tx, rx) = oneshot::channel();
        match handle
            .requests
            .send(Request::Publish { frames, ack: tx }, 0)
        {
            Ok(()) => {}
            Err(SendError::Closed) => return status_json(410),
            Err(SendError::Full) => return status_json(408),
        }
        // The session answers 408 itself when a frame takes longer than the window; this bound
        // only keeps a request from hanging on a session that can no longer answer.
        let guard = cfg.lp_window.saturating_mul(2) + std::time::Duration::from_secs(1);
        match tokio::time::timeout(guard, rx).await {
            Ok(Ok(Ack::Ok)) => status_json(200),
            Ok(Ok(Ack::Timeout | Ack::Malformed)) | Err(_) => status_json(408),
            Ok(Err(_)) => status_json(410),
        }
    }
}

/// The session token: header `x-phoenix-longpoll-token` (Phoenix 1.8.10+), else query `token`.
fn session_token(headers: &HeaderMap, params: &Params) -> Option<String> {
    if let Some(t) = headers
        .get("x-phoenix-longpoll-token")
        .and_then(|v| v.to_str().ok())
    {
        return Some(t.to_string());
    }
    params
        .get("token")
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// The size bounds a POST body is read and split under.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// `LP_MAX_BODY`: the whole body.
    pub max_body: usize,
    /// `LP_MAX_LINE`: one ndjson line as sent (base64 for binary frames).
    pub max_line: usize,
    /// `MAX_FRAME_SIZE`: one frame once decoded, as on a WebSocket.
    pub max_frame: usize,
}

/// Reads a POST body within `limits.max_body` and splits it into frames (spec §7.3).
async fn read_frames(
    headers: &HeaderMap,
    body: Body,
    limits: BodyLimits,
) -> Result<Vec<InFrame>, BodyError> {
    let max_body = limits.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return Err(BodyError::TooLarge(max_body));
    }
    // The HTTP layer puts a deadline on the body (`HTTP_BODY_TIMEOUT_MS`).
    let body = axum::body::to_bytes(body, max_body).await.map_err(|e| {
        if crate::body_timeout::is_body_timeout(&e) {
            BodyError::Timeout
        } else {
            BodyError::TooLarge(max_body)
        }
    })?;
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let ndjson = matches!((types.next(), types.next()), (Some(v), None) if v == NDJSON);
    if ndjson {
        split_ndjson(&body, limits)
    } else if body.len() > limits.max_frame {
        Err(BodyError::FrameTooLarge(limits.max_frame))
    } else {
        Ok(vec![InFrame::Text(body)])
    }
}

/// Splits an ndjson body on `\n` / `\r\n` into at most [`MAX_LINES`] frames. A trailing
/// newline yields a last, empty line — an empty binary frame, malformed — exactly as Phoenix.
pub fn split_ndjson(body: &Bytes, limits: BodyLimits) -> Result<Vec<InFrame>, BodyError> {
    let BodyLimits {
        max_line,
        max_frame,
        ..
    } = limits;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut frames = Vec::new();
    let mut start = 0;
    for raw in body.split(|b| *b == b'\n').take(MAX_LINES) {
        let range = start..start + raw.len();
        start = range.end + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.len() > max_line {
            return Err(BodyError::LineTooLong(max_line));
        }
        if line.first() == Some(&b'[') {
            if line.len() > max_frame {
                return Err(BodyError::FrameTooLarge(max_frame));
            }
            frames.push(InFrame::Text(
                body.slice(range.start..range.start + line.len()),
            ));
        } else {
            // Base64 is 4/3 of its content: refuse before decoding what cannot fit.
            if line.len() / 4 * 3 > max_frame + 3 {
                return Err(BodyError::FrameTooLarge(max_frame));
            }
            let bytes = engine.decode(line).map_err(|_| BodyError::BadBase64)?;
            if bytes.len() > max_frame {
                return Err(BodyError::FrameTooLarge(max_frame));
            }
            frames.push(InFrame::Binary(Bytes::from(bytes)));
        }
    }
    Ok(frames)
}

/// Headers every LongPoll answer carries.
fn common_headers(resp: &mut Response) {
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

/// A non-protocol answer (400, 503): the HTTP status with an empty body.
pub(super) fn plain(code: StatusCode) -> Response {
    let mut resp = code.into_response();
    common_headers(&mut resp);
    resp
}

/// A protocol answer: HTTP 200, the JSON body as Phoenix's `status_json` writes it.
fn json(body: Vec<u8>) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    common_headers(&mut resp);
    resp
}

/// `{"status":N}`.
pub(super) fn status_json(status: u16) -> Response {
    json(format!("{{\"status\":{status}}}").into_bytes())
}

/// `{"messages":[...],"status":N,"token":T}`: keys in Jason's order; each message is the
/// serializer's text frame as a JSON string.
fn poll_json(status: u16, messages: &[Text], token: &str) -> Response {
    let size: usize = messages.iter().map(|m| m.len() + 8).sum::<usize>() + token.len() + 48;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"{\"messages\":[");
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        phx_protocol::json::write_str(&mut out, m.as_str());
    }
    out.extend_from_slice(format!("],\"status\":{status},\"token\":").as_bytes());
    phx_protocol::json::write_str(&mut out, token);
    out.push(b'}');
    json(out)
}

/// The CORS preflight answer (Phoenix answers it for any origin that passed check_origin).
fn preflight(headers: &HeaderMap) -> Response {
    let requested: Vec<&str> = headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let mut resp = plain(StatusCode::OK);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&requested.join(", ")) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("get, post, options"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("3600"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(frames: &[InFrame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                InFrame::Text(b) => format!("T:{}", String::from_utf8_lossy(b)),
                InFrame::Binary(b) => format!("B:{b:?}"),
            })
            .collect()
    }

    fn limits(max_line: usize) -> BodyLimits {
        BodyLimits {
            max_body: 1 << 20,
            max_line,
            max_frame: 1 << 20,
        }
    }

    #[test]
    fn lines_split_on_lf_and_crlf() {
        let body = Bytes::from_static(b"[1]\r\n[2]\nAAEC");
        let f = split_ndjson(&body, limits(1 << 20)).expect("valid");
        assert_eq!(kinds(&f), vec!["T:[1]", "T:[2]", "B:b\"\\0\\x01\\x02\""]);
    }

    #[test]
    fn trailing_newline_is_an_empty_binary_frame() {
        let body = Bytes::from_static(b"[1]\n");
        let f = split_ndjson(&body, limits(1 << 20)).expect("valid");
        assert_eq!(kinds(&f), vec!["T:[1]", "B:b\"\""]);
    }

    #[test]
    fn only_the_first_hundred_lines() {
        let body = Bytes::from(vec!["[0]"; 150].join("\n"));
        assert_eq!(
            split_ndjson(&body, limits(1 << 20)).expect("valid").len(),
            MAX_LINES
        );
    }

    #[test]
    fn long_lines_and_bad_base64_are_refused() {
        let body = Bytes::from_static(b"[12345]");
        assert!(matches!(
            split_ndjson(&body, limits(4)),
            Err(BodyError::LineTooLong(4))
        ));
        let body = Bytes::from_static(b"not base64!");
        assert!(matches!(
            split_ndjson(&body, limits(1 << 20)),
            Err(BodyError::BadBase64)
        ));
    }

    #[test]
    fn frames_over_max_frame_size_are_refused_as_on_a_websocket() {
        let small = BodyLimits {
            max_body: 1 << 20,
            max_line: 1 << 20,
            max_frame: 8,
        };
        let body = Bytes::from_static(b"[1,2,3,4,5]");
        assert_eq!(
            split_ndjson(&body, small).err(),
            Some(BodyError::FrameTooLarge(8))
        );
        // 12 bytes once decoded.
        let body = Bytes::from_static(b"AAECAwQFBgcICQoL");
        assert_eq!(
            split_ndjson(&body, small).err(),
            Some(BodyError::FrameTooLarge(8))
        );
        let body = Bytes::from_static(b"[1,2,3]");
        assert_eq!(split_ndjson(&body, small).expect("fits").len(), 1);
    }

    #[test]
    fn poll_json_double_encodes_frames() {
        let msgs = [Text::from(
            r#"[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]"#,
        )];
        let resp = poll_json(200, &msgs, "T");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
    }
}
