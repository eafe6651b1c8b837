//! `/socket/websocket`: the handshake rules of spec §1.4 in order, then one task per socket
//! that reads frames into the [`Session`] and writes the socket's queued frames in batches.
//!
//! Handshake order (each refusal is final): method GET (else 400) → `vsn` (else 403, connect
//! never runs) → check_origin (403) → authToken subprotocol (bad base64 → 400) → subprotocol
//! match (403) → `connect` (403 or the handler's status) → upgrade headers valid (else 400).
//!
//! The upgrade is done here on hyper's `OnUpgrade` with tokio-tungstenite, rather than through
//! axum's `WebSocketUpgrade`, because closing well needs the raw connection: when the server
//! closes a socket (oversized or malformed frame, policy violation, drain, idle), the client may
//! still be sending — a megabyte frame is mostly still in flight when its header already tells
//! us it is too large. Closing a TCP socket with unread data makes the kernel send RST, and the
//! client then loses our Close frame and sees 1006 instead of the documented code. So after the
//! Close frame the task shuts its write side and reads and discards what the client still sends,
//! for a bounded time ([`LINGER`], [`LINGER_BYTES`]), before it lets go of the connection.
//!
//! The socket task owns the WebSocket and the session. It waits on three things: frames queued
//! for the client (written in one batch, one flush), the next client frame (not read while a
//! join, a full channel inbox or a drain is pending — Phoenix's socket process is blocked the
//! same way), and the idle deadline (reset by any frame, checked lazily so it costs no timer
//! churn).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use phx_protocol::FrameRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;

use super::{negotiate, origin, parse_subprotocols};
use crate::conn::{CloseCode, ConnHandle, OutFrame, Outgoing};
use crate::endpoint::{Endpoint, SocketMount};
use crate::mailbox::{Bounds, Drain};
use crate::params::decode_query;
use crate::session::{Session, Wait};
use crate::socket::{ConnectError, ConnectInfo};

/// The WebSocket over hyper's upgraded connection.
type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// After a server-side Close frame: how long to keep reading (and discarding) what the client
/// still sends, so the connection ends with FIN rather than RST (see the module docs).
pub const LINGER: Duration = Duration::from_secs(2);

/// After a server-side Close frame: the most bytes read and discarded; past it the connection
/// is left unread until [`LINGER`] ends.
pub const LINGER_BYTES: usize = 64 << 20;

/// How long the Close frame itself may take to write (a client that does not read).
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

fn status(code: StatusCode) -> Response {
    code.into_response()
}

