//! The receiving side: what this node knows of every other node's presences, and the rules
//! that keep it right over a lossy channel (Phoenix.Tracker's replica states, simplified to
//! what a pub/sub channel with one sender order needs).
//!
//! A peer is known by its node name and *incarnation* (a random number per process run). Its
//! deltas are numbered 1, 2, …; one is applied only if it is the next one. Anything else means
//! messages were lost, and the peer is asked for a *snapshot* of its presences as of some
//! delta, which replaces what this node held for it (old against new: what is gone leaves,
//! what is new joins, what stayed is untouched, so clients see only real changes). Until the
//! snapshot is in, the peer's deltas are ignored: the snapshot, sent after them on the same
//! ordered channel, includes them. Heartbeats carry the number of the last delta, so a lost
//! last delta is noticed within a heartbeat, and they let a request that got lost be asked
//! again.
//!
//! A new incarnation is a restarted peer: its old presences belong to a process that is gone.
//! They are replaced as soon as the new state is known — at once if the new process is heard
//! from before its second delta (a process starts with no presences, so heartbeat 0 is its
//! whole state and delta 1 all of it since), else by its snapshot. The old incarnation is
//! *retired*: late messages from it are ignored, so they cannot bring it back. A peer heard
//! from for no longer than the down timeout is *down*: its presences leave, and it is forgotten
//! (if it comes back — a partition that healed — its next message makes it a new peer, and its
//! snapshot brings its presences back). A `bye` makes it leave at once and retires it.
//!
//! Applying to the tracker goes through `Apply`, so this file stays free of locks and tasks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::wire::{Join, Leave, Message};
use crate::presence::state::{Meta, Owner};

/// How long a snapshot request is given before it is asked again (on a heartbeat).
pub const SNAPSHOT_RETRY: Duration = Duration::from_secs(2);

/// At most this many peers are followed (more names than that is not a cluster, it is noise).
pub const MAX_PEERS: usize = 1024;

/// At most this many presences are held for one peer.
pub const MAX_PEER_ENTRIES: usize = 1_000_000;

/// Retired incarnations remembered.
const RETIRED: usize = 256;

/// Where remote presences go: the tracker's topics.
pub(crate) trait Apply {
    /// A remote presence joins `topic`; returns how to remove it later (`None`: refused).
    fn join(&self, topic: &str, key: &str, phx_ref: &str, meta: Meta) -> Option<Remote>;
    /// A remote presence leaves.
    fn leave(&self, remote: &Remote);
}

/// A remote presence as held in a topic: which topic, and the local owner standing for it.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    /// The topic it is tracked on.
    pub topic: Arc<str>,
    /// The owner id it is tracked under (one per remote presence, never a channel's id).
    pub owner: Owner,
}

/// What the replica should do after a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing.
    None,
    /// Ask this node for a snapshot.
    Request(String),
    /// Somebody asked this node for its snapshot.
    SendSnapshot,
}

/// Whether a peer's deltas can be applied.
#[derive(Debug, Clone, Copy)]
enum Sync {
    /// Everything up to `seq` applied.
    Current,
    /// Nothing of this incarnation is known yet (what is held, if anything, is an older
    /// incarnation's): only a heartbeat 0, a delta 1 or a snapshot can make it current.
    Unknown,
    /// A snapshot was asked for (at this instant); deltas are ignored until it arrives.
    Awaiting(Instant),
}

/// A snapshot being put together from its parts.
#[derive(Debug)]
struct Assembly {
    seq: u64,
    parts: u32,
    next: u32,
    entries: Vec<Join>,
}

/// One other node.
#[derive(Debug)]
struct Peer {
    incarnation: u64,
    /// The last delta applied (or the snapshot's).
    seq: u64,
    /// Last message from this incarnation.
    heard: Instant,
    sync: Sync,
    assembly: Option<Assembly>,
    /// ref → where it is held.
    entries: HashMap<String, Remote>,
}

impl Peer {
    fn new(incarnation: u64, now: Instant) -> Self {
        Peer {
            incarnation,
            seq: 0,
            heard: now,
            sync: Sync::Unknown,
            assembly: None,
            entries: HashMap::new(),
        }
    }

    fn join(&mut self, j: Join, apply: &dyn Apply) {
        if !j.is_valid()
            || self.entries.contains_key(&j.phx_ref)
            || self.entries.len() >= MAX_PEER_ENTRIES
        {
            return;
        }
        if let Some(remote) = apply.join(&j.topic, &j.key, &j.phx_ref, j.meta) {
            self.entries.insert(j.phx_ref, remote);
        }
    }

