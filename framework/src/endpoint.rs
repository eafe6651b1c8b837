//! The Endpoint: the mounted sockets and the live-socket registry used to drain on shutdown,
//! around a [`Context`] (configuration, tokens, PubSub, counters) that sockets and channels get
//! instead of the endpoint itself. Cheap to clone (an `Arc`).
//!
//! What only the endpoint owns stays here: callbacks never register sockets or start a drain,
//! and keeping those out of the [`Context`] is what lets the socket and channel modules not
//! depend on this one, which mounts them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use phx_protocol::etf::Term;
use phx_protocol::token::{MaxAge, TokenError};
use phx_protocol::Payload;
use rand::Rng;

use crate::config::{CheckOrigin, Config, SocketOptions};
use crate::conn::ConnHandle;
use crate::context::Context;
use crate::metrics::Metrics;
use crate::metrics::TransportLabels;
use crate::pubsub::history::History;
use crate::pubsub::AdapterStatus;
use crate::pubsub::PubSub;
use crate::readiness::Check;
use crate::router::Router;
use crate::socket::SocketHandler;

/// A socket mounted at a path: `socket "/socket", UserSocket` with its channel routes.
pub struct SocketMount {
    /// Mount path, e.g. `/socket`; transports live at `/socket/websocket` and `/socket/longpoll`.
    pub path: String,
    /// The Socket behaviour (connect, id).
    pub handler: Arc<dyn SocketHandler>,
    /// The channel routes.
    pub router: Router,
    /// Which transports are served (`websocket: false` / `longpoll: false` in Phoenix's
    /// `socket` macro). A disabled transport has no route: its path answers 404.
    pub transports: SocketOptions,
    /// This socket's own `check_origin` (Phoenix's `websocket: [check_origin: ...]`), in
    /// place of the endpoint's `CHECK_ORIGIN`; `None` uses the endpoint's.
    pub check_origin: Option<CheckOrigin>,
}

struct Inner {
    /// Configuration, tokens, PubSub, counters, ids: what sockets and channels share.
    context: Context,
    /// Live sockets, for the drain on shutdown.
    live: DashMap<u64, Arc<ConnHandle>>,
    /// Set when the drain starts: new connections are refused.
    draining: AtomicBool,
    /// Mounted sockets.
    mounts: Vec<Arc<SocketMount>>,
    /// What `/readyz` checks besides the drain and the cluster adapter.
    checks: Vec<Check>,
}

/// The endpoint.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

/// Builds an [`Endpoint`].
pub struct EndpointBuilder {
    config: Config,
    /// The endpoint's metrics, made with the builder so that the application can wire its
    /// own series (e.g. Rumbl's store timings) into them while it builds the routes.
    metrics: Arc<Metrics>,
    mounts: Vec<Arc<SocketMount>>,
    checks: Vec<Check>,
}

impl EndpointBuilder {
    /// `socket path, Handler` with its channel routes, both transports on.
    pub fn socket(
        self,
        path: &str,
        handler: impl SocketHandler,
        router: Router,
    ) -> EndpointBuilder {
        self.socket_with(path, handler, router, SocketOptions::default())
    }

    /// `socket path, Handler, websocket: .., longpoll: ..` with its channel routes.
    pub fn socket_with(
        mut self,
        path: &str,
        handler: impl SocketHandler,
        router: Router,
        transports: SocketOptions,
    ) -> EndpointBuilder {
        self.mounts.push(Arc::new(SocketMount {
            path: path.trim_end_matches('/').to_string(),
            handler: Arc::new(handler),
            router,
            transports,
            check_origin: None,
        }));
        self
    }

    /// Adds a readiness check (`/readyz`): e.g. that the application's database answers.
    pub fn readiness_check(mut self, check: Check) -> EndpointBuilder {
        self.checks.push(check);
        self
    }