/// Collects the connect info every transport provides.
pub(crate) fn connect_info(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    auth_token: Option<String>,
    transport: &'static str,
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
        transport,
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive), as `Connection: keep-alive, Upgrade`.
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The `Sec-WebSocket-Accept` value for a valid RFC 6455 upgrade request, or `None`.
fn upgrade_accept_key(headers: &HeaderMap) -> Option<String> {
    let upgrade_ok = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !upgrade_ok || !version_ok || !header_has_token(headers, header::CONNECTION, "upgrade") {
        return None;
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    Some(derive_accept_key(key.as_bytes()))
}

/// The HTTP handler for `<mount>/websocket`.
pub async fn handle(
    endpoint: Endpoint,
    mount: Arc<SocketMount>,
    peer: Option<SocketAddr>,
    mut req: Request,
) -> Response {
    if req.method() != Method::GET {
        return status(StatusCode::BAD_REQUEST);
    }
    if endpoint.is_draining() {
        return status(StatusCode::SERVICE_UNAVAILABLE);
    }
    let headers = req.headers();
    let params = match decode_query(req.uri().query().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => {
            crate::warn_limited!("refusing WebSocket connection: {e}");
            endpoint.metrics().refused.inc();
            return status(StatusCode::BAD_REQUEST);
        }
    };
    let serializer = match negotiate(&params) {
        Ok(s) => s,
        Err(e) => {
            crate::warn_limited!("refusing WebSocket connection: {e}");
            endpoint.metrics().refused.inc();
            return status(StatusCode::FORBIDDEN);
        }
    };
    let cfg = endpoint.config();
    let origin_header = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin::allowed(&cfg.check_origin, &cfg.url_host, origin_header) {
        crate::warn_limited!(origin = origin_header, "origin check failed");
        endpoint.metrics().refused.inc();
        return status(StatusCode::FORBIDDEN);
    }
    let proto_header = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    let subprotocols = match parse_subprotocols(proto_header) {
        Ok(s) => s,
        Err(e) => {
            crate::warn_limited!("refusing WebSocket connection: {e}");
            endpoint.metrics().refused.inc();
            return status(StatusCode::BAD_REQUEST);
        }
    };
    let offers_phoenix = subprotocols.offered.iter().any(|p| p == "phoenix");
    if !subprotocols.offered.is_empty() && !offers_phoenix {
        endpoint.metrics().refused.inc();
        return status(StatusCode::FORBIDDEN);
    }
    let info = connect_info(headers, peer, subprotocols.auth_token, "websocket");
    let assigns = match mount
        .handler
        .connect(endpoint.context(), &params, &info)
        .await
    {
        Ok(a) => a,
        Err(e) => {
            endpoint.metrics().refused.inc();
            crate::info_limited!("connect refused: {e}");
            return match e {
                ConnectError::Refused => status(StatusCode::FORBIDDEN),
                ConnectError::WithStatus { status: s, .. } => {
                    status(StatusCode::from_u16(s).unwrap_or(StatusCode::FORBIDDEN))
                }
            };
        }
    };
    let socket_id = mount.handler.id(&assigns);
    let accept = upgrade_accept_key(req.headers());
    let on_upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    let (Some(accept), Some(on_upgrade)) = (accept, on_upgrade) else {
        return (StatusCode::BAD_REQUEST, "not a valid WebSocket upgrade").into_response();
    };
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return (StatusCode::BAD_REQUEST, "not a valid WebSocket upgrade").into_response();
    };
    tracing::debug!(?socket_id, "CONNECTED");
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(cfg.ws_read_buffer)
        .write_buffer_size(cfg.ws_write_buffer)
        // Writes are awaited (flushed) batch by batch, so the buffer never holds more than a
        // batch; bound it anyway so nothing can make it grow without limit.
        .max_write_buffer_size(cfg.ws_write_buffer.max(cfg.max_frame_size) * 2 + 1)
        .max_message_size(Some(cfg.max_frame_size))
        .max_frame_size(Some(cfg.max_frame_size));
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("WebSocket upgrade failed: {e}");
                return;
            }
        };
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config))
                .await;
        let cfg = endpoint.config();
        let conn = Arc::new(ConnHandle::new(
            serializer,
            Bounds::new(cfg.outbox_capacity, cfg.outbox_max_bytes),
            endpoint.metrics().clone(),
        ));
        let id = endpoint.next_id();
        endpoint.register(id, conn.clone());
        let session = Session::new(endpoint.clone(), mount, conn.clone(), assigns, socket_id);
        run(ws, session, &endpoint, &conn).await;
        endpoint.unregister(id);
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if offers_phoenix {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("phoenix"),
        );
    }
    resp
}

/// What woke the socket task.
enum Event {
    Outgoing,
    Resumed(crate::session::Resume),
    Incoming(Option<Result<WsMessage, WsError>>),
    Idle,
}

/// How a batch write ended.
enum Flow {
    Continue,
    Close(CloseCode),
    Dead,
}

/// How the connection ends.
enum End {
    /// The client closed (its Close was answered) or the connection is gone.
    Quiet,
    /// We close with this code.
    Close(CloseCode),
}