    fn leave(&mut self, l: &Leave, apply: &dyn Apply) {
        if !l.is_valid() {
            return;
        }
        if let Some(remote) = self.entries.remove(&l.phx_ref) {
            apply.leave(&remote);
        }
    }

    fn leave_all(&mut self, apply: &dyn Apply) {
        for remote in self.entries.values() {
            apply.leave(remote);
        }
        self.entries = HashMap::new();
    }

    /// Replaces the presences by `entries`, telling only the difference.
    fn replace(&mut self, entries: Vec<Join>, apply: &dyn Apply) {
        let fresh: HashSet<&str> = entries.iter().map(|j| j.phx_ref.as_str()).collect();
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|r| !fresh.contains(r.as_str()))
            .cloned()
            .collect();
        for r in gone {
            if let Some(remote) = self.entries.remove(&r) {
                apply.leave(&remote);
            }
        }
        for j in entries {
            self.join(j, apply);
        }
    }

    /// Waits for a snapshot; asks for one unless a request is fresh.
    fn await_snapshot(&mut self, node: &str, now: Instant) -> Action {
        match self.sync {
            Sync::Awaiting(asked) if now < asked + SNAPSHOT_RETRY => Action::None,
            _ => {
                self.sync = Sync::Awaiting(now);
                Action::Request(node.to_string())
            }
        }
    }
}

/// Every other node this one hears.
pub(crate) struct Peers {
    /// This node's name (its own messages are never applied).
    me: String,
    down_timeout: Duration,
    peers: HashMap<String, Peer>,
    /// Incarnations that ended (bye, or replaced by a newer one), oldest first.
    retired: VecDeque<(String, u64)>,
}

impl Peers {
    pub(crate) fn new(me: &str, down_timeout: Duration) -> Self {
        Peers {
            me: me.to_string(),
            down_timeout,
            peers: HashMap::new(),
            retired: VecDeque::new(),
        }
    }

