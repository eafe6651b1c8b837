//! The local tracker: every topic's [`TopicPresences`], and one flush task per topic with
//! changes, which publishes them as a coalesced `presence_diff` at most once per window.
//!
//! A change (track, update, untrack, a channel exiting) lands in the topic's pending diff and,
//! if no flush task is running for the topic, starts one. The task sleeps for the window,
//! takes the pending diff, decorates it (`fetch`) and broadcasts it on the topic; it repeats
//! while changes keep arriving and ends after a window without any. So a topic under churn
//! sends one diff per window whatever the rate of joins, and a lone join is seen one window
//! later. Diffs of a topic are published by that one task, in order.
//!
//! The tracker only knows channels by id ([`Owner`]): the exit hook is an [`UntrackOnExit`]
//! guard stored on the channel's socket, dropped when the channel task ends.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use phx_protocol::Payload;
use serde_json::{Map, Value};

use super::fetch::Fetch;
use super::phx_ref::RefGen;
use super::state::{Diff, Meta, Owner, StateError, TopicPresences};
use crate::endpoint::Endpoint;
use crate::pubsub::BroadcastMsg;

/// One topic's presences and its flushing state.
struct TopicEntry {
    /// The presences and the pending diff.
    state: TopicPresences,
    /// Where diffs are broadcast (the endpoint of the channels that track here).
    endpoint: Endpoint,
    /// A flush task is running for this topic.
    flushing: bool,
    /// Channels whose exit guard is out; the entry stays while any is.
    guarded: HashSet<Owner>,
}

impl TopicEntry {
    /// Nothing tracked, pending, flushing or guarded: the entry can go.
    fn idle(&self) -> bool {
        self.state.is_empty()
            && !self.state.has_pending()
            && !self.flushing
            && self.guarded.is_empty()
    }
}

/// The tracker behind a [`super::Presence`].
pub(crate) struct Tracker {
    /// topic → entry. One lock: every operation under it is short and never awaits.
    topics: Mutex<HashMap<Arc<str>, TopicEntry>>,
    /// How long changes accumulate before a diff goes out.
    window: Duration,
    /// Decorates entries (Phoenix's `fetch/2`).
    fetch: Option<Fetch>,
    /// Makes `phx_ref`s.
    refs: RefGen,
}

/// What a `track` needs to tell its caller.
pub(crate) struct Tracked {
    /// The new meta's `phx_ref`.
    pub phx_ref: String,
    /// The owner had nothing tracked on this topic before: it needs an exit guard.
    pub first_for_owner: bool,
}

impl Tracker {
    pub(crate) fn new(window: Duration, fetch: Option<Fetch>) -> Self {
        Tracker {
            topics: Mutex::new(HashMap::new()),
            window,
            fetch,
            refs: RefGen::default(),
        }
    }

    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    pub(crate) fn track(
        self: &Arc<Self>,
        endpoint: &Endpoint,
        topic: &Arc<str>,
        owner: Owner,
        key: &str,
        meta: Meta,
    ) -> Result<Tracked, StateError> {
        let phx_ref = self.refs.next(owner);
        let mut topics = self.topics.lock();
        let entry = topics.entry(topic.clone()).or_insert_with(|| TopicEntry {
            state: TopicPresences::new(),
            endpoint: endpoint.clone(),
            flushing: false,
            guarded: HashSet::new(),
        });
        entry.state.track(owner, key, meta, &phx_ref)?;
        let first_for_owner = entry.guarded.insert(owner);
        self.schedule(topic, entry);
        Ok(Tracked {
            phx_ref,
            first_for_owner,
        })
    }

    pub(crate) fn update(
        self: &Arc<Self>,
        topic: &Arc<str>,
        owner: Owner,
        key: &str,
        meta: Meta,
    ) -> Result<String, StateError> {
        let phx_ref = self.refs.next(owner);
        let mut topics = self.topics.lock();
        let entry = topics.get_mut(topic).ok_or(StateError::NotTracked)?;
        entry.state.update(owner, key, meta, &phx_ref)?;
        self.schedule(topic, entry);
        Ok(phx_ref)
    }

    pub(crate) fn untrack(self: &Arc<Self>, topic: &Arc<str>, owner: Owner, key: &str) -> bool {
        let mut topics = self.topics.lock();
        let Some(entry) = topics.get_mut(topic) else {
            return false;
        };
        let done = entry.state.untrack(owner, key);
        self.schedule(topic, entry);
        done
    }

