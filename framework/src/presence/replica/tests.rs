//! Presence across in-process nodes: each node its own Context and tracker, wired by an
//! in-memory side channel ([`Net`]) that stands in for the Redis transport (at-most-once, in
//! order per sender, no echo) and can drop messages or cut a node off. Paused time throughout.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::{graceful_permdown, ReplicaConfig, DEFAULT_DOWN_TIMEOUT, HEARTBEAT};
use crate::config::Config;
use crate::context::Context;
use crate::presence::state::Meta;
use crate::presence::tests::{normalize_js, normalize_list, sync_diff, JsState};
use crate::presence::tracker::{Tracker, UntrackOnExit};
use crate::pubsub::{
    Adapter, AdapterStatus, BroadcastMsg, SideChannel, Subscriber, SubscriberKind,
};

const TOPIC: &str = "room:lobby";
const WINDOW: Duration = Duration::from_millis(50);

/// A filter deciding whether a message from one node to another is lost.
type Dropper = Box<dyn FnMut(&str, &str, &Value) -> bool + Send>;

/// One receiving end of a side channel.
struct Port {
    adapter: u64,
    node: String,
    channel: String,
    tx: mpsc::Sender<Vec<u8>>,
}

/// The in-memory transport.
#[derive(Default)]
struct Net {
    ports: Mutex<Vec<Port>>,
    /// Adapters cut off (as if their process died): nothing in or out.
    cut: Mutex<HashSet<u64>>,
    dropper: Mutex<Option<Dropper>>,
    /// Everything sent: (from node, message).
    sent: Mutex<Vec<(String, Value)>>,
    ids: AtomicU64,
}

impl Net {
    fn deliver(&self, from: u64, from_node: &str, channel: &str, bytes: Vec<u8>) {
        if self.cut.lock().contains(&from) {
            return;
        }
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.sent
            .lock()
            .push((from_node.to_string(), value.clone()));
        let cut = self.cut.lock().clone();
        for port in self.ports.lock().iter() {
            if port.adapter == from || port.channel != channel || cut.contains(&port.adapter) {
                continue;
            }
            if let Some(drop) = self.dropper.lock().as_mut() {
                if drop(from_node, &port.node, &value) {
                    continue;
                }
            }
            let _ = port.tx.try_send(bytes.clone());
        }
    }

    /// Raw bytes to every port of `node` on `channel`, as if sent by a stranger.
    fn inject(&self, node: &str, channel: &str, bytes: &[u8]) {
        for port in self.ports.lock().iter() {
            if port.node == node && port.channel == channel {
                let _ = port.tx.try_send(bytes.to_vec());
            }
        }
    }

    fn sent_by(&self, node: &str, kind: &str) -> usize {
        self.sent
            .lock()
            .iter()
            .filter(|(n, v)| n == node && v["type"] == kind)
            .count()
    }
}

/// The adapter of one in-process node: only side channels.
struct TestAdapter {
    id: u64,
    node: String,
    net: Arc<Net>,
    side_channels: bool,
}

impl Adapter for TestAdapter {
    fn node_name(&self) -> &str {
        &self.node
    }
    fn broadcast(&self, _msg: &Arc<BroadcastMsg>) {}
    fn direct_broadcast(&self, _node: &str, _msg: &Arc<BroadcastMsg>) {}
    fn status(&self) -> AdapterStatus {
        AdapterStatus::Connected
    }
    fn side_channel(&self, name: &str) -> Option<SideChannel> {
        if !self.side_channels {
            return None;
        }
        let (tx, rx) = mpsc::channel(4096);
        self.net.ports.lock().push(Port {
            adapter: self.id,
            node: self.node.clone(),
            channel: name.to_string(),
            tx,
        });
        let (net, id, node, channel) = (
            self.net.clone(),
            self.id,
            self.node.clone(),
            name.to_string(),
        );
        Some(SideChannel {
            send: Arc::new(move |bytes| net.deliver(id, &node, &channel, bytes)),
            receive: rx,
        })
    }
}

/// One node: its context (with a recorder of the `presence_diff`s on [`TOPIC`]), tracker and
/// adapter.
struct Node {
    ctx: Context,
    tracker: Arc<Tracker>,
    adapter: Arc<dyn Adapter>,
    id: u64,
    diffs: Arc<Mutex<Vec<Value>>>,
}

impl Node {
    fn start(net: &Arc<Net>, name: &str) -> Node {
        Node::start_named(net, name, "Presence")
    }