    /// Number of peers followed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    fn retire(&mut self, node: &str, incarnation: u64) {
        if self.retired.len() >= RETIRED {
            self.retired.pop_front();
        }
        self.retired.push_back((node.to_string(), incarnation));
    }

    fn is_retired(&self, node: &str, incarnation: u64) -> bool {
        self.retired
            .iter()
            .any(|(n, i)| *i == incarnation && n == node)
    }

    /// The peer `node` as of a message from `incarnation`: created if new (`None` when there
    /// are too many), its old incarnation retired (and the peer [`Sync::Unknown`] again) if
    /// this is a new one.
    fn peer(&mut self, node: &str, incarnation: u64, now: Instant) -> Option<&mut Peer> {
        let renewed = match self.peers.get(node) {
            Some(p) if p.incarnation == incarnation => false,
            Some(p) => {
                let old = p.incarnation;
                self.retire(node, old);
                true
            }
            None if self.peers.len() >= MAX_PEERS => {
                crate::warn_limited!(node, "presence replication: too many peers, ignoring one");
                return None;
            }
            None => {
                self.peers
                    .insert(node.to_string(), Peer::new(incarnation, now));
                true
            }
        };
        let p = self.peers.get_mut(node)?;
        if renewed {
            // A new incarnation keeps the old one's presences until its state is known.
            p.incarnation = incarnation;
            p.seq = 0;
            p.sync = Sync::Unknown;
            p.assembly = None;
        }
        p.heard = now;
        Some(p)
    }

    /// Handles one message from another node.
    pub(crate) fn handle(&mut self, message: Message, now: Instant, apply: &dyn Apply) -> Action {
        if message.node() == self.me {
            crate::warn_limited!(
                node = %self.me,
                "presence replication: another node sends as this node's name; give every node its own NODE_NAME"
            );
            return Action::None;
        }
        match message {
            Message::Heartbeat {
                node,
                incarnation,
                seq,
            } => {
                if self.is_retired(&node, incarnation) {
                    return Action::None;
                }
                let Some(p) = self.peer(&node, incarnation, now) else {
                    return Action::None;
                };
                if matches!(p.sync, Sync::Unknown) && seq == 0 {
                    p.leave_all(apply); // a new process with nothing tracked yet
                    p.sync = Sync::Current;
                    return Action::None;
                }
                match p.sync {
                    Sync::Unknown | Sync::Awaiting(_) => p.await_snapshot(&node, now),
                    Sync::Current if seq > p.seq => p.await_snapshot(&node, now), // lost deltas
                    Sync::Current => Action::None,
                }
            }
            Message::Delta {
                node,
                incarnation,
                seq,
                joins,
                leaves,
            } => {
                if self.is_retired(&node, incarnation) {
                    return Action::None;
                }
                let Some(p) = self.peer(&node, incarnation, now) else {
                    return Action::None;
                };
                if matches!(p.sync, Sync::Unknown) && seq == 1 {
                    p.leave_all(apply); // the new process's first change: its whole state
                    p.sync = Sync::Current;
                }
                match p.sync {
                    Sync::Unknown | Sync::Awaiting(_) => p.await_snapshot(&node, now),
                    Sync::Current if seq == p.seq + 1 => {
                        for j in joins {
                            p.join(j, apply);
                        }
                        for l in &leaves {
                            p.leave(l, apply);
                        }
                        p.seq = seq;
                        Action::None
                    }
                    Sync::Current if seq <= p.seq => Action::None, // a duplicate
                    Sync::Current => p.await_snapshot(&node, now), // a gap
                }
            }
            Message::Snapshot {
                node,
                incarnation,
                seq,
                part,
                parts,
                entries,
            } => {
                if self.is_retired(&node, incarnation) {
                    return Action::None;
                }
                let Some(p) = self.peer(&node, incarnation, now) else {
                    return Action::None;
                };
                let wanted = !matches!(p.sync, Sync::Current) || seq > p.seq;
                if !wanted {
                    return Action::None; // another node's answer, and nothing new to us
                }
                if part == 0 {
                    if !matches!(p.sync, Sync::Awaiting(_)) {
                        p.sync = Sync::Awaiting(now); // deltas wait for the whole snapshot
                    }
                    p.assembly = Some(Assembly {
                        seq,
                        parts,
                        next: 0,
                        entries: Vec::new(),
                    });
                }
                let Some(a) = p.assembly.as_mut() else {
                    return Action::None; // a part without its start: wait for the retry
                };
                if a.seq != seq || a.parts != parts || a.next != part {
                    p.assembly = None; // a part was lost: the next request starts over
                    return Action::None;
                }
                if a.entries.len() + entries.len() > MAX_PEER_ENTRIES {
                    p.assembly = None;
                    crate::warn_limited!(node, "presence replication: snapshot too large, ignored");
                    return Action::None;
                }
                a.entries.extend(entries);
                a.next += 1;
                if a.next < a.parts {
                    return Action::None;
                }
                let Some(done) = p.assembly.take() else {
                    return Action::None;
                };
                p.replace(done.entries, apply);
                p.seq = done.seq;
                p.sync = Sync::Current;
                Action::None
            }
            Message::SnapshotRequest { to, .. } => {
                if to == self.me {
                    Action::SendSnapshot
                } else {
                    Action::None
                }
            }
            Message::Bye { node, incarnation } => {
                if self.is_retired(&node, incarnation) {
                    return Action::None;
                }
                if let Some(p) = self.peers.get_mut(&node) {
                    if p.incarnation != incarnation {
                        // An older incarnation than the one followed: nothing of it is held.
                        self.retire(&node, incarnation);
                        return Action::None;
                    }
                    p.leave_all(apply);
                    self.peers.remove(&node);
                }
                self.retire(&node, incarnation);
                Action::None
            }
        }
    }

    /// When the next peer goes down if it stays silent.
    pub(crate) fn next_down(&self) -> Option<Instant> {
        self.peers
            .values()
            .map(|p| p.heard + self.down_timeout)
            .min()
    }

    /// Every peer silent for the down timeout: its presences leave, and it is forgotten.
    /// Returns the nodes that went down.
    pub(crate) fn expire(&mut self, now: Instant, apply: &dyn Apply) -> Vec<String> {
        let down: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| p.heard + self.down_timeout <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for node in &down {
            if let Some(mut p) = self.peers.remove(node) {
                p.leave_all(apply);
            }
        }
        down
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::collections::BTreeSet;

    /// An `Apply` that records the presences held, by ref.
    #[derive(Default)]
    struct Held {
        refs: Mutex<BTreeSet<String>>,
        by_owner: Mutex<HashMap<Owner, String>>,
        next: Mutex<Owner>,
        joins: Mutex<usize>,
        leaves: Mutex<usize>,
    }

    impl Apply for Held {
        fn join(&self, topic: &str, _key: &str, phx_ref: &str, _meta: Meta) -> Option<Remote> {
            let mut next = self.next.lock();
            *next += 1;
            self.refs.lock().insert(phx_ref.to_string());
            self.by_owner.lock().insert(*next, phx_ref.to_string());
            *self.joins.lock() += 1;
            Some(Remote {
                topic: topic.into(),
                owner: *next,
            })
        }
        fn leave(&self, remote: &Remote) {
            if let Some(r) = self.by_owner.lock().remove(&remote.owner) {
                self.refs.lock().remove(&r);
            }
            *self.leaves.lock() += 1;
        }
    }

    impl Held {
        fn refs(&self) -> Vec<String> {
            self.refs.lock().iter().cloned().collect()
        }
    }

    fn j(r: &str) -> Join {
        Join {
            topic: "t".into(),
            key: "k".into(),
            phx_ref: r.into(),
            meta: Meta::new(),
        }
    }

    fn delta(node: &str, inc: u64, seq: u64, joins: &[&str], leaves: &[&str]) -> Message {
        Message::Delta {
            node: node.into(),
            incarnation: inc,
            seq,
            joins: joins.iter().map(|r| j(r)).collect(),
            leaves: leaves
                .iter()
                .map(|r| Leave {
                    topic: "t".into(),
                    key: "k".into(),
                    phx_ref: (*r).into(),
                })
                .collect(),
        }
    }

    fn snap(node: &str, inc: u64, seq: u64, part: u32, parts: u32, refs: &[&str]) -> Message {
        Message::Snapshot {
            node: node.into(),
            incarnation: inc,
            seq,
            part,
            parts,
            entries: refs.iter().map(|r| j(r)).collect(),
        }
    }

    fn hb(node: &str, inc: u64, seq: u64) -> Message {
        Message::Heartbeat {
            node: node.into(),
            incarnation: inc,
            seq,
        }
    }

    const DOWN: Duration = Duration::from_secs(5);

    #[test]
    fn deltas_in_order_apply_and_a_gap_asks_for_a_snapshot_that_replaces() {
        let held = Held::default();
        let mut p = Peers::new("me", DOWN);
        let t = Instant::now();
        assert_eq!(p.handle(hb("a", 1, 0), t, &held), Action::None);
        assert_eq!(
            p.handle(delta("a", 1, 1, &["R1", "R2"], &[]), t, &held),
            Action::None
        );
        assert_eq!(
            p.handle(delta("a", 1, 2, &[], &["R1"]), t, &held),
            Action::None
        );
        assert_eq!(held.refs(), ["R2"]);
        // Delta 3 is lost; 4 is a gap.
        assert_eq!(
            p.handle(delta("a", 1, 4, &["R4"], &[]), t, &held),
            Action::Request("a".into())
        );
        assert_eq!(
            p.handle(delta("a", 1, 5, &["R5"], &[]), t, &held),
            Action::None
        );
        assert_eq!(held.refs(), ["R2"], "ignored while awaiting");
        // The snapshot (sent after 5) replaces: R2 stayed, so it is not touched.
        let joins_before = *held.joins.lock();
        assert_eq!(
            p.handle(snap("a", 1, 5, 0, 2, &["R2", "R3"]), t, &held),
            Action::None
        );
        assert_eq!(held.refs(), ["R2"], "half a snapshot changes nothing");
        p.handle(snap("a", 1, 5, 1, 2, &["R4", "R5"]), t, &held);
        assert_eq!(held.refs(), ["R2", "R3", "R4", "R5"]);
        assert_eq!(*held.joins.lock() - joins_before, 3, "R2 was not re-joined");
        p.handle(delta("a", 1, 6, &[], &["R3"]), t, &held);
        assert_eq!(held.refs(), ["R2", "R4", "R5"]);
        // A duplicate is ignored.
        p.handle(delta("a", 1, 6, &["R9"], &[]), t, &held);
        assert_eq!(held.refs(), ["R2", "R4", "R5"]);
    }

    #[test]
    fn a_heartbeat_ahead_of_the_deltas_asks_again_after_the_retry() {
        let held = Held::default();
        let mut p = Peers::new("me", DOWN);
        let t = Instant::now();
        assert_eq!(
            p.handle(hb("a", 1, 3), t, &held),
            Action::Request("a".into())
        );
        assert_eq!(
            p.handle(hb("a", 1, 3), t + Duration::from_secs(1), &held),
            Action::None
        );
        assert_eq!(
            p.handle(hb("a", 1, 3), t + SNAPSHOT_RETRY, &held),
            Action::Request("a".into())
        );
        // A part out of order (the first was lost) is dropped, and so is the assembly.
        p.handle(snap("a", 1, 3, 1, 2, &["R2"]), t, &held);
        assert!(held.refs().is_empty());
        p.handle(snap("a", 1, 3, 0, 1, &["R1"]), t, &held);
        assert_eq!(held.refs(), ["R1"]);
        assert_eq!(
            p.handle(hb("a", 1, 3), t + SNAPSHOT_RETRY * 3, &held),
            Action::None
        );
    }

    #[test]
    fn a_new_incarnation_replaces_and_the_old_one_stays_retired() {
        let held = Held::default();
        let mut p = Peers::new("me", DOWN);
        let t = Instant::now();
        p.handle(delta("a", 1, 1, &["OLD"], &[]), t, &held);
        // The restarted process tracked already: snapshot.
        assert_eq!(
            p.handle(hb("a", 2, 4), t, &held),
            Action::Request("a".into())
        );
        assert_eq!(held.refs(), ["OLD"], "kept until the new state is known");
        p.handle(snap("a", 2, 4, 0, 1, &["NEW"]), t, &held);
        assert_eq!(held.refs(), ["NEW"]);
        // Late messages of the old process change nothing.
        p.handle(delta("a", 1, 2, &["LATE"], &[]), t, &held);
        p.handle(hb("a", 1, 2), t, &held);
        assert_eq!(held.refs(), ["NEW"]);
        // A restart that has not tracked yet empties at once; one whose first delta arrives
        // first starts from it.
        p.handle(hb("a", 3, 0), t, &held);
        assert!(held.refs().is_empty());
        p.handle(delta("a", 3, 1, &["X"], &[]), t, &held);
        p.handle(delta("a", 4, 1, &["Y"], &[]), t, &held);
        assert_eq!(held.refs(), ["Y"]);
        // A restart first heard through the middle of a snapshot is still unknown: nothing
        // is applied over the old presences, and its next heartbeat asks.
        p.handle(snap("a", 5, 3, 1, 2, &["Z"]), t, &held);
        assert_eq!(held.refs(), ["Y"]);
        assert_eq!(
            p.handle(hb("a", 5, 3), t, &held),
            Action::Request("a".into())
        );
        assert_eq!(
            p.handle(delta("a", 5, 4, &["V"], &[]), t, &held),
            Action::None
        );
        assert_eq!(held.refs(), ["Y"]);
        p.handle(snap("a", 5, 4, 0, 1, &["W", "V"]), t, &held);
        assert_eq!(held.refs(), ["V", "W"]);
    }

    #[test]
    fn silence_takes_a_peer_down_and_bye_at_once() {
        let held = Held::default();
        let mut p = Peers::new("me", DOWN);
        let t = Instant::now();
        p.handle(delta("a", 1, 1, &["A"], &[]), t, &held);
        p.handle(delta("b", 1, 1, &["B"], &[]), t, &held);
        p.handle(hb("b", 1, 1), t + Duration::from_secs(3), &held);
        assert_eq!(p.next_down(), Some(t + DOWN));
        assert!(p
            .expire(t + DOWN - Duration::from_millis(1), &held)
            .is_empty());
        assert_eq!(p.expire(t + DOWN, &held), ["a"]);
        assert_eq!(held.refs(), ["B"]);
        p.handle(
            Message::Bye {
                node: "b".into(),
                incarnation: 1,
            },
            t + Duration::from_secs(4),
            &held,
        );
        assert!(held.refs().is_empty());
        assert_eq!(p.len(), 0);
        // A message of the incarnation that said bye does not bring it back.
        p.handle(delta("b", 1, 2, &["B2"], &[]), t, &held);
        assert!(held.refs().is_empty());
        // One that went down does come back, through its snapshot.
        assert_eq!(
            p.handle(hb("a", 1, 1), t + DOWN * 2, &held),
            Action::Request("a".into())
        );
    }

    #[test]
    fn own_name_requests_for_others_and_bad_entries_are_ignored() {
        let held = Held::default();
        let mut p = Peers::new("me", DOWN);
        let t = Instant::now();
        assert_eq!(
            p.handle(delta("me", 1, 1, &["X"], &[]), t, &held),
            Action::None
        );
        assert!(held.refs().is_empty());
        let req = |to: &str| Message::SnapshotRequest {
            from: "a".into(),
            to: to.into(),
        };
        assert_eq!(p.handle(req("b"), t, &held), Action::None);
        assert_eq!(p.handle(req("me"), t, &held), Action::SendSnapshot);
        p.handle(delta("a", 1, 1, &["", "OK", "OK"], &[""]), t, &held);
        assert_eq!(held.refs(), ["OK"]);
        assert_eq!(*held.joins.lock(), 1, "a ref joins once");
    }
}
