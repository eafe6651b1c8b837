//! The presences of one topic and the diff not yet published — pure data, no clocks, no tasks.
//!
//! Each tracked presence is one *meta* (a JSON map carrying its `phx_ref`) under a *key*, owned
//! by one channel. Everything is identified by `phx_ref`, the way the JS client's `syncDiff`
//! identifies metas, so other nodes' presences (see `replica`) are merged into the same structure
//! by ref, each under an owner of its own.
//!
//! ## Coalescing
//!
//! Changes accumulate in a pending diff until the tracker takes it ([`TopicPresences::take_diff`]):
//! several joins merge into one `joins` map, and a leave of a ref whose join is still pending
//! cancels both — nobody was told about the join, so nobody needs the leave.
//!
//! Except when somebody *was* told: [`TopicPresences::list`] (what `presence_state` carries)
//! shows pending joins too, since a joiner must see everyone tracked so far, itself included.
//! A client that got such a list holds the ref; if the join and leave then cancelled, it would
//! keep the ref forever. So a list marks the pending joins it showed as *exposed*, and the leave
//! of an exposed join is kept (the join itself is dropped from the diff: whoever did not see the
//! list never learns of the ref, and a leave of an unknown ref is a no-op in `syncDiff`).
//!
//! Why a client converges: it is subscribed before it lists, so it receives every diff taken
//! after its list (plus maybe a few earlier ones, which `syncDiff` re-applies harmlessly: a
//! join of a ref it holds changes nothing, a leave of a ref it lacks changes nothing, and refs
//! are never reused). For each ref, the last diff mentioning it states its current status, and
//! a ref no later diff mentions is as the list showed it — which the exposure rule guarantees.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};

/// A meta: the map given to `track`/`update`, plus `phx_ref` (and `phx_ref_prev` after an update).
pub type Meta = Map<String, Value>;

/// Who owns a presence: the channel that tracked it (its id).
pub type Owner = u64;

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// This owner already tracks this key (Phoenix: `{:error, {:already_tracked, ...}}`).
    #[error("already tracked")]
    AlreadyTracked,
    /// This owner does not track this key (Phoenix: `{:error, :not_tracked}`).
    #[error("not tracked")]
    NotTracked,
}

/// One tracked presence.
#[derive(Debug, Clone)]
struct Tracked {
    /// Its `phx_ref` (also inside `meta`), kept apart to compare without a map lookup.
    phx_ref: String,
    /// The meta as clients see it.
    meta: Meta,
}

/// Tracking order within a topic: metas of a key are listed in the order they were tracked.
type Seq = u64;

/// One key's metas by tracking order.
type KeyMetas = BTreeMap<Seq, Tracked>;

/// key → metas: a persistent map, so reading every presence of a topic is an O(1) clone
/// (structure shared with the live state, copied on write) and the O(n) rendering of a
/// `presence_state` happens outside the tracker's lock ([`render`]).
#[derive(Debug, Clone, Default)]
pub struct Entries(imbl::HashMap<Arc<str>, Arc<KeyMetas>>);

impl Entries {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no key is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Entries {
    /// Each key with its `{"metas": [...]}`, rendered one at a time (in no particular order).
    pub fn rendered(&self) -> impl Iterator<Item = (String, Value)> + '_ {
        self.0
            .iter()
            .map(|(key, metas)| (key.to_string(), render_key(metas)))
    }
}

/// key → `{"metas": [...]}` for `entries`: what `presence_state` carries.
pub fn render(entries: &Entries) -> Map<String, Value> {
    entries.rendered().collect()
}

fn render_key(metas: &KeyMetas) -> Value {
    let list: Vec<Value> = metas
        .values()
        .map(|t| Value::Object(t.meta.clone()))
        .collect();
    let mut entry = Map::new();
    entry.insert("metas".into(), Value::Array(list));
    Value::Object(entry)
}

/// Shrinks `map` once it holds less than a quarter of what it can: a wave of joins grows the
/// maps to its peak, and without this the leave wave would leave that peak allocated.
fn shrink_map<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to_fit();
    }
}

/// A join waiting in the pending diff.
#[derive(Debug, Clone)]
struct PendingJoin {
    /// The presence key.
    key: String,
    /// The joined meta (with its `phx_ref`).
    meta: Meta,
}

/// The diff not yet published.
#[derive(Debug, Default)]
struct Pending {
    /// Joins in the order they happened; `None` once cancelled or superseded by a leave.
    joins: Vec<Option<PendingJoin>>,
    /// `phx_ref` → index in `joins`, for cancelling.
    join_index: HashMap<String, usize>,
    /// Joins below this index were shown by a `list` (see the module docs).
    exposed: usize,
    /// Leaves in the order they happened: key and the meta that left.
    leaves: Vec<(String, Meta)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.join_index.is_empty() && self.leaves.is_empty()
    }

    fn join(&mut self, key: &str, meta: &Meta, phx_ref: &str) {
        self.join_index
            .insert(phx_ref.to_string(), self.joins.len());
        self.joins.push(Some(PendingJoin {
            key: key.to_string(),
            meta: meta.clone(),
        }));
    }

    fn leave(&mut self, key: &str, meta: Meta, phx_ref: &str) {
        if let Some(i) = self.join_index.remove(phx_ref) {
            shrink_map(&mut self.join_index);
            self.joins[i] = None;
            if i >= self.exposed {
                return; // joined and left within the window, unseen: the two cancel
            }
        }
        self.leaves.push((key.to_string(), meta));
    }
}

