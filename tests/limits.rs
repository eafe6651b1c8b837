//! The per-socket limits of README "Limits and failure behaviour", frames in and frames out over
//! a real WebSocket on 127.0.0.1:0: rate limits, field limits, close codes that reach the
//! client, leaves counted against a channel's inbox, the join boundary (broadcasts during a
//! join held and released after its reply), and a drain that answers what it already read.

mod common_ws;

use std::sync::Arc;
use std::time::Duration;

use common_ws::*;
use futures_util::{SinkExt, StreamExt};
use phx_channels::channel::{async_trait, ChannelError, ChannelSocket, HandleResult, JoinReply};
use phx_channels::{Channel, Config, Payload, Reply, Router};
use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;

/// A channel whose `join` and `wait` event block on a gate of the test's own, and which says
/// when its join has started (so the test can broadcast *during* the join).
#[derive(Clone)]
struct Gated {
    gate: Arc<Semaphore>,
    joining: Arc<Notify>,
    /// `join` blocks on the gate too.
    block_join: bool,
    /// `join` declares broadcasts with `"covered": true` as covered by its reply.
    skip_covered: bool,
}

impl Gated {
    fn new(block_join: bool, skip_covered: bool) -> Gated {
        Gated {
            gate: Arc::new(Semaphore::new(0)),
            joining: Arc::new(Notify::new()),
            block_join,
            skip_covered,
        }
    }
    fn open(&self) {
        self.gate.add_permits(1);
    }
}

#[async_trait]
impl Channel for Gated {
    async fn join(
        &mut self,
        _topic: &str,
        _payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<JoinReply, ChannelError> {
        self.joining.notify_one();
        if self.block_join {
            self.gate.acquire().await?.forget();
        }
        if self.skip_covered {
            socket.skip_held_broadcasts(|_event, payload| {
                matches!(payload, Payload::Json(v) if v["covered"] == json!(true))
            });
        }
        Ok(JoinReply::ok())
    }

    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        _socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        if event == "wait" {
            self.gate.acquire().await?.forget();
        }
        Ok(HandleResult::Reply(Reply::Ok(payload)))
    }
}

fn with(ch: &Gated) -> impl FnOnce(Router) -> Router {
    let ch = ch.clone();
    move |r| r.channel("gated:*", move || ch.clone())
}

