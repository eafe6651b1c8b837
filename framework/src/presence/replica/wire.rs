//! The replication messages, version 1, as JSON: one message per side-channel message, so that
//! `redis-cli MONITOR` shows what the nodes tell each other.
//!
//! ```text
//! {"v":1,"type":"heartbeat","node":"web-1","incarnation":7263516112,"seq":12}
//! {"v":1,"type":"delta","node":"web-1","incarnation":7263516112,"seq":13,
//!   "joins":[{"topic":"room:1","key":"42","phx_ref":"GOthXEDFkYvA1wYh","meta":{"online_at":"…","phx_ref":"GOthXEDFkYvA1wYh"}}],
//!   "leaves":[{"topic":"room:1","key":"7","phx_ref":"GOthWzv1mJPA1wYh"}]}
//! {"v":1,"type":"snapshot_request","from":"web-2","to":"web-1"}
//! {"v":1,"type":"snapshot","node":"web-1","incarnation":7263516112,"seq":13,"part":0,"parts":1,"entries":[…joins…]}
//! {"v":1,"type":"bye","node":"web-1","incarnation":7263516112}
//! ```
//!
//! Everything received is untrusted: a message over [`MAX_MESSAGE_BYTES`], of another version,
//! of an unknown type or malformed is ignored whole ([`decode`] returns `None`); an entry
//! whose topic, key or ref is empty or too long is skipped alone ([`Join::is_valid`]). Nothing
//! here panics on input.
//!
//! Deltas and snapshots are assembled from entries encoded once each ([`join_entry`],
//! [`leave_entry`]): the sender keeps the encoded joins of its own presences (the mirror, see
//! `outbox`), so a snapshot is a concatenation, and a message's size is known before it is
//! built, which is how they are cut to [`CHUNK_BYTES`].

use serde::{Deserialize, Serialize};

use crate::presence::state::Meta;

/// The protocol version every message carries as `"v"`.
pub const VERSION: u64 = 1;

/// Received messages longer than this are ignored (what this node sends stays well under it).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Deltas and snapshot parts are cut so that their entries take at most about this much (one
/// entry more at most); a pub/sub server handles many small messages better than one huge
/// one (Redis disconnects a subscriber whose output buffer passes 32 MiB).
pub const CHUNK_BYTES: usize = 256 * 1024;

/// A presence whose encoded join is longer than this is not replicated: it would not fit a
/// message. Its node lists it; the others do not (and it is logged).
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// Longest node name, topic or key accepted.
pub const MAX_NAME_BYTES: usize = 1024;

/// Longest `phx_ref` accepted (ours are 16 characters).
pub const MAX_REF_BYTES: usize = 128;

/// Most parts a snapshot may announce.
pub const MAX_PARTS: u32 = 4096;

/// A presence joining (or, in a snapshot, present): as a delta and a snapshot carry it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Join {
    /// Its topic.
    pub topic: String,
    /// Its presence key.
    pub key: String,
    /// Its `phx_ref`, unique in the cluster (the owning node made it).
    pub phx_ref: String,
    /// The meta as clients see it (its `phx_ref` is set from the field above).
    pub meta: Meta,
}

impl Join {
    /// Topic, key and ref are within bounds (the meta is bounded by the message).
    pub fn is_valid(&self) -> bool {
        valid_name(&self.topic) && self.key.len() <= MAX_NAME_BYTES && valid_ref(&self.phx_ref)
    }
}

/// A presence leaving: its ref identifies it (topic and key are there for readers).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Leave {
    /// Its topic.
    pub topic: String,
    /// Its presence key.
    pub key: String,
    /// Its `phx_ref`.
    pub phx_ref: String,
}

