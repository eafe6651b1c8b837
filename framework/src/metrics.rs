//! The endpoint's metrics: every series is declared here, with its help text, on a
//! [`prometheus_client`] registry of the endpoint's own (no global state, so several endpoints
//! in one process, as in the tests, count apart). [`Metrics::render`] encodes them in the
//! Prometheus/OpenMetrics text format; [`crate::http::admin_router`] serves that at
//! `/metrics` on the admin listener (`ADMIN_PORT`), never on the public port.
//!
//! Labels are bounded: transport (`websocket` | `longpoll`), socket (the mount path, e.g.
//! `/socket`), topic pattern (the router pattern that matched, e.g. `room:*`, never the topic),
//! refusal reason (a [`Refusal`](crate::transport::handshake::Refusal) variant) and join
//! outcome. No series is labelled by topic or user.
//!
//! The updates are the library's relaxed atomics: cheap on hot paths (every socket, every
//! overflow); labelled families take a read lock to find their child, and a histogram's
//! observation takes its lock. So nothing per frame observes a histogram unsampled:
//! `phx_fanout_size` is observed once per broadcast, `phx_broadcast_to_write_seconds` for one
//! delivery in [`WRITE_SAMPLE_EVERY`](crate::pubsub::local::WRITE_SAMPLE_EVERY), and
//! `phx_outbox_bytes` is not updated per frame at all but summed over the live sockets when
//! scraped ([`Endpoint::render_metrics`](crate::endpoint::Endpoint::render_metrics)).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::exponential_buckets;
/// The histogram type of the latency series, for applications that keep a child of
/// [`HistogramFamily`] (e.g. one per store operation).
pub use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a per-channel series: the socket mount and the topic pattern that matched.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// The socket's mount path, e.g. `/socket`.
    pub socket: Arc<str>,
    /// The router pattern, e.g. `room:*`.
    pub pattern: Arc<str>,
}

/// Labels of `phx_joins_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JoinLabels {
    /// The socket's mount path.
    pub socket: Arc<str>,
    /// The router pattern.
    pub pattern: Arc<str>,
    /// `ok`, `error` (join refused) or `crash` (join raised or panicked).
    pub outcome: &'static str,
}

/// Labels of `phx_refused_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `websocket` or `longpoll`.
    pub transport: &'static str,
    /// The refusal, e.g. `origin`, `connect`, `vsn`.
    pub reason: &'static str,
}

/// Labels of the per-transport message counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    /// `websocket` or `longpoll`.
    pub transport: &'static str,
}

/// Labels of `phx_closes_total`: the WebSocket close code the server sent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    /// The code, e.g. `1013` (README, "Close codes").
    pub code: &'static str,
}

impl CloseLabels {
    /// The label for `code` (a documented code, or `other`).
    pub fn of(code: u16) -> CloseLabels {
        let code = match code {
            1000 => "1000",
            1001 => "1001",
            1002 => "1002",
            1007 => "1007",
            1008 => "1008",
            1009 => "1009",
            1011 => "1011",
            1012 => "1012",
            1013 => "1013",
            _ => "other",
        };
        CloseLabels { code }
    }
}

/// A family of latency histograms by label set `L` (what `store_duration` is, for an
/// application that keeps the children it uses).
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 us .. ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 4.0, 9))
}

/// The endpoint's metrics.
pub struct Metrics {
    registry: Registry,
    /// Sockets currently connected, by transport.
    pub sockets: Family<TransportLabels, Gauge>,
    /// Channels currently joined, by socket and topic pattern.
    pub channels: Family<ChannelLabels, Gauge>,
    /// Sockets accepted since start.
    pub connects: Counter,
    /// Connection attempts refused, by transport and reason.
    pub refused: Family<RefusalLabels, Counter>,
    /// Sockets closed because their outbound queue filled up.
    pub overflow_closes: Counter,
    /// Sockets closed for a malformed or oversized frame.
    pub bad_frames: Counter,
    /// Channel callbacks that crashed (error or panic).
    pub channel_crashes: Counter,
    /// Joins by socket, topic pattern and outcome.
    pub joins: Family<JoinLabels, Counter>,
    /// How long `join` took, by socket and topic pattern.
    pub join_duration: HistogramFamily<ChannelLabels>,
    /// How long `handle_in` took, by socket and topic pattern.
    pub handle_in_duration: HistogramFamily<ChannelLabels>,
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
    /// Client frames taken by sessions, by transport.
    pub messages_in: Family<TransportLabels, Counter>,
    /// Frames written to clients, by transport.
    pub messages_out: Family<TransportLabels, Counter>,
    /// WebSocket closes the server sent, by code.
    pub closes: Family<CloseLabels, Counter>,
    /// LongPoll sessions alive.
    pub longpoll_sessions: Gauge,
    /// Subscribers one local broadcast was queued to (the fan-out size), per broadcast: what
    /// the node is asked to deliver, which `phx_deliveries_total` alone cannot split into many
    /// small broadcasts or a few huge ones.
    pub fanout_size: Histogram,
    /// From a broadcast's publication (the start of its local fan-out) to the write of its
    /// frame to a client socket, for a sample of deliveries (see [`crate::pubsub::local`]):
    /// the latency clients see, which no counter shows.
    pub broadcast_to_write: Histogram,
    /// Bytes of frames queued for clients on this node, over every socket's outbound queue and
    /// LongPoll buffer. Set at scrape time by
    /// [`Endpoint::render_metrics`](crate::endpoint::Endpoint::render_metrics), never per
    /// frame; a bare [`Metrics::render`] shows the last scrape's value.
    pub outbox_bytes: Gauge,
    /// Presence entries (one per key and meta) this node knows of, local and replicated: kept
    /// by the Presence tracker as entries change.
    pub presence_entries: Gauge,
    /// How long the application's store took, by operation (e.g. `insert_annotation`).
    pub store_duration: HistogramFamily<StoreLabels>,
    /// Message history (history routes only; all zero without them).
    pub history: HistoryMetrics,
}

