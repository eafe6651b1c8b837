//! The local tracker: every topic's [`TopicPresences`], one flush task per topic with changes
//! (a coalesced `presence_diff` at most once per window), and one shared `presence_state`
//! snapshot per topic version.
//!
//! A change (track, update, untrack, a channel exiting) lands in the topic's pending diff and,
//! if no flush task is running for the topic, starts one. The task sleeps for the window,
//! takes the pending diff, decorates it (`fetch`) and broadcasts it on the topic; it repeats
//! while changes keep arriving and ends after a window without any. So a topic under churn
//! sends one diff per window whatever the rate of joins, and a lone join is seen one window
//! later. Diffs of a topic are published by that one task, in order.
//!
//! ## Locks
//!
//! Topics are entries of a [`DashMap`], each behind its own short [`Mutex`]: work on one topic
//! never waits for another, and no lock is held across an await. Everything done under a
//! topic's lock is O(1) in the topic's size: an exit finds its presences through an owner
//! index, and a list reads the topic as a persistent-map clone (see `state`).
//!
//! ## Snapshots
//!
//! A list (what `presence_state` carries) takes the map of the topic's current version in
//! O(1) under the lock, marking its pending joins as seen, and builds it outside the lock —
//! right away, so a joiner's state holds its own `track` and is pushed before its join's diff
//! is due. A build is the rendered map, decorated by `fetch`, and its encoded JSON
//! ([`PresenceState`]); [`Tracker::list`] keeps it as the version's shared `Arc`, so lists of
//! an unchanged topic get it without any copy, and a push copies the encoded bytes instead of
//! encoding. [`Tracker::list_owned`] (an owned map, for callers that change it) makes exactly
//! one copy per call.
//!
//! Reads are *group-committed*: while one list builds, the lists that need a newer read
//! wait, and when it is done one of them reads and builds for all of them — a join wave costs
//! one build (one render, one encode, one `fetch` query) per build time, not one per joiner.
//! Builds of large topics run on the blocking pool, which both keeps runtime threads free and
//! gives the wave time to gather behind the build in progress.
//!
//! The tracker only knows channels by id ([`Owner`]): the exit hook is an [`UntrackOnExit`]
//! guard stored on the channel's socket, dropped when the channel task ends.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;
use phx_protocol::Payload;
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::fetch::Fetch;
use super::phx_ref::RefGen;
use super::replica::peers::Remote;
use super::replica::{self, Change, Link, ReplicaConfig};
use super::snapshot::PresenceState;
use super::state::{render, Diff, Entries, Meta, Owner, StateError, TopicPresences};
use crate::context::Context;
use crate::pubsub::{Adapter, BroadcastMsg};

/// A built (and decorated) `presence_state`, map and encoded JSON.
pub(crate) type Snapshot = Arc<PresenceState>;

/// Topics up to this many keys are rendered and encoded on the calling task (well under a
/// millisecond); larger ones on the blocking pool ([`Tracker::build`]).
const INLINE_BUILD_MAX: usize = 1024;

/// A published build: its number and the snapshot.
#[derive(Clone, Default)]
struct Build {
    /// Builds are numbered from 1 in the order they read the state (0: none yet).
    number: u64,
    /// What it read.
    snapshot: Snapshot,
}

/// One topic's presences and its flushing and snapshot state.
struct TopicEntry {
    /// The topic (what `fetch` is told).
    topic: Arc<str>,
    /// The presences and the pending diff.
    state: TopicPresences,
    /// Where diffs are broadcast (the context of the channels that track here).
    context: Context,
    /// A flush task is running for this topic.
    flushing: bool,
    /// Channels whose exit guard is out; the entry stays while any is.
    guarded: HashSet<Owner>,
    /// The last snapshot read and the state version it was read at.
    current: Option<(u64, Snapshot)>,
    /// The number the next build will get when it reads the state.
    next_build: u64,
    /// A list is fetching (decorating) the last read; lists that need a newer one wait.
    building: bool,
    /// The newest published build, for the lists waiting on it.
    published: watch::Sender<Build>,
    /// Removed from the map: a `track` that finds this retries with a fresh entry.
    dead: bool,
}

