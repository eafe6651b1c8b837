//! One node's numbers at one instant, as the dashboard charts them: gauges read as they are,
//! counters turned into per-second rates and the fan-out histogram into a mean over the last
//! interval. A [`Sampler`] keeps the previous reading, because a rate needs two.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::config::{Config, PubSubConfig};
use crate::metrics::{ChannelLabels, Metrics, TransportLabels};

/// The transports a socket can be on: the `sockets` and message families' label values.
const TRANSPORTS: [&str; 2] = ["websocket", "longpoll"];

/// Joined channels under one route: a `channels` gauge child.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChannelCount {
    /// The socket's mount path, e.g. `/socket`.
    pub socket: String,
    /// The router pattern, e.g. `videos:*`.
    pub pattern: String,
    /// Channels joined under it now.
    pub joined: i64,
}

/// Sockets connected now, by transport.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
pub struct SocketCounts {
    /// WebSocket sockets.
    pub websocket: i64,
    /// LongPoll sockets.
    pub longpoll: i64,
}

/// What one node pushes to the dashboard each tick (the `snapshot` event's payload).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    /// The node's name (`NODE_NAME`, else `local`): the dashboard draws one line per node.
    pub node: String,
    /// When it was taken, milliseconds since the Unix epoch: the charts' x axis.
    pub at_ms: u64,
    /// Sockets connected now, by transport.
    pub sockets: SocketCounts,
    /// Joined channels per route (socket and topic pattern), every known route listed.
    pub channels: Vec<ChannelCount>,
    /// Client frames taken per second over the last interval, every transport.
    pub messages_in_per_sec: f64,
    /// Frames written to clients per second over the last interval.
    pub messages_out_per_sec: f64,
    /// Broadcasts published per second over the last interval.
    pub broadcasts_per_sec: f64,
    /// Mean time from a broadcast to the write of its frame over the last interval, in
    /// milliseconds; `None` when nothing was written in it (a mean of nothing is not zero).
    pub fanout_latency_ms: Option<f64>,
    /// Sockets closed as slow consumers (their outbound queue filled up) since start.
    pub slow_consumer_closes: u64,
    /// Presence entries this node knows of.
    pub presence_entries: i64,
    /// Bytes queued for clients over every outbound queue.
    pub outbox_bytes: i64,
    /// Resident memory of the process; `None` where there is no `/proc`.
    pub rss_bytes: Option<i64>,
}

/// The counters as last read, and when.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    messages_in: u64,
    messages_out: u64,
    broadcasts: u64,
    latency_sum: f64,
    latency_count: u64,
}

/// Reads a histogram's running sum and count. `Histogram` offers them only to tests, so the
/// histogram (a clone sharing the endpoint's) is registered alone on a registry of its own
/// and its `_sum` and `_count` lines are read back from the text encoding.
struct HistogramTotals {
    /// A registry holding only the one histogram.
    registry: Registry,
}

impl HistogramTotals {
    fn new(histogram: &Histogram) -> HistogramTotals {
        let mut registry = Registry::default();
        registry.register("h", "", histogram.clone());
        HistogramTotals { registry }
    }

    /// `(sum, count)` now; zeros if the encoding could not be read (it always can).
    fn read(&self) -> (f64, u64) {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            return (0.0, 0);
        }
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (value("h_sum"), value("h_count") as u64)
    }
}

impl Reading {
    fn of(m: &Metrics, latency: &HistogramTotals, at: Instant) -> Reading {
        let (latency_sum, latency_count) = latency.read();
        let sum_family = |f: &prometheus_client::metrics::family::Family<
            TransportLabels,
            prometheus_client::metrics::counter::Counter,
        >| {
            TRANSPORTS
                .iter()
                .map(|&transport| {
                    f.get(&TransportLabels { transport })
                        .map(|c| c.get())
                        .unwrap_or(0)
                })
                .sum()
        };
        Reading {
            at,
            messages_in: sum_family(&m.messages_in),
            messages_out: sum_family(&m.messages_out),
            broadcasts: m.broadcasts.get(),
            latency_sum,
            latency_count,
        }
    }
}

/// Takes [`Snapshot`]s of one endpoint's [`Metrics`], each rate over the time since the
/// previous one.
pub struct Sampler {
    /// The endpoint's metrics.
    metrics: Arc<Metrics>,
    /// The node name every snapshot carries.
    node: String,
    /// The routes whose channel gauges are read: `Family` cannot list its children, and a
    /// route with nobody joined should still show as 0.
    routes: Vec<ChannelLabels>,
    /// Reads the broadcast-to-write histogram.
    latency: HistogramTotals,
    /// The previous reading (the first one is taken at construction).
    last: Reading,
}