/// Labels of `phx_store_duration_seconds`: the application's name for a store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// A fixed operation name, e.g. `list_annotations`; never a query text or an id.
    pub operation: &'static str,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every series, registered (all at zero).
    pub fn new() -> Self {
        let mut r = Registry::default();
        let sockets = Family::<TransportLabels, Gauge>::default();
        r.register(
            "phx_sockets",
            "Sockets currently connected, by transport",
            sockets.clone(),
        );
        let channels = Family::<ChannelLabels, Gauge>::default();
        r.register(
            "phx_channels",
            "Channels currently joined, by socket and topic pattern",
            channels.clone(),
        );
        let connects = Counter::default();
        r.register("phx_connects", "Sockets accepted", connects.clone());
        let refused = Family::<RefusalLabels, Counter>::default();
        r.register(
            "phx_refused",
            "Connection attempts refused, by transport and reason",
            refused.clone(),
        );
        let overflow_closes = Counter::default();
        r.register(
            "phx_overflow_closes",
            "Sockets closed because their outbound queue filled up (slow consumers)",
            overflow_closes.clone(),
        );
        let bad_frames = Counter::default();
        r.register(
            "phx_bad_frames",
            "Sockets closed for a malformed or oversized frame",
            bad_frames.clone(),
        );
        let channel_crashes = Counter::default();
        r.register(
            "phx_channel_crashes",
            "Channel callbacks that crashed (error or panic)",
            channel_crashes.clone(),
        );
        let joins = Family::<JoinLabels, Counter>::default();
        r.register(
            "phx_joins",
            "Joins by socket, topic pattern and outcome (ok, error, crash)",
            joins.clone(),
        );
        let join_duration: HistogramFamily<ChannelLabels> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "phx_join_duration_seconds",
            "Time spent in the channel's join, by socket and topic pattern",
            join_duration.clone(),
        );
        let handle_in_duration: HistogramFamily<ChannelLabels> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "phx_handle_in_duration_seconds",
            "Time spent in the channel's handle_in, by socket and topic pattern",
            handle_in_duration.clone(),
        );
        let broadcasts = Counter::default();
        r.register("phx_broadcasts", "Broadcasts published", broadcasts.clone());
        let deliveries = Counter::default();
        r.register(
            "phx_deliveries",
            "Frames queued by broadcast fan-out",
            deliveries.clone(),
        );
        let cluster_published = Counter::default();
        r.register(
            "phx_cluster_published",
            "Cluster: broadcasts published to the other nodes",
            cluster_published.clone(),
        );
        let cluster_lost = Counter::default();
        r.register(
            "phx_cluster_lost",
            "Cluster: broadcasts that did not reach the other nodes (Redis down, publish queue full)",
            cluster_lost.clone(),
        );
        let cluster_received = Counter::default();
        r.register(
            "phx_cluster_received",
            "Cluster: broadcasts received from other nodes and delivered here",
            cluster_received.clone(),
        );
        let cluster_dropped = Counter::default();
        r.register(
            "phx_cluster_dropped",
            "Cluster: broadcasts received but dropped because the local fan-out fell behind",
            cluster_dropped.clone(),
        );
        let cluster_ignored = Counter::default();
        r.register(
            "phx_cluster_ignored",
            "Cluster: messages on the channel that are not broadcasts for this node's sockets",
            cluster_ignored.clone(),
        );
        let cluster_connected = Gauge::default();
        r.register(
            "phx_cluster_connected",
            "Cluster: 1 while the Redis adapter is connected, 0 while not (no adapter: 0)",
            cluster_connected.clone(),
        );
        let messages_in = Family::<TransportLabels, Counter>::default();
        r.register(
            "phx_messages_in",
            "Client frames taken by sessions, by transport",
            messages_in.clone(),
        );
        let messages_out = Family::<TransportLabels, Counter>::default();
        r.register(
            "phx_messages_out",
            "Frames written to clients, by transport",
            messages_out.clone(),
        );
        let closes = Family::<CloseLabels, Counter>::default();
        r.register(
            "phx_closes",
            "WebSocket closes sent by the server, by close code",
            closes.clone(),
        );
        let longpoll_sessions = Gauge::default();
        r.register(
            "phx_longpoll_sessions",
            "LongPoll sessions alive",
            longpoll_sessions.clone(),
        );
        let fanout_size = Histogram::new(exponential_buckets(1.0, 4.0, 10));
        r.register(
            "phx_fanout_size",
            "Subscribers one local broadcast was queued to",
            fanout_size.clone(),
        );
        let broadcast_to_write = latency_histogram();
        r.register(
            "phx_broadcast_to_write_seconds",
            "From a broadcast's publication to the write of its frame to a client (sampled)",
            broadcast_to_write.clone(),
        );
        let outbox_bytes = Gauge::default();
        r.register(
            "phx_outbox_bytes",
            "Bytes of frames queued for clients, over every socket's outbound queue",
            outbox_bytes.clone(),
        );
        let presence_entries = Gauge::default();
        r.register(
            "phx_presence_entries",
            "Presence entries (key and meta) known on this node, local and replicated",
            presence_entries.clone(),
        );
        let store_duration: HistogramFamily<StoreLabels> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "phx_store_duration_seconds",
            "Time the application's store took, by operation",
            store_duration.clone(),
        );
        r.register_collector(Box::new(Process));
        let history = HistoryMetrics::register(&mut r);
        Metrics {
            registry: r,
            sockets,
            channels,
            connects,
            refused,
            overflow_closes,
            bad_frames,
            channel_crashes,
            joins,
            join_duration,
            handle_in_duration,
            broadcasts,
            deliveries,
            cluster_published,
            cluster_lost,
            cluster_received,
            cluster_dropped,
            cluster_ignored,
            cluster_connected,
            messages_in,
            messages_out,
            closes,
            longpoll_sessions,
            fanout_size,
            broadcast_to_write,
            outbox_bytes,
            presence_entries,
            store_duration,
            history,
        }
    }

    /// Counts a join and its latency.
    pub(crate) fn join(&self, labels: &ChannelLabels, outcome: &'static str, took: Duration) {
        self.joins
            .get_or_create(&JoinLabels {
                socket: labels.socket.clone(),
                pattern: labels.pattern.clone(),
                outcome,
            })
            .inc();
        self.join_duration
            .get_or_create(labels)
            .observe(took.as_secs_f64());
    }

    /// Counts a refused connection attempt.
    pub(crate) fn refusal(&self, transport: &'static str, reason: &'static str) {
        self.refused
            .get_or_create(&RefusalLabels { transport, reason })
            .inc();
    }

    /// Every series in the OpenMetrics text format (which Prometheus scrapes), process RSS and
    /// open descriptors read now.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The `Content-Type` of [`render`](Self::render)'s text.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";
}