async fn run(mut ws: Ws, mut session: Session, endpoint: &Endpoint, conn: &Arc<ConnHandle>) {
    let cfg = endpoint.config();
    let idle = cfg.idle_timeout;
    let write_timeout = cfg.write_timeout;
    let mut last_in = Instant::now();
    let idle_sleep = tokio::time::sleep(idle);
    tokio::pin!(idle_sleep);
    let mut pending: Option<Wait> = None;
    // A drain was asked for; it starts once nothing else is pending.
    let mut drain_wanted = false;
    // The drain started: no more client frames are read.
    let mut draining = false;

    let end = loop {
        if drain_wanted && pending.is_none() && !draining {
            draining = true;
            pending = Some(session.drain(Instant::now() + cfg.drain_max));
        }
        let event = tokio::select! {
            biased;
            _ = conn.outbox().ready() => Event::Outgoing,
            r = async { match pending.as_mut() { Some(w) => w.await, None => std::future::pending().await } }, if pending.is_some() => Event::Resumed(r),
            m = ws.next(), if pending.is_none() && !draining => Event::Incoming(m),
            _ = &mut idle_sleep, if !draining => Event::Idle,
        };
        match event {
            Event::Outgoing => {
                let batch = conn.outbox().take_all();
                // Boxed: the write path's state (feed/flush futures, the write timer) is large
                // and only alive while writing; inline it would sit in every idle socket's task.
                let flow = Box::pin(write_with_deadline(
                    &mut ws,
                    &mut session,
                    batch,
                    conn,
                    write_timeout,
                    &mut drain_wanted,
                ))
                .await;
                match flow {
                    Flow::Continue => {}
                    Flow::Close(code) => break End::Close(code),
                    Flow::Dead => break End::Quiet,
                }
            }
            Event::Resumed(r) => {
                pending = session.resume(r);
            }
            Event::Incoming(None) => break End::Quiet,
            Event::Incoming(Some(Err(e))) => break read_error(&e, endpoint),
            Event::Incoming(Some(Ok(msg))) => {
                last_in = Instant::now();
                let handled = match &msg {
                    WsMessage::Text(t) => session.handle_frame(FrameRef::Text(t.as_str())),
                    WsMessage::Binary(b) => session.handle_frame(FrameRef::Binary(b)),
                    WsMessage::Close(_) => {
                        // tungstenite queued the close reply; flush it and stop.
                        let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, ws.flush()).await;
                        break End::Quiet;
                    }
                    // Pings are answered by tungstenite; both only reset the idle clock.
                    WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => continue,
                };
                match handled {
                    Ok(wait) => pending = wait,
                    Err(e) => {
                        crate::warn_limited!("closing socket: {e}");
                        endpoint.metrics().bad_frames.inc();
                        break End::Close(e.close_code());
                    }
                }
            }
            Event::Idle => {
                let deadline = last_in + idle;
                if Instant::now() >= deadline {
                    break End::Close(CloseCode::IDLE_TIMEOUT);
                }
                idle_sleep.as_mut().reset(deadline);
            }
        }
    };
    conn.outbox().close();
    drop(session);
    if let End::Close(code) = end {
        close_and_linger(ws, code).await;
    }
}

/// The close code for a read error, matched by type (none: the connection is just gone).
fn read_error(e: &WsError, endpoint: &Endpoint) -> End {
    let code = match e {
        WsError::Capacity(_) => CloseCode::TOO_BIG,
        WsError::Utf8(_) => CloseCode::INVALID_UTF8,
        WsError::Protocol(_) | WsError::AttackAttempt => CloseCode::PROTOCOL,
        _ => {
            tracing::debug!("socket read error: {e}");
            return End::Quiet;
        }
    };
    crate::warn_limited!(code = code.0, "closing socket: {e}");
    endpoint.metrics().bad_frames.inc();
    // After a capacity error the rest of the offending frame is still unread and the codec
    // cannot parse what follows; `close_and_linger` reads the raw connection.
    End::Close(code)
}

