//! Presence state, coalescing and convergence against a model of the JS client's `Presence`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::state::{Diff, Meta, StateError, TopicPresences};
use super::tracker::{Tracker, UntrackOnExit};
use super::Fetch;
use crate::config::Config;
use crate::context::Context;
use crate::pubsub::{Subscriber, SubscriberKind};

fn meta(v: Value) -> Meta {
    match v {
        Value::Object(m) => m,
        other => panic!("not a map: {other}"),
    }
}

fn refs(entries: &Map<String, Value>, key: &str) -> Vec<String> {
    entries[key]["metas"]
        .as_array()
        .expect("metas")
        .iter()
        .map(|m| m["phx_ref"].as_str().expect("phx_ref").to_string())
        .collect()
}

// ------------------------------------------------------------------------------------------------
// the JS client's Presence.syncState / syncDiff (phoenix 1.8.16), over serde_json values

/// key → metas, as the JS `Presence` holds `state`.
pub(crate) type JsState = BTreeMap<String, Vec<Value>>;

fn meta_ref(m: &Value) -> &str {
    m["phx_ref"].as_str().unwrap_or_default()
}

fn metas_of(entry: &Value) -> Vec<Value> {
    entry["metas"].as_array().cloned().unwrap_or_default()
}

/// `syncDiff`: joins first (replace, keeping the old metas not re-joined in front), then leaves.
pub(crate) fn sync_diff(
    state: &mut JsState,
    joins: &Map<String, Value>,
    leaves: &Map<String, Value>,
) {
    for (key, presence) in joins {
        let mut new = metas_of(presence);
        if let Some(cur) = state.get(key) {
            let joined: Vec<String> = new.iter().map(|m| meta_ref(m).to_string()).collect();
            let mut kept: Vec<Value> = cur
                .iter()
                .filter(|m| !joined.iter().any(|r| r == meta_ref(m)))
                .cloned()
                .collect();
            kept.append(&mut new);
            new = kept;
        }
        state.insert(key.clone(), new);
    }
    for (key, presence) in leaves {
        let Some(cur) = state.get_mut(key) else {
            continue;
        };
        let gone: Vec<String> = metas_of(presence)
            .iter()
            .map(|m| meta_ref(m).to_string())
            .collect();
        cur.retain(|m| !gone.iter().any(|r| r == meta_ref(m)));
        if cur.is_empty() {
            state.remove(key);
        }
    }
}

/// `syncState`: the diff between the current state and the new one, applied with `syncDiff`.
pub(crate) fn sync_state(state: &mut JsState, new: &Map<String, Value>) {
    let mut joins = Map::new();
    let mut leaves = Map::new();
    for (key, metas) in state.iter() {
        if !new.contains_key(key) {
            leaves.insert(key.clone(), json!({ "metas": metas }));
        }
    }
    for (key, presence) in new {
        match state.get(key) {
            Some(cur) => {
                let new_metas = metas_of(presence);
                let joined: Vec<&Value> = new_metas
                    .iter()
                    .filter(|m| !cur.iter().any(|c| meta_ref(c) == meta_ref(m)))
                    .collect();
                let left: Vec<&Value> = cur
                    .iter()
                    .filter(|c| !new_metas.iter().any(|m| meta_ref(c) == meta_ref(m)))
                    .collect();
                if !joined.is_empty() {
                    joins.insert(key.clone(), json!({ "metas": joined }));
                }
                if !left.is_empty() {
                    leaves.insert(key.clone(), json!({ "metas": left }));
                }
            }
            None => {
                joins.insert(key.clone(), presence.clone());
            }
        }
    }
    sync_diff(state, &joins, &leaves);
}

/// key → metas sorted by ref, to compare states regardless of meta order.
pub(crate) fn normalize_js(state: &JsState) -> BTreeMap<String, Vec<Value>> {
    state
        .iter()
        .map(|(k, metas)| {
            let mut m = metas.clone();
            m.sort_by(|a, b| meta_ref(a).cmp(meta_ref(b)));
            (k.clone(), m)
        })
        .collect()
}

