//! Presence across phx-server nodes: each node replicates its own presences to the others over
//! a side channel of the PubSub adapter ([`crate::pubsub::Adapter::side_channel`]), so every
//! node's `list`, `presence_state` and `presence_diff` hold every node's users, and the JS
//! client's `Presence` on any node shows the same list.
//!
//! Why a protocol of its own rather than Phoenix.Tracker's: the tracker's CRDT gossip runs over
//! Erlang distribution and is not something a non-BEAM node can join, and a pub/sub channel
//! already gives what a simpler design needs — one sender's messages arrive in order, or not
//! at all. So each node is the only writer of its own presences (a *replica*, in
//! Phoenix.Tracker's terms) and tells the others:
//!
//! - a **heartbeat** every [`HEARTBEAT`]: node name, *incarnation* (random per process run) and
//!   the number of its last delta;
//! - a **delta** per presence window with changes: the joins and leaves of its own presences
//!   (topic, key, `phx_ref`, meta), numbered 1, 2, …;
//! - a **snapshot** (Phoenix's *transfer*: all its presences as of a delta, in parts) when
//!   asked with a **snapshot_request** — by a peer that saw a gap in the numbers, a new
//!   incarnation, or the node for the first time;
//! - a **bye** when it shuts down cleanly.
//!
//! A receiver holds each peer's presences as entries of its own topics, owned by the peer (they
//! keep the peer's `phx_ref`s, which are unique), so lists and diffs need no change: remote
//! joins and leaves go through the same coalescing window and are delivered with
//! `local_broadcast`, as every node computes its own diffs. A peer silent for the down timeout
//! (default [`DEFAULT_DOWN_TIMEOUT`], `PRESENCE_DOWN_MS` or the builder's `down_timeout`) leaves
//! everywhere; after a `bye` it leaves at once. (A node whose own link is down sees every peer
//! go silent: their presences leave its lists, and come back with their snapshots when the link
//! does — and the peers do the same with its presences.) The wire format is in [`wire`] (versioned,
//! JSON, readable in `redis-cli MONITOR`), the receiving rules in [`peers`], the sending side
//! in [`outbox`].
//!
//! ## Attaching
//!
//! A Presence joins the cluster when its first `track` comes with a [`Context`] whose PubSub
//! has an adapter offering a side channel (or when [`crate::presence::Presence::attach`] is
//! called, for a node that should list other nodes' users before anyone tracks on it). The
//! side channel is named after the Presence ([`crate::presence::PresenceBuilder::name`]), so
//! two Presences of one app do not mix. Without an adapter, or with one that has no side
//! channels, nothing here runs and the Presence is the single-node one.
//!
//! ## Leaving
//!
//! [`graceful_permdown`] (Phoenix.Tracker's name) sends the `bye` of every Presence attached
//! to an adapter; the endpoint's drain must call it after the sockets are gone and before
//! `adapter.shutdown()`. After a `bye` a Presence sends nothing more (it still lists what it
//! hears). A Presence that is dropped says `bye` too.

pub mod outbox;
pub mod peers;
pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use self::outbox::{Mirror, Outbox};
use self::peers::{Action, Apply, Peers, Remote};
use super::state::Meta;
use super::tracker::Tracker;
use crate::context::Context;
use crate::pubsub::Adapter;

pub(crate) use self::outbox::Change;

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a silent peer is still listed, by default.
pub const DEFAULT_DOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The side channel's name when the builder gives the Presence none.
pub const DEFAULT_NAME: &str = "Presence";

/// Snapshots go out at most this often, however many peers ask (one serves them all: it is
/// sent to every node).
const SNAPSHOT_GAP: Duration = Duration::from_millis(250);

/// How a Presence replicates.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaConfig {
    /// The side channel's name.
    pub name: Arc<str>,
    /// How long a silent peer is still listed.
    pub down_timeout: Duration,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            name: DEFAULT_NAME.into(),
            down_timeout: DEFAULT_DOWN_TIMEOUT,
        }
    }
}

/// A Presence's connection to the cluster: what the tracker records its changes into, and
/// what sends.
pub(crate) struct Link {
    /// This node's name.
    node: String,
    /// This run's incarnation.
    incarnation: u64,
    /// The side channel's sending half.
    send: Arc<dyn Fn(Vec<u8>) + Send + Sync>,
    /// The adapter it came from (which [`graceful_permdown`] is called with).
    adapter: Arc<dyn Adapter>,
    /// Where remote presences' topics broadcast their diffs.
    context: Context,
    /// This node's changes waiting for the next delta.
    outbox: Outbox,
    /// A `bye` went out: nothing more is sent.
    stopped: AtomicBool,
}

impl Link {
    /// Queues one of this node's changes (under the topic's lock; O(1)).
    pub(crate) fn record(&self, change: Change) {
        if !self.stopped.load(Ordering::Relaxed) {
            self.outbox.push(change);
        }
    }

    fn send(&self, bytes: Vec<u8>) {
        if !self.stopped.load(Ordering::Relaxed) {
            (self.send)(bytes);
        }
    }

    /// Says `bye` (once) and stops sending.
    pub(crate) fn bye(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            (self.send)(wire::bye(&self.node, self.incarnation));
            tracing::info!(node = %self.node, "presence: left the cluster (bye)");
            self.outbox.take();
        }
    }
}

/// Every attached Presence, so the shutdown path can reach them through their adapter.
static LINKS: Mutex<Vec<Weak<Link>>> = Mutex::new(Vec::new());

fn links() -> std::sync::MutexGuard<'static, Vec<Weak<Link>>> {
    LINKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Phoenix.Tracker's `graceful_permdown`: every Presence replicating over `adapter` says `bye`