/// Sends a Close frame with `code`, then lets the connection end with FIN, not RST: shuts the
/// write side and reads and discards what the client still sends, for at most [`LINGER`] and
/// [`LINGER_BYTES`] (see the module docs).
async fn close_and_linger(mut ws: Ws, code: CloseCode) {
    let frame = CloseFrame {
        code: WsCloseCode::from(code.0),
        reason: code.1.into(),
    };
    if tokio::time::timeout(CLOSE_WRITE_TIMEOUT, ws.send(WsMessage::Close(Some(frame))))
        .await
        .is_err()
    {
        // The client does not read: nothing more can reach it.
        return;
    }
    // From here on the codec is not used: the raw connection is read and written directly,
    // which works whether or not the codec is still in step with the client's frames.
    let io = ws.get_mut();
    let deadline = Instant::now() + LINGER;
    let _ = tokio::time::timeout_at(deadline, io.shutdown()).await;
    let mut scratch = vec![0u8; 16 * 1024];
    let mut discarded = 0usize;
    while discarded < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, io.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            // EOF (the client closed too), an error, or the deadline: done.
            _ => return,
        }
    }
    // A client still sending after LINGER_BYTES: stop reading (its sends stall on the TCP
    // window, costing us nothing) but keep the connection until the deadline, so it has had
    // its time to read our Close frame before the kernel resets the connection.
    drop(scratch);
    tokio::time::sleep_until(deadline).await;
}

/// Messages longer than this go out as one frame of this size plus continuation frames.
///
/// tungstenite formats every frame whole into the connection's write buffer, and that buffer
/// keeps its largest size for the life of the connection. Unfragmented, every socket of a big
/// Presence topic would keep a buffer the size of the largest `presence_state` it was ever sent
/// (N sockets × N entries: gigabytes for a wave of a few thousand). In fragments, the buffer
/// never holds more than the batch threshold plus one fragment. Every RFC 6455 client (browsers,
/// `ws`, the phoenix client on either) hands the application the reassembled message, so what
/// the client sees is byte for byte the same message.
pub const FRAGMENT_BYTES: usize = 16 * 1024;

/// Feeds one outbound message: whole when it is small, else flushed fragment by fragment.
async fn feed_message(ws: &mut Ws, frame: OutFrame) -> Result<(), WsError> {
    let (data, opcode, len) = match frame {
        OutFrame::Text(t) if t.len() <= FRAGMENT_BYTES => return ws.feed(WsMessage::Text(t)).await,
        OutFrame::Binary(b) if b.len() <= FRAGMENT_BYTES => {
            return ws.feed(WsMessage::Binary(b)).await
        }
        OutFrame::Text(t) => {
            let b = Bytes::from(t);
            let len = b.len();
            (b, Data::Text, len)
        }
        OutFrame::Binary(b) => {
            let len = b.len();
            (b, Data::Binary, len)
        }
    };
    let mut start = 0;
    while start < len {
        let end = (start + FRAGMENT_BYTES).min(len);
        let op = if start == 0 { opcode } else { Data::Continue };
        let piece = WsFrame::message(data.slice(start..end), OpCode::Data(op), end == len);
        // `send` flushes: the write buffer holds one fragment at a time.
        ws.send(WsMessage::Frame(piece)).await?;
        start = end;
    }
    Ok(())
}

/// Writes a batch unless the socket is killed (overflow) or the client stops reading for
/// `timeout`.
async fn write_with_deadline(
    ws: &mut Ws,
    session: &mut Session,
    batch: Drain<Outgoing>,
    conn: &ConnHandle,
    timeout: Duration,
    drain_wanted: &mut bool,
) -> Flow {
    tokio::select! {
        biased;
        f = write_batch(ws, session, batch, drain_wanted) => f,
        _ = conn.killed() => Flow::Dead,
        _ = tokio::time::sleep(timeout) => Flow::Dead,
    }
}

async fn write_batch(
    ws: &mut Ws,
    session: &mut Session,
    batch: Drain<Outgoing>,
    drain_wanted: &mut bool,
) -> Flow {
    let mut wrote = false;
    let mut close = None;
    for item in batch {
        match item {
            Outgoing::Frame(f) => {
                if feed_message(ws, f).await.is_err() {
                    return Flow::Dead;
                }
                wrote = true;
            }
            Outgoing::ChannelExited { topic, channel_id } => {
                session.channel_exited(&topic, channel_id)
            }
            Outgoing::Drain => *drain_wanted = true,
            Outgoing::Close(code) => {
                close = Some(code);
                break;
            }
        }
    }
    if wrote && ws.flush().await.is_err() {
        return Flow::Dead;
    }
    match close {
        Some(code) => Flow::Close(code),
        None => Flow::Continue,
    }
}
