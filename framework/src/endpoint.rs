//! The Endpoint: configuration, mounted sockets, PubSub, tokens, and the live-socket registry
//! used to drain on shutdown. Cheap to clone (an `Arc`), handed to every channel.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use phx_protocol::etf::Term;
use phx_protocol::token::{self, MaxAge, TokenError, TokenKey};
use phx_protocol::Payload;
use rand::Rng;

use crate::config::{Config, SocketOptions};
use crate::conn::ConnHandle;
use crate::metrics::Metrics;
use crate::pubsub::{BroadcastMsg, LocalPubSub, PubSub};
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
}

struct Inner {
    /// Configuration.
    config: Config,
    /// Topic subscriptions and fan-out.
    pubsub: PubSub,
    /// Counters.
    metrics: Arc<Metrics>,
    /// Unique ids for sockets, channels and subscriptions.
    ids: AtomicU64,
    /// Derived token keys per salt: PBKDF2 is deliberately slow, so derive once.
    token_keys: DashMap<Vec<u8>, TokenKey>,
    /// Live sockets, for the drain on shutdown.
    live: DashMap<u64, Arc<ConnHandle>>,
    /// Set when the drain starts: new connections are refused.
    draining: AtomicBool,
    /// Mounted sockets.
    mounts: Vec<Arc<SocketMount>>,
}

/// The endpoint.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

/// Builds an [`Endpoint`].
pub struct EndpointBuilder {
    config: Config,
    mounts: Vec<Arc<SocketMount>>,
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
        }));
        self
    }

    /// Builds the endpoint.
    pub fn build(self) -> Endpoint {
        let metrics = Arc::new(Metrics::default());
        Endpoint {
            inner: Arc::new(Inner {
                pubsub: PubSub {
                    local: LocalPubSub::new(metrics.clone()),
                },
                metrics,
                config: self.config,
                ids: AtomicU64::new(1),
                token_keys: DashMap::new(),
                live: DashMap::new(),
                draining: AtomicBool::new(false),
                mounts: self.mounts,
            }),
        }
    }
}

impl Endpoint {
    /// Starts building an endpoint with `config`.
    pub fn builder(config: Config) -> EndpointBuilder {
        EndpointBuilder {
            config,
            mounts: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The PubSub.
    pub fn pubsub(&self) -> &PubSub {
        &self.inner.pubsub
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The mounted sockets.
    pub fn mounts(&self) -> &[Arc<SocketMount>] {
        &self.inner.mounts
    }

    /// A fresh unique id.
    pub fn next_id(&self) -> u64 {
        self.inner.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// `Endpoint.broadcast(topic, event, payload)`.
    pub fn broadcast(&self, topic: &str, event: &str, payload: impl Into<Payload>) -> usize {
        self.inner.pubsub.broadcast(BroadcastMsg {
            topic: topic.into(),
            event: event.to_string(),
            payload: payload.into(),
            from: None,
        })
    }

    fn key(&self, salt: &str) -> TokenKey {
        if let Some(k) = self.inner.token_keys.get(salt.as_bytes()) {
            return k.clone();
        }
        let key = TokenKey::derive(
            self.inner.config.secret_key_base.as_bytes(),
            salt.as_bytes(),
        );
        self.inner
            .token_keys
            .insert(salt.as_bytes().to_vec(), key.clone());
        key
    }

    /// `Phoenix.Token.sign(endpoint, salt, data)` (max_age 86400 s embedded, Phoenix's default).
    pub fn sign_token(&self, salt: &str, data: &Term) -> String {
        self.sign_token_with(salt, data, MaxAge::Seconds(86_400))
    }

    /// `Phoenix.Token.sign(endpoint, salt, data, max_age: max_age)`: the token records its own
    /// lifetime, which a verifier uses when it passes no max_age of its own.
    pub fn sign_token_with(&self, salt: &str, data: &Term, max_age: MaxAge) -> String {
        token::sign(&self.key(salt), data, now_ms(), max_age)
    }

    /// `Phoenix.Token.verify(endpoint, salt, token, max_age: max_age)`.
    pub fn verify_token(
        &self,
        salt: &str,
        token: &str,
        max_age: Option<MaxAge>,
    ) -> Result<Term, TokenError> {
        token::verify(&self.key(salt), token, max_age, now_ms())
    }

    /// Registers a live socket (for the drain).
    pub(crate) fn register(&self, id: u64, conn: Arc<ConnHandle>) {
        self.inner.live.insert(id, conn);
        self.inner.metrics.sockets.inc();
        self.inner.metrics.connects.inc();
    }

    /// Forgets a closed socket.
    pub(crate) fn unregister(&self, id: u64) {
        if self.inner.live.remove(&id).is_some() {
            self.inner.metrics.sockets.dec();
        }
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
        let cfg = &self.inner.config;
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
    }
}

/// Wall-clock milliseconds since the Unix epoch (tokens carry OS time).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_max_age_is_the_one_a_verifier_without_its_own_uses() {
        let ep = Endpoint::builder(Config::default()).build();
        let data = Term::Int(7);
        let expired = ep.sign_token_with("s", &data, MaxAge::Seconds(0));
        assert_eq!(
            ep.verify_token("s", &expired, None),
            Err(TokenError::Expired)
        );
        let forever = ep.sign_token_with("s", &data, MaxAge::Infinity);
        assert_eq!(ep.verify_token("s", &forever, None), Ok(data.clone()));
        // The verifier's own max_age overrides the embedded one.
        assert_eq!(
            ep.verify_token("s", &expired, Some(MaxAge::Seconds(60))),
            Ok(data)
        );
        assert_eq!(
            ep.verify_token("other", &forever, None),
            Err(TokenError::Invalid)
        );
    }
}
