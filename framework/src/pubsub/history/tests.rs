//! The history rules alone: consecutive offsets, trimming by each bound, when a cursor is
//! recoverable. Time is the test's own `Instant`s, never the wall clock.

use std::sync::Arc;
use std::time::Duration;

use phx_protocol::Payload;
use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::pubsub::BroadcastMsg;

fn msg(n: u64) -> Arc<BroadcastMsg> {
    Arc::new(BroadcastMsg {
        topic: "history:t".into(),
        event: "shout".into(),
        payload: Payload::Json(json!({ "n": n })),
        from: None,
    })
}

fn n_of(m: &BroadcastMsg) -> u64 {
    match &m.payload {
        Payload::Json(v) => v["n"].as_u64().unwrap_or(0),
        Payload::Binary(_) => 0,
    }
}

fn opts(max_messages: usize, max_age_s: u64, max_bytes: usize) -> HistoryOptions {
    HistoryOptions {
        max_messages,
        max_age: Duration::from_secs(max_age_s),
        max_bytes,
    }
}

fn since(log: &TopicLog, offset: u64) -> Since {
    Since {
        epoch: log.epoch().as_str().to_string(),
        offset,
    }
}

#[test]
fn offsets_are_consecutive_from_one() {
    let now = Instant::now();
    let mut log = TopicLog::new(now);
    let o = opts(10, 300, usize::MAX);
    assert_eq!(log.latest(), 0);
    let offsets: Vec<u64> = (1..=5).map(|n| log.append(msg(n), 10, now, &o).0).collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5]);
    assert_eq!(log.epoch().as_str().len(), 16);
}

#[test]
fn recovers_exactly_what_follows_the_cursor() {
    let now = Instant::now();
    let mut log = TopicLog::new(now);
    let o = opts(10, 300, usize::MAX);
    for n in 1..=5 {
        log.append(msg(n), 10, now, &o);
    }
    for cursor in 0..=5 {
        let (r, _) = log.recover(Some(&since(&log, cursor)), now, &o);
        assert_eq!(r.outcome, Outcome::Recovered, "cursor {cursor}");
        assert_eq!(r.offset, 5);
        let got: Vec<u64> = r.missed.iter().map(|m| n_of(m)).collect();
        assert_eq!(
            got,
            ((cursor + 1)..=5).collect::<Vec<_>>(),
            "cursor {cursor}"
        );
    }
}

#[test]
fn count_bound_trims_and_a_cursor_before_it_is_not_recovered() {
    let now = Instant::now();
    let mut log = TopicLog::new(now);
    let o = opts(3, 300, usize::MAX);
    let mut kept = 0i64;
    for n in 1..=5 {
        kept += log.append(msg(n), 10, now, &o).1.messages;
    }
    assert_eq!((log.len(), kept), (3, 3));
    // 3, 4, 5 kept: a client at 2 misses nothing kept; a client at 1 missed 2.
    let (r, _) = log.recover(Some(&since(&log, 2)), now, &o);
    assert_eq!(r.outcome, Outcome::Recovered);
    assert_eq!(r.missed.len(), 3);
    let (r, _) = log.recover(Some(&since(&log, 1)), now, &o);
    assert_eq!(r.outcome, Outcome::Trimmed);
    assert!(r.missed.is_empty());
}

#[test]
fn age_bound_trims_on_read() {
    let t0 = Instant::now();
    let mut log = TopicLog::new(t0);
    let o = opts(100, 300, usize::MAX);
    log.append(msg(1), 10, t0, &o);
    log.append(msg(2), 10, t0 + Duration::from_secs(200), &o);
    let later = t0 + Duration::from_secs(301);
    let (r, delta) = log.recover(Some(&since(&log, 0)), later, &o);
    assert_eq!(r.outcome, Outcome::Trimmed);
    assert_eq!(delta.messages, -1);
    let (r, _) = log.recover(Some(&since(&log, 1)), later, &o);
    assert_eq!(r.outcome, Outcome::Recovered);
    assert_eq!(r.missed.iter().map(|m| n_of(m)).collect::<Vec<_>>(), [2]);
}

#[test]
fn byte_bound_trims_and_accounts() {
    let now = Instant::now();
    let mut log = TopicLog::new(now);
    let o = opts(100, 300, 25);
    let mut bytes = 0i64;
    for n in 1..=4 {
        bytes += log.append(msg(n), 10, now, &o).1.bytes;
    }
    assert_eq!((log.len(), log.bytes(), bytes), (2, 20, 20));
}

