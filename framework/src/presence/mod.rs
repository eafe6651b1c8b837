//! Presence: who is on a topic, pushed to clients as `presence_state` and `presence_diff`
//! (spec §8), in Phoenix's terms.
//!
//! ```elixir
//! def join("room:" <> _, _params, socket) do
//!   send(self(), :after_join)
//!   {:ok, socket}
//! end
//!
//! def handle_info(:after_join, socket) do
//!   {:ok, _ref} = Presence.track(socket, socket.assigns.user_id, %{online_at: ...})
//!   push(socket, "presence_state", Presence.list(socket))
//!   {:noreply, socket}
//! end
//! ```
//!
//! reads here as:
//!
//! ```
//! use phx_channels::channel::{async_trait, Channel, ChannelError, ChannelSocket, HandleResult, Info, JoinReply};
//! use phx_channels::presence::Presence;
//! use phx_channels::Payload;
//! use serde_json::json;
//!
//! struct AfterJoin;
//!
//! struct RoomChannel { presence: Presence }
//!
//! #[async_trait]
//! impl Channel for RoomChannel {
//!     async fn join(&mut self, _topic: &str, _payload: Payload, socket: &mut ChannelSocket) -> Result<JoinReply, ChannelError> {
//!         socket.send_self(AfterJoin);
//!         Ok(JoinReply::ok())
//!     }
//!     async fn handle_info(&mut self, msg: Info, socket: &mut ChannelSocket) -> Result<HandleResult, ChannelError> {
//!         if msg.is::<AfterJoin>() {
//!             self.presence.track(socket, "42", json!({"online_at": "1795635925"}))?;
//!             // `push(socket, "presence_state", list(socket))`, encoded once per read of
//!             // the topic however many joiners that read serves.
//!             let state = self.presence.list_shared(socket.topic()).await;
//!             socket.push_encoded("presence_state", state.encoded());
//!         }
//!         Ok(HandleResult::NoReply)
//!     }
//! }
//! ```
//!
//! Differences from Phoenix, none visible to the JS client's `Presence` class:
//!
//! - **Diffs are coalesced** per topic over a short window ([`DEFAULT_WINDOW`]): one
//!   `presence_diff` carries every join and leave of the window, and a join and leave of the
//!   same ref within it cancel. Phoenix sends one diff per change, ~N²/2 frames for a wave of N
//!   joins; here it is N × (duration of the wave / window). Clients end in the same state
//!   (see [`state`] for why a `presence_state` overlapping a pending diff still converges).
//! - Presences are untracked when their channel's task ends, however it ends — Phoenix's
//!   tracker monitors the channel process the same way.
//! - Across nodes: phx-server nodes on one PubSub adapter replicate their presences to each
//!   other with a small protocol of their own over the adapter's side channel ([`replica`]),
//!   not Phoenix.Tracker's (which Elixir nodes speak over Erlang distribution): every node
//!   lists every phx-server node's users, and an Elixir node's Presence lists only its own.
//!
//! ## In a cluster
//!
//! Nothing to do for the channels: a Presence whose channels' [`crate::Context`] has a PubSub
//! adapter joins the cluster on its first `track` (or at [`Presence::attach`]). Give each
//! Presence of an app its own [`PresenceBuilder::name`] (the side channel's name). On shutdown
//! the drain must call [`graceful_permdown`] with the adapter before stopping it, so the
//! other nodes drop this node's presences at once; a node that dies instead is dropped after
//! the down timeout ([`PresenceBuilder::down_timeout`], `PRESENCE_DOWN_MS`, default 5 s).
//!
//! Layout: [`state`] (presences + pending diff, pure), [`phx_ref`] (ref format), [`fetch`]
//! (the `fetch/2` hook), `tracker` (topics, flush tasks, exit guards), [`replica`] (the other
//! nodes' presences), this file (the API).

pub mod fetch;
pub mod phx_ref;
pub mod replica;
pub mod snapshot;
pub mod state;
mod tracker;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use fetch::{Fetch, Presences};
pub use replica::graceful_permdown;
pub use snapshot::PresenceState;
pub use state::{Diff, Meta, StateError, TopicPresences};