/// Process RSS and open descriptors, read from `/proc/self` at scrape time (absent where
/// there is no `/proc`).
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        if let Some(rss) = resident_bytes() {
            let g = ConstGauge::new(rss);
            let m = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory of this process in bytes (VmRSS)",
                None,
                g.metric_type(),
            )?;
            g.encode(m)?;
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries.
            let n = dir.count().saturating_sub(1) as i64;
            let g = ConstGauge::new(n);
            let m = encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors of this process",
                None,
                g.metric_type(),
            )?;
            g.encode(m)?;
        }
        Ok(())
    }
}

/// VmRSS of this process in bytes, from `/proc/self/status`; the dashboard reads it too.
pub(crate) fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Labels of `phx_history_recoveries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecoveryLabels {
    /// `recovered`, `no_cursor`, `epoch_changed`, `trimmed` or `ahead`
    /// ([`crate::pubsub::history::Outcome`]).
    pub outcome: &'static str,
}

/// The series of message history ([`crate::pubsub::history`]): what it holds in memory on
/// this node, and how joins fared.
#[derive(Debug, Clone, Default)]
pub struct HistoryMetrics {
    /// Broadcasts kept, over every history topic.
    pub messages: Gauge,
    /// Bytes they count for (payload JSON or binary length, event, a fixed cost per entry).
    pub bytes: Gauge,
    /// Topics with a history on this node.
    pub topics: Gauge,
    /// Joins on history topics, by outcome.
    pub recoveries: Family<RecoveryLabels, Counter>,
}

impl HistoryMetrics {
    fn register(r: &mut Registry) -> HistoryMetrics {
        let m = HistoryMetrics::default();
        r.register(
            "phx_history_messages",
            "Broadcasts kept by message history on this node",
            m.messages.clone(),
        );
        r.register(
            "phx_history_bytes",
            "Bytes the broadcasts kept by message history count for (payload, event, entry)",
            m.bytes.clone(),
        );
        r.register(
            "phx_history_topics",
            "Topics with a message history on this node",
            m.topics.clone(),
        );
        r.register(
            "phx_history_recoveries",
            "Joins on history topics, by outcome (recovered, no_cursor, epoch_changed, trimmed, ahead)",
            m.recoveries.clone(),
        );
        m
    }
}