/// A `presence_diff` payload: `{"joins": {key: {"metas": [...]}}, "leaves": {...}}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diff {
    /// key → `{"metas": [...]}` of the metas that joined.
    pub joins: Map<String, Value>,
    /// key → `{"metas": [...]}` of the metas that left.
    pub leaves: Map<String, Value>,
}

impl Diff {
    /// Whether nothing joined or left.
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }

    /// The wire payload; both keys are always present, as in Phoenix.
    pub fn into_payload(self) -> Value {
        let mut m = Map::new();
        m.insert("joins".into(), Value::Object(self.joins));
        m.insert("leaves".into(), Value::Object(self.leaves));
        Value::Object(m)
    }
}

/// Adds `meta` to `map[key].metas`, creating the entry.
fn push_meta(map: &mut Map<String, Value>, key: &str, meta: Meta) {
    let entry = map
        .entry(key.to_string())
        .or_insert_with(|| serde_json::json!({ "metas": [] }));
    if let Some(Value::Array(metas)) = entry.get_mut("metas") {
        metas.push(Value::Object(meta));
    }
}

/// The presences of one topic, and the changes since the last [`TopicPresences::take_diff`].
///
/// Every change is O(1) in the number of presences (O(log m) in the m metas of its key, and
/// O(k) in the k keys its owner holds here, both usually 1): a channel's exit looks up what it
/// tracked through `owners`, never by scanning the topic.
#[derive(Debug, Default)]
pub struct TopicPresences {
    /// key → its metas by tracking order.
    by_key: Entries,
    /// owner → the keys it tracks here, with the meta's place under the key (never empty).
    owners: HashMap<Owner, Vec<(String, Seq)>>,
    /// Next [`Seq`].
    next_seq: Seq,
    /// Number of tracked metas.
    len: usize,
    /// Bumped by every change: a list built at this version is still current.
    version: u64,
    /// The diff not yet published.
    pending: Pending,
}

impl TopicPresences {
    /// No presences.
    pub fn new() -> Self {
        TopicPresences::default()
    }

    /// Whether nobody is tracked here.
    pub fn is_empty(&self) -> bool {
        self.by_key.0.is_empty()
    }

    /// Whether there are changes not yet taken.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Number of tracked metas.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Changes so far: equal versions mean equal presences.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// `owner`'s place under `key`, if it tracks it.
    fn seq_of(&self, owner: Owner, key: &str) -> Option<Seq> {
        self.owners
            .get(&owner)?
            .iter()
            .find(|(k, _)| k == key)
            .map(|&(_, seq)| seq)
    }

    /// `track`: `owner` starts presence `key` with `meta`, whose `phx_ref` becomes `phx_ref`.
    pub fn track(
        &mut self,
        owner: Owner,
        key: &str,
        mut meta: Meta,
        phx_ref: &str,
    ) -> Result<(), StateError> {
        if self.seq_of(owner, key).is_some() {
            return Err(StateError::AlreadyTracked);
        }
        meta.insert("phx_ref".into(), Value::String(phx_ref.to_string()));
        self.pending.join(key, &meta, phx_ref);
        let seq = self.next_seq;
        self.next_seq += 1;
        let tracked = Tracked {
            phx_ref: phx_ref.to_string(),
            meta,
        };
        match self.by_key.0.get_mut(key) {
            Some(metas) => {
                Arc::make_mut(metas).insert(seq, tracked);
            }
            None => {
                self.by_key
                    .0
                    .insert(Arc::from(key), Arc::new(BTreeMap::from([(seq, tracked)])));
            }
        }
        self.owners
            .entry(owner)
            .or_default()
            .push((key.to_string(), seq));
        self.len += 1;
        self.version += 1;
        Ok(())
    }

    /// `update`: replaces `owner`'s meta under `key` by `meta` with a new `phx_ref` and
    /// `phx_ref_prev` = the old one; reported as a join of the new meta and a leave of the old.
    /// Returns the new meta.
    pub fn update(
        &mut self,
        owner: Owner,
        key: &str,
        mut meta: Meta,
        phx_ref: &str,
    ) -> Result<Meta, StateError> {
        let seq = self.seq_of(owner, key).ok_or(StateError::NotTracked)?;
        let t = self
            .by_key
            .0
            .get_mut(key)
            .and_then(|metas| Arc::make_mut(metas).get_mut(&seq))
            .ok_or(StateError::NotTracked)?;
        meta.insert("phx_ref".into(), Value::String(phx_ref.to_string()));
        meta.insert("phx_ref_prev".into(), Value::String(t.phx_ref.clone()));
        let old_ref = std::mem::replace(&mut t.phx_ref, phx_ref.to_string());
        let old = std::mem::replace(&mut t.meta, meta.clone());
        self.pending.join(key, &meta, phx_ref);
        self.pending.leave(key, old, &old_ref);
        self.version += 1;
        Ok(meta)
    }