use crate::channel::ChannelSocket;
use crate::context::Context;
use replica::ReplicaConfig;
use tracker::{Tracker, UntrackOnExit};

/// How long changes accumulate before a `presence_diff` goes out, by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(50);

/// Why a presence call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// `track` of a key this channel already tracks (Phoenix: `{:error, {:already_tracked, ...}}`).
    #[error("already tracked")]
    AlreadyTracked,
    /// `update` of a key this channel does not track (Phoenix: `{:error, :not_tracked}`).
    #[error("not tracked")]
    NotTracked,
    /// Metas are maps, as in Phoenix.
    #[error("presence meta must be a JSON object")]
    MetaNotAMap,
}

impl From<StateError> for PresenceError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::AlreadyTracked => PresenceError::AlreadyTracked,
            StateError::NotTracked => PresenceError::NotTracked,
        }
    }
}

fn meta_map(meta: Value) -> Result<Meta, PresenceError> {
    match meta {
        Value::Object(m) => Ok(m),
        _ => Err(PresenceError::MetaNotAMap),
    }
}

/// Builds a [`Presence`].
#[derive(Debug, Clone)]
pub struct PresenceBuilder {
    /// See [`PresenceBuilder::window`].
    window: Duration,
    /// See [`PresenceBuilder::fetch`].
    fetch: Option<Fetch>,
    /// See [`PresenceBuilder::name`].
    name: String,
    /// See [`PresenceBuilder::down_timeout`].
    down_timeout: Option<Duration>,
}

impl Default for PresenceBuilder {
    fn default() -> Self {
        PresenceBuilder {
            window: DEFAULT_WINDOW,
            fetch: None,
            name: replica::DEFAULT_NAME.to_string(),
            down_timeout: None,
        }
    }
}

impl PresenceBuilder {
    /// The coalescing window: changes on a topic go out as one diff at most this often.
    /// Zero flushes as soon as the tracker gets to it (about a diff per change).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The window and the down timeout of `config` (`PRESENCE_BATCH_MS`,
    /// `PRESENCE_DOWN_MS`): what an application's Presence uses unless it chooses its own.
    pub fn timing_from(self, config: &crate::Config) -> Self {
        self.window(config.presence_batch)
            .down_timeout(config.presence_down)
    }

    /// Phoenix's `fetch/2`: decorates entries of lists and diffs (see [`fetch`]).
    pub fn fetch<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(String, Presences) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Presences> + Send + 'static,
    {
        self.fetch = Some(Fetch::new(f));
        self
    }

    /// The Presence module's name (`MyAppWeb.Presence`; default [`replica::DEFAULT_NAME`]):
    /// names the side channel its nodes replicate over, so every Presence of an app needs its
    /// own, and nodes must agree on it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long another node may stay silent before its presences leave this node's lists
    /// (it died, or the link to it did). Without this (or [`PresenceBuilder::timing_from`]),
    /// [`replica::DEFAULT_DOWN_TIMEOUT`]. Keep it a few heartbeats ([`replica::HEARTBEAT`])
    /// long: a shorter one takes live nodes down on a hiccup.
    pub fn down_timeout(mut self, timeout: Duration) -> Self {
        self.down_timeout = Some(timeout);
        self
    }

    /// The Presence.
    pub fn build(self) -> Presence {
        let replica = ReplicaConfig {
            name: self.name.into(),
            down_timeout: self.down_timeout.unwrap_or(replica::DEFAULT_DOWN_TIMEOUT),
        };
        Presence {
            tracker: Arc::new(Tracker::with_replica(self.window, self.fetch, replica)),
        }
    }
}

/// A Presence module (`use Phoenix.Presence`): cheap to clone; clones share the tracker.
/// Use one per endpoint, and hand clones to the channels that track.
#[derive(Clone)]
pub struct Presence {
    tracker: Arc<Tracker>,
}

impl Default for Presence {
    fn default() -> Self {
        Presence::builder().build()
    }
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("name", &self.tracker.replica_config().name)
            .field("window", &self.tracker.window())
            .finish_non_exhaustive()
    }
}

impl Presence {
    /// Starts a builder (window [`DEFAULT_WINDOW`], no fetch, named "Presence").
    pub fn builder() -> PresenceBuilder {
        PresenceBuilder::default()
    }

