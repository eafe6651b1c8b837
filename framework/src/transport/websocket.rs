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
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use phx_protocol::FrameRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::driver::{drive, ClientFrame, Inbound, Phase, Transport};
use super::handshake::{connect_info, Kind, Refusal};
use super::{negotiate, origin, parse_subprotocols};
use crate::config::Config;
use crate::conn::{CloseCode, ConnHandle, OutFrame};
use crate::endpoint::{Endpoint, SocketMount};
use crate::mailbox::Bounds;
use crate::metrics::{CloseLabels, Metrics, TransportLabels};
use crate::params::decode_query;
use crate::session::{FrameError, Out, Outbound, Session};
use prometheus_client::metrics::counter::Counter;

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
    req: Request,
) -> Response {
    let metrics = endpoint.metrics().clone();
    match open(endpoint, mount, peer, req).await {
        Ok(upgrade) => upgrade,
        Err(refusal) => refusal.into_response(Kind::WebSocket, &metrics),
    }
}

/// The handshake checks in order, then the upgrade: the `101` response, with the socket task
/// spawned to run once the connection is handed over.
async fn open(
    endpoint: Endpoint,
    mount: Arc<SocketMount>,
    peer: Option<SocketAddr>,
    mut req: Request,
) -> Result<Response, Refusal> {
    if req.method() != Method::GET {
        return Err(Refusal::Method);
    }
    if endpoint.is_draining() {
        return Err(Refusal::Draining);
    }
    let headers = req.headers();
    let params = decode_query(req.uri().query().unwrap_or(""))?;
    let serializer = negotiate(&params)?;
    let cfg = endpoint.config();
    let origin_header = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host_header = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let check = mount.check_origin.as_ref().unwrap_or(&cfg.check_origin);
    if !origin::allowed(check, &cfg.url_host, host_header, origin_header) {
        return Err(Refusal::Origin(origin_header.map(str::to_string)));
    }
    let proto_header = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    let subprotocols = parse_subprotocols(proto_header)?;
    let offers_phoenix = subprotocols.offered.iter().any(|p| p == "phoenix");
    if !subprotocols.offered.is_empty() && !offers_phoenix {
        return Err(Refusal::NoPhoenixSubprotocol);
    }
    let info = connect_info(headers, peer, subprotocols.auth_token, Kind::WebSocket);
    let started = std::time::Instant::now();
    let assigns = mount
        .handler
        .connect(endpoint.context(), &params, &info)
        .await?;
    let socket_id = mount.handler.id(&assigns);
    let accept = upgrade_accept_key(req.headers());
    let on_upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    let (Some(accept), Some(on_upgrade)) = (accept, on_upgrade) else {
        return Err(Refusal::NotUpgrade);
    };
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return Err(Refusal::NotUpgrade);
    };
    crate::logger::connected(
        mount.handler.name(),
        started.elapsed(),
        "websocket",
        serializer,
        &params,
    );
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
        let _registered = endpoint.register(id, conn.clone(), "websocket");
        let transport = WsTransport::new(ws, cfg, endpoint.metrics().clone());
        let session = Session::new(endpoint.clone(), mount, conn, assigns, socket_id);
        drive(transport, session, cfg.drain_max).await;
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
    Ok(resp)
}

/// How a WebSocket connection ends.
pub(crate) enum End {
    /// The connection is gone.
    Quiet,
    /// The client sent a Close; tungstenite queued the answer, which is flushed at the end.
    ClientClosed,
    /// We close with this code.
    Close(CloseCode),
}

/// A frame from the client, as tungstenite decoded it (text already checked as UTF-8).
pub(crate) enum WsIn {
    /// A text frame.
    Text(Utf8Bytes),
    /// A binary frame.
    Binary(Bytes),
}

impl ClientFrame for WsIn {
    fn as_frame(&self) -> Result<FrameRef<'_>, FrameError> {
        Ok(match self {
            WsIn::Text(t) => FrameRef::Text(t.as_str()),
            WsIn::Binary(b) => FrameRef::Binary(b),
        })
    }
}

/// One WebSocket as a [`Transport`]: tungstenite's stream, the idle deadline (reset by any
/// frame, checked lazily so it costs no timer churn) and the write timeout.
pub(crate) struct WsTransport {
    ws: Ws,
    idle: Duration,
    last_in: Instant,
    idle_sleep: Pin<Box<Sleep>>,
    write_timeout: Duration,
    metrics: Arc<Metrics>,
    /// `phx_messages_out_total{transport="websocket"}`, looked up once per socket rather than
    /// once per batch (the family's lookup takes a lock every writer shares).
    frames_out: Counter,
}