    /// `untrack`: `owner` stops presence `key`. False if it did not track it.
    pub fn untrack(&mut self, owner: Owner, key: &str) -> bool {
        let Some(keys) = self.owners.get_mut(&owner) else {
            return false;
        };
        let Some(i) = keys.iter().position(|(k, _)| k == key) else {
            return false;
        };
        let (_, seq) = keys.swap_remove(i);
        if keys.is_empty() {
            self.owners.remove(&owner);
            shrink_map(&mut self.owners);
        }
        self.remove(key, seq);
        true
    }

    /// Removes the meta at `seq` under `key` and records its leave.
    fn remove(&mut self, key: &str, seq: Seq) {
        let Some(metas) = self.by_key.0.get_mut(key) else {
            return;
        };
        let Some(t) = Arc::make_mut(metas).remove(&seq) else {
            return;
        };
        if metas.is_empty() {
            self.by_key.0.remove(key);
        }
        self.pending.leave(key, t.meta, &t.phx_ref);
        self.len -= 1;
        self.version += 1;
    }

    /// Untracks every presence of `owner` (its channel went away), in tracking order; returns
    /// how many.
    pub fn untrack_owner(&mut self, owner: Owner) -> usize {
        let Some(mut keys) = self.owners.remove(&owner) else {
            return 0;
        };
        shrink_map(&mut self.owners);
        keys.sort_unstable_by_key(|&(_, seq)| seq);
        for (key, seq) in &keys {
            self.remove(key, *seq);
        }
        keys.len()
    }

    /// `owner`'s meta under `key`, if tracked.
    pub fn get(&self, owner: Owner, key: &str) -> Option<&Meta> {
        let seq = self.seq_of(owner, key)?;
        self.by_key.0.get(key)?.get(&seq).map(|t| &t.meta)
    }

    /// The `phx_ref` of `owner`'s meta under `key`, if tracked.
    pub fn phx_ref_of(&self, owner: Owner, key: &str) -> Option<&str> {
        let seq = self.seq_of(owner, key)?;
        self.by_key
            .0
            .get(key)?
            .get(&seq)
            .map(|t| t.phx_ref.as_str())
    }

    /// Every (key, `phx_ref`) that `owner` tracks here, in tracking order.
    pub fn owned(&self, owner: Owner) -> Vec<(String, String)> {
        let Some(keys) = self.owners.get(&owner) else {
            return Vec::new();
        };
        let mut keys = keys.clone();
        keys.sort_unstable_by_key(|&(_, seq)| seq);
        keys.into_iter()
            .filter_map(|(key, seq)| {
                let r = self.by_key.0.get(key.as_str())?.get(&seq)?.phx_ref.clone();
                Some((key, r))
            })
            .collect()
    }

    /// `get_by_key`: the metas under `key` as `{"metas": [...]}`, or `None`.
    pub fn get_by_key(&self, key: &str) -> Option<Value> {
        self.by_key.0.get(key).map(|metas| render_key(metas))
    }

    /// Every presence, as a cheap persistent copy (see [`Entries`]); does not mark anything.
    pub fn entries(&self) -> Entries {
        self.by_key.clone()
    }

    /// `list`: every key → `{"metas": [...]}`, including changes not yet taken. Marks the
    /// pending joins as seen, so their leaves are never cancelled away (module docs).
    pub fn list(&mut self) -> Map<String, Value> {
        self.expose();
        self.snapshot()
    }

    /// Marks the pending joins as seen by a client (done by [`TopicPresences::list`]; call it
    /// before handing out anything else read from here, such as [`TopicPresences::get_by_key`]).
    pub fn expose(&mut self) {
        self.pending.exposed = self.pending.joins.len();
    }

    /// The current presences without marking anything (for inspection and tests).
    pub fn snapshot(&self) -> Map<String, Value> {
        render(&self.by_key)
    }

    /// Takes the changes since the last call as one diff (`None` if nothing is left after
    /// coalescing).
    pub fn take_diff(&mut self) -> Option<Diff> {
        let pending = std::mem::take(&mut self.pending);
        let mut diff = Diff::default();
        for join in pending.joins.into_iter().flatten() {
            push_meta(&mut diff.joins, &join.key, join.meta);
        }
        for (key, meta) in pending.leaves {
            push_meta(&mut diff.leaves, &key, meta);
        }
        (!diff.is_empty()).then_some(diff)
    }
}