#[test]
fn other_epoch_ahead_and_no_cursor_are_not_recovered() {
    let now = Instant::now();
    let mut log = TopicLog::new(now);
    let o = opts(10, 300, usize::MAX);
    log.append(msg(1), 10, now, &o);
    let other = Since {
        epoch: "0000000000000000".into(),
        offset: 0,
    };
    assert_eq!(
        log.recover(Some(&other), now, &o).0.outcome,
        Outcome::EpochChanged
    );
    assert_eq!(
        log.recover(Some(&since(&log, 2)), now, &o).0.outcome,
        Outcome::Ahead
    );
    let (r, _) = log.recover(None, now, &o);
    assert_eq!(
        (r.outcome, r.offset, r.missed.len()),
        (Outcome::NoCursor, 1, 0)
    );
}

#[test]
fn a_new_log_has_a_new_epoch() {
    let now = Instant::now();
    assert_ne!(TopicLog::new(now).epoch(), TopicLog::new(now).epoch());
}

#[test]
fn the_reply_gets_the_position_merged_in() {
    let now = Instant::now();
    let mut log = TopicLog::new(now);
    let (r, _) = log.recover(None, now, &opts(10, 300, usize::MAX));
    let merged = r.merge_into(Payload::Json(json!({"hello": "world", "offset": "mine"})));
    assert_eq!(
        merged,
        Payload::Json(json!({
            "hello": "world",
            "recovered": false,
            "epoch": log.epoch().as_str(),
            "offset": 0,
        }))
    );
}

#[test]
fn store_accounts_memory_and_sweeps_idle_topics() {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let store = HistoryStore::new(opts(10, 300, usize::MAX), metrics.clone());
    for n in 1..=3 {
        let offset = store.record(&msg(n), |offset| offset);
        assert_eq!(offset, n);
    }
    assert_eq!(metrics.history.messages.get(), 3);
    assert!(metrics.history.bytes.get() >= 3 * ENTRY_OVERHEAD as i64);
    assert_eq!(metrics.history.topics.get(), 1);
    // Not idle yet: kept.
    store.sweep(Instant::now());
    let (epoch, latest) = store.position("history:t").expect("kept");
    assert_eq!(latest, 3);
    store.sweep(Instant::now() + Duration::from_secs(301));
    assert!(store.position("history:t").is_none());
    assert_eq!(metrics.history.messages.get(), 0);
    assert_eq!(metrics.history.bytes.get(), 0);
    assert_eq!(metrics.history.topics.get(), 0);
    // Forgotten: the next broadcast starts another epoch at offset 1, and the old cursor is
    // not recovered there.
    assert_eq!(store.record(&msg(4), |offset| offset), 1);
    let (again, _) = store.position("history:t").expect("restarted");
    assert_ne!(again, epoch);
    let old = Since {
        epoch: epoch.as_str().to_string(),
        offset: 3,
    };
    assert_eq!(
        store.recover("history:t", Some(&old)).outcome,
        Outcome::EpochChanged
    );
    assert_eq!(metrics.history.messages.get(), 1);
}

#[test]
fn weight_estimates_the_json_tree_not_its_text() {
    use super::store::{heap_size, weight};
    assert_eq!(heap_size(&json!(1)), 0);
    assert_eq!(heap_size(&json!("abc")), 3);
    // One object of up to 11 keys is one B-tree leaf, however short its text.
    let one = heap_size(&json!({"n": 1}));
    let eleven =
        heap_size(&json!({"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1}));
    assert!(one > 500, "{one}");
    assert_eq!(eleven - one, 10, "ten more one-byte keys in the same leaf");
    let twelve = heap_size(
        &json!({"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1}),
    );
    assert_eq!(twelve - eleven, one);
    let m = msg(1);
    assert_eq!(
        weight(&m),
        one + "history:t".len() + "shout".len() + ENTRY_OVERHEAD
    );
    let bin = BroadcastMsg {
        payload: Payload::Binary(vec![0u8; 100].into()),
        ..(*m).clone()
    };
    assert_eq!(
        weight(&bin),
        100 + "history:t".len() + "shout".len() + ENTRY_OVERHEAD
    );
}