pub(crate) fn normalize_list(list: &Map<String, Value>) -> BTreeMap<String, Vec<Value>> {
    let mut s = JsState::new();
    for (k, v) in list {
        s.insert(k.clone(), metas_of(v));
    }
    normalize_js(&s)
}

fn apply(state: &mut JsState, diff: &Diff) {
    sync_diff(state, &diff.joins, &diff.leaves);
}

// ------------------------------------------------------------------------------------------------
// state: pure

#[test]
fn track_lists_and_diffs_a_join() {
    let mut s = TopicPresences::new();
    s.track(1, "42", meta(json!({"name": "a"})), "REF1")
        .expect("track");
    let list = s.list();
    assert_eq!(
        Value::Object(list),
        json!({"42": {"metas": [{"name": "a", "phx_ref": "REF1"}]}})
    );
    let diff = s.take_diff().expect("a diff");
    assert_eq!(
        diff.into_payload(),
        json!({"joins": {"42": {"metas": [{"name": "a", "phx_ref": "REF1"}]}}, "leaves": {}})
    );
    assert!(s.take_diff().is_none(), "nothing left");
}

#[test]
fn track_twice_by_the_same_owner_is_refused() {
    let mut s = TopicPresences::new();
    s.track(1, "k", Meta::new(), "R1").expect("track");
    assert_eq!(
        s.track(1, "k", Meta::new(), "R2"),
        Err(StateError::AlreadyTracked)
    );
    assert_eq!(
        s.update(2, "k", Meta::new(), "R3"),
        Err(StateError::NotTracked)
    );
}

#[test]
fn update_is_a_join_and_a_leave_in_one_diff_with_phx_ref_prev() {
    let mut s = TopicPresences::new();
    s.track(1, "k", meta(json!({"name": "a"})), "R1")
        .expect("track");
    s.take_diff();
    let new = s
        .update(1, "k", meta(json!({"name": "b"})), "R2")
        .expect("update");
    assert_eq!(
        Value::Object(new),
        json!({"name": "b", "phx_ref": "R2", "phx_ref_prev": "R1"})
    );
    assert_eq!(
        s.take_diff().expect("diff").into_payload(),
        json!({
            "joins": {"k": {"metas": [{"name": "b", "phx_ref": "R2", "phx_ref_prev": "R1"}]}},
            "leaves": {"k": {"metas": [{"name": "a", "phx_ref": "R1"}]}},
        })
    );
    assert_eq!(refs(&s.snapshot(), "k"), ["R2"]);
}

#[test]
fn same_key_from_two_owners_has_two_metas() {
    let mut s = TopicPresences::new();
    s.track(1, "k", Meta::new(), "R1").expect("track");
    s.track(2, "k", Meta::new(), "R2").expect("track");
    let diff = s.take_diff().expect("diff");
    assert_eq!(refs(&diff.joins, "k"), ["R1", "R2"]);
    assert!(s.untrack(1, "k"));
    assert!(!s.untrack(1, "k"), "already gone");
    let diff = s.take_diff().expect("diff");
    assert_eq!(refs(&diff.leaves, "k"), ["R1"]);
    assert!(diff.joins.is_empty());
    assert_eq!(refs(&s.snapshot(), "k"), ["R2"]);
}

#[test]
fn join_and_leave_within_a_window_cancel() {
    let mut s = TopicPresences::new();
    s.track(1, "a", Meta::new(), "R1").expect("track");
    s.track(2, "b", Meta::new(), "R2").expect("track");
    assert_eq!(s.untrack_owner(1), 1);
    let diff = s.take_diff().expect("diff");
    assert_eq!(diff.joins.keys().collect::<Vec<_>>(), ["b"]);
    assert!(diff.leaves.is_empty());

    s.track(3, "c", Meta::new(), "R3").expect("track");
    s.untrack(3, "c");
    assert!(s.take_diff().is_none(), "a join and its leave cancel out");
    assert!(!s.has_pending());
}