fn reply(jr: &str, r: &str, topic: &str, status: &str, response: &str) -> String {
    let jr = if jr == "null" {
        "null".to_string()
    } else {
        format!("\"{jr}\"")
    };
    format!(r#"[{jr},"{r}","{topic}","phx_reply",{{"response":{response},"status":"{status}"}}]"#)
}

#[tokio::test]
async fn messages_over_the_rate_get_a_rate_limited_reply_and_are_not_processed() {
    let cfg = Config {
        max_messages_per_sec: 5,
        ..Config::default()
    };
    let s = start(cfg, |r| r).await;
    let mut ws = s.v2().await;
    for i in 1..=12 {
        send(
            &mut ws,
            &format!(r#"[null,"{i}","phoenix","heartbeat",{{}}]"#),
        )
        .await;
    }
    let mut ok = 0;
    let mut limited = 0;
    for i in 1..=12 {
        let got = next_text(&mut ws).await;
        if got == reply("null", &i.to_string(), "phoenix", "ok", "{}") {
            ok += 1;
        } else {
            assert_eq!(
                got,
                reply(
                    "null",
                    &i.to_string(),
                    "phoenix",
                    "error",
                    r#"{"reason":"rate limited"}"#
                )
            );
            limited += 1;
        }
    }
    // The burst of 5 goes through; the bucket refills 5/s, so at most a token or two more.
    assert!(ok >= 5, "{ok} ok");
    assert!(limited >= 5, "{limited} rate limited");
    assert_eq!(ok + limited, 12, "every message got exactly one reply");
    // A push to a joined channel keeps its join_ref in the rate-limited reply.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    join(&mut ws, "30", "room:lobby").await;
    for i in 31..=45 {
        send(
            &mut ws,
            &format!(r#"["30","{i}","room:lobby","ping",{{}}]"#),
        )
        .await;
    }
    let mut saw_limited_push = false;
    for _ in 31..=45 {
        let got = next_text(&mut ws).await;
        let v: Value = serde_json::from_str(&got).expect("json");
        assert_eq!(v[0], json!("30"), "{got}");
        if v[4]["response"]["reason"] == json!("rate limited") {
            saw_limited_push = true;
        }
    }
    assert!(saw_limited_push);
}

#[tokio::test]
async fn joins_over_the_rate_are_refused_and_a_refused_duplicate_spares_the_old_channel() {
    // Burst 2 × MAX_CHANNELS = 4, then 1 join a second.
    let cfg = Config {
        max_channels: 2,
        max_joins_per_sec: 1,
        ..Config::default()
    };
    let s = start(cfg, |r| r).await;
    let mut ws = s.v2().await;
    join(&mut ws, "1", "room:a").await;
    join(&mut ws, "2", "room:b").await;
    // The cap answers first and takes no token.
    send(&mut ws, r#"["3","3","room:c","phx_join",{}]"#).await;
    expect(
        &mut ws,
        &reply(
            "3",
            "3",
            "room:c",
            "error",
            r#"{"reason":"too many channels joined"}"#,
        ),
    )
    .await;
    // Two duplicate joins use the rest of the burst.
    for jr in ["4", "5"] {
        send(
            &mut ws,
            &format!(r#"["{jr}","{jr}","room:a","phx_join",{{}}]"#),
        )
        .await;
        expect(&mut ws, &reply(jr, jr, "room:a", "ok", "{}")).await;
        let _old_close = next_text(&mut ws).await;
    }
    send(&mut ws, r#"["6","6","room:a","phx_join",{}]"#).await;
    expect(
        &mut ws,
        &reply("6", "6", "room:a", "error", r#"{"reason":"rate limited"}"#),
    )
    .await;
    // The channel joined as "5" is still there.
    send(&mut ws, r#"["5","7","room:a","ping",{"x":1}]"#).await;
    expect(&mut ws, &reply("5", "7", "room:a", "ok", r#"{"x":1}"#)).await;
}

#[tokio::test]
async fn fields_over_their_limit_close_with_1008() {
    let s = start(Config::default(), |r| r).await;
    let at_limit = format!("room:{}", "x".repeat(1024 - 5));
    let mut ws = s.v2().await;
    join(&mut ws, "1", &at_limit).await;
    let cases = [
        format!(r#"["1","1","room:{}","phx_join",{{}}]"#, "x".repeat(1024)),
        format!(r#"["1","1","room:lobby","{}",{{}}]"#, "e".repeat(1025)),
        format!(r#"["{}","1","room:lobby","ping",{{}}]"#, "j".repeat(1025)),
        format!(
            r#"[null,"{}","phoenix","heartbeat",{{}}]"#,
            "r".repeat(1025)
        ),
        r#"[null,{"a":1},"phoenix","heartbeat",{}]"#.to_string(),
        r#"[null,1.5,"phoenix","heartbeat",{}]"#.to_string(),
    ];
    for case in cases {
        let mut ws = s.v2().await;
        send(&mut ws, &case).await;
        assert_eq!(close_code(&mut ws).await, Some(1008), "{:.80}", case);
    }
    // Integer refs are fine.
    let mut ws = s.v2().await;
    send(&mut ws, r#"[null,7,"phoenix","heartbeat",{}]"#).await;
    expect(
        &mut ws,
        r#"[null,7,"phoenix","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
}

#[tokio::test]
async fn close_codes_reach_a_client_that_keeps_sending() {
    let cfg = Config {
        max_frame_size: 4096,
        ..Config::default()
    };
    let s = start(cfg, |r| r).await;
    let heartbeat = r#"[null,"9","phoenix","heartbeat",{}]"#;
    // An oversized frame followed by more frames: without a lingering close the kernel resets
    // the connection over the unread bytes and the client never sees the Close frame.
    let mut ws = s.v2().await;
    ws.feed(Message::Text("x".repeat(64 * 1024).into()))
        .await
        .expect("feed");
    for _ in 0..200 {
        ws.feed(Message::Text(heartbeat.into()))
            .await
            .expect("feed");
    }
    let _ = ws.flush().await;
    assert_eq!(close_code(&mut ws).await, Some(1009));
    // A malformed frame followed by more.
    let mut ws = s.v2().await;
    ws.feed(Message::Text(r#"["1","1","t","e"]"#.into()))
        .await
        .expect("feed");
    for _ in 0..2000 {
        if ws.feed(Message::Text(heartbeat.into())).await.is_err() {
            break;
        }
    }
    let _ = ws.flush().await;
    assert_eq!(close_code(&mut ws).await, Some(1011));
}

#[tokio::test]
async fn a_leave_waits_for_room_in_a_full_inbox_like_any_message() {
    let cfg = Config {
        channel_inbox_capacity: 2,
        ..Config::default()
    };
    let ch = Gated::new(false, false);
    let s = start(cfg, with(&ch)).await;
    let mut ws = s.v2().await;
    join(&mut ws, "1", "gated:1").await;
    send(&mut ws, r#"["1","2","gated:1","wait",{}]"#).await;
    send(&mut ws, r#"["1","3","gated:1","ping",{}]"#).await;
    send(&mut ws, r#"["1","4","gated:1","ping",{}]"#).await;
    // The inbox is full: the leave waits in the session, the socket is not read, and the
    // heartbeat behind it is not answered.
    send(&mut ws, r#"["1","5","gated:1","phx_leave",{}]"#).await;
    send(&mut ws, r#"[null,"6","phoenix","heartbeat",{}]"#).await;
    expect_none(&mut ws, 300).await;
    ch.open();
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(next_text(&mut ws).await);
    }
    let leave_reply = reply("1", "5", "gated:1", "ok", "{}");
    let close = r#"["1","1","gated:1","phx_close",{}]"#.to_string();
    let pos = |f: &String| got.iter().position(|g| g == f).unwrap_or(usize::MAX);
    for r in ["2", "3", "4"] {
        assert!(
            pos(&reply("1", r, "gated:1", "ok", "{}")) < pos(&leave_reply),
            "{got:?}"
        );
    }
    assert!(pos(&leave_reply) < pos(&close), "{got:?}");
    assert!(
        got.contains(&reply("null", "6", "phoenix", "ok", "{}")),
        "{got:?}"
    );
}

#[tokio::test]
async fn broadcasts_during_a_join_arrive_after_its_reply_in_order_minus_the_covered_ones() {
    let ch = Gated::new(true, true);
    let s = start(Config::default(), with(&ch)).await;
    let mut ws = s.v2().await;
    send(&mut ws, r#"["1","1","gated:x","phx_join",{}]"#).await;
    ch.joining.notified().await;
    // Published while join runs: not lost (the channel subscribed before join), not ahead
    // of the reply, and the one the join reply covers is not sent twice.
    s.endpoint
        .broadcast("gated:x", "e", json!({"n": 1, "covered": true}));
    s.endpoint.broadcast("gated:x", "e", json!({"n": 2}));
    s.endpoint.broadcast("gated:x", "e", json!({"n": 3}));
    ch.open();
    expect(&mut ws, &reply("1", "1", "gated:x", "ok", "{}")).await;
    expect(&mut ws, r#"[null,null,"gated:x","e",{"n":2}]"#).await;
    expect(&mut ws, r#"[null,null,"gated:x","e",{"n":3}]"#).await;
    // After the join, nothing is filtered, and the fastlane keeps the order.
    s.endpoint
        .broadcast("gated:x", "e", json!({"n": 4, "covered": true}));
    expect(
        &mut ws,
        r#"[null,null,"gated:x","e",{"covered":true,"n":4}]"#,
    )
    .await;
}

#[tokio::test]
async fn a_refused_join_leaves_no_subscription_behind() {
    let s = start(Config::default(), |r| r).await;
    let mut ws = s.v2().await;
    send(&mut ws, r#"["1","1","room:private","phx_join",{}]"#).await;
    let _refused = next_text(&mut ws).await;
    send(&mut ws, r#"["2","2","room:crash","phx_join",{}]"#).await;
    let _crashed = next_text(&mut ws).await;
    assert_eq!(
        s.endpoint.pubsub().local.subscriber_count("room:private"),
        0
    );
    assert_eq!(s.endpoint.pubsub().local.subscriber_count("room:crash"), 0);
}

#[tokio::test]
async fn a_drain_answers_the_messages_already_read_before_closing_with_1012() {
    let ch = Gated::new(false, false);
    let s = start(Config::default(), with(&ch)).await;
    let mut ws = s.v2().await;
    join(&mut ws, "1", "gated:d").await;
    // In flight when the drain starts: the channel is still handling it.
    send(&mut ws, r#"["1","2","gated:d","wait",{"keep":"me"}]"#).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ep = s.endpoint.clone();
    let drained = tokio::spawn(async move { ep.drain().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    ch.open();
    expect(
        &mut ws,
        &reply("1", "2", "gated:d", "ok", r#"{"keep":"me"}"#),
    )
    .await;
    assert_eq!(close_code(&mut ws).await, Some(1012));
    drained.await.expect("drain");
    assert_eq!(s.endpoint.live_sockets(), 0);
}

#[tokio::test]
async fn the_other_sockets_keep_answering_while_one_is_rate_limited() {
    let cfg = Config {
        max_messages_per_sec: 10,
        ..Config::default()
    };
    let s = start(cfg, |r| r).await;
    let mut flood = s.v2().await;
    let mut calm = s.v2().await;
    for i in 0..500 {
        send(
            &mut flood,
            &format!(r#"[null,"{i}","phoenix","heartbeat",{{}}]"#),
        )
        .await;
    }
    send(&mut calm, r#"[null,"1","phoenix","heartbeat",{}]"#).await;
    expect(&mut calm, &reply("null", "1", "phoenix", "ok", "{}")).await;
    let mut n = 0;
    while n < 500 {
        let _ = flood.next().await.expect("open").expect("frame");
        n += 1;
    }
}