impl Leave {
    /// Within bounds.
    pub fn is_valid(&self) -> bool {
        valid_name(&self.topic) && self.key.len() <= MAX_NAME_BYTES && valid_ref(&self.phx_ref)
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_BYTES
}

fn valid_ref(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_REF_BYTES
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// "I am alive, and my last delta is `seq`": sent every heartbeat period.
    Heartbeat {
        /// Sender.
        node: String,
        /// The sender's process run.
        incarnation: u64,
        /// The sequence number of the last delta it sent (0: none yet).
        seq: u64,
    },
    /// Changes to the sender's own presences since its previous delta.
    Delta {
        /// Sender.
        node: String,
        /// The sender's process run.
        incarnation: u64,
        /// One more than the previous delta's.
        seq: u64,
        /// Presences that joined.
        joins: Vec<Join>,
        /// Presences that left.
        leaves: Vec<Leave>,
    },
    /// "Send me your presences": a receiver lost track of `to`.
    SnapshotRequest {
        /// Who asks.
        from: String,
        /// Who should answer.
        to: String,
    },
    /// Part of the sender's presences as of its delta `seq` (Phoenix.Tracker's transfer).
    Snapshot {
        /// Sender.
        node: String,
        /// The sender's process run.
        incarnation: u64,
        /// The delta this state includes.
        seq: u64,
        /// This part's index, from 0.
        part: u32,
        /// How many parts the snapshot has (at least 1).
        parts: u32,
        /// The presences in this part.
        entries: Vec<Join>,
    },
    /// The sender shuts down cleanly: its presences leave now.
    Bye {
        /// Sender.
        node: String,
        /// The sender's process run.
        incarnation: u64,
    },
}

impl Message {
    /// The node the message speaks for (the requester, for a snapshot request).
    pub fn node(&self) -> &str {
        match self {
            Message::Heartbeat { node, .. }
            | Message::Delta { node, .. }
            | Message::Snapshot { node, .. }
            | Message::Bye { node, .. } => node,
            Message::SnapshotRequest { from, .. } => from,
        }
    }
}

/// What every message starts with; read first to pick the type to decode.
#[derive(Deserialize)]
struct Head {
    v: u64,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct HeartbeatIn {
    node: String,
    incarnation: u64,
    seq: u64,
}

#[derive(Deserialize)]
struct DeltaIn {
    node: String,
    incarnation: u64,
    seq: u64,
    #[serde(default)]
    joins: Vec<Join>,
    #[serde(default)]
    leaves: Vec<Leave>,
}

#[derive(Deserialize)]
struct RequestIn {
    from: String,
    to: String,
}

#[derive(Deserialize)]
struct SnapshotIn {
    node: String,
    incarnation: u64,
    seq: u64,
    part: u32,
    parts: u32,
    #[serde(default)]
    entries: Vec<Join>,
}

#[derive(Deserialize)]
struct ByeIn {
    node: String,
    incarnation: u64,
}

/// Decodes one received message; `None` for anything that is not a well-formed version-1
/// message within bounds.
pub fn decode(bytes: &[u8]) -> Option<Message> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    let head: Head = serde_json::from_slice(bytes).ok()?;
    if head.v != VERSION {
        return None;
    }
    let message = match head.kind.as_str() {
        "heartbeat" => {
            let m: HeartbeatIn = serde_json::from_slice(bytes).ok()?;
            Message::Heartbeat {
                node: m.node,
                incarnation: m.incarnation,
                seq: m.seq,
            }
        }
        "delta" => {
            let m: DeltaIn = serde_json::from_slice(bytes).ok()?;
            Message::Delta {
                node: m.node,
                incarnation: m.incarnation,
                seq: m.seq,
                joins: m.joins,
                leaves: m.leaves,
            }
        }
        "snapshot_request" => {
            let m: RequestIn = serde_json::from_slice(bytes).ok()?;
            if !valid_name(&m.to) {
                return None;
            }
            Message::SnapshotRequest {
                from: m.from,
                to: m.to,
            }
        }
        "snapshot" => {
            let m: SnapshotIn = serde_json::from_slice(bytes).ok()?;
            if m.parts == 0 || m.parts > MAX_PARTS || m.part >= m.parts {
                return None;
            }
            Message::Snapshot {
                node: m.node,
                incarnation: m.incarnation,
                seq: m.seq,
                part: m.part,
                parts: m.parts,
                entries: m.entries,
            }
        }
        "bye" => {
            let m: ByeIn = serde_json::from_slice(bytes).ok()?;
            Message::Bye {
                node: m.node,
                incarnation: m.incarnation,
            }
        }
        _ => return None,
    };
    valid_name(message.node()).then_some(message)
}

#[derive(Serialize)]
struct JoinOut<'a> {
    topic: &'a str,
    key: &'a str,
    phx_ref: &'a str,
    meta: &'a Meta,
}

#[derive(Serialize)]
struct LeaveOut<'a> {
    topic: &'a str,
    key: &'a str,
    phx_ref: &'a str,
}

#[derive(Serialize)]
struct HeartbeatOut<'a> {
    v: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    node: &'a str,
    incarnation: u64,
    seq: u64,
}

#[derive(Serialize)]
struct RequestOut<'a> {
    v: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    from: &'a str,
    to: &'a str,
}

#[derive(Serialize)]
struct ByeOut<'a> {
    v: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    node: &'a str,
    incarnation: u64,
}

/// Serializing maps of strings and JSON values cannot fail; this keeps the type honest.
fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// One join (or snapshot entry), encoded.
pub fn join_entry(topic: &str, key: &str, phx_ref: &str, meta: &Meta) -> Vec<u8> {
    to_vec(&JoinOut {
        topic,
        key,
        phx_ref,
        meta,
    })
}

