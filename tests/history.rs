//! Message history (issue 14) over a real WebSocket on the fixture's `history:*` channel:
//! frames in, frames out. Broadcast frames are compared byte for byte (history adds nothing to
//! them), join replies as parsed JSON (the epoch is random).
//!
//! The race between a recovering join and broadcasts that keep arriving is run on a
//! multi-threaded runtime, many times, and asserts the exact sequence each joiner gets — it
//! holds whatever the interleaving, so it can only fail, never flake on timing.

mod common_ws;

use std::sync::Arc;

use common_ws::*;
use phx_channels::{Config, Endpoint};
use serde_json::{json, Value};

/// Joins `topic` with `params`, returns the reply's response (status asserted ok).
async fn join_with(ws: &mut Ws, jr: &str, topic: &str, params: Value) -> Value {
    send_join(ws, jr, topic, params).await;
    join_reply(ws, topic).await
}

async fn send_join(ws: &mut Ws, jr: &str, topic: &str, params: Value) {
    send(ws, &json!([jr, jr, topic, "phx_join", params]).to_string()).await;
}

async fn join_reply(ws: &mut Ws, topic: &str) -> Value {
    let reply: Value = serde_json::from_str(&next_text(ws).await).expect("json");
    assert_eq!(reply[2], json!(topic), "{reply}");
    assert_eq!(reply[3], json!("phx_reply"), "{reply}");
    assert_eq!(reply[4]["status"], json!("ok"), "{reply}");
    reply[4]["response"].clone()
}

fn since(epoch: &Value, offset: u64) -> Value {
    json!({"since": {"epoch": epoch, "offset": offset}})
}

/// The `n` of a `shout` broadcast frame on `topic`, asserting the frame is one.
fn shout_n(frame: &str, topic: &str) -> u64 {
    let v: Value = serde_json::from_str(frame).expect("json");
    assert_eq!(
        (&v[0], &v[1], &v[2], &v[3]),
        (&Value::Null, &Value::Null, &json!(topic), &json!("shout")),
        "not a shout broadcast on {topic}: {frame}"
    );
    v[4]["n"].as_u64().expect("n")
}

fn broadcast_n(endpoint: &Endpoint, topic: &str, n: u64) {
    endpoint.broadcast(topic, "shout", json!({ "n": n }));
}