impl TopicEntry {
    fn new(topic: &Arc<str>, context: &Context) -> Self {
        TopicEntry {
            topic: topic.clone(),
            state: TopicPresences::new(),
            context: context.clone(),
            flushing: false,
            guarded: HashSet::new(),
            current: None,
            next_build: 1,
            building: false,
            published: watch::Sender::new(Build::default()),
            dead: false,
        }
    }

    /// The snapshot of the current version, if one was made.
    fn fresh(&self) -> Option<Snapshot> {
        match &self.current {
            Some((version, snapshot)) if *version == self.state.version() => Some(snapshot.clone()),
            _ => None,
        }
    }

    /// Reads every presence (O(1)) for a client: the pending joins count as seen from now.
    fn read(&mut self) -> Read {
        let number = self.next_build;
        self.next_build += 1;
        self.state.expose();
        Read {
            number,
            version: self.state.version(),
            entries: self.state.entries(),
            topic: self.topic.clone(),
        }
    }

    /// Makes build `number` (read at `version`) the current snapshot and wakes the lists
    /// waiting for it; an older build finishing after a newer one is only handed to its
    /// own caller.
    fn publish(&mut self, number: u64, version: u64, snapshot: &Snapshot) {
        self.published.send_if_modified(|b| {
            if b.number >= number {
                return false;
            }
            *b = Build {
                number,
                snapshot: snapshot.clone(),
            };
            true
        });
        if self.published.borrow().number == number {
            self.current = Some((version, snapshot.clone()));
        }
    }

    /// Applies `change` to the presences, keeping `phx_presence_entries` (of the endpoint
    /// whose channels track here) in step with the number of metas. Maintained as entries
    /// change rather than summed at scrape time: a change already holds this topic's lock and
    /// is rare next to deliveries, and a scrape then reads one number instead of locking every
    /// topic of every Presence.
    fn change<R>(&mut self, change: impl FnOnce(&mut TopicPresences) -> R) -> R {
        let before = self.state.len();
        let r = change(&mut self.state);
        let after = self.state.len();
        let gauge = &self.context.metrics().presence_entries;
        if after > before {
            gauge.inc_by(i64::try_from(after - before).unwrap_or(i64::MAX));
        } else if before > after {
            gauge.dec_by(i64::try_from(before - after).unwrap_or(i64::MAX));
        }
        r
    }

    /// Nothing tracked, pending, flushing, building or guarded: the entry can go.
    fn idle(&self) -> bool {
        self.state.is_empty()
            && !self.state.has_pending()
            && !self.flushing
            && !self.building
            && self.guarded.is_empty()
    }
}

impl Drop for TopicEntry {
    /// A topic forgotten with presences still in it (its Presence dropped): they are no longer
    /// known here.
    fn drop(&mut self) {
        let left = self.state.len();
        if left > 0 {
            self.context
                .metrics()
                .presence_entries
                .dec_by(i64::try_from(left).unwrap_or(i64::MAX));
        }
    }
}

/// A read of a topic's presences, to render outside the lock.
struct Read {
    /// Its number among the topic's reads.
    number: u64,
    /// The state version read.
    version: u64,
    /// What was read.
    entries: Entries,
    /// The topic (for `fetch`).
    topic: Arc<str>,
}

/// One topic's entry behind its own lock.
type Shard = Arc<Mutex<TopicEntry>>;

/// The tracker behind a [`super::Presence`].
pub(crate) struct Tracker {
    /// topic → entry.
    topics: DashMap<Arc<str>, Shard>,
    /// How long changes accumulate before a diff goes out.
    window: Duration,
    /// Decorates entries (Phoenix's `fetch/2`).
    fetch: Option<Fetch>,
    /// Makes `phx_ref`s.
    refs: RefGen,
    /// How to replicate across nodes.
    replica_config: ReplicaConfig,
    /// The cluster link, once attached (`None` inside: the adapter had no side channel).
    replica: OnceLock<Option<Arc<Link>>>,
    /// Owner ids for remote presences: from 2^63 up, where channel ids never reach.
    remote_owners: AtomicU64,
}