/// One leave, encoded.
pub fn leave_entry(topic: &str, key: &str, phx_ref: &str) -> Vec<u8> {
    to_vec(&LeaveOut {
        topic,
        key,
        phx_ref,
    })
}

/// A heartbeat.
pub fn heartbeat(node: &str, incarnation: u64, seq: u64) -> Vec<u8> {
    to_vec(&HeartbeatOut {
        v: VERSION,
        kind: "heartbeat",
        node,
        incarnation,
        seq,
    })
}

/// A snapshot request from `from` to `to`.
pub fn snapshot_request(from: &str, to: &str) -> Vec<u8> {
    to_vec(&RequestOut {
        v: VERSION,
        kind: "snapshot_request",
        from,
        to,
    })
}

/// A bye.
pub fn bye(node: &str, incarnation: u64) -> Vec<u8> {
    to_vec(&ByeOut {
        v: VERSION,
        kind: "bye",
        node,
        incarnation,
    })
}

/// `{"v":1,"type":<kind>,"node":<node>,"incarnation":…,"seq":…` — the common start of a delta
/// and a snapshot, left open.
fn open(kind: &str, node: &str, incarnation: u64, seq: u64, room: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(room + 128);
    out.extend_from_slice(b"{\"v\":");
    out.extend_from_slice(VERSION.to_string().as_bytes());
    out.extend_from_slice(b",\"type\":");
    out.extend_from_slice(&to_vec(&kind));
    out.extend_from_slice(b",\"node\":");
    out.extend_from_slice(&to_vec(&node));
    out.extend_from_slice(b",\"incarnation\":");
    out.extend_from_slice(incarnation.to_string().as_bytes());
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out
}

/// `,"<field>":[e1,e2,…]`.
fn list<'a>(out: &mut Vec<u8>, field: &str, entries: impl IntoIterator<Item = &'a [u8]>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(b"\":[");
    for (i, e) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.push(b']');
}

/// A delta from encoded entries ([`join_entry`], [`leave_entry`]).
pub fn delta(node: &str, incarnation: u64, seq: u64, joins: &[&[u8]], leaves: &[&[u8]]) -> Vec<u8> {
    let room = joins.iter().chain(leaves).map(|e| e.len() + 1).sum();
    let mut out = open("delta", node, incarnation, seq, room);
    list(&mut out, "joins", joins.iter().copied());
    list(&mut out, "leaves", leaves.iter().copied());
    out.push(b'}');
    out
}

/// One part of a snapshot from encoded entries ([`join_entry`]).
pub fn snapshot(
    node: &str,
    incarnation: u64,
    seq: u64,
    part: u32,
    parts: u32,
    entries: &[&[u8]],
) -> Vec<u8> {
    let room = entries.iter().map(|e| e.len() + 1).sum();
    let mut out = open("snapshot", node, incarnation, seq, room);
    out.extend_from_slice(b",\"part\":");
    out.extend_from_slice(part.to_string().as_bytes());
    out.extend_from_slice(b",\"parts\":");
    out.extend_from_slice(parts.to_string().as_bytes());
    list(&mut out, "entries", entries.iter().copied());
    out.push(b'}');
    out
}

