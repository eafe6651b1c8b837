//! `/socket/websocket`: the handshake rules of spec §1.4 in order, then one task per socket
//! that reads frames into the [`Session`] and writes the socket's queued frames in batches.
//!
//! Handshake order (each refusal is final): method GET (else 400) → `vsn` (else 403, connect
//! never runs) → check_origin (403) → authToken subprotocol (bad base64 → 400) → subprotocol
//! match (403) → `connect` (403 or the handler's status) → upgrade headers valid (else 400).
//!
//! The socket task owns the WebSocket and the session. It waits on three things: frames queued
//! for the client (written in one batch, one flush), the next client frame (not read while a
//! join or a full channel inbox is pending — Phoenix's socket process is blocked the same way),
//! and the idle deadline (reset by any frame, checked lazily so it costs no timer churn).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use phx_protocol::FrameRef;
use tokio::time::Instant;

use super::{negotiate, origin, parse_subprotocols};
use crate::conn::{CloseCode, ConnHandle, OutFrame, Outgoing};
use crate::endpoint::{Endpoint, SocketMount};
use crate::mailbox::Drain;
use crate::params::decode_query;
use crate::session::{Session, Wait};
use crate::socket::{ConnectError, ConnectInfo};

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

/// The HTTP handler for `<mount>/websocket`.
pub async fn handle(
    endpoint: Endpoint,
    mount: Arc<SocketMount>,
    method: Method,
    query: Option<String>,
    headers: HeaderMap,
    peer: Option<SocketAddr>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if method != Method::GET {
        return status(StatusCode::BAD_REQUEST);
    }
    if endpoint.is_draining() {
        return status(StatusCode::SERVICE_UNAVAILABLE);
    }
    let params = decode_query(query.as_deref().unwrap_or(""));
    let serializer = match negotiate(&params) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("refusing WebSocket connection: {e}");
            endpoint.metrics().refused.inc();
            return status(StatusCode::FORBIDDEN);
        }
    };
    let cfg = endpoint.config();
    let origin_header = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin::allowed(&cfg.check_origin, &cfg.url_host, origin_header) {
        tracing::warn!(origin = origin_header, "origin check failed");
        endpoint.metrics().refused.inc();
        return status(StatusCode::FORBIDDEN);
    }
    let proto_header = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    let subprotocols = match parse_subprotocols(proto_header) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("refusing WebSocket connection: {e}");
            endpoint.metrics().refused.inc();
            return status(StatusCode::BAD_REQUEST);
        }
    };
    let offers_phoenix = subprotocols.offered.iter().any(|p| p == "phoenix");
    if !subprotocols.offered.is_empty() && !offers_phoenix {
        endpoint.metrics().refused.inc();
        return status(StatusCode::FORBIDDEN);
    }
    let info = connect_info(&headers, peer, subprotocols.auth_token, "websocket");
    let assigns = match mount.handler.connect(&endpoint, &params, &info).await {
        Ok(a) => a,
        Err(e) => {
            endpoint.metrics().refused.inc();
            tracing::info!("connect refused: {e}");
            return match e {
                ConnectError::Refused => status(StatusCode::FORBIDDEN),
                ConnectError::WithStatus { status: s, .. } => {
                    status(StatusCode::from_u16(s).unwrap_or(StatusCode::FORBIDDEN))
                }
            };
        }
    };
    let socket_id = mount.handler.id(&assigns);
    let Ok(mut upgrade) = upgrade else {
        return (StatusCode::BAD_REQUEST, "not a valid WebSocket upgrade").into_response();
    };
    if offers_phoenix {
        upgrade = upgrade.protocols(["phoenix"]);
    }
    tracing::debug!(?socket_id, "CONNECTED");
    upgrade
        .read_buffer_size(cfg.ws_read_buffer)
        .write_buffer_size(cfg.ws_write_buffer)
        .max_message_size(cfg.max_frame_size)
        .max_frame_size(cfg.max_frame_size)
        .on_upgrade(move |ws| async move {
            let conn = Arc::new(ConnHandle::new(
                serializer,
                endpoint.config().outbox_capacity,
                endpoint.metrics().clone(),
            ));
            let id = endpoint.next_id();
            endpoint.register(id, conn.clone());
            let session = Session::new(endpoint.clone(), mount, conn.clone(), assigns, socket_id);
            run(ws, session, &endpoint, &conn).await;
            endpoint.unregister(id);
        })
}

/// What woke the socket task.
enum Event {
    Outgoing,
    Resumed(crate::session::Resume),
    Incoming(Option<Result<WsMessage, axum::Error>>),
    Idle,
}