    fn start_named(net: &Arc<Net>, name: &str, presence: &str) -> Node {
        let ctx = Context::new(Config::default());
        let diffs = Arc::new(Mutex::new(Vec::new()));
        let sink = diffs.clone();
        ctx.pubsub().subscribe(
            TOPIC,
            Subscriber {
                id: ctx.next_id(),
                kind: SubscriberKind::Callback(Arc::new(move |msg| {
                    assert_eq!(msg.event, "presence_diff");
                    if let phx_protocol::Payload::Json(v) = &msg.payload {
                        sink.lock().push(v.clone());
                    }
                })),
            },
        );
        let tracker = Arc::new(Tracker::with_replica(
            WINDOW,
            None,
            ReplicaConfig {
                name: presence.into(),
                down_timeout: DEFAULT_DOWN_TIMEOUT,
            },
        ));
        let id = net.ids.fetch_add(1, Ordering::Relaxed);
        let adapter: Arc<dyn Adapter> = Arc::new(TestAdapter {
            id,
            node: name.to_string(),
            net: net.clone(),
            side_channels: true,
        });
        assert!(tracker.attach(&ctx, &adapter));
        Node {
            ctx,
            tracker,
            adapter,
            id,
            diffs,
        }
    }

    fn track(&self, owner: u64, key: &str, meta: Value) -> String {
        let Value::Object(meta) = meta else {
            panic!("a map");
        };
        self.tracker
            .track(&self.ctx, &TOPIC.into(), owner, key, meta)
            .expect("track")
            .phx_ref
    }

    async fn list(&self) -> Map<String, Value> {
        self.tracker.list_owned(TOPIC).await
    }

    /// `phx_presence_entries` of this node.
    fn entries(&self) -> i64 {
        self.ctx.metrics().presence_entries.get()
    }