impl Sampler {
    /// A sampler for `metrics`, naming itself `node`, reading the channel gauges of `routes`.
    pub fn new(metrics: Arc<Metrics>, node: String, routes: Vec<ChannelLabels>) -> Sampler {
        let latency = HistogramTotals::new(&metrics.broadcast_to_write);
        let last = Reading::of(&metrics, &latency, Instant::now());
        Sampler {
            metrics,
            node,
            routes,
            latency,
            last,
        }
    }

    /// The snapshot now; rates cover the time since the previous call (or construction).
    pub fn sample(&mut self) -> Snapshot {
        let m = &*self.metrics;
        let now = Reading::of(m, &self.latency, Instant::now());
        let prev = std::mem::replace(&mut self.last, now);
        let secs = now.at.duration_since(prev.at).as_secs_f64();
        let rate = |a: u64, b: u64| {
            if secs > 0.0 {
                a.saturating_sub(b) as f64 / secs
            } else {
                0.0
            }
        };
        let written = now.latency_count.saturating_sub(prev.latency_count);
        let fanout_latency_ms =
            (written > 0).then(|| (now.latency_sum - prev.latency_sum) / written as f64 * 1000.0);
        let gauge_of = |transport| {
            m.sockets
                .get(&TransportLabels { transport })
                .map(|g| g.get())
                .unwrap_or(0)
        };
        Snapshot {
            node: self.node.clone(),
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            sockets: SocketCounts {
                websocket: gauge_of("websocket"),
                longpoll: gauge_of("longpoll"),
            },
            channels: self
                .routes
                .iter()
                .map(|labels| ChannelCount {
                    socket: labels.socket.to_string(),
                    pattern: labels.pattern.to_string(),
                    joined: m.channels.get(labels).map(|g| g.get()).unwrap_or(0),
                })
                .collect(),
            messages_in_per_sec: rate(now.messages_in, prev.messages_in),
            messages_out_per_sec: rate(now.messages_out, prev.messages_out),
            broadcasts_per_sec: rate(now.broadcasts, prev.broadcasts),
            fanout_latency_ms,
            slow_consumer_closes: m.overflow_closes.get(),
            presence_entries: m.presence_entries.get(),
            outbox_bytes: m.outbox_bytes.get(),
            rss_bytes: crate::metrics::resident_bytes(),
        }
    }
}

/// The name this node's snapshots carry: the cluster's `NODE_NAME` (Redis adapter), else a
/// `NODE_NAME` set anyway, else `local`.
pub fn node_name(config: &Config) -> String {
    match &config.pubsub {
        PubSubConfig::Redis(redis) => redis.node_name.clone(),
        PubSubConfig::Local => config.node_name.clone().unwrap_or_else(|| "local".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pattern: &str) -> ChannelLabels {
        ChannelLabels {
            socket: "/socket".into(),
            pattern: pattern.into(),
        }
    }

    #[test]
    fn reads_gauges_and_turns_counters_into_rates() {
        let metrics = Arc::new(Metrics::new());
        let mut s = Sampler::new(metrics.clone(), "n1".into(), vec![labels("room:*")]);
        metrics
            .sockets
            .get_or_create(&TransportLabels {
                transport: "websocket",
            })
            .set(3);
        metrics.channels.get_or_create(&labels("room:*")).set(2);
        metrics
            .messages_in
            .get_or_create(&TransportLabels {
                transport: "longpoll",
            })
            .inc_by(10);
        metrics.broadcast_to_write.observe(0.002);
        metrics.broadcast_to_write.observe(0.004);
        let snap = s.sample();
        assert_eq!(snap.node, "n1");
        assert_eq!(
            snap.sockets,
            SocketCounts {
                websocket: 3,
                longpoll: 0
            }
        );
        assert_eq!(snap.channels[0].joined, 2);
        assert!(snap.messages_in_per_sec > 0.0, "{snap:?}");
        assert_eq!(snap.messages_out_per_sec, 0.0);
        let mean = snap.fanout_latency_ms.expect("two writes in the interval");
        assert!((mean - 3.0).abs() < 1e-9, "{mean}");
        // Nothing happened since: no rate, no mean, but the gauges stay.
        let again = s.sample();
        assert_eq!(again.messages_in_per_sec, 0.0);
        assert_eq!(again.fanout_latency_ms, None);
        assert_eq!(again.sockets.websocket, 3);
    }

    #[test]
    fn a_route_nobody_joined_reads_zero() {
        let mut s = Sampler::new(Arc::new(Metrics::new()), "n".into(), vec![labels("a:*")]);
        assert_eq!(s.sample().channels[0].joined, 0);
    }
}