/// The first owner id of remote presences.
const REMOTE_OWNERS: Owner = 1 << 63;

/// What a `track` needs to tell its caller.
pub(crate) struct Tracked {
    /// The new meta's `phx_ref`.
    pub phx_ref: String,
    /// The owner had nothing tracked on this topic before: it needs an exit guard.
    pub first_for_owner: bool,
}

impl Tracker {
    #[cfg(test)]
    pub(crate) fn new(window: Duration, fetch: Option<Fetch>) -> Self {
        Tracker::with_replica(window, fetch, ReplicaConfig::default())
    }

    pub(crate) fn with_replica(
        window: Duration,
        fetch: Option<Fetch>,
        replica_config: ReplicaConfig,
    ) -> Self {
        Tracker {
            topics: DashMap::new(),
            window,
            fetch,
            refs: RefGen::default(),
            replica_config,
            replica: OnceLock::new(),
            remote_owners: AtomicU64::new(REMOTE_OWNERS),
        }
    }

    pub(crate) fn replica_config(&self) -> &ReplicaConfig {
        &self.replica_config
    }

    /// The cluster link, if attached.
    fn link(&self) -> Option<&Arc<Link>> {
        self.replica.get().and_then(Option::as_ref)
    }

    /// Joins the cluster through `adapter`'s side channel, once; true when replicating. A call
    /// outside a runtime does nothing (a later one may attach).
    pub(crate) fn attach(self: &Arc<Self>, context: &Context, adapter: &Arc<dyn Adapter>) -> bool {
        if let Some(attached) = self.replica.get() {
            return attached.is_some();
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return false;
        }
        self.replica
            .get_or_init(|| replica::start(self, context, adapter, &self.replica_config))
            .is_some()
    }

    /// The link for a change made with `context`: attaches on the first context with an
    /// adapter (before the change is applied, so it is recorded).
    fn link_for(self: &Arc<Self>, context: &Context) -> Option<&Arc<Link>> {
        if self.replica.get().is_none() {
            if let Some(adapter) = context.pubsub().adapter() {
                self.attach(context, adapter);
            }
        }
        self.link()
    }

    /// Says `bye` to the cluster and stops replicating (see [`replica::graceful_permdown`]).
    pub(crate) fn graceful_permdown(&self) {
        if let Some(link) = self.link() {
            link.bye();
        }
    }

    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// The topic's entry, if any (the map's own lock is released on return).
    fn shard(&self, topic: &str) -> Option<Shard> {
        self.topics.get(topic).map(|e| e.value().clone())
    }

    pub(crate) fn track(
        self: &Arc<Self>,
        context: &Context,
        topic: &Arc<str>,
        owner: Owner,
        key: &str,
        meta: Meta,
    ) -> Result<Tracked, StateError> {
        let link = self.link_for(context);
        let phx_ref = self.refs.next(owner);
        // What the other nodes are told: the meta as stored (with its ref).
        let replicated = link.map(|_| {
            let mut m = meta.clone();
            m.insert("phx_ref".into(), Value::String(phx_ref.clone()));
            m
        });
        loop {
            let shard = self
                .topics
                .entry(topic.clone())
                .or_insert_with(|| Arc::new(Mutex::new(TopicEntry::new(topic, context))))
                .value()
                .clone();
            let mut entry = shard.lock();
            if entry.dead {
                continue; // removed between the lookup and the lock: take the new one
            }
            entry.change(|state| state.track(owner, key, meta, &phx_ref))?;
            if let (Some(link), Some(meta)) = (link, replicated) {
                link.record(Change::Join {
                    topic: topic.clone(),
                    key: key.to_string(),
                    phx_ref: phx_ref.clone(),
                    meta,
                });
            }
            let first_for_owner = entry.guarded.insert(owner);
            self.schedule(topic, &mut entry);
            return Ok(Tracked {
                phx_ref,
                first_for_owner,
            });
        }
    }

