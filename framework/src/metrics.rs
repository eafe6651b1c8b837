//! Process-wide counters, exposed at `/metrics` in Prometheus' text format.
//!
//! Plain relaxed atomics: they are bumped on hot paths (every socket, every overflow) and read
//! rarely, so anything heavier would cost more than it tells.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The endpoint's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sockets currently connected (all transports).
    pub sockets: Gauge,
    /// Channels currently joined.
    pub channels: Gauge,
    /// Sockets accepted since start.
    pub connects: Counter,
    /// Connections refused by `connect` or the handshake checks.
    pub refused: Counter,
    /// Sockets closed because their outbound queue filled up.
    pub overflow_closes: Counter,
    /// Sockets closed for a malformed or oversized frame.
    pub bad_frames: Counter,
    /// Channel callbacks that crashed (error or panic).
    pub channel_crashes: Counter,
    /// Broadcasts published.
    pub broadcasts: Counter,
    /// Frames queued by broadcast fan-out.
    pub deliveries: Counter,
    /// Cluster (Redis adapter): envelopes published to the other nodes.
    pub cluster_published: Counter,
    /// Cluster: broadcasts that did not reach the other nodes (Redis down, publish queue full):
    /// delivered locally, lost for every other node, as with phoenix_pubsub_redis.
    pub cluster_lost: Counter,
    /// Cluster: envelopes received from other nodes and delivered here.
    pub cluster_received: Counter,
    /// Cluster: envelopes received but dropped because the local fan-out fell behind.
    pub cluster_dropped: Counter,
    /// Cluster: messages on the channel that are not broadcasts for this node's sockets
    /// (another node's own, a direct broadcast to another node, tracker traffic, plain terms,
    /// garbage): ignored.
    pub cluster_ignored: Counter,
    /// Cluster: 1 while the adapter is connected, 0 while not (no adapter: 0).
    pub cluster_connected: Gauge,
}

impl Metrics {
    /// Renders the counters in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let rows: [(&str, &str, i128); 15] = [
            ("phx_sockets", "gauge", self.sockets.get() as i128),
            ("phx_channels", "gauge", self.channels.get() as i128),
            ("phx_connects_total", "counter", self.connects.get() as i128),
            ("phx_refused_total", "counter", self.refused.get() as i128),
            (
                "phx_overflow_closes_total",
                "counter",
                self.overflow_closes.get() as i128,
            ),
            (
                "phx_bad_frames_total",
                "counter",
                self.bad_frames.get() as i128,
            ),
            (
                "phx_channel_crashes_total",
                "counter",
                self.channel_crashes.get() as i128,
            ),
            (
                "phx_broadcasts_total",
                "counter",
                self.broadcasts.get() as i128,
            ),
            (
                "phx_deliveries_total",
                "counter",
                self.deliveries.get() as i128,
            ),
            (
                "phx_cluster_published_total",
                "counter",
                self.cluster_published.get() as i128,
            ),
            (
                "phx_cluster_lost_total",
                "counter",
                self.cluster_lost.get() as i128,
            ),
            (
                "phx_cluster_received_total",
                "counter",
                self.cluster_received.get() as i128,
            ),
            (
                "phx_cluster_dropped_total",
                "counter",
                self.cluster_dropped.get() as i128,
            ),
            (
                "phx_cluster_ignored_total",
                "counter",
                self.cluster_ignored.get() as i128,
            ),
            (
                "phx_cluster_connected",
                "gauge",
                self.cluster_connected.get() as i128,
            ),
        ];
        for (name, kind, value) in rows {
            let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {value}");
        }
        out
    }
}
