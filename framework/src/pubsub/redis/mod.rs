//! The Redis adapter: phoenix_pubsub_redis's wire format, so phx-server nodes and Elixir
//! Phoenix nodes on one Redis share one PubSub (shared/protocol/PUBSUB_REDIS.md).
//!
//! One Redis channel per PubSub (`phx:Elixir.<PUBSUB_NAME>.Adapter`); every node subscribes to
//! it and each broadcast is one `PUBLISH` of an ETF envelope `{3, :except | :only, node, topic,
//! message, dispatcher}` ([`envelope`]). Three tasks, so that nothing a channel does waits on
//! Redis and nothing Redis does waits on the local fan-out:
//! - the publisher takes encoded envelopes from a bounded queue and `PUBLISH`es them on its
//!   own connection, pipelined; while Redis is unreachable they are dropped and counted
//!   (delivered locally, lost for every other node — what phoenix_pubsub_redis does);
//! - the subscriber owns a dedicated subscription connection: it reconnects with jittered
//!   backoff, resubscribes, and pings to find a half-open connection; it only hands the raw
//!   bytes on, through a bounded queue (a full queue drops, counted);
//! - the fan-out task decodes each envelope and, when it is a broadcast for this node, hands
//!   it to the local fan-out, which encodes it once per serializer for every subscriber.

pub mod envelope;
mod publisher;
mod subscriber;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::{mpsc, Notify};

use self::envelope::{Codec, Inbound};
use super::adapter::{Adapter, AdapterStatus, SideChannel};
use super::local::LocalPubSub;
use super::BroadcastMsg;
use crate::config::RedisConfig;
use crate::metrics::Metrics;

/// Envelopes waiting to be published; past it a broadcast is lost for the other nodes.
pub const PUBLISH_QUEUE: usize = 16_384;

/// Received envelopes waiting for the local fan-out; past it they are dropped.
pub const RECEIVE_QUEUE: usize = 16_384;

/// Messages of one side channel waiting for their receiver; past it they are dropped.
pub const SIDE_QUEUE: usize = 4096;

/// How long a shutdown waits for what is queued to be published.
const FLUSH_AT_SHUTDOWN: Duration = Duration::from_secs(2);

/// One message for the publisher: a broadcast envelope on the PubSub's channel, or a side
/// channel's message.
pub(crate) struct Outgoing {
    channel: Arc<str>,
    bytes: Vec<u8>,
    /// A broadcast (counted in `phx_cluster_published_total` / `_lost_total`), or side traffic.
    broadcast: bool,
}

/// The side channels this node listens to, by Redis channel name, and who gets their messages.
#[derive(Default)]
pub(crate) struct Sides {
    receivers: RwLock<HashMap<Arc<str>, mpsc::Sender<Vec<u8>>>>,
    /// Wakes the subscriber to SUBSCRIBE a side channel added while it is connected.
    added: Notify,
}

impl Sides {
    fn names(&self) -> Vec<Arc<str>> {
        self.receivers.read().keys().cloned().collect()
    }
}

/// Why the Redis adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// `REDIS_URL` is not a Redis URL.
    #[error("invalid REDIS_URL: {0}")]
    Url(#[source] ::redis::RedisError),
    /// There is no tokio runtime to run the adapter's tasks on.
    #[error("the Redis adapter needs a tokio runtime")]
    NoRuntime,
}

/// The connection state both tasks report into.
#[derive(Debug, Default)]
pub(crate) struct Links {
    subscribed: AtomicBool,
    publishing: AtomicBool,
    /// Set at shutdown; wakes both tasks.
    stopped: AtomicBool,
    stop: Notify,
    /// Set by the publisher once it sent (or gave up on) what was queued at shutdown.
    flushed: AtomicBool,
    flush_done: Notify,
}

impl Links {
    fn connected(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed) && self.publishing.load(Ordering::Relaxed)
    }
    /// Sets `phx_cluster_connected` from both links.
    fn report(&self, metrics: &Metrics) {
        metrics.cluster_connected.set(i64::from(self.connected()));
    }
    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
    async fn stopped(&self) {
        let notified = self.stop.notified();
        if self.is_stopped() {
            return;
        }
        notified.await
    }
}

/// The adapter. Built by [`RedisAdapter::start`], which spawns its tasks.
pub struct RedisAdapter {
    codec: Arc<Codec>,
    main: Arc<str>,
    pubsub_name: String,
    publish: mpsc::Sender<Outgoing>,
    sides: Arc<Sides>,
    links: Arc<Links>,
    metrics: Arc<Metrics>,
}

