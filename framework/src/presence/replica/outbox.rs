//! The sending side: this node's own presence changes, queued as they happen and sent as
//! numbered deltas, and the *mirror* — this node's presences exactly as its deltas so far
//! describe them — from which snapshots are cut.
//!
//! Why a mirror rather than reading the tracker's topics for a snapshot: a snapshot must be the
//! state as of one delta number, and the topics change under their own locks while it would be
//! read. The mirror changes only where deltas are made (the replica task), so "the mirror" and
//! "every delta up to `seq`" are the same state by construction. It holds each presence's
//! encoded join, which is also what makes a snapshot a concatenation.
//!
//! Changes are queued by the tracker under the topic's lock, so the changes of one presence
//! (one ref) are queued in the order they happened; across topics the order does not matter,
//! since refs are unique and a ref only ever joins once and leaves once.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::wire;
use crate::presence::state::Meta;

/// One change to this node's own presences.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// A presence joined (a track, or the new meta of an update).
    Join {
        /// Its topic.
        topic: Arc<str>,
        /// Its key.
        key: String,
        /// Its ref.
        phx_ref: String,
        /// Its meta, `phx_ref` (and `phx_ref_prev`) included.
        meta: Meta,
    },
    /// A presence left (an untrack, its channel's exit, the old meta of an update).
    Leave {
        /// Its topic.
        topic: Arc<str>,
        /// Its key.
        key: String,
        /// Its ref.
        phx_ref: String,
    },
}

/// Changes waiting for the next delta.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    changes: Mutex<Vec<Change>>,
    /// Woken when the queue stops being empty.
    pub(crate) ready: Notify,
}

impl Outbox {
    /// Queues a change (called under the topic's lock: O(1), no await).
    pub(crate) fn push(&self, change: Change) {
        let was_empty = {
            let mut changes = self.changes.lock();
            changes.push(change);
            changes.len() == 1
        };
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Takes every queued change.
    pub(crate) fn take(&self) -> Vec<Change> {
        std::mem::take(&mut *self.changes.lock())
    }
}

/// This node's presences as replicated so far: ref → encoded join, and the last delta number.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    /// The number of the last delta made (0: none).
    seq: u64,
    /// ref → its encoded join.
    entries: HashMap<String, Vec<u8>>,
}