    pub(crate) fn update(
        self: &Arc<Self>,
        topic: &Arc<str>,
        owner: Owner,
        key: &str,
        meta: Meta,
    ) -> Result<String, StateError> {
        let phx_ref = self.refs.next(owner);
        let shard = self.shard(topic).ok_or(StateError::NotTracked)?;
        let mut entry = shard.lock();
        let old_ref = entry.state.phx_ref_of(owner, key).map(str::to_string);
        let new = entry.state.update(owner, key, meta, &phx_ref)?;
        if let (Some(link), Some(old_ref)) = (self.link(), old_ref) {
            link.record(Change::Join {
                topic: topic.clone(),
                key: key.to_string(),
                phx_ref: phx_ref.clone(),
                meta: new,
            });
            link.record(Change::Leave {
                topic: topic.clone(),
                key: key.to_string(),
                phx_ref: old_ref,
            });
        }
        self.schedule(topic, &mut entry);
        Ok(phx_ref)
    }

    pub(crate) fn untrack(self: &Arc<Self>, topic: &Arc<str>, owner: Owner, key: &str) -> bool {
        let Some(shard) = self.shard(topic) else {
            return false;
        };
        let mut entry = shard.lock();
        let old_ref = entry.state.phx_ref_of(owner, key).map(str::to_string);
        let done = entry.change(|state| state.untrack(owner, key));
        if let (Some(link), Some(phx_ref), true) = (self.link(), old_ref, done) {
            link.record(Change::Leave {
                topic: topic.clone(),
                key: key.to_string(),
                phx_ref,
            });
        }
        self.schedule(topic, &mut entry);
        done
    }

    /// The channel `owner` is gone: untracks all it tracked here and forgets its guard.
    pub(crate) fn owner_exited(self: &Arc<Self>, topic: &Arc<str>, owner: Owner) -> usize {
        let Some(shard) = self.shard(topic) else {
            return 0;
        };
        let (n, idle) = {
            let mut entry = shard.lock();
            if let Some(link) = self.link() {
                for (key, phx_ref) in entry.state.owned(owner) {
                    link.record(Change::Leave {
                        topic: topic.clone(),
                        key,
                        phx_ref,
                    });
                }
            }
            let n = entry.change(|state| state.untrack_owner(owner));
            entry.guarded.remove(&owner);
            if entry.guarded.capacity() > 64 && entry.guarded.len() < entry.guarded.capacity() / 4 {
                entry.guarded.shrink_to_fit();
            }
            self.schedule(topic, &mut entry);
            (n, entry.idle())
        };
        if idle {
            self.remove_if_idle(topic);
        }
        n
    }

    /// A presence of another node joins `topic` (the replica task's call): tracked under an
    /// owner of its own, with the remote `phx_ref`, and diffed like a local join. Not
    /// replicated again. `None` if the state refused it.
    pub(crate) fn remote_join(
        self: &Arc<Self>,
        context: &Context,
        topic: &str,
        key: &str,
        phx_ref: &str,
        meta: Meta,
    ) -> Option<Remote> {
        let owner = self.remote_owners.fetch_add(1, Ordering::Relaxed);
        let topic: Arc<str> = match self.topics.get(topic) {
            Some(e) => e.key().clone(),
            None => Arc::from(topic),
        };
        loop {
            let shard = self
                .topics
                .entry(topic.clone())
                .or_insert_with(|| Arc::new(Mutex::new(TopicEntry::new(&topic, context))))
                .value()
                .clone();
            let mut entry = shard.lock();
            if entry.dead {
                continue;
            }
            entry
                .change(|state| state.track(owner, key, meta, phx_ref))
                .ok()?;
            self.schedule(&topic, &mut entry);
            return Some(Remote { topic, owner });
        }
    }