/// How a batch write ended.
enum Flow {
    Continue,
    Close(CloseCode),
    Dead,
}

async fn run(mut ws: WebSocket, mut session: Session, endpoint: &Endpoint, conn: &Arc<ConnHandle>) {
    let idle = endpoint.config().idle_timeout;
    let write_timeout = endpoint.config().write_timeout;
    let mut last_in = Instant::now();
    let idle_sleep = tokio::time::sleep(idle);
    tokio::pin!(idle_sleep);
    let mut pending: Option<Wait> = None;

    let close = loop {
        let event = tokio::select! {
            biased;
            _ = conn.outbox().ready() => Event::Outgoing,
            r = async { match pending.as_mut() { Some(w) => w.await, None => std::future::pending().await } }, if pending.is_some() => Event::Resumed(r),
            m = ws.recv(), if pending.is_none() => Event::Incoming(m),
            _ = &mut idle_sleep => Event::Idle,
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
                ))
                .await;
                match flow {
                    Flow::Continue => {}
                    Flow::Close(code) => break Some(code),
                    Flow::Dead => break None,
                }
            }
            Event::Resumed(r) => {
                pending = session.resume(r);
            }
            Event::Incoming(None) => break None,
            Event::Incoming(Some(Err(e))) => {
                break classify_error(&e, endpoint);
            }
            Event::Incoming(Some(Ok(msg))) => {
                last_in = Instant::now();
                let serializer = conn.serializer();
                let decoded = match &msg {
                    WsMessage::Text(t) => serializer.decode(FrameRef::Text(t.as_str())),
                    WsMessage::Binary(b) => serializer.decode(FrameRef::Binary(b)),
                    WsMessage::Close(_) => {
                        // tungstenite queued the close reply; flush it and stop.
                        let _ = ws.flush().await;
                        break None;
                    }
                    // Pings are answered by tungstenite; both only reset the idle clock.
                    WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
                };
                match decoded {
                    Ok(m) => pending = session.dispatch(m),
                    Err(e) => {
                        tracing::warn!("closing socket on malformed frame: {e}");
                        endpoint.metrics().bad_frames.inc();
                        break Some(CloseCode::MALFORMED);
                    }
                }
            }
            Event::Idle => {
                let deadline = last_in + idle;
                if Instant::now() >= deadline {
                    break Some(CloseCode::IDLE_TIMEOUT);
                }
                idle_sleep.as_mut().reset(deadline);
            }
        }
    };
    conn.outbox().close();
    drop(session);
    if let Some(code) = close {
        let frame = CloseFrame {
            code: code.0,
            reason: Utf8Bytes::from_static(code.1),
        };
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            ws.send(WsMessage::Close(Some(frame))),
        )
        .await;
    }
}

fn classify_error(e: &axum::Error, endpoint: &Endpoint) -> Option<CloseCode> {
    let text = e.to_string();
    // axum wraps tungstenite's error; its Display names the cause.
    if text.contains("Space limit exceeded")
        || text.contains("too long")
        || text.contains("Message too long")
    {
        endpoint.metrics().bad_frames.inc();
        Some(CloseCode::TOO_BIG)
    } else if text.contains("UTF-8") || text.contains("utf-8") || text.contains("utf8") {
        endpoint.metrics().bad_frames.inc();
        Some(CloseCode::INVALID_UTF8)
    } else {
        tracing::debug!("socket read error: {e}");
        None
    }
}

/// Writes a batch unless the socket is killed (overflow) or the client stops reading for
/// `timeout`.
async fn write_with_deadline(
    ws: &mut WebSocket,
    session: &mut Session,
    batch: Drain<Outgoing>,
    conn: &ConnHandle,
    timeout: std::time::Duration,
) -> Flow {
    tokio::select! {
        biased;
        f = write_batch(ws, session, batch) => f,
        _ = conn.killed() => Flow::Dead,
        _ = tokio::time::sleep(timeout) => Flow::Dead,
    }
}

async fn write_batch(ws: &mut WebSocket, session: &mut Session, batch: Drain<Outgoing>) -> Flow {
    let mut wrote = false;
    let mut close = None;
    for item in batch {
        match item {
            Outgoing::Frame(f) => {
                let msg = match f {
                    OutFrame::Text(t) => WsMessage::Text(t),
                    OutFrame::Binary(b) => WsMessage::Binary(b),
                };
                if ws.feed(msg).await.is_err() {
                    return Flow::Dead;
                }
                wrote = true;
            }
            Outgoing::ChannelExited { topic, channel_id } => {
                session.channel_exited(&topic, channel_id)
            }
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
