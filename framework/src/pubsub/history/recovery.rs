//! What a join on a history topic learns: its position, and what it missed if it can have it.

use std::sync::Arc;

use phx_protocol::Payload;
use serde_json::{json, Value};

use super::Epoch;
use crate::pubsub::BroadcastMsg;

/// Why a join was or was not recovered (the `outcome` label of `phx_history_recoveries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Same epoch, nothing trimmed past the cursor: every broadcast after it is pushed.
    Recovered,
    /// The join carried no (well-formed) `since`.
    NoCursor,
    /// The cursor's epoch is not the topic's: the server restarted, or the topic's history was
    /// forgotten, since the client's last position.
    EpochChanged,
    /// Broadcasts after the cursor were trimmed (count, age or bytes).
    Trimmed,
    /// The cursor is past the latest offset of its epoch: not a position this server gave.
    Ahead,
}

impl Outcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Recovered => "recovered",
            Outcome::NoCursor => "no_cursor",
            Outcome::EpochChanged => "epoch_changed",
            Outcome::Trimmed => "trimmed",
            Outcome::Ahead => "ahead",
        }
    }
}

/// A join's view of its topic's history, read under the topic's lock after the channel
/// subscribed (so every broadcast with a larger offset reaches the channel live).
#[derive(Debug)]
pub struct Recovery {
    /// Whether the missed broadcasts are in [`Recovery::missed`].
    pub outcome: Outcome,
    /// The topic's current epoch.
    pub epoch: Epoch,
    /// The offset of the topic's latest broadcast when it was read (0 when none): the join's
    /// position. Broadcasts up to it are either in `missed` or not for this client; those after
    /// it arrive live.
    pub offset: u64,
    /// When recovered: every broadcast after the cursor, up to `offset`, in offset order.
    pub missed: Vec<Arc<BroadcastMsg>>,
}

impl Recovery {
    /// `recovered` in the join reply.
    pub fn recovered(&self) -> bool {
        self.outcome == Outcome::Recovered
    }

    /// The join reply with `recovered`, `epoch` and `offset` merged in (they win over the
    /// channel's own keys of those names). A reply that is not a JSON object (binary) is left
    /// as it is: there is nowhere to put the position, and the client cannot recover later.
    pub fn merge_into(&self, reply: Payload) -> Payload {
        match reply {
            Payload::Json(Value::Object(mut map)) => {
                map.insert("recovered".into(), Value::Bool(self.recovered()));
                map.insert("epoch".into(), json!(self.epoch.as_str()));
                map.insert("offset".into(), json!(self.offset));
                Payload::Json(Value::Object(map))
            }
            Payload::Json(Value::Null) => Payload::Json(json!({
                "recovered": self.recovered(),
                "epoch": self.epoch.as_str(),
                "offset": self.offset,
            })),
            other => other,
        }
    }
}