    /// A presence of another node leaves (its node said so, went down, or was replaced).
    pub(crate) fn remote_leave(self: &Arc<Self>, remote: &Remote) {
        let Some(shard) = self.shard(&remote.topic) else {
            return;
        };
        let idle = {
            let mut entry = shard.lock();
            entry.change(|state| state.untrack_owner(remote.owner));
            self.schedule(&remote.topic, &mut entry);
            entry.idle()
        };
        if idle {
            self.remove_if_idle(&remote.topic);
        }
    }

    /// Forgets the topic if its entry is (still) idle, and gives back the map's spare room.
    fn remove_if_idle(&self, topic: &str) {
        // Lock order: map, then entry. Nobody takes the map's lock while holding an entry's.
        let removed = self
            .topics
            .remove_if(topic, |_, shard| {
                let mut entry = shard.lock();
                let idle = entry.idle();
                entry.dead = idle;
                idle
            })
            .is_some();
        if removed
            && self.topics.capacity() > 1024
            && self.topics.len() < self.topics.capacity() / 4
        {
            self.topics.shrink_to_fit();
        }
    }

    /// The topic's presences, pending changes included, decorated by `fetch`, as a shared
    /// snapshot: the current version's if there is one, else a new read (module docs).
    pub(crate) async fn list(self: &Arc<Self>, topic: &str) -> Snapshot {
        let Some(shard) = self.shard(topic) else {
            return Snapshot::default();
        };
        let mut wanted = None;
        loop {
            let read = {
                let mut entry = shard.lock();
                if let Some(snapshot) = entry.fresh() {
                    return snapshot;
                }
                // Any read from now on holds this caller's changes.
                let wanted = *wanted.get_or_insert(entry.next_build);
                let published = entry.published.borrow().clone();
                if published.number >= wanted {
                    return published.snapshot;
                }
                if entry.building {
                    Err(entry.published.subscribe())
                } else {
                    entry.building = true;
                    Ok(entry.read())
                }
            };
            match read {
                Ok(read) => {
                    let (number, version) = (read.number, read.version);
                    let guard = Building(&shard);
                    let snapshot = Arc::new(self.build(read).await);
                    std::mem::forget(guard);
                    let mut entry = shard.lock();
                    entry.building = false;
                    entry.publish(number, version, &snapshot);
                    return snapshot;
                }
                Err(mut rx) => {
                    // Another list is rendering (or fetching) an older read: wait for it,
                    // then read (or take the read another waiter made meanwhile).
                    if rx.changed().await.is_err() {
                        return Snapshot::default();
                    }
                }
            }
        }
    }

    /// Renders, decorates and encodes a read. A large topic's render and encode run on the
    /// blocking pool: at 20,000 presences they take milliseconds, which on a runtime thread
    /// would delay every other socket served by it (a bystander's heartbeat reply, say).
    async fn build(&self, read: Read) -> PresenceState {
        let large = read.entries.len() > INLINE_BUILD_MAX;
        let map = if large {
            let entries = read.entries;
            match tokio::task::spawn_blocking(move || render(&entries)).await {
                Ok(map) => map,
                Err(_) => return PresenceState::default(), // only if the runtime is going away
            }
        } else {
            render(&read.entries)
        };
        let map = self.fetch(&read.topic, map).await;
        if large {
            let built = tokio::task::spawn_blocking(move || PresenceState::new(map)).await;
            built.unwrap_or_default()
        } else {
            PresenceState::new(map)
        }
    }

    /// [`Tracker::list`] as an owned map, for a push (which needs its own copy anyway).
    /// Without a `fetch` nothing is waited for: the current snapshot is copied, or the state
    /// read under the lock in O(1) and rendered here, outside it — exactly one O(n) copy per
    /// call either way.
    pub(crate) async fn list_owned(self: &Arc<Self>, topic: &str) -> Map<String, Value> {
        if self.fetch.is_some() {
            let shared = self.list(topic).await;
            return shared.map().clone();
        }
        let Some(shard) = self.shard(topic) else {
            return Map::new();
        };
        let read = {
            let mut entry = shard.lock();
            match entry.fresh() {
                Some(snapshot) => Err(snapshot),
                None => Ok(entry.read()),
            }
        };
        match read {
            Err(snapshot) => snapshot.map().clone(),
            Ok(read) => render(&read.entries),
        }
    }