    /// The channel `owner` is gone: untracks all it tracked here and forgets its guard.
    pub(crate) fn owner_exited(self: &Arc<Self>, topic: &Arc<str>, owner: Owner) -> usize {
        let mut topics = self.topics.lock();
        let Some(entry) = topics.get_mut(topic) else {
            return 0;
        };
        let n = entry.state.untrack_owner(owner);
        entry.guarded.remove(&owner);
        self.schedule(topic, entry);
        if entry.idle() {
            topics.remove(topic);
        }
        n
    }

    /// The topic's presences, pending changes included, undecorated; marks the pending joins
    /// as seen (see `state`), since the caller is about to show them to a client.
    pub(crate) fn list(&self, topic: &str) -> Map<String, Value> {
        self.topics
            .lock()
            .get_mut(topic)
            .map(|e| e.state.list())
            .unwrap_or_default()
    }

    /// One key's entry, undecorated; marks the pending joins as seen, as `list` does.
    pub(crate) fn get_by_key(&self, topic: &str, key: &str) -> Option<Value> {
        let mut topics = self.topics.lock();
        let entry = topics.get_mut(topic)?;
        entry.state.expose();
        entry.state.get_by_key(key)
    }

    /// Number of topics with presences or pending work (for tests and metrics).
    pub(crate) fn topic_count(&self) -> usize {
        self.topics.lock().len()
    }

    pub(crate) async fn fetch(
        &self,
        topic: &str,
        entries: Map<String, Value>,
    ) -> Map<String, Value> {
        match &self.fetch {
            Some(f) if !entries.is_empty() => f.call(topic, entries).await,
            _ => entries,
        }
    }

    /// Starts the topic's flush task unless it runs or there is nothing to flush.
    fn schedule(self: &Arc<Self>, topic: &Arc<str>, entry: &mut TopicEntry) {
        if entry.flushing || !entry.state.has_pending() {
            return;
        }
        // Drop guards may run while the runtime shuts down; then nobody is left to tell.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        entry.flushing = true;
        rt.spawn(flush_loop(Arc::downgrade(self), topic.clone()));
    }

    /// Takes the topic's pending diff; `None` ends the flush task (and forgets an empty topic).
    fn take(&self, topic: &str) -> Option<(Diff, Endpoint)> {
        let mut topics = self.topics.lock();
        let entry = topics.get_mut(topic)?;
        match entry.state.take_diff() {
            Some(diff) => Some((diff, entry.endpoint.clone())),
            None => {
                entry.flushing = false;
                if entry.idle() {
                    topics.remove(topic);
                }
                None
            }
        }
    }
}

async fn flush_loop(tracker: Weak<Tracker>, topic: Arc<str>) {
    loop {
        let window = match tracker.upgrade() {
            Some(t) => t.window,
            None => return,
        };
        if window.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(window).await;
        }
        let Some(tracker) = tracker.upgrade() else {
            return;
        };
        let Some((diff, endpoint)) = tracker.take(&topic) else {
            return;
        };
        let joins = tracker.fetch(&topic, diff.joins).await;
        let leaves = tracker.fetch(&topic, diff.leaves).await;
        let payload = Diff { joins, leaves }.into_payload();
        endpoint.pubsub().broadcast(BroadcastMsg {
            topic: topic.clone(),
            event: "presence_diff".into(),
            payload: Payload::Json(payload),
            from: None,
        });
    }
}

/// Untracks a channel's presences on a topic when dropped: stored on the channel's socket,
/// so it runs when the channel task ends — leave, crash, transport close, abort.
pub(crate) struct UntrackOnExit {
    /// The tracker (weak: a dropped `Presence` needs no cleanup).
    pub tracker: Weak<Tracker>,
    /// The channel's topic.
    pub topic: Arc<str>,
    /// The channel's id.
    pub owner: Owner,
}

impl Drop for UntrackOnExit {
    fn drop(&mut self) {
        if let Some(t) = self.tracker.upgrade() {
            let n = t.owner_exited(&self.topic, self.owner);
            if n > 0 {
                tracing::debug!(topic = %self.topic, presences = n, "untracked on channel exit");
            }
        }
    }
}