    /// key → refs listed here, sorted.
    async fn refs(&self) -> BTreeMap<String, Vec<String>> {
        self.list()
            .await
            .iter()
            .map(|(k, v)| {
                let mut refs: Vec<String> = v["metas"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .filter_map(|m| m["phx_ref"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                refs.sort();
                (k.clone(), refs)
            })
            .collect()
    }

    /// What a JS client subscribed from the start holds: every diff applied in order.
    fn client(&self) -> JsState {
        let mut state = JsState::new();
        for d in self.diffs.lock().iter() {
            let joins = d["joins"].as_object().cloned().unwrap_or_default();
            let leaves = d["leaves"].as_object().cloned().unwrap_or_default();
            sync_diff(&mut state, &joins, &leaves);
        }
        state
    }

    /// Keys joined (or left) in this node's diffs so far.
    fn diff_keys(&self, side: &str) -> Vec<String> {
        self.diffs
            .lock()
            .iter()
            .flat_map(|d| {
                d[side]
                    .as_object()
                    .map(|m| m.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect()
    }
}

fn refs_of(pairs: &[(&str, &[&String])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, refs)| {
            let mut r: Vec<String> = refs.iter().map(|s| (*s).clone()).collect();
            r.sort();
            (k.to_string(), r)
        })
        .collect()
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Every node lists the same, and each node's client (diffs applied) holds that list.
async fn assert_converged(nodes: &[&Node]) {
    let first = normalize_list(&nodes[0].list().await);
    for n in nodes {
        let list = normalize_list(&n.list().await);
        assert_eq!(list, first, "lists differ between nodes");
        assert_eq!(
            normalize_js(&n.client()),
            list,
            "a client's Presence differs from its node's list"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_track_on_one_node_is_listed_and_joined_on_the_others() {
    let net = Arc::new(Net::default());
    let (a, b, c) = (
        Node::start(&net, "a"),
        Node::start(&net, "b"),
        Node::start(&net, "c"),
    );
    settle().await;
    let alice = a.track(1, "alice", json!({"name": "Alice"}));
    settle().await;
    for n in [&b, &c] {
        let list = n.list().await;
        assert_eq!(
            Value::Object(list),
            json!({"alice": {"metas": [{"name": "Alice", "phx_ref": alice}]}})
        );
        assert_eq!(n.diff_keys("joins"), ["alice"]);
    }
    // Tracks on every node, the same key on two of them: one list everywhere.
    let bob = b.track(1, "bob", json!({}));
    let alice_c = c.track(1, "alice", json!({"on": "c"}));
    settle().await;
    for n in [&a, &b, &c] {
        assert_eq!(
            n.refs().await,
            refs_of(&[("alice", &[&alice, &alice_c]), ("bob", &[&bob])])
        );
    }
    assert_converged(&[&a, &b, &c]).await;
    // One delta per window with changes, not one per change.
    assert_eq!(net.sent_by("a", "delta"), 1);
}

#[tokio::test(start_paused = true)]
async fn untrack_update_and_channel_exit_reach_every_node() {
    let net = Arc::new(Net::default());
    let (a, b) = (Node::start(&net, "a"), Node::start(&net, "b"));
    a.track(1, "alice", json!({"s": 1}));
    a.track(2, "bob", json!({}));
    a.track(2, "bob2", json!({}));
    settle().await;
    assert_eq!(b.list().await.len(), 3);
    // Counted where tracked and where replicated.
    assert_eq!((a.entries(), b.entries()), (3, 3));
    assert!(a.tracker.untrack(&TOPIC.into(), 1, "alice"));
    let new = a
        .tracker
        .update(
            &TOPIC.into(),
            2,
            "bob",
            Meta::from_iter([("s".into(), json!(2))]),
        )
        .expect("update");
    settle().await;
    let list = b.list().await;
    assert!(!list.contains_key("alice"));
    assert_eq!(list["bob"]["metas"][0]["phx_ref"], json!(new));
    assert_eq!(list["bob"]["metas"][0]["s"], json!(2));
    assert!(list["bob"]["metas"][0]["phx_ref_prev"].is_string());
    assert!(b.diff_keys("leaves").contains(&"alice".to_string()));
    assert_eq!(
        (a.entries(), b.entries()),
        (2, 2),
        "an update keeps the count"
    );
    drop(UntrackOnExit {
        tracker: Arc::downgrade(&a.tracker),
        topic: TOPIC.into(),
        owner: 2,
    });
    settle().await;
    assert!(b.list().await.is_empty());
    assert_eq!((a.entries(), b.entries()), (0, 0));
    assert_converged(&[&a, &b]).await;
    // The topic is forgotten on the other node too once its last remote presence left.
    assert_eq!(b.tracker.topic_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_node_that_stops_heartbeating_leaves_after_the_down_timeout() {
    let net = Arc::new(Net::default());
    let (a, b, c) = (
        Node::start(&net, "a"),
        Node::start(&net, "b"),
        Node::start(&net, "c"),
    );
    c.track(1, "carol", json!({}));
    a.track(1, "alice", json!({}));
    settle().await;
    assert_eq!(b.list().await.len(), 2);
    net.cut.lock().insert(c.id);
    let cut_at = tokio::time::Instant::now();
    // c was last heard within a heartbeat before the cut.
    let before = DEFAULT_DOWN_TIMEOUT - HEARTBEAT - Duration::from_millis(200);
    tokio::time::sleep(before).await;
    assert!(
        b.list().await.contains_key("carol"),
        "still listed before the timeout"
    );
    tokio::time::sleep(DEFAULT_DOWN_TIMEOUT - before + WINDOW * 2).await;
    for n in [&a, &b] {
        let list = n.list().await;
        assert!(!list.contains_key("carol"), "{list:?}");
        assert!(list.contains_key("alice"));
        assert!(n.diff_keys("leaves").contains(&"carol".to_string()));
        assert_eq!(
            n.entries(),
            1,
            "a node gone: its presences are no longer counted"
        );
    }
    assert!(tokio::time::Instant::now() - cut_at <= DEFAULT_DOWN_TIMEOUT + HEARTBEAT * 2);
    assert_converged(&[&a, &b]).await;
    // When the link comes back, so do its presences (through a snapshot).
    net.cut.lock().remove(&c.id);
    tokio::time::sleep(HEARTBEAT * 2).await;
    assert!(b.list().await.contains_key("carol"));
    assert_converged(&[&a, &b, &c]).await;
}

#[tokio::test(start_paused = true)]
async fn bye_leaves_at_once_and_nothing_is_sent_after_it() {
    let net = Arc::new(Net::default());
    let (a, b, c) = (
        Node::start(&net, "a"),
        Node::start(&net, "b"),
        Node::start(&net, "c"),
    );
    c.track(1, "carol", json!({}));
    settle().await;
    assert!(a.list().await.contains_key("carol"));
    graceful_permdown(&c.adapter);
    settle().await;
    for n in [&a, &b] {
        assert!(n.list().await.is_empty(), "left within a window of the bye");
    }
    assert_eq!(net.sent_by("c", "bye"), 1);
    let sent = net.sent.lock().len();
    c.track(2, "late", json!({}));
    tokio::time::sleep(HEARTBEAT * 3).await;
    assert_eq!(
        net.sent
            .lock()
            .iter()
            .skip(sent)
            .filter(|(n, _)| n == "c")
            .count(),
        0,
        "no heartbeat, delta or second bye after the bye"
    );
    assert!(a.list().await.is_empty());
    // The node that said bye still hears the others.
    a.track(1, "alice", json!({}));
    settle().await;
    assert!(c.list().await.contains_key("alice"));
    // Only the adapter's own Presences say bye.
    graceful_permdown(&a.adapter);
    assert_eq!(net.sent_by("b", "bye"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_presence_says_bye() {
    let net = Arc::new(Net::default());
    let (a, b) = (Node::start(&net, "a"), Node::start(&net, "b"));
    a.track(1, "alice", json!({}));
    settle().await;
    assert!(b.list().await.contains_key("alice"));
    drop(a);
    tokio::time::sleep(HEARTBEAT + WINDOW * 2).await;
    assert_eq!(net.sent_by("a", "bye"), 1);
    assert!(b.list().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_lost_delta_is_a_gap_and_a_snapshot_converges() {
    let net = Arc::new(Net::default());
    let (a, b, c) = (
        Node::start(&net, "a"),
        Node::start(&net, "b"),
        Node::start(&net, "c"),
    );
    settle().await;
    // The first delta from a to b is lost.
    let mut dropped = false;
    *net.dropper.lock() = Some(Box::new(move |from, to, v| {
        let lose = !dropped && from == "a" && to == "b" && v["type"] == "delta";
        dropped |= lose;
        lose
    }));
    let alice = a.track(1, "alice", json!({}));
    a.track(2, "bob", json!({}));
    settle().await;
    assert!(b.list().await.is_empty(), "b missed the delta");
    assert_eq!(c.list().await.len(), 2);
    // The next delta shows the gap (so does the next heartbeat, whichever comes first).
    assert!(a.tracker.untrack(&TOPIC.into(), 2, "bob"));
    tokio::time::sleep(HEARTBEAT + WINDOW * 4).await;
    assert_eq!(net.sent_by("b", "snapshot_request"), 1);
    assert_eq!(net.sent_by("c", "snapshot_request"), 0);
    assert_eq!(b.refs().await, refs_of(&[("alice", &[&alice])]));
    assert_eq!(
        b.diff_keys("joins"),
        ["alice"],
        "bob was never shown to b's clients"
    );
    assert_converged(&[&a, &b, &c]).await;
    // And it keeps up afterwards.
    a.track(3, "carol", json!({}));
    settle().await;
    assert_converged(&[&a, &b, &c]).await;
    assert_eq!(b.list().await.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_lost_last_delta_is_noticed_by_the_heartbeat() {
    let net = Arc::new(Net::default());
    let (a, b) = (Node::start(&net, "a"), Node::start(&net, "b"));
    settle().await;
    let mut dropped = false;
    *net.dropper.lock() = Some(Box::new(move |_, _, v| {
        let lose = !dropped && v["type"] == "delta";
        dropped |= lose;
        lose
    }));
    a.track(1, "alice", json!({}));
    tokio::time::sleep(HEARTBEAT * 2).await;
    assert!(b.list().await.contains_key("alice"));
    assert_converged(&[&a, &b]).await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_node_replaces_its_old_presences() {
    let net = Arc::new(Net::default());
    let (a, b) = (Node::start(&net, "a"), Node::start(&net, "b"));
    let c = Node::start(&net, "c");
    let old = c.track(1, "carol", json!({"run": 1}));
    c.track(2, "dave", json!({"run": 1}));
    settle().await;
    assert_eq!(a.list().await.len(), 2);
    // c dies without a bye and comes back at once as a new process, which tracks carol again:
    // its first heartbeat (nothing sent yet) empties c's old presences, its first delta brings
    // the new one.
    net.cut.lock().insert(c.id);
    let c2 = Node::start(&net, "c");
    let new = c2.track(1, "carol", json!({"run": 2}));
    tokio::time::sleep(HEARTBEAT / 2).await;
    for n in [&a, &b] {
        assert_eq!(
            n.refs().await,
            refs_of(&[("carol", &[&new])]),
            "well before the down timeout"
        );
    }
    assert_ne!(old, new);
    assert_converged(&[&a, &b, &c2]).await;
    // A restart that had tracked more before the others heard it goes through a snapshot.
    let c2_id = c2.id;
    net.cut.lock().insert(c2_id);
    let c3 = Node::start(&net, "c");
    net.cut.lock().insert(c3.id);
    let e = c3.track(1, "erin", json!({}));
    tokio::time::sleep(WINDOW * 2).await;
    net.cut.lock().remove(&c3.id); // its delta 1 was lost: the others start from heartbeat 1
    tokio::time::sleep(HEARTBEAT * 2).await;
    for n in [&a, &b] {
        assert_eq!(n.refs().await, refs_of(&[("erin", &[&e])]));
    }
    assert_converged(&[&a, &b, &c3]).await;
    drop(c);
    drop(c2);
}

#[tokio::test(start_paused = true)]
async fn a_node_that_starts_late_gets_the_presences_already_there() {
    let net = Arc::new(Net::default());
    let a = Node::start(&net, "a");
    a.track(1, "alice", json!({}));
    a.track(2, "bob", json!({}));
    settle().await;
    let d = Node::start(&net, "d");
    tokio::time::sleep(HEARTBEAT * 2).await;
    assert_eq!(d.list().await.len(), 2);
    assert_converged(&[&a, &d]).await;
}

#[tokio::test(start_paused = true)]
async fn presences_of_different_names_do_not_mix() {
    let net = Arc::new(Net::default());
    let a = Node::start_named(&net, "a", "One");
    let b = Node::start_named(&net, "b", "Two");
    a.track(1, "alice", json!({}));
    tokio::time::sleep(HEARTBEAT * 2).await;
    assert!(b.list().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn malformed_and_foreign_messages_change_nothing() {
    let net = Arc::new(Net::default());
    let (a, b) = (Node::start(&net, "a"), Node::start(&net, "b"));
    a.track(1, "alice", json!({}));
    settle().await;
    for bad in [
        &b"not json"[..],
        b"{}",
        b"{\"v\":1,\"type\":\"delta\",\"node\":\"a\",\"incarnation\":\"x\"}",
        b"{\"v\":9,\"type\":\"bye\",\"node\":\"a\",\"incarnation\":1}",
        b"{\"v\":1,\"type\":\"bye\",\"node\":\"a\",\"incarnation\":1}",
        b"{\"v\":1,\"type\":\"delta\",\"node\":\"b\",\"incarnation\":1,\"seq\":1,\"joins\":[{\"topic\":\"room:lobby\",\"key\":\"x\",\"phx_ref\":\"R\",\"meta\":{}}]}",
        b"{\"v\":1,\"type\":\"snapshot\",\"node\":\"z\",\"incarnation\":1,\"seq\":1,\"part\":0,\"parts\":1,\"entries\":[{\"topic\":\"\",\"key\":\"x\",\"phx_ref\":\"R\",\"meta\":{}}]}",
    ] {
        net.inject("b", "Presence", bad);
    }
    settle().await;
    assert_eq!(b.list().await.keys().collect::<Vec<_>>(), ["alice"]);
    a.track(2, "bob", json!({}));
    settle().await;
    assert_eq!(b.list().await.len(), 2, "still following a");
}

#[tokio::test(start_paused = true)]
async fn without_a_side_channel_a_presence_stays_on_its_node() {
    let net = Arc::new(Net::default());
    let ctx = Context::new(Config::default());
    let tracker = Arc::new(Tracker::with_replica(
        WINDOW,
        None,
        ReplicaConfig::default(),
    ));
    let adapter: Arc<dyn Adapter> = Arc::new(TestAdapter {
        id: 99,
        node: "x".into(),
        net: net.clone(),
        side_channels: false,
    });
    assert!(!tracker.attach(&ctx, &adapter));
    assert!(!tracker.attach(&ctx, &adapter), "asked once");
    tracker
        .track(&ctx, &TOPIC.into(), 1, "alone", Meta::new())
        .expect("track");
    tokio::time::sleep(HEARTBEAT * 2).await;
    assert!(net.sent.lock().is_empty());
    assert_eq!(tracker.list_owned(TOPIC).await.len(), 1);
    // A context without an adapter does not attach a Presence either.
    let p = crate::presence::Presence::default();
    assert!(!p.attach(&ctx));
    p.graceful_permdown(); // nothing to leave
}
