//! A topic's `presence_state` as built once per read: the map and its encoded JSON.
//!
//! Why both: during a join wave every joiner is pushed the same state (one read serves all the
//! joiners that tracked before it, see the tracker), but each push carries its receiver's
//! `join_ref`, so it cannot be one broadcast frame. Encoding the map per joiner made the wave
//! O(N²) in encoder work; encoding it once per read leaves one copy of the bytes per joiner.
//! The encode happens where the map is built, off any lock, so nobody waits on another task's
//! encode.

use std::ops::Deref;

use phx_protocol::EncodedObject;
use serde_json::{Map, Value};

/// key → `{"metas": [...]}`, decorated by `fetch`, and the same encoded for a push. It never
/// changes once built: a newer version of the topic is a new `PresenceState`.
#[derive(Debug, Default)]
pub struct PresenceState {
    map: Map<String, Value>,
    encoded: EncodedObject,
}

impl PresenceState {
    /// Builds the state and encodes it.
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        let encoded = EncodedObject::new(&map);
        PresenceState { map, encoded }
    }

    /// The presences by key.
    pub fn map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// The encoded JSON, for [`crate::channel::ChannelSocket::push_encoded`].
    pub fn encoded(&self) -> &EncodedObject {
        &self.encoded
    }
}

impl Deref for PresenceState {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}