/// Broadcasts a `sentinel` event and asserts it is the very next frame: nothing else (no
/// replayed broadcast) was queued before it — without waiting on a clock.
async fn expect_next_is_sentinel(ws: &mut Ws, endpoint: &Endpoint, topic: &str) {
    endpoint.broadcast(topic, "sentinel", json!({}));
    expect(ws, &format!(r#"[null,null,"{topic}","sentinel",{{}}]"#)).await;
}

#[tokio::test]
async fn stamps_by_count_and_recovers_what_followed_the_cursor() {
    let server = start(Config::default(), |r| r).await;
    let topic = "history:stamp";
    let mut a = server.v2().await;
    let first = join_with(&mut a, "1", topic, json!({})).await;
    let epoch = first["epoch"].clone();
    assert_eq!(
        first,
        json!({"recovered": false, "epoch": epoch, "offset": 0}),
        "the fixture's reply is exactly the position"
    );
    assert_eq!(epoch.as_str().map(str::len), Some(16), "{epoch}");

    // A shout from the client: the broadcast frame is the plain fastlane frame.
    send(&mut a, &format!(r#"["1","2","{topic}","shout",{{"n":1}}]"#)).await;
    let mut got = vec![next_text(&mut a).await, next_text(&mut a).await];
    got.sort();
    assert_eq!(
        got,
        [
            format!(r#"["1","2","{topic}","phx_reply",{{"response":{{}},"status":"ok"}}]"#),
            format!(r#"[null,null,"{topic}","shout",{{"n":1}}]"#),
        ]
    );
    for n in 2..=3 {
        broadcast_n(&server.endpoint, topic, n);
        expect(
            &mut a,
            &format!(r#"[null,null,"{topic}","shout",{{"n":{n}}}]"#),
        )
        .await;
    }

    // Another socket that had offset 1 (joined at 0, received one) resumes there.
    let mut b = server.v2().await;
    let reply = join_with(&mut b, "7", topic, since(&epoch, 1)).await;
    assert_eq!(
        reply,
        json!({"recovered": true, "epoch": epoch, "offset": 3})
    );
    expect(
        &mut b,
        &format!(r#"[null,null,"{topic}","shout",{{"n":2}}]"#),
    )
    .await;
    expect(
        &mut b,
        &format!(r#"[null,null,"{topic}","shout",{{"n":3}}]"#),
    )
    .await;
    expect_next_is_sentinel(&mut b, &server.endpoint, topic).await;

    // A cursor at the latest offset: recovered, nothing to replay.
    let mut c = server.v2().await;
    let reply = join_with(&mut c, "1", topic, since(&epoch, 4)).await;
    assert_eq!(
        reply,
        json!({"recovered": true, "epoch": epoch, "offset": 4})
    );
    expect_next_is_sentinel(&mut c, &server.endpoint, topic).await;
}

#[tokio::test]
async fn trimmed_past_the_cursor_is_not_recovered() {
    let server = start(Config::default(), |r| r).await;
    let topic = "history:trim";
    let mut a = server.v2().await;
    let epoch = join_with(&mut a, "1", topic, json!({})).await["epoch"].clone();
    drop(a);
    let cap = phx_fixture::HISTORY.max_messages as u64;
    for n in 1..=cap + 1 {
        broadcast_n(&server.endpoint, topic, n);
    }
    let mut b = server.v2().await;
    let reply = join_with(&mut b, "1", topic, since(&epoch, 0)).await;
    assert_eq!(
        reply,
        json!({"recovered": false, "epoch": epoch, "offset": cap + 1})
    );
    expect_next_is_sentinel(&mut b, &server.endpoint, topic).await;

    // A cursor just before the oldest kept broadcast is still recoverable (the sentinel above
    // was one more broadcast, so the oldest kept is now n = 3).
    let latest = reply["offset"].as_u64().expect("offset") + 1;
    let mut c = server.v2().await;
    let reply = join_with(&mut c, "1", topic, since(&epoch, latest - cap)).await;
    assert_eq!(reply["recovered"], json!(true), "{reply}");
    let first = shout_n(&next_text(&mut c).await, topic);
    assert_eq!(first, latest - cap + 1);
}

#[tokio::test]
async fn another_epoch_or_a_bad_cursor_is_not_recovered() {
    let server = start(Config::default(), |r| r).await;
    let topic = "history:epoch";
    for n in 1..=3 {
        broadcast_n(&server.endpoint, topic, n);
    }
    let mut a = server.v2().await;
    let reply = join_with(&mut a, "1", topic, since(&json!("0123456789abcdef"), 1)).await;
    assert_eq!(reply["recovered"], json!(false), "{reply}");
    assert_eq!(reply["offset"], json!(3), "{reply}");
    assert_ne!(reply["epoch"], json!("0123456789abcdef"));
    expect_next_is_sentinel(&mut a, &server.endpoint, topic).await;

    let epoch = reply["epoch"].clone();
    for (jr, params) in [
        ("2", since(&epoch, 99)), // ahead of the latest
        ("3", json!({"since": {"epoch": epoch, "offset": -1}})), // not an offset
        ("4", json!({"since": "yesterday"})),
    ] {
        let mut ws = server.v2().await;
        let reply = join_with(&mut ws, jr, topic, params).await;
        assert_eq!(reply["recovered"], json!(false), "{reply}");
        expect_next_is_sentinel(&mut ws, &server.endpoint, topic).await;
    }

    let metrics = server.endpoint.metrics().render();
    for outcome in ["epoch_changed", "ahead", "no_cursor"] {
        assert!(
            metrics.contains(&format!(
                "phx_history_recoveries_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome} missing in\n{metrics}"
        );
    }
}

/// Broadcasts keep arriving, from another task on another worker thread, while sockets join
/// with a cursor (and without): each joiner gets every offset after its position exactly once,
/// in order, the replayed ones and the live ones alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_racing_broadcasts_is_exactly_once_in_order() {
    let server = start(Config::default(), |r| r).await;
    let endpoint = server.endpoint.clone();
    const TOTAL: u64 = 600;
    for round in 0..20u64 {
        let topic: Arc<str> = format!("history:race{round}").into();
        // The first join starts the topic's history: offset n is the n-th broadcast below.
        let mut first = server.v2().await;
        let epoch = join_with(&mut first, "1", &topic, json!({})).await["epoch"].clone();
        // The publisher sends a first part (which moves with the round), waits until the
        // recovering join is on the wire, then sends the rest while that join runs.
        let first_part = 1 + (round * 37) % (TOTAL / 2);
        let (joining_tx, joining_rx) = tokio::sync::oneshot::channel::<()>();
        let publisher = {
            let endpoint = endpoint.clone();
            let topic = topic.clone();
            tokio::spawn(async move {
                for n in 1..=first_part {
                    broadcast_n(&endpoint, &topic, n);
                }
                let _ = joining_rx.await;
                for n in first_part + 1..=TOTAL {
                    broadcast_n(&endpoint, &topic, n);
                    if n % 4 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        };
        let store = endpoint
            .pubsub()
            .local
            .history(&topic)
            .expect("history topic")
            .clone();
        while store.position(&topic).map_or(0, |(_, o)| o) < first_part {
            tokio::task::yield_now().await;
        }
        // A cursor some way back from the latest: those are replayed, the rest arrive live.
        let cursor = first_part.saturating_sub(round * 3);
        let mut recovering = server.v2().await;
        send_join(&mut recovering, "1", &topic, since(&epoch, cursor)).await;
        let _ = joining_tx.send(());
        let reply = join_reply(&mut recovering, &topic).await;
        assert_eq!(reply["recovered"], json!(true), "round {round}: {reply}");
        let mut fresh = server.v2().await;
        let fresh_reply = join_with(&mut fresh, "1", &topic, json!({})).await;
        let fresh_at = fresh_reply["offset"].as_u64().expect("offset");

        for (ws, from, who) in [
            (&mut recovering, cursor, "recovering"),
            (&mut fresh, fresh_at, "fresh"),
            (&mut first, 0, "first"),
        ] {
            let mut expected = from + 1;
            while expected <= TOTAL {
                let n = shout_n(&next_text(ws).await, &topic);
                assert_eq!(
                    n, expected,
                    "round {round}, {who} joiner at {from}: got {n}, expected {expected}"
                );
                expected += 1;
            }
            expect_next_is_sentinel(ws, &endpoint, &topic).await;
        }
        publisher.await.expect("publisher");
    }
}

#[tokio::test]
async fn channels_without_history_are_unchanged() {
    let server = start(Config::default(), |r| r).await;
    let mut a = server.v2().await;
    // The plain join reply, even with a cursor in the params.
    send(
        &mut a,
        r#"["1","1","room:plain","phx_join",{"since":{"epoch":"x","offset":1}}]"#,
    )
    .await;
    expect(
        &mut a,
        r#"["1","1","room:plain","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    server
        .endpoint
        .broadcast("room:plain", "shout", json!({"n": 1}));
    expect(&mut a, r#"[null,null,"room:plain","shout",{"n":1}]"#).await;
    assert_eq!(server.endpoint.metrics().history.messages.get(), 0);
    assert_eq!(server.endpoint.metrics().history.topics.get(), 0);
    assert!(server
        .endpoint
        .pubsub()
        .local
        .history("room:plain")
        .is_none());
}

#[tokio::test]
async fn memory_is_accounted_in_the_metrics() {
    let server = start(Config::default(), |r| r).await;
    for n in 1..=10 {
        broadcast_n(&server.endpoint, "history:mem", n);
    }
    let m = &server.endpoint.metrics().history;
    assert_eq!(m.messages.get(), 10);
    assert_eq!(m.topics.get(), 1);
    // Ten broadcasts of the same shape weigh the same: their JSON tree (a B-tree leaf for the
    // one-key object), topic, event and the fixed cost of an entry.
    let fixed = phx_channels::pubsub::history::ENTRY_OVERHEAD as i64;
    assert_eq!(m.bytes.get() % 10, 0, "{}", m.bytes.get());
    let per = m.bytes.get() / 10;
    assert!(per > fixed + 500 && per < fixed + 1000, "{per}");
    let text = server.endpoint.metrics().render();
    assert!(text.contains("phx_history_messages 10"), "{text}");
}