    /// One key's entry, undecorated; marks the pending joins as seen, as `list` does.
    pub(crate) fn get_by_key(&self, topic: &str, key: &str) -> Option<Value> {
        let shard = self.shard(topic)?;
        let mut entry = shard.lock();
        entry.state.expose();
        entry.state.get_by_key(key)
    }

    /// Number of topics with presences or pending work (for tests and metrics).
    pub(crate) fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Decorates `entries` with one `fetch` call (none for an empty batch).
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

    /// Decorates a diff with one `fetch` over all its keys: joins and leaves of a key are
    /// passed as one entry (their metas together), and what `fetch` adds beside `metas` goes
    /// on both sides.
    async fn fetch_diff(&self, topic: &str, diff: Diff) -> Diff {
        let Some(f) = &self.fetch else {
            return diff;
        };
        if diff.is_empty() {
            return diff;
        }
        let Diff { joins, leaves } = diff;
        let mut batch = joins.clone();
        for (key, left) in &leaves {
            match batch.get_mut(key) {
                Some(joined) => {
                    let extra = metas_of(left);
                    if let Some(Value::Array(metas)) = joined.get_mut("metas") {
                        metas.extend(extra);
                    }
                }
                None => {
                    batch.insert(key.clone(), left.clone());
                }
            }
        }
        let mut fetched = f.call(topic, batch).await;
        let decorate = |side: Map<String, Value>,
                        other: &Map<String, Value>,
                        fetched: &mut Map<String, Value>| {
            let mut out = Map::new();
            for (key, entry) in side {
                let decorated = if other.contains_key(&key) {
                    // Both sides: keep this side's metas, copy the other fields.
                    let mut e = entry;
                    if let (Some(Value::Object(from)), Value::Object(into)) =
                        (fetched.get(&key), &mut e)
                    {
                        for (field, v) in from {
                            if field != "metas" {
                                into.insert(field.clone(), v.clone());
                            }
                        }
                    }
                    e
                } else {
                    fetched.remove(&key).unwrap_or(entry)
                };
                out.insert(key, decorated);
            }
            out
        };
        let new_joins = decorate(joins, &leaves, &mut fetched);
        let new_leaves = decorate(leaves, &new_joins, &mut fetched);
        Diff {
            joins: new_joins,
            leaves: new_leaves,
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
    fn take(&self, topic: &str) -> Option<(Diff, Context)> {
        let shard = self.shard(topic)?;
        let idle = {
            let mut entry = shard.lock();
            if let Some(diff) = entry.state.take_diff() {
                return Some((diff, entry.context.clone()));
            }
            entry.flushing = false;
            entry.idle()
        };
        if idle {
            self.remove_if_idle(topic);
        }
        None
    }
}

/// Held while a list fetches outside the lock: if that list is dropped mid-fetch (its channel
/// ended), the waiting lists are woken to build for themselves.
struct Building<'a>(&'a Shard);

impl Drop for Building<'_> {
    fn drop(&mut self) {
        let mut entry = self.0.lock();
        entry.building = false;
        entry.published.send_modify(|_| {});
    }
}

/// `entry["metas"]` as a list.
fn metas_of(entry: &Value) -> Vec<Value> {
    match entry.get("metas") {
        Some(Value::Array(m)) => m.clone(),
        _ => Vec::new(),
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
        let Some((diff, context)) = tracker.take(&topic) else {
            return;
        };
        let payload = tracker.fetch_diff(&topic, diff).await.into_payload();
        // Local only: in a cluster every node computes the diffs of the state it holds (its
        // own and its peers' replicated presences), so a diff sent to every node would reach
        // each client once per node.
        context.pubsub().local_broadcast(BroadcastMsg {
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