/// Cuts encoded entries into runs of about [`CHUNK_BYTES`] (never an empty run, unless there
/// are no entries at all: then one empty run, so that an empty snapshot is still one part).
pub fn chunks<'a>(entries: &[&'a [u8]]) -> Vec<Vec<&'a [u8]>> {
    let mut out: Vec<Vec<&[u8]>> = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let mut size = 0usize;
    for e in entries {
        if !current.is_empty() && size + e.len() > CHUNK_BYTES {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += e.len() + 1;
        current.push(e);
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: serde_json::Value) -> Meta {
        match v {
            serde_json::Value::Object(m) => m,
            _ => Meta::new(),
        }
    }

    #[test]
    fn every_message_round_trips() {
        let m = meta(json!({"online_at": "1", "phx_ref": "R1"}));
        let j = join_entry("room:1", "42", "R1", &m);
        let l = leave_entry("room:1", "7", "R0");
        assert_eq!(
            decode(&heartbeat("a", u64::MAX, 3)),
            Some(Message::Heartbeat {
                node: "a".into(),
                incarnation: u64::MAX,
                seq: 3
            })
        );
        let join = Join {
            topic: "room:1".into(),
            key: "42".into(),
            phx_ref: "R1".into(),
            meta: m.clone(),
        };
        assert_eq!(
            decode(&delta("a", 9, 4, &[&j], &[&l])),
            Some(Message::Delta {
                node: "a".into(),
                incarnation: 9,
                seq: 4,
                joins: vec![join.clone()],
                leaves: vec![Leave {
                    topic: "room:1".into(),
                    key: "7".into(),
                    phx_ref: "R0".into()
                }],
            })
        );
        assert_eq!(
            decode(&snapshot("a", 9, 4, 1, 2, &[&j, &j])),
            Some(Message::Snapshot {
                node: "a".into(),
                incarnation: 9,
                seq: 4,
                part: 1,
                parts: 2,
                entries: vec![join.clone(), join],
            })
        );
        assert_eq!(
            decode(&snapshot_request("b", "a")),
            Some(Message::SnapshotRequest {
                from: "b".into(),
                to: "a".into()
            })
        );
        assert_eq!(
            decode(&bye("a", 9)),
            Some(Message::Bye {
                node: "a".into(),
                incarnation: 9
            })
        );
    }

    #[test]
    fn messages_read_as_documented() {
        let text = String::from_utf8(heartbeat("web-1", 5, 12)).expect("utf-8");
        assert_eq!(
            text,
            r#"{"v":1,"type":"heartbeat","node":"web-1","incarnation":5,"seq":12}"#
        );
        let l = leave_entry("room:1", "7", "R0");
        let text = String::from_utf8(delta("web-\"1", 5, 13, &[], &[&l])).expect("utf-8");
        assert_eq!(
            text,
            r#"{"v":1,"type":"delta","node":"web-\"1","incarnation":5,"seq":13,"joins":[],"leaves":[{"topic":"room:1","key":"7","phx_ref":"R0"}]}"#
        );
    }

    #[test]
    fn garbage_other_versions_and_out_of_bounds_are_ignored() {
        for bad in [
            &b""[..],
            b"null",
            b"[1,2]",
            b"{\"v\":1}",
            b"{\"v\":2,\"type\":\"heartbeat\",\"node\":\"a\",\"incarnation\":1,\"seq\":1}",
            b"{\"v\":1,\"type\":\"heartbeat\",\"node\":\"a\",\"incarnation\":-1,\"seq\":1}",
            b"{\"v\":1,\"type\":\"heartbeat\",\"node\":\"\",\"incarnation\":1,\"seq\":1}",
            b"{\"v\":1,\"type\":\"warp\",\"node\":\"a\"}",
            b"{\"v\":1,\"type\":\"snapshot\",\"node\":\"a\",\"incarnation\":1,\"seq\":1,\"part\":1,\"parts\":1}",
            b"{\"v\":1,\"type\":\"snapshot\",\"node\":\"a\",\"incarnation\":1,\"seq\":1,\"part\":0,\"parts\":0}",
            b"{\"v\":1,\"type\":\"delta\",\"node\":\"a\",\"incarnation\":1,\"seq\":1,\"joins\":[{\"topic\":1}]}",
            b"\xff\xfe",
        ] {
            assert_eq!(decode(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(decode(&heartbeat(&long, 1, 1)), None);
        let mut huge = heartbeat("a", 1, 1);
        huge.truncate(huge.len() - 1);
        huge.extend(std::iter::repeat_n(b' ', MAX_MESSAGE_BYTES));
        huge.push(b'}');
        assert_eq!(decode(&huge), None);
        // Deeply nested metas hit serde_json's recursion limit instead of the stack.
        let deep = format!(
            "{{\"v\":1,\"type\":\"delta\",\"node\":\"a\",\"incarnation\":1,\"seq\":1,\"joins\":[{{\"topic\":\"t\",\"key\":\"k\",\"phx_ref\":\"r\",\"meta\":{{\"x\":{}1{}}}}}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(decode(deep.as_bytes()), None);
    }

    #[test]
    fn entries_out_of_bounds_are_invalid_alone() {
        let ok = Join {
            topic: "t".into(),
            key: String::new(),
            phx_ref: "r".into(),
            meta: Meta::new(),
        };
        assert!(ok.is_valid(), "an empty key is a key");
        let mut no_topic = ok.clone();
        no_topic.topic.clear();
        assert!(!no_topic.is_valid());
        let mut long_ref = ok.clone();
        long_ref.phx_ref = "r".repeat(MAX_REF_BYTES + 1);
        assert!(!long_ref.is_valid());
    }

    #[test]
    fn chunks_stay_near_the_budget_and_an_empty_list_is_one_part() {
        assert_eq!(chunks(&[]).len(), 1);
        let e = vec![b'x'; 1000];
        let many: Vec<&[u8]> = (0..1000).map(|_| &e[..]).collect();
        let cut = chunks(&many);
        assert_eq!(cut.iter().map(Vec::len).sum::<usize>(), 1000);
        assert!(cut.len() >= 1000 * 1000 / CHUNK_BYTES);
        for c in &cut {
            assert!(!c.is_empty());
            assert!(c.iter().map(|e| e.len() + 1).sum::<usize>() <= CHUNK_BYTES + 1001);
        }
    }
}