    /// The metrics the endpoint will report into (`endpoint.metrics()` once built).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Builds the endpoint.
    pub fn build(self) -> Endpoint {
        let context = Context::with_metrics(self.config, self.metrics);
        // History routes of every mount, handed to the fan-out before the first broadcast.
        let mut history = History::new(context.metrics().clone());
        for mount in &self.mounts {
            for (pattern, options) in mount.router.histories() {
                history.route(pattern, options);
            }
        }
        if !history.is_empty() {
            // A fresh context: nothing was installed before.
            let _ = context.pubsub().local.install_history(history);
        }
        Endpoint {
            inner: Arc::new(Inner {
                context,
                live: DashMap::new(),
                draining: AtomicBool::new(false),
                mounts: self.mounts,
                checks: self.checks,
            }),
        }
    }
}

impl Endpoint {
    /// Starts building an endpoint with `config`.
    pub fn builder(config: Config) -> EndpointBuilder {
        EndpointBuilder {
            config,
            metrics: Arc::new(Metrics::default()),
            mounts: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// The shared services that sockets and channels get: what `connect` is passed and what
    /// [`crate::ChannelSocket::context`] returns.
    pub fn context(&self) -> &Context {
        &self.inner.context
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.inner.context.config()
    }

    /// The PubSub.
    pub fn pubsub(&self) -> &PubSub {
        self.inner.context.pubsub()
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.inner.context.metrics()
    }

    /// The mounted sockets.
    pub fn mounts(&self) -> &[Arc<SocketMount>] {
        &self.inner.mounts
    }

    /// A fresh unique id.
    pub fn next_id(&self) -> u64 {
        self.inner.context.next_id()
    }

    /// `Endpoint.broadcast(topic, event, payload)`.
    pub fn broadcast(&self, topic: &str, event: &str, payload: impl Into<Payload>) -> usize {
        self.inner.context.broadcast(topic, event, payload)
    }

    /// `Phoenix.Token.sign(endpoint, salt, data)` (max_age 86400 s embedded, Phoenix's default).
    pub fn sign_token(&self, salt: &str, data: &Term) -> String {
        self.inner.context.sign_token(salt, data)
    }

    /// `Phoenix.Token.sign(endpoint, salt, data, max_age: max_age)`: the token records its own
    /// lifetime, which a verifier uses when it passes no max_age of its own.
    pub fn sign_token_with(&self, salt: &str, data: &Term, max_age: MaxAge) -> String {
        self.inner.context.sign_token_with(salt, data, max_age)
    }

    /// `Phoenix.Token.verify(endpoint, salt, token, max_age: max_age)`.
    pub fn verify_token(
        &self,
        salt: &str,
        token: &str,
        max_age: Option<MaxAge>,
    ) -> Result<Term, TokenError> {
        self.inner.context.verify_token(salt, token, max_age)
    }

    /// Registers a live socket (for the drain) of `transport` (`websocket` | `longpoll`).
    /// The socket stays registered, and counted in `phx_sockets`, until the returned guard is
    /// dropped — by the socket's task when it ends, also when it panics or is aborted, so a
    /// dead socket is never left in the drain list or the gauges.
    pub(crate) fn register(
        &self,
        id: u64,
        conn: Arc<ConnHandle>,
        transport: &'static str,
    ) -> Registered {
        self.inner.live.insert(id, conn);
        self.metrics()
            .sockets
            .get_or_create(&TransportLabels { transport })
            .inc();
        self.metrics().connects.inc();
        Registered {
            endpoint: self.clone(),
            id,
            transport,
        }
    }

    /// Forgets a closed socket (what dropping its [`Registered`] does).
    fn unregister(&self, id: u64, transport: &'static str) {
        if self.inner.live.remove(&id).is_some() {
            self.metrics()
                .sockets
                .get_or_create(&TransportLabels { transport })
                .dec();
        }
    }

    /// Every metric in the Prometheus text format ([`Metrics::render`]), with the series that
    /// are computed at scrape time brought up to date first: `phx_outbox_bytes`, the bytes
    /// waiting for clients, summed over the live sockets now.
    ///
    /// Summed here rather than kept in a global counter, because a counter would be an atomic
    /// every socket shares, touched twice for every frame (queued, written): the per-delivery
    /// cost the fan-out must not pay. The sum costs one uncontended lock per live socket per
    /// scrape (about a millisecond for 20k sockets, every scrape interval) and is exact at the
    /// moment of the scrape. What a writer has already taken from a queue and is writing (one
    /// batch per socket) is no longer counted: it is in the kernel's hands or about to be.
    pub fn render_metrics(&self) -> String {
        let queued: usize = self
            .inner
            .live
            .iter()
            .map(|conn| conn.value().queued_bytes())
            .sum();
        let metrics = self.metrics();
        metrics
            .outbox_bytes
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        metrics.render()
    }

    /// Whether the endpoint is draining (new sockets are refused).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// Number of live sockets.
    pub fn live_sockets(&self) -> usize {
        self.inner.live.len()
    }

    /// Phoenix's drainer: drains every live socket (see [`ConnHandle::drain`]: replies to
    /// messages already received go out first, then close 1012) in batches of
    /// `drain_batch_size`, each batch spread over `drain_interval` in random order so that reconnecting
    /// clients do not all arrive at once, and returns when all are gone or `drain_max` passed.
    pub async fn drain(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
        let cfg = self.config();
        let deadline = tokio::time::Instant::now() + cfg.drain_max;
        let ids: Vec<u64> = self.inner.live.iter().map(|e| *e.key()).collect();
        tracing::info!(sockets = ids.len(), "draining sockets");
        for batch in ids.chunks(cfg.drain_batch_size.max(1)) {
            // Spread the batch over up to `drain_interval`, about 1 ms per socket: a handful
            // of sockets close at once, ten thousand over two seconds.
            let spread = (cfg.drain_interval.as_millis() as u64)
                .min(batch.len() as u64)
                .max(1);
            let mut order: Vec<(u64, u64)> = {
                let mut rng = rand::rng();
                batch
                    .iter()
                    .map(|id| (rng.random_range(0..spread), *id))
                    .collect()
            };
            order.sort_unstable();
            let start = tokio::time::Instant::now();
            for (at, id) in order {
                let when = start + std::time::Duration::from_millis(at);
                if when > tokio::time::Instant::now() {
                    tokio::time::sleep_until(when.min(deadline)).await;
                }
                if let Some(conn) = self.inner.live.get(&id) {
                    // Not an immediate close: the socket stops reading, lets its channels
                    // answer what they already received, then closes with 1012.
                    conn.drain();
                }
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        while !self.inner.live.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The sockets are gone (their presences with them): nothing more to tell the cluster.
        // Presence says goodbye first, so peers drop this node's entries at once instead of
        // after their down timeout; the adapter then sends what is queued and stops.
        if let Some(adapter) = self.pubsub().adapter() {
            crate::presence::graceful_permdown(adapter);
            adapter.shutdown().await;
        }
    }

    /// Whether this endpoint should get traffic (see [`crate::readiness`]): every reason it
    /// should not, one per line; `/readyz` answers with it.
    pub async fn readiness(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if self.is_draining() {
            reasons.push("draining: new sockets are refused while this node shuts down".into());
        }
        if let Some(AdapterStatus::Disconnected) = self.pubsub().adapter().map(|a| a.status()) {
            reasons.push(
                "pubsub: the cluster adapter is disconnected; broadcasts do not reach the other nodes until it reconnects"
                    .into(),
            );
        }
        let checks = self.inner.checks.iter().map(Check::failure);
        reasons.extend(
            futures_util::future::join_all(checks)
                .await
                .into_iter()
                .flatten(),
        );
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// A live socket's registration ([`Endpoint::register`]): dropping it forgets the socket.
#[must_use = "dropping the registration unregisters the socket at once"]
pub(crate) struct Registered {
    endpoint: Endpoint,
    id: u64,
    transport: &'static str,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.endpoint.unregister(self.id, self.transport);
    }
}