    /// Joins the cluster of `context`'s PubSub adapter now, instead of at the first `track`:
    /// for a node that should list the other nodes' presences before anyone tracks on it
    /// (call it where the endpoint is built, with the endpoint's context). True when this
    /// Presence replicates (now or already); false without an adapter, with an adapter that has
    /// no side channel, or outside a tokio runtime. Presences tracked before attaching stay
    /// on this node.
    pub fn attach(&self, context: &Context) -> bool {
        match context.pubsub().adapter() {
            Some(adapter) => self.tracker.attach(context, adapter),
            None => false,
        }
    }

    /// This Presence leaves the cluster: says `bye` (the other nodes drop its presences at
    /// once) and sends nothing more. [`graceful_permdown`] does this for every Presence of an
    /// adapter; this is for an app that shuts one down on its own. Does nothing on one node.
    pub fn graceful_permdown(&self) {
        self.tracker.graceful_permdown();
    }

    /// `track(socket, key, meta)`: this channel is present on its topic under `key`, with
    /// `meta` (a JSON object) plus a fresh `phx_ref`, which is returned. Joins go out in the
    /// next `presence_diff`; the presence goes away when the channel does.
    pub fn track(
        &self,
        socket: &mut ChannelSocket,
        key: impl AsRef<str>,
        meta: impl Into<Value>,
    ) -> Result<String, PresenceError> {
        let meta = meta_map(meta.into())?;
        let owner = socket.channel_id();
        let tracked =
            self.tracker
                .track(socket.context(), &socket.topic, owner, key.as_ref(), meta)?;
        if tracked.first_for_owner {
            socket.on_exit(UntrackOnExit {
                tracker: Arc::downgrade(&self.tracker),
                topic: socket.topic.clone(),
                owner,
            });
        }
        Ok(tracked.phx_ref)
    }

    /// `update(socket, key, meta)`: replaces this channel's meta under `key`. The new meta gets
    /// a new `phx_ref` (returned) and `phx_ref_prev`; the next diff carries the new meta as a
    /// join and the old one as a leave.
    pub fn update(
        &self,
        socket: &ChannelSocket,
        key: impl AsRef<str>,
        meta: impl Into<Value>,
    ) -> Result<String, PresenceError> {
        let meta = meta_map(meta.into())?;
        Ok(self
            .tracker
            .update(&socket.topic, socket.channel_id(), key.as_ref(), meta)?)
    }

    /// `untrack(socket, key)`: this channel is no longer present under `key`. False if it was
    /// not.
    pub fn untrack(&self, socket: &ChannelSocket, key: impl AsRef<str>) -> bool {
        self.tracker
            .untrack(&socket.topic, socket.channel_id(), key.as_ref())
    }

    /// `list(topic)`: key → `{"metas": [...]}` (decorated by `fetch`), everything tracked so
    /// far included — what `presence_state` carries.
    ///
    /// The topic is read in O(1) under its lock and rendered outside it; with a `fetch`, the
    /// lists of a join wave share reads and fetches (see the tracker). The result always
    /// holds the caller's own `track`.
    pub async fn list(&self, topic: &str) -> Value {
        Value::Object(self.tracker.list_owned(topic).await)
    }

    /// [`Presence::list`] without the copy: the shared snapshot itself, built (and encoded)
    /// once for every caller that asks at the same version — what a `presence_state` push
    /// should use (`socket.push_encoded("presence_state", state.encoded())`), so that a join
    /// wave encodes the state once per read instead of once per joiner.
    pub async fn list_shared(&self, topic: &str) -> Arc<PresenceState> {
        self.tracker.list(topic).await
    }

    /// Number of topics with presences or changes not yet sent.
    pub fn topic_count(&self) -> usize {
        self.tracker.topic_count()
    }

    /// `get_by_key(topic, key)`: that key's entry (decorated by `fetch`), if present.
    pub async fn get_by_key(&self, topic: &str, key: &str) -> Option<Value> {
        let entry = self.tracker.get_by_key(topic, key)?;
        let mut one = Presences::new();
        one.insert(key.to_string(), entry);
        self.tracker.fetch(topic, one).await.remove(key)
    }
}

#[cfg(test)]
mod tests;