impl WsTransport {
    fn new(ws: Ws, cfg: &Config, metrics: Arc<Metrics>) -> WsTransport {
        let frames_out = metrics
            .messages_out
            .get_or_create(&TransportLabels {
                transport: "websocket",
            })
            .clone();
        WsTransport {
            ws,
            idle: cfg.idle_timeout,
            last_in: Instant::now(),
            idle_sleep: Box::pin(tokio::time::sleep(cfg.idle_timeout)),
            write_timeout: cfg.write_timeout,
            frames_out,
            metrics,
        }
    }

    /// The close code for a read error, matched by type (none: the connection is just gone).
    fn read_error(&self, e: &WsError) -> End {
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
        self.metrics.bad_frames.inc();
        // After a capacity error the rest of the offending frame is still unread and the
        // codec cannot parse what follows; `close_and_linger` reads the raw connection.
        End::Close(code)
    }

    /// Writes a batch: frames fed, one flush, then the close if one was queued. Sampled
    /// broadcasts in the batch are timed once the flush returned, i.e. once their bytes are in
    /// the kernel's socket buffer — what a client that reads promptly sees next.
    async fn write_batch(&mut self, out: Outbound<'_>) -> Option<End> {
        let mut wrote = 0u64;
        let mut close = None;
        // Sampled broadcasts are rare (see `pubsub::local`): no allocation in most batches.
        let mut published: Vec<std::time::Instant> = Vec::new();
        for item in out {
            match item {
                Out::Frame(f) => {
                    if feed_message(&mut self.ws, f).await.is_err() {
                        return Some(End::Quiet);
                    }
                    wrote += 1;
                }
                Out::Published(at) => published.push(at),
                Out::Close(code) => {
                    close = Some(code);
                    break;
                }
            }
        }
        if wrote > 0 {
            self.frames_out.inc_by(wrote);
            if self.ws.flush().await.is_err() {
                return Some(End::Quiet);
            }
        }
        for at in published {
            self.metrics
                .broadcast_to_write
                .observe(at.elapsed().as_secs_f64());
        }
        close.map(End::Close)
    }
}

impl Transport for WsTransport {
    type Frame = WsIn;
    type End = End;
    const NAME: &'static str = "websocket";

    async fn recv(&mut self, phase: Phase) -> Inbound<WsIn, End> {
        if phase == Phase::Draining {
            return std::future::pending().await;
        }
        tokio::select! {
            m = self.ws.next(), if phase == Phase::Open => match m {
                None => Inbound::End(End::Quiet),
                Some(Err(e)) => Inbound::End(self.read_error(&e)),
                Some(Ok(msg)) => {
                    self.last_in = Instant::now();
                    match msg {
                        WsMessage::Text(t) => Inbound::Frame(WsIn::Text(t)),
                        WsMessage::Binary(b) => Inbound::Frame(WsIn::Binary(b)),
                        // tungstenite queued the close reply; `finish` flushes it.
                        WsMessage::Close(_) => Inbound::End(End::ClientClosed),
                        // Pings are answered by tungstenite; both only reset the idle clock.
                        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => {
                            Inbound::Handled
                        }
                    }
                }
            },
            _ = self.idle_sleep.as_mut() => {
                let deadline = self.last_in + self.idle;
                if Instant::now() >= deadline {
                    return Inbound::End(End::Close(CloseCode::IDLE_TIMEOUT));
                }
                self.idle_sleep.as_mut().reset(deadline);
                Inbound::Handled
            }
        }
    }

    /// Writes unless the socket is killed (overflow) or the client stops reading for the
    /// write timeout.
    async fn send(&mut self, out: Outbound<'_>, conn: &ConnHandle) -> Option<End> {
        let timeout = self.write_timeout;
        tokio::select! {
            biased;
            end = self.write_batch(out) => end,
            _ = conn.killed() => Some(End::Quiet),
            _ = tokio::time::sleep(timeout) => Some(End::Quiet),
        }
    }

    fn refuse(&mut self, error: FrameError) -> End {
        crate::warn_limited!("closing socket: {error}");
        self.metrics.bad_frames.inc();
        End::Close(error.close_code())
    }

    async fn finish(mut self, end: &End) {
        match end {
            End::Close(code) => {
                self.metrics
                    .closes
                    .get_or_create(&CloseLabels::of(code.0))
                    .inc();
                close_and_linger(self.ws, *code).await
            }
            End::ClientClosed => {
                let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, self.ws.flush()).await;
            }
            End::Quiet => {}
        }
    }
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
    // Our frame → tungstenite's, here at the edge: the bytes are shared, not copied, and a
    // text frame (checked as UTF-8 when it was encoded) goes out as a text data frame without
    // being checked again.
    let (data, opcode) = match frame {
        OutFrame::Text(t) => (t.into_bytes(), Data::Text),
        OutFrame::Binary(b) => (b, Data::Binary),
    };
    let len = data.len();
    if len <= FRAGMENT_BYTES {
        return ws
            .feed(WsMessage::Frame(WsFrame::message(
                data,
                OpCode::Data(opcode),
                true,
            )))
            .await;
    }
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