#[test]
fn update_of_an_unseen_join_sends_only_the_new_meta() {
    let mut s = TopicPresences::new();
    s.track(1, "k", meta(json!({"v": 1})), "R1").expect("track");
    s.update(1, "k", meta(json!({"v": 2})), "R2")
        .expect("update");
    let diff = s.take_diff().expect("diff");
    assert_eq!(refs(&diff.joins, "k"), ["R2"]);
    assert!(diff.leaves.is_empty(), "R1 was never announced");
}

#[test]
fn a_listed_join_keeps_its_leave() {
    // A client got presence_state while R1's join was pending; R1 then leaves in the same
    // window. The leave must go out, or that client keeps R1 forever.
    let mut s = TopicPresences::new();
    s.track(1, "a", Meta::new(), "R1").expect("track");
    let listed = s.list();
    assert_eq!(refs(&listed, "a"), ["R1"]);
    s.track(2, "b", Meta::new(), "R2").expect("track"); // after the list: not exposed
    s.untrack(1, "a");
    s.untrack(2, "b");
    let diff = s.take_diff().expect("diff");
    assert!(diff.joins.is_empty(), "{diff:?}");
    assert_eq!(refs(&diff.leaves, "a"), ["R1"]);
    assert!(
        !diff.leaves.contains_key("b"),
        "R2 was never seen: {diff:?}"
    );

    let mut client = JsState::new();
    sync_state(&mut client, &listed);
    apply(&mut client, &diff);
    assert!(client.is_empty(), "{client:?}");
}

#[test]
fn untrack_owner_takes_all_its_keys() {
    let mut s = TopicPresences::new();
    s.track(1, "a", Meta::new(), "R1").expect("track");
    s.track(1, "b", Meta::new(), "R2").expect("track");
    s.track(2, "a", Meta::new(), "R3").expect("track");
    s.take_diff();
    assert_eq!(s.untrack_owner(1), 2);
    assert_eq!(s.untrack_owner(1), 0);
    let diff = s.take_diff().expect("diff");
    assert_eq!(refs(&diff.leaves, "a"), ["R1"]);
    assert_eq!(refs(&diff.leaves, "b"), ["R2"]);
    assert_eq!(s.len(), 1);
}

// ------------------------------------------------------------------------------------------------
// convergence: random churn, random windows, clients listing at random moments

struct Client {
    /// Index of the first diff this client receives (it subscribed before that diff was taken).
    first_diff: usize,
    /// The list it got as presence_state, once it asked.
    listed: Option<Map<String, Value>>,
}