impl Mirror {
    /// The number of the last delta made.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Number of replicated presences.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Applies `changes` and returns the deltas that tell them, numbered on from the last one
    /// (none if they cancel out: a presence that joined and left since the last delta is not
    /// mentioned at all). Joins come before leaves, which is the order a receiver applies.
    pub(crate) fn deltas(
        &mut self,
        node: &str,
        incarnation: u64,
        changes: Vec<Change>,
    ) -> Vec<Vec<u8>> {
        let mut joins: Vec<Option<Vec<u8>>> = Vec::new();
        let mut joined_at: HashMap<String, usize> = HashMap::new();
        let mut leaves: Vec<Vec<u8>> = Vec::new();
        for change in changes {
            match change {
                Change::Join {
                    topic,
                    key,
                    phx_ref,
                    meta,
                } => {
                    if self.entries.contains_key(&phx_ref) {
                        continue;
                    }
                    let entry = wire::join_entry(&topic, &key, &phx_ref, &meta);
                    if entry.len() > wire::MAX_ENTRY_BYTES {
                        crate::warn_limited!(
                            topic = %topic,
                            key = %key,
                            bytes = entry.len(),
                            "presence meta too large to replicate: other nodes will not list it"
                        );
                        continue;
                    }
                    self.entries.insert(phx_ref.clone(), entry.clone());
                    joined_at.insert(phx_ref, joins.len());
                    joins.push(Some(entry));
                }
                Change::Leave {
                    topic,
                    key,
                    phx_ref,
                } => {
                    if self.entries.remove(&phx_ref).is_none() {
                        continue; // never replicated (too large, or tracked before attaching)
                    }
                    if let Some(i) = joined_at.remove(&phx_ref) {
                        joins[i] = None; // joined and left since the last delta
                        continue;
                    }
                    leaves.push(wire::leave_entry(&topic, &key, &phx_ref));
                }
            }
        }
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to_fit();
        }
        let joins: Vec<&[u8]> = joins.iter().flatten().map(Vec::as_slice).collect();
        let leaves: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
        if joins.is_empty() && leaves.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        // Joins first, then leaves, each cut to the chunk budget; each run is one delta.
        for run in wire::chunks(&joins).into_iter().filter(|r| !r.is_empty()) {
            self.seq += 1;
            out.push(wire::delta(node, incarnation, self.seq, &run, &[]));
        }
        for run in wire::chunks(&leaves).into_iter().filter(|r| !r.is_empty()) {
            self.seq += 1;
            out.push(wire::delta(node, incarnation, self.seq, &[], &run));
        }
        out
    }

    /// The mirror as a snapshot: its parts, in order.
    pub(crate) fn snapshot(&self, node: &str, incarnation: u64) -> Vec<Vec<u8>> {
        let entries: Vec<&[u8]> = self.entries.values().map(Vec::as_slice).collect();
        let runs = wire::chunks(&entries);
        let parts = u32::try_from(runs.len()).unwrap_or(u32::MAX);
        if parts > wire::MAX_PARTS {
            crate::warn_limited!(
                presences = entries.len(),
                "presence snapshot too large for the replication protocol: not sent"
            );
            return Vec::new();
        }
        runs.iter()
            .enumerate()
            .map(|(i, run)| wire::snapshot(node, incarnation, self.seq, i as u32, parts, run))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::replica::wire::{decode, Message};

    fn join(r: &str) -> Change {
        Change::Join {
            topic: "t".into(),
            key: "k".into(),
            phx_ref: r.into(),
            meta: Meta::new(),
        }
    }

    fn leave(r: &str) -> Change {
        Change::Leave {
            topic: "t".into(),
            key: "k".into(),
            phx_ref: r.into(),
        }
    }

    #[test]
    fn a_join_and_leave_between_deltas_cancel_and_numbers_only_count_deltas_sent() {
        let mut m = Mirror::default();
        assert!(m.deltas("a", 1, vec![join("R1"), leave("R1")]).is_empty());
        assert_eq!(m.seq(), 0);
        let d = m.deltas("a", 1, vec![join("R2"), leave("R9")]);
        assert_eq!(d.len(), 1);
        assert_eq!(m.seq(), 1);
        let Some(Message::Delta {
            seq, joins, leaves, ..
        }) = decode(&d[0])
        else {
            panic!("a delta");
        };
        assert_eq!((seq, joins.len(), leaves.len()), (1, 1, 0));
        let d = m.deltas("a", 1, vec![leave("R2")]);
        assert_eq!(d.len(), 1);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn large_batches_are_cut_into_numbered_deltas_and_snapshots_into_parts() {
        let mut m = Mirror::default();
        let big = serde_json::Value::String("x".repeat(1000));
        let changes: Vec<Change> = (0..1000)
            .map(|i| Change::Join {
                topic: "t".into(),
                key: i.to_string(),
                phx_ref: format!("R{i}"),
                meta: Meta::from_iter([("pad".to_string(), big.clone())]),
            })
            .collect();
        let deltas = m.deltas("a", 1, changes);
        assert!(deltas.len() >= 3, "{}", deltas.len());
        let mut joined = 0;
        for (i, d) in deltas.iter().enumerate() {
            assert!(d.len() <= wire::MAX_MESSAGE_BYTES);
            let Some(Message::Delta { seq, joins, .. }) = decode(d) else {
                panic!("a delta");
            };
            assert_eq!(seq, i as u64 + 1);
            joined += joins.len();
        }
        assert_eq!(joined, 1000);
        let parts = m.snapshot("a", 1);
        assert!(parts.len() >= 3);
        let mut entries = 0;
        for (i, p) in parts.iter().enumerate() {
            let Some(Message::Snapshot {
                seq,
                part,
                parts: n,
                entries: e,
                ..
            }) = decode(p)
            else {
                panic!("a snapshot part");
            };
            assert_eq!((seq, part as usize, n as usize), (m.seq(), i, parts.len()));
            entries += e.len();
        }
        assert_eq!(entries, 1000);
    }

    #[test]
    fn a_meta_too_large_is_not_replicated_nor_its_leave() {
        let mut m = Mirror::default();
        let huge = serde_json::Value::String("x".repeat(wire::MAX_ENTRY_BYTES));
        let change = Change::Join {
            topic: "t".into(),
            key: "k".into(),
            phx_ref: "R1".into(),
            meta: Meta::from_iter([("pad".to_string(), huge)]),
        };
        assert!(m.deltas("a", 1, vec![change]).is_empty());
        assert!(m.deltas("a", 1, vec![leave("R1")]).is_empty());
        assert_eq!(m.seq(), 0);
    }
}
