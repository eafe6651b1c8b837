//! Subscribing: one task owns a dedicated connection to the PubSub's Redis channel.
//!
//! It never waits on the local fan-out: what arrives is handed on through a bounded queue and
//! dropped (counted) when that queue is full. A connection that stops answering — a half-open
//! TCP connection after a network partition says nothing — is found by a PING every
//! [`PING_EVERY`]; a lost connection is re-established with jittered backoff and the channel
//! resubscribed. Messages published while this node was not subscribed are lost, as they are
//! for an Elixir node (Redis keeps no pub/sub history).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{Backoff, Links, Sides};
use crate::metrics::Metrics;

/// How often the subscription connection is pinged.
pub const PING_EVERY: Duration = Duration::from_secs(5);

/// How long a PING (or a connect, or the SUBSCRIBE) may take before the connection is given up.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Where received messages go.
pub(super) struct Routes {
    /// The PubSub's channel (`phx:Elixir.<PUBSUB_NAME>.Adapter`).
    pub main: Arc<str>,
    /// Its envelopes go to the fan-out task.
    pub received: mpsc::Sender<Vec<u8>>,
    /// Side channels, subscribed as they are added.
    pub sides: Arc<Sides>,
    /// This node's name, to drop its own side-channel messages.
    pub own: Vec<u8>,
}

pub(super) async fn run(
    client: redis::Client,
    routes: Routes,
    links: Arc<Links>,
    metrics: Arc<Metrics>,
) {
    let channel = routes.main.clone();
    let mut backoff = Backoff::new();
    while !links.is_stopped() {
        match subscribe(&client, &routes).await {
            Ok(pubsub) => {
                backoff.reset();
                links.subscribed.store(true, Ordering::Relaxed);
                links.report(&metrics);
                tracing::info!(%channel, "PubSub: subscribed to Redis");
                let why = listen(pubsub, &routes, &links, &metrics).await;
                links.subscribed.store(false, Ordering::Relaxed);
                links.report(&metrics);
                if links.is_stopped() {
                    return;
                }
                tracing::warn!(%channel, "PubSub: Redis subscription lost ({why}); reconnecting");
            }
            Err(why) => {
                crate::warn_limited!("PubSub: cannot subscribe to Redis ({why})");
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = links.stopped() => return,
        }
    }
}

async fn subscribe(client: &redis::Client, routes: &Routes) -> Result<redis::aio::PubSub, String> {
    let mut pubsub = tokio::time::timeout(TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let mut channels = vec![routes.main.clone()];
    channels.extend(routes.sides.names());
    for channel in channels {
        tokio::time::timeout(TIMEOUT, pubsub.subscribe(&*channel))
            .await
            .map_err(|_| "SUBSCRIBE timed out".to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok(pubsub)
}

/// Hands one message to where its channel goes (dropping it, counted, when that is behind).
fn route(routes: &Routes, channel: &[u8], bytes: &[u8], metrics: &Metrics) {
    if channel == routes.main.as_bytes() {
        if routes.received.try_send(bytes.to_vec()).is_err() {
            metrics.cluster_dropped.inc();
            crate::warn_limited!("PubSub: local fan-out behind; dropping a message from Redis");
        }
        return;
    }
    let Ok(name) = std::str::from_utf8(channel) else {
        return;
    };
    let Some(tx) = routes.sides.receivers.read().get(name).cloned() else {
        return;
    };
    // [name length][name][payload]; a node's own messages come back and are dropped here.
    let Some((&len, rest)) = bytes.split_first() else {
        return;
    };
    let Some((sender, payload)) = rest.split_at_checked(usize::from(len)) else {
        return;
    };
    if sender == routes.own.as_slice() {
        return;
    }
    // Lossy by contract: a receiver that is behind loses messages.
    let _ = tx.try_send(payload.to_vec());
}

/// Reads the subscription until it ends; returns why.
async fn listen(
    pubsub: redis::aio::PubSub,
    routes: &Routes,
    links: &Links,
    metrics: &Metrics,
) -> String {
    let mut subscribed: Vec<Arc<str>> = routes.sides.names();
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => route(routes, msg.get_channel_name().as_bytes(), msg.get_payload_bytes(), metrics),
                None => return "connection closed".into(),
            },
            _ = routes.sides.added.notified() => {
                for name in routes.sides.names() {
                    if subscribed.contains(&name) {
                        continue;
                    }
                    match tokio::time::timeout(TIMEOUT, sink.subscribe(&*name)).await {
                        Ok(Ok(())) => subscribed.push(name),
                        _ => return format!("SUBSCRIBE {name} failed"),
                    }
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return format!("PING failed: {e}"),
                    Err(_) => return "PING not answered".into(),
                }
            }
            _ = links.stopped() => return "shutdown".into(),
        }
    }
}