#[test]
fn clients_converge_whatever_the_windows_and_list_times() {
    for seed in 0..400u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut s = TopicPresences::new();
        let mut diffs: Vec<Diff> = Vec::new();
        let mut per_event = JsState::new(); // a client given one diff per change (Phoenix)
        let mut clients: Vec<Client> = Vec::new();
        let mut live: Vec<(u64, String)> = Vec::new();
        let mut next_owner = 0u64;
        let mut next_ref = 0u64;
        let mut fresh_ref = || {
            next_ref += 1;
            format!("R{next_ref}")
        };
        // The same changes, flushed after every one (as Phoenix does), for `per_event`.
        let mut shadow = TopicPresences::new();
        for _ in 0..rng.random_range(20..200) {
            match rng.random_range(0..100) {
                0..=34 => {
                    next_owner += 1;
                    let key = format!("k{}", rng.random_range(0..6));
                    let r = fresh_ref();
                    let m = meta(json!({"n": next_owner}));
                    s.track(next_owner, &key, m.clone(), &r).expect("track");
                    shadow.track(next_owner, &key, m, &r).expect("track");
                    live.push((next_owner, key));
                }
                35..=49 if !live.is_empty() => {
                    let (owner, key) = live[rng.random_range(0..live.len())].clone();
                    let r = fresh_ref();
                    let m = meta(json!({"n": owner, "u": r}));
                    s.update(owner, &key, m.clone(), &r).expect("update");
                    shadow.update(owner, &key, m, &r).expect("update");
                }
                50..=69 if !live.is_empty() => {
                    let (owner, key) = live.swap_remove(rng.random_range(0..live.len()));
                    if rng.random_bool(0.5) {
                        assert!(s.untrack(owner, &key));
                        assert!(shadow.untrack(owner, &key));
                    } else {
                        assert_eq!(s.untrack_owner(owner), 1);
                        assert_eq!(shadow.untrack_owner(owner), 1);
                    }
                }
                70..=79 => clients.push(Client {
                    first_diff: diffs.len(),
                    listed: None,
                }),
                80..=89 => {
                    let waiting: Vec<usize> = (0..clients.len())
                        .filter(|&i| clients[i].listed.is_none())
                        .collect();
                    if let Some(&i) = waiting.first() {
                        clients[i].listed = Some(s.list());
                    }
                }
                _ => {
                    if let Some(d) = s.take_diff() {
                        diffs.push(d);
                    }
                }
            }
            if let Some(d) = shadow.take_diff() {
                apply(&mut per_event, &d);
            }
        }
        for c in clients.iter_mut().filter(|c| c.listed.is_none()) {
            c.listed = Some(s.list());
        }
        if let Some(d) = s.take_diff() {
            diffs.push(d);
        }
        let truth = normalize_list(&s.snapshot());
        assert_eq!(
            normalize_js(&per_event),
            truth,
            "seed {seed}: per-event client"
        );
        let mut from_start = JsState::new();
        for d in &diffs {
            apply(&mut from_start, d);
        }
        assert_eq!(
            normalize_js(&from_start),
            truth,
            "seed {seed}: coalesced client from the start"
        );
        for (i, c) in clients.iter().enumerate() {
            let mut js = JsState::new();
            sync_state(&mut js, c.listed.as_ref().expect("listed"));
            for d in &diffs[c.first_diff..] {
                apply(&mut js, d);
            }
            assert_eq!(normalize_js(&js), truth, "seed {seed}: client {i}");
        }
    }
}

// ------------------------------------------------------------------------------------------------
// tracker: windows, fetch, exit guards (paused time)

