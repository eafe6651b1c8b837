//! The [`Context`]: what `connect` and channel callbacks may reach beyond their own socket —
//! the configuration, `Phoenix.Token`, the PubSub, the counters and fresh ids.
//!
//! In Phoenix a callback reaches these through its socket's endpoint module; handing a callback
//! the whole [`crate::Endpoint`] here would hand it the live-socket registry, the drain and the
//! mounted sockets too, and would make the socket and channel modules depend on the module that
//! mounts them (a circle of imports). A `Context` holds only the shared services, depends on
//! nothing that uses it, and is the `context` argument of `Phoenix.Token.sign(context, ...)`
//! in Rust: the endpoint owns one and gives every socket and channel a clone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use phx_protocol::etf::Term;
use phx_protocol::token::{MaxAge, TokenError};
use phx_protocol::Payload;

use crate::config::{Config, PubSubConfig};
use crate::metrics::Metrics;
use crate::pubsub::redis::RedisAdapter;
use crate::pubsub::{BroadcastMsg, LocalPubSub, PubSub};
use crate::token::Tokens;

/// The shared services of one endpoint. Cheap to clone (an `Arc`); clones share everything.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    /// Configuration.
    config: Arc<Config>,
    /// `Phoenix.Token` with the configuration's `secret_key_base`.
    tokens: Tokens,
    /// Topic subscriptions and fan-out.
    pubsub: PubSub,
    /// Counters.
    metrics: Arc<Metrics>,
    /// Unique ids for sockets, channels and subscriptions.
    ids: AtomicU64,
}

impl std::fmt::Debug for Context {
    /// The configuration is not printed: it holds the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Fresh services for `config`: an empty PubSub, zeroed counters, tokens signed with its
    /// `secret_key_base`. An endpoint makes one; a test of a `connect` can make its own.
    pub fn new(config: impl Into<Arc<Config>>) -> Self {
        Context::with_metrics(config, Arc::new(Metrics::default()))
    }

    /// [`Context::new`] reporting into `metrics`, made beforehand: the endpoint builder's,
    /// which an application can hand to its own parts (a store's timings) before the
    /// endpoint exists.
    pub fn with_metrics(config: impl Into<Arc<Config>>, metrics: Arc<Metrics>) -> Self {
        let config = config.into();
        let local = Arc::new(LocalPubSub::new(metrics.clone()));
        let mut pubsub = PubSub::new(local.clone());
        if let PubSubConfig::Redis(redis) = &config.pubsub {
            // The adapter connects in the background; an unusable REDIS_URL or a missing
            // runtime leaves this node serving alone, loudly.
            match RedisAdapter::start(redis, local, metrics.clone()) {
                Ok(adapter) => pubsub = pubsub.with_adapter(adapter),
                Err(e) => tracing::error!(
                    "PubSub: the Redis adapter did not start: {e}; serving as a single node"
                ),
            }
        }
        Context {
            inner: Arc::new(Inner {
                tokens: Tokens::new(&config.secret_key_base),
                pubsub,
                metrics,
                config,
                ids: AtomicU64::new(1),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// `Phoenix.Token` with this endpoint's secret.
    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    /// The PubSub.
    pub fn pubsub(&self) -> &PubSub {
        &self.inner.pubsub
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// A fresh unique id (sockets, channels and subscriptions share one sequence, so an id
    /// names one subscriber on any topic).
    pub fn next_id(&self) -> u64 {
        self.inner.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// `Endpoint.broadcast(topic, event, payload)`: to every subscriber of `topic`; the number
    /// of subscribers reached.
    pub fn broadcast(&self, topic: &str, event: &str, payload: impl Into<Payload>) -> usize {
        self.inner.pubsub.broadcast(BroadcastMsg {
            topic: topic.into(),
            event: event.to_string(),
            payload: payload.into(),
            from: None,
        })
    }

    /// `Endpoint.local_broadcast(topic, event, payload)`: this node's subscribers only.
    pub fn local_broadcast(&self, topic: &str, event: &str, payload: impl Into<Payload>) -> usize {
        self.inner.pubsub.local_broadcast(BroadcastMsg {
            topic: topic.into(),
            event: event.to_string(),
            payload: payload.into(),
            from: None,
        })
    }

    /// `Phoenix.PubSub.direct_broadcast(node, pubsub, topic, %Broadcast{...})`: the
    /// subscribers on the node named `node` only (through the cluster adapter, even when
    /// `node` is this one, as in Phoenix).
    pub fn direct_broadcast(
        &self,
        node: &str,
        topic: &str,
        event: &str,
        payload: impl Into<Payload>,
    ) {
        self.inner.pubsub.direct_broadcast(
            node,
            BroadcastMsg {
                topic: topic.into(),
                event: event.to_string(),
                payload: payload.into(),
                from: None,
            },
        )
    }

    /// `Phoenix.Token.sign(socket, salt, data)` (max_age 86400 s embedded, Phoenix's default).
    pub fn sign_token(&self, salt: &str, data: &Term) -> String {
        self.inner.tokens.sign(salt, data)
    }

    /// `Phoenix.Token.sign(socket, salt, data, max_age: max_age)`.
    pub fn sign_token_with(&self, salt: &str, data: &Term, max_age: MaxAge) -> String {
        self.inner.tokens.sign_with(salt, data, max_age)
    }

    /// `Phoenix.Token.verify(socket, salt, token, max_age: max_age)`.
    pub fn verify_token(
        &self,
        salt: &str,
        token: &str,
        max_age: Option<MaxAge>,
    ) -> Result<Term, TokenError> {
        self.inner.tokens.verify(salt, token, max_age)
    }
}