impl RedisAdapter {
    /// Starts the adapter's tasks on the current tokio runtime; they connect in the background
    /// (a Redis that is down at start is retried, as Redix does).
    pub fn start(
        config: &RedisConfig,
        local: Arc<LocalPubSub>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<RedisAdapter>, RedisError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| RedisError::NoRuntime)?;
        let client = ::redis::Client::open(config.url.as_str()).map_err(RedisError::Url)?;
        let codec = Arc::new(Codec::new(config));
        let main: Arc<str> = codec.channel().into();
        let links = Arc::new(Links::default());
        let sides = Arc::new(Sides::default());
        let (publish, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (received, received_rx) = mpsc::channel(RECEIVE_QUEUE);
        tracing::info!(
            node = %config.node_name,
            channel = %codec.channel(),
            "PubSub: Redis adapter starting"
        );
        runtime.spawn(publisher::run(
            client.clone(),
            publish_rx,
            links.clone(),
            metrics.clone(),
        ));
        runtime.spawn(subscriber::run(
            client,
            subscriber::Routes {
                main: main.clone(),
                received,
                sides: sides.clone(),
                own: config.node_name.as_bytes().to_vec(),
            },
            links.clone(),
            metrics.clone(),
        ));
        runtime.spawn(fan_out(received_rx, codec.clone(), local, metrics.clone()));
        Ok(Arc::new(RedisAdapter {
            codec,
            main,
            pubsub_name: config.pubsub_name.clone(),
            publish,
            sides,
            links,
            metrics,
        }))
    }

    fn enqueue(&self, bytes: Vec<u8>) {
        let item = Outgoing {
            channel: self.main.clone(),
            bytes,
            broadcast: true,
        };
        if self.publish.try_send(item).is_err() {
            self.metrics.cluster_lost.inc();
            crate::warn_limited!(
                "cluster publish queue full: a broadcast did not reach the other nodes"
            );
        }
    }
}

impl Adapter for RedisAdapter {
    fn node_name(&self) -> &str {
        self.codec.node_name()
    }

    fn broadcast(&self, msg: &Arc<BroadcastMsg>) {
        match self.codec.encode_except(msg) {
            Some(bytes) => self.enqueue(bytes),
            None => {
                self.metrics.cluster_lost.inc();
            }
        }
    }

    fn direct_broadcast(&self, node: &str, msg: &Arc<BroadcastMsg>) {
        match self.codec.encode_only(node, msg) {
            Some(bytes) => self.enqueue(bytes),
            None => {
                self.metrics.cluster_lost.inc();
            }
        }
    }

    fn status(&self) -> AdapterStatus {
        if self.links.connected() {
            AdapterStatus::Connected
        } else {
            AdapterStatus::Disconnected
        }
    }

    /// Side channels are Redis channels of their own, `phx-server:<PUBSUB_NAME>:<name>`, which
    /// Elixir nodes never subscribe to. Each message is framed with the sender's name (one
    /// length byte, the name, the payload) so that a node drops its own.
    fn side_channel(&self, name: &str) -> Option<SideChannel> {
        let channel: Arc<str> = format!("phx-server:{}:{name}", self.pubsub_name).into();
        let (tx, rx) = mpsc::channel(SIDE_QUEUE);
        self.sides.receivers.write().insert(channel.clone(), tx);
        self.sides.added.notify_one();
        let own = self.codec.node_name().as_bytes().to_vec();
        let publish = self.publish.clone();
        Some(SideChannel {
            send: Arc::new(move |payload: Vec<u8>| {
                let Ok(len) = u8::try_from(own.len()) else {
                    return;
                };
                let mut bytes = Vec::with_capacity(1 + own.len() + payload.len());
                bytes.push(len);
                bytes.extend_from_slice(&own);
                bytes.extend_from_slice(&payload);
                // Lossy by contract: a full queue drops the message.
                let _ = publish.try_send(Outgoing {
                    channel: channel.clone(),
                    bytes,
                    broadcast: false,
                });
            }),
            receive: rx,
        })
    }

    fn shutdown(&self) -> futures_util::future::BoxFuture<'static, ()> {
        self.links.stopped.store(true, Ordering::Relaxed);
        self.links.stop.notify_waiters();
        let links = self.links.clone();
        Box::pin(async move {
            let flushed = async {
                while !links.flushed.load(Ordering::Relaxed) {
                    let notified = links.flush_done.notified();
                    if links.flushed.load(Ordering::Relaxed) {
                        break;
                    }
                    notified.await;
                }
            };
            let _ = tokio::time::timeout(FLUSH_AT_SHUTDOWN, flushed).await;
        })
    }
}

/// Decodes what the subscriber received and delivers the broadcasts meant for this node.
async fn fan_out(
    mut received: mpsc::Receiver<Vec<u8>>,
    codec: Arc<Codec>,
    local: Arc<LocalPubSub>,
    metrics: Arc<Metrics>,
) {
    while let Some(bytes) = received.recv().await {
        match codec.decode(&bytes) {
            Inbound::Deliver(msg) => {
                metrics.cluster_received.inc();
                local.broadcast(Arc::new(msg));
            }
            Inbound::Ignore => {
                metrics.cluster_ignored.inc();
            }
        }
    }
}

/// Reconnect delays: from 500 ms, ×1.5 per failure, at most 30 s (Redix's schedule), each
/// with ±20 % jitter so that a restarted Redis is not met by every node at the same instant.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);

    pub(crate) fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next.mul_f64(1.5)).min(Self::MAX);
        base.mul_f64(rand::random_range(0.8..1.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_and_resets() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(400) && first <= Duration::from_millis(600));
        for _ in 0..30 {
            b.next_delay();
        }
        let capped = b.next_delay();
        assert!(capped <= Duration::from_secs(36) && capped >= Duration::from_secs(24));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(600));
    }
}