/// A context and the presence_diff payloads broadcast on `topic`.
fn context_recording(topic: &str) -> (Context, Arc<Mutex<Vec<Value>>>) {
    let ctx = Context::new(Config::default());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    ctx.pubsub().subscribe(
        topic,
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
    (ctx, seen)
}

#[tokio::test(start_paused = true)]
async fn presence_entries_count_metas_and_a_dropped_tracker_takes_its_own() {
    let topic: Arc<str> = "presence:count".into();
    let (ctx, _seen) = context_recording(&topic);
    let gauge = || ctx.metrics().presence_entries.get();
    let tracker = Arc::new(Tracker::new(Duration::from_millis(50), None));
    tracker
        .track(&ctx, &topic, 1, "a", Meta::new())
        .expect("track");
    tracker
        .track(&ctx, &topic, 2, "a", Meta::new())
        .expect("a second meta under the key");
    tracker
        .track(&ctx, &topic, 2, "b", Meta::new())
        .expect("track");
    assert_eq!(gauge(), 3, "one per key and meta");
    assert!(tracker.track(&ctx, &topic, 1, "a", Meta::new()).is_err());
    assert_eq!(gauge(), 3, "a refused track counts nothing");
    assert_eq!(tracker.owner_exited(&topic, 2), 2);
    assert_eq!(gauge(), 1);
    drop(tracker);
    // Its flush task lets go of the topic within a window.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gauge(), 0, "a Presence gone: nothing of it is known here");
}

#[tokio::test(start_paused = true)]
async fn a_wave_of_joins_is_one_diff_per_window() {
    let topic: Arc<str> = "presence:wave".into();
    let (ctx, seen) = context_recording(&topic);
    let tracker = Arc::new(Tracker::new(Duration::from_millis(50), None));
    // 1000 joins spread over 1 s: 20 windows.
    for i in 0..1000u64 {
        tracker
            .track(&ctx, &topic, i, &i.to_string(), Meta::new())
            .expect("track");
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let diffs = seen.lock().clone();
    assert!(
        (19..=22).contains(&diffs.len()),
        "one diff per 50 ms window over 1 s, got {}",
        diffs.len()
    );
    let joined: usize = diffs
        .iter()
        .map(|d| d["joins"].as_object().map_or(0, Map::len))
        .sum();
    assert_eq!(joined, 1000);
    assert!(diffs.iter().all(|d| d["leaves"] == json!({})));
}

#[tokio::test(start_paused = true)]
async fn churn_within_a_window_sends_nothing_and_forgets_the_topic() {
    let topic: Arc<str> = "presence:churn".into();
    let (ctx, seen) = context_recording(&topic);
    let tracker = Arc::new(Tracker::new(Duration::from_millis(50), None));
    for i in 0..100u64 {
        tracker
            .track(&ctx, &topic, i, "same", Meta::new())
            .expect("track");
    }
    for i in 0..100u64 {
        drop(UntrackOnExit {
            tracker: Arc::downgrade(&tracker),
            topic: topic.clone(),
            owner: i,
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(seen.lock().is_empty(), "{:?}", seen.lock());
    assert_eq!(tracker.topic_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn exit_guard_sends_the_leave() {
    let topic: Arc<str> = "presence:exit".into();
    let (ctx, seen) = context_recording(&topic);
    let tracker = Arc::new(Tracker::new(Duration::from_millis(25), None));
    let t = tracker
        .track(&ctx, &topic, 7, "u7", meta(json!({"name": "x"})))
        .expect("track");
    assert!(t.first_for_owner);
    let again = tracker
        .track(&ctx, &topic, 7, "u7b", Meta::new())
        .expect("track");
    assert!(!again.first_for_owner, "one guard per channel");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen.lock().len(), 1);
    drop(UntrackOnExit {
        tracker: Arc::downgrade(&tracker),
        topic: topic.clone(),
        owner: 7,
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let diffs = seen.lock().clone();
    assert_eq!(diffs.len(), 2, "{diffs:?}");
    assert_eq!(diffs[1]["joins"], json!({}));
    assert_eq!(
        diffs[1]["leaves"]["u7"]["metas"][0]["phx_ref"],
        json!(t.phx_ref)
    );
    assert!(diffs[1]["leaves"].get("u7b").is_some());
    assert_eq!(tracker.topic_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn fetch_decorates_lists_and_diffs() {
    let topic: Arc<str> = "presence:fetch".into();
    let (ctx, seen) = context_recording(&topic);
    let fetch = Fetch::new(|_topic, mut entries: Map<String, Value>| async move {
        for (key, entry) in entries.iter_mut() {
            if let Some(e) = entry.as_object_mut() {
                e.insert("user".into(), json!({ "username": format!("user{key}") }));
            }
        }
        entries
    });
    let tracker = Arc::new(Tracker::new(Duration::from_millis(25), Some(fetch)));
    tracker
        .track(&ctx, &topic, 1, "5", Meta::new())
        .expect("track");
    let list = tracker.list(&topic).await;
    assert_eq!(list["5"]["user"], json!({"username": "user5"}));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        seen.lock()[0]["joins"]["5"]["user"],
        json!({"username": "user5"})
    );
}

#[tokio::test(start_paused = true)]
async fn zero_window_sends_a_diff_per_change() {
    let topic: Arc<str> = "presence:zero".into();
    let (ctx, seen) = context_recording(&topic);
    let tracker = Arc::new(Tracker::new(Duration::ZERO, None));
    for i in 0..5u64 {
        tracker
            .track(&ctx, &topic, i, &i.to_string(), Meta::new())
            .expect("track");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(seen.lock().len(), 5);
}

// ------------------------------------------------------------------------------------------------
// scaling: O(1) exits, shared snapshots, empty topics forgotten, one fetch per batch

#[test]
fn untrack_touches_only_the_owners_own_metas() {
    // Owners 0..N on distinct keys plus a shared key; each exit removes exactly its metas,
    // in tracking order, and leaves every other presence (and its order) as it was.
    let mut s = TopicPresences::new();
    for i in 0..1000u64 {
        s.track(i, &format!("k{i}"), Meta::new(), &format!("R{i}"))
            .expect("track");
        s.track(i, "shared", Meta::new(), &format!("S{i}"))
            .expect("track");
    }
    s.take_diff();
    assert_eq!(s.len(), 2000);
    let v = s.version();
    assert_eq!(s.untrack_owner(500), 2);
    assert_eq!(s.version(), v + 2, "one version per meta removed");
    assert_eq!(s.untrack_owner(500), 0, "nothing left to remove");
    assert!(!s.untrack(500, "shared"));
    assert_eq!(s.len(), 1998);
    let diff = s.take_diff().expect("diff");
    assert_eq!(refs(&diff.leaves, "k500"), ["R500"]);
    assert_eq!(refs(&diff.leaves, "shared"), ["S500"]);
    let snap = s.snapshot();
    assert!(!snap.contains_key("k500"));
    let shared = refs(&snap, "shared");
    assert_eq!(shared.len(), 999);
    assert_eq!(shared[499], "S499");
    assert_eq!(shared[500], "S501", "tracking order kept around the hole");
    // update and get still find a meta after others under its key left
    s.update(501, "shared", meta(json!({"v": 2})), "S501b")
        .expect("update");
    assert_eq!(
        s.get(501, "shared").map(|m| m["phx_ref"].clone()),
        Some(json!("S501b"))
    );
    for i in (0..1000u64).filter(|&i| i != 500) {
        assert_eq!(s.untrack_owner(i), 2);
    }
    assert!(s.is_empty());
    assert_eq!(s.len(), 0);
}

#[test]
fn unchanged_state_keeps_its_version() {
    let mut s = TopicPresences::new();
    let v0 = s.version();
    assert!(!s.untrack(1, "nobody"));
    assert_eq!(s.untrack_owner(1), 0);
    assert!(s.track(1, "a", Meta::new(), "R1").is_ok());
    assert!(s.track(1, "a", Meta::new(), "R2").is_err());
    assert_eq!(s.version(), v0 + 1, "refused changes change nothing");
    s.list();
    s.take_diff();
    assert_eq!(s.version(), v0 + 1, "reading and flushing change nothing");
}

#[tokio::test(start_paused = true)]
async fn lists_of_an_unchanged_topic_share_one_snapshot() {
    let topic: Arc<str> = "presence:snap".into();
    let (ctx, _seen) = context_recording(&topic);
    let tracker = Arc::new(Tracker::new(Duration::from_millis(50), None));
    for i in 0..3u64 {
        tracker
            .track(&ctx, &topic, i, &i.to_string(), Meta::new())
            .expect("track");
    }
    let a = tracker.list(&topic).await;
    let b = tracker.list(&topic).await;
    assert!(Arc::ptr_eq(&a, &b), "same version, same snapshot");
    assert_eq!(a.len(), 3);
    tracker
        .track(&ctx, &topic, 9, "9", Meta::new())
        .expect("track");
    let c = tracker.list(&topic).await;
    assert!(!Arc::ptr_eq(&a, &c), "a change makes a new one");
    assert_eq!(c.len(), 4);
    assert_eq!(a.len(), 3, "a snapshot handed out never changes");
}

#[tokio::test(start_paused = true)]
async fn a_wave_of_joiners_shares_fetches_and_each_sees_itself() {
    let topic: Arc<str> = "presence:shared".into();
    let (ctx, _seen) = context_recording(&topic);
    let calls = Arc::new(Mutex::new(0usize));
    let counter = calls.clone();
    let fetch = Fetch::new(move |_topic, entries: Map<String, Value>| {
        *counter.lock() += 1;
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await; // a database round trip
            entries
        }
    });
    let tracker = Arc::new(Tracker::new(Duration::from_millis(50), Some(fetch)));
    // 100 joiners, each tracking then listing, all in the same instant: the first fetches its
    // read; the 99 that tracked meanwhile share the next read and its one fetch.
    let mut joiners = Vec::new();
    for i in 0..100u64 {
        let tracker = tracker.clone();
        let ctx = ctx.clone();
        let topic = topic.clone();
        joiners.push(tokio::spawn(async move {
            tracker
                .track(&ctx, &topic, i, &format!("u{i}"), Meta::new())
                .expect("track");
            let list = tracker.list(&topic).await;
            assert!(
                list.contains_key(&format!("u{i}")),
                "joiner {i} sees itself"
            );
            list
        }));
    }
    let mut lists = Vec::new();
    for j in joiners {
        lists.push(j.await.expect("joiner"));
    }
    assert_eq!(lists[0].len(), 1, "the first read was of the first join");
    assert!(
        lists[1..].iter().all(|l| Arc::ptr_eq(l, &lists[1])),
        "one snapshot for the rest of the wave"
    );
    assert_eq!(lists[1].len(), 100);
    assert_eq!(*calls.lock(), 2, "two reads, two fetches");

    // A joiner arriving after that build gets a newer one that holds it.
    tracker
        .track(&ctx, &topic, 500, "late", Meta::new())
        .expect("track");
    let late = tracker.list(&topic).await;
    assert!(late.contains_key("late"));
    assert_eq!(late.len(), 101);
}

#[tokio::test]
async fn a_wave_on_a_large_topic_shares_builds_and_encodes_without_a_fetch() {
    // 2,000 present, then 200 joiners at once: the first joiner's build runs on the blocking
    // pool, the other 199 track meanwhile and share the next build — its map and its encoded
    // bytes — instead of rendering and encoding 199 times.
    let topic: Arc<str> = "presence:wave".into();
    let (ctx, _seen) = context_recording(&topic);
    let tracker = Arc::new(Tracker::new(Duration::from_millis(50), None));
    for i in 0..2000u64 {
        tracker
            .track(&ctx, &topic, 10_000 + i, &format!("p{i}"), Meta::new())
            .expect("track");
    }
    let mut joiners = Vec::new();
    for i in 0..200u64 {
        let (tracker, ctx, topic) = (tracker.clone(), ctx.clone(), topic.clone());
        joiners.push(tokio::spawn(async move {
            tracker
                .track(&ctx, &topic, i, &format!("u{i}"), Meta::new())
                .expect("track");
            let state = tracker.list(&topic).await;
            assert!(
                state.contains_key(&format!("u{i}")),
                "joiner {i} sees itself"
            );
            state
        }));
    }
    let mut states: Vec<Arc<crate::presence::PresenceState>> = Vec::new();
    for j in joiners {
        let state = j.await.expect("joiner");
        if !states.iter().any(|s| Arc::ptr_eq(s, &state)) {
            states.push(state);
        }
    }
    assert!(states.len() <= 3, "{} builds for 200 joiners", states.len());
    for state in &states {
        let decoded: Value = serde_json::from_slice(state.encoded().as_bytes()).expect("json");
        assert_eq!(
            decoded,
            Value::Object(state.map().clone()),
            "bytes match the map"
        );
    }
    assert_eq!(states.last().map(|s| s.len()), Some(2200));
}

#[tokio::test(start_paused = true)]
async fn a_list_exposes_joins_so_their_leaves_go_out() {
    // The snapshot path must keep the state rule: a join shown in a list is not cancelled.
    let topic: Arc<str> = "presence:expose".into();
    let (ctx, seen) = context_recording(&topic);
    let tracker = Arc::new(Tracker::new(Duration::from_millis(50), None));
    let t = tracker
        .track(&ctx, &topic, 1, "a", Meta::new())
        .expect("track");
    let list = tracker.list(&topic).await; // within the window: the join is pending
    assert_eq!(refs(&list, "a"), std::slice::from_ref(&t.phx_ref));
    drop(UntrackOnExit {
        tracker: Arc::downgrade(&tracker),
        topic: topic.clone(),
        owner: 1,
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let diffs = seen.lock().clone();
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(
        diffs[0]["leaves"]["a"]["metas"][0]["phx_ref"],
        json!(t.phx_ref)
    );
    assert_eq!(tracker.topic_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_emptied_topic_is_forgotten_and_a_new_track_starts_afresh() {
    let topic: Arc<str> = "presence:gone".into();
    let (ctx, seen) = context_recording(&topic);
    let tracker = Arc::new(Tracker::new(Duration::from_millis(20), None));
    for i in 0..2000u64 {
        tracker
            .track(&ctx, &topic, i, &i.to_string(), Meta::new())
            .expect("track");
    }
    assert_eq!(tracker.list(&topic).await.len(), 2000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..2000u64 {
        drop(UntrackOnExit {
            tracker: Arc::downgrade(&tracker),
            topic: topic.clone(),
            owner: i,
        });
    }
    assert_eq!(tracker.topic_count(), 1, "the leaves are still to be sent");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(tracker.topic_count(), 0, "empty and flushed: removed");
    assert!(tracker.list(&topic).await.is_empty());
    let left: usize = seen
        .lock()
        .iter()
        .map(|d| d["leaves"].as_object().map_or(0, Map::len))
        .sum();
    assert_eq!(left, 2000);
    // the topic comes back as new
    tracker
        .track(&ctx, &topic, 9000, "back", Meta::new())
        .expect("track");
    let list = tracker.list(&topic).await;
    assert_eq!(list.keys().collect::<Vec<_>>(), ["back"]);
}

#[tokio::test(start_paused = true)]
async fn fetch_is_called_once_per_diff_with_every_key() {
    let topic: Arc<str> = "presence:batch".into();
    let (ctx, seen) = context_recording(&topic);
    let batches: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let log = batches.clone();
    let fetch = Fetch::new(move |_topic, mut entries: Map<String, Value>| {
        log.lock().push(entries.keys().cloned().collect());
        for (key, entry) in entries.iter_mut() {
            if let Some(e) = entry.as_object_mut() {
                e.insert("user".into(), json!(format!("user-{key}")));
            }
        }
        async move { entries }
    });
    let tracker = Arc::new(Tracker::new(Duration::from_millis(50), Some(fetch)));
    tracker
        .track(&ctx, &topic, 1, "stay", Meta::new())
        .expect("track");
    tracker
        .track(&ctx, &topic, 2, "both", Meta::new())
        .expect("track");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(batches.lock().len(), 1, "first diff: one call");
    batches.lock().clear();

    // Next window: a join, a leave, and an update (join + leave of one key).
    for i in 0..50u64 {
        tracker
            .track(&ctx, &topic, 100 + i, &format!("n{i}"), Meta::new())
            .expect("track");
    }
    tracker
        .update(&topic, 2, "both", meta(json!({"v": 2})))
        .expect("update");
    drop(UntrackOnExit {
        tracker: Arc::downgrade(&tracker),
        topic: topic.clone(),
        owner: 1,
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls = batches.lock().clone();
    assert_eq!(calls.len(), 1, "one fetch for the whole diff: {calls:?}");
    let mut keys = calls[0].clone();
    keys.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("n{i}")).collect();
    want.extend(["both".to_string(), "stay".to_string()]);
    want.sort();
    assert_eq!(keys, want);
    let diffs = seen.lock().clone();
    let d = diffs.last().expect("second diff");
    assert_eq!(d["joins"]["n7"]["user"], json!("user-n7"));
    assert_eq!(d["leaves"]["stay"]["user"], json!("user-stay"));
    assert_eq!(d["joins"]["both"]["user"], json!("user-both"));
    assert_eq!(d["leaves"]["both"]["user"], json!("user-both"));
    assert_eq!(
        refs(d["joins"].as_object().expect("joins"), "both").len(),
        1
    );
    assert_eq!(
        refs(d["leaves"].as_object().expect("leaves"), "both").len(),
        1
    );
    assert_eq!(d["joins"]["both"]["metas"][0]["v"], json!(2));
}