/// now, so that the other nodes drop its presences at once instead of after the down timeout,
/// and sends nothing more. Call it at the end of a drain, before `adapter.shutdown()` (the
/// `bye` is queued on the adapter, which must still publish it).
pub fn graceful_permdown(adapter: &Arc<dyn Adapter>) {
    let live: Vec<Arc<Link>> = {
        let mut all = links();
        all.retain(|l| l.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    for link in live {
        if std::ptr::addr_eq(Arc::as_ptr(&link.adapter), Arc::as_ptr(adapter)) {
            link.bye();
        }
    }
}

/// Joins the cluster: takes the adapter's side channel named after the Presence and starts the
/// replica task. `None` when the adapter offers no side channel or there is no runtime.
pub(crate) fn start(
    tracker: &Arc<Tracker>,
    context: &Context,
    adapter: &Arc<dyn Adapter>,
    config: &ReplicaConfig,
) -> Option<Arc<Link>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let Some(side) = adapter.side_channel(&config.name) else {
        tracing::info!(
            presence = %config.name,
            "presence: the PubSub adapter has no side channel; presences stay on this node"
        );
        return None;
    };
    if config.down_timeout < HEARTBEAT * 2 {
        tracing::warn!(
            down_timeout_ms = config.down_timeout.as_millis() as u64,
            "presence: a down timeout under two heartbeats takes healthy peers down"
        );
    }
    let link = Arc::new(Link {
        node: adapter.node_name().to_string(),
        incarnation: rand::random(),
        send: side.send,
        adapter: adapter.clone(),
        context: context.clone(),
        outbox: Outbox::default(),
        stopped: AtomicBool::new(false),
    });
    tracing::info!(
        presence = %config.name,
        node = %link.node,
        incarnation = link.incarnation,
        "presence: replicating across nodes"
    );
    {
        let mut all = links();
        all.retain(|l| l.strong_count() > 0);
        all.push(Arc::downgrade(&link));
    }
    runtime.spawn(run(
        Arc::downgrade(tracker),
        link.clone(),
        side.receive,
        tracker.window(),
        config.down_timeout,
    ));
    Some(link)
}

/// Remote presences into the tracker's topics.
struct Remotes<'a> {
    tracker: &'a Arc<Tracker>,
    context: &'a Context,
}

impl Apply for Remotes<'_> {
    fn join(&self, topic: &str, key: &str, phx_ref: &str, meta: Meta) -> Option<Remote> {
        self.tracker
            .remote_join(self.context, topic, key, phx_ref, meta)
    }

    fn leave(&self, remote: &Remote) {
        self.tracker.remote_leave(remote);
    }
}

/// The replica task: heartbeats, deltas (one per window with changes), snapshots on request,
/// and everything received. Ends when the Presence is dropped, with a `bye`.
async fn run(
    tracker: Weak<Tracker>,
    link: Arc<Link>,
    mut receive: mpsc::Receiver<Vec<u8>>,
    window: Duration,
    down_timeout: Duration,
) {
    let mut peers = Peers::new(&link.node, down_timeout);
    let mut mirror = Mirror::default();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut flush_at: Option<Instant> = None;
    let mut snapshot_wanted = false;
    let mut last_snapshot: Option<Instant> = None;
    let mut receiving = true;
    loop {
        let far = Instant::now() + Duration::from_secs(86_400);
        let down_at = peers.next_down();
        let snapshot_at = last_snapshot.map_or_else(Instant::now, |t| t + SNAPSHOT_GAP);
        tokio::select! {
            received = receive.recv(), if receiving => {
                let Some(bytes) = received else {
                    receiving = false; // the adapter stopped: nothing more will arrive
                    continue;
                };
                let Some(tracker) = tracker.upgrade() else { break };
                let Some(message) = wire::decode(&bytes) else {
                    tracing::debug!(bytes = bytes.len(), "presence: ignored a malformed replication message");
                    continue;
                };
                let remotes = Remotes { tracker: &tracker, context: &link.context };
                match peers.handle(message, Instant::now(), &remotes) {
                    Action::Request(node) => link.send(wire::snapshot_request(&link.node, &node)),
                    Action::SendSnapshot => snapshot_wanted = true,
                    Action::None => {}
                }
            }
            _ = heartbeat.tick() => {
                if tracker.strong_count() == 0 {
                    break;
                }
                link.send(wire::heartbeat(&link.node, link.incarnation, mirror.seq()));
            }
            () = link.outbox.ready.notified(), if flush_at.is_none() => {
                flush_at = Some(Instant::now() + window);
            }
            () = tokio::time::sleep_until(flush_at.unwrap_or(far)), if flush_at.is_some() => {
                flush_at = None;
                for delta in mirror.deltas(&link.node, link.incarnation, link.outbox.take()) {
                    link.send(delta);
                }
            }
            () = tokio::time::sleep_until(down_at.unwrap_or(far)), if down_at.is_some() => {
                let Some(tracker) = tracker.upgrade() else { break };
                let remotes = Remotes { tracker: &tracker, context: &link.context };
                for node in peers.expire(Instant::now(), &remotes) {
                    tracing::info!(node, "presence: peer down, its presences left");
                }
            }
            () = tokio::time::sleep_until(snapshot_at), if snapshot_wanted => {
                snapshot_wanted = false;
                last_snapshot = Some(Instant::now());
                for part in mirror.snapshot(&link.node, link.incarnation) {
                    link.send(part);
                }
            }
        }
    }
    link.bye();
}

#[cfg(test)]
mod tests;
