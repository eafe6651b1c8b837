//! The session state machine (spec §3/§4) over a real WebSocket on 127.0.0.1:0: frames in,
//! frames out, compared byte for byte. The idle-timeout rules run on tokio's paused clock, so
//! they take no wall-clock time and never flake.

mod common_ws;

use std::time::Duration;

use common_ws::*;
use phx_channels::channel::{
    async_trait, ChannelError, ChannelSocket, HandleResult, Info, JoinReply,
};
use phx_channels::{Channel, Config, Payload, Reply};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// The seed's `ping` example: every 5 s, push `ping` with a running count.
#[derive(Default)]
struct PingChannel {
    count: u64,
}

struct Ping;

#[async_trait]
impl Channel for PingChannel {
    async fn join(
        &mut self,
        _topic: &str,
        _payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<JoinReply, ChannelError> {
        socket.send_interval(Duration::from_secs(5), || Ping);
        Ok(JoinReply::ok())
    }

    async fn handle_info(
        &mut self,
        msg: Info,
        socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        if msg.is::<Ping>() {
            self.count += 1;
            socket.push("ping", json!({ "count": self.count }))?;
        }
        Ok(HandleResult::NoReply)
    }
}

/// A channel whose callbacks misbehave on purpose.
#[derive(Default)]
struct BadChannel;

#[async_trait]
impl Channel for BadChannel {
    async fn join(
        &mut self,
        topic: &str,
        _payload: Payload,
        _socket: &mut ChannelSocket,
    ) -> Result<JoinReply, ChannelError> {
        if topic == "bad:panic_join" {
            panic!("join panics");
        }
        Ok(JoinReply::ok())
    }

    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        _socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        match event {
            "panic" => panic!("handle_in panics"),
            // Never returns: a stuck channel must not block its siblings.
            "hang" => {
                std::future::pending::<()>().await;
                Ok(HandleResult::NoReply)
            }
            _ => Ok(HandleResult::Reply(Reply::Ok(payload))),
        }
    }
}

/// A channel whose `wait` event blocks until the test opens [`GATE`].
#[derive(Default)]
struct GateChannel;

static GATE: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();

fn gate() -> &'static tokio::sync::Semaphore {
    GATE.get_or_init(|| tokio::sync::Semaphore::new(0))
}

#[async_trait]
impl Channel for GateChannel {
    async fn join(
        &mut self,
        _topic: &str,
        _payload: Payload,
        _socket: &mut ChannelSocket,
    ) -> Result<JoinReply, ChannelError> {
        Ok(JoinReply::ok())
    }

    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        _socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        if event == "wait" {
            gate().acquire().await?.forget();
        }
        Ok(HandleResult::Reply(Reply::Ok(payload)))
    }
}

fn routes(r: phx_channels::Router) -> phx_channels::Router {
    r.channel("ticker:*", PingChannel::default)
        .channel("bad:*", BadChannel::default)
        .channel("gate:*", GateChannel::default)
}

async fn server() -> Server {
    start(Config::default(), routes).await
}

#[tokio::test]
async fn heartbeat_join_push_leave_exact_frames() {
    let s = server().await;
    let mut ws = s.v2().await;
    // §13.1, §13.2: heartbeats, with and without join_ref, reply with join_ref null.
    send(&mut ws, r#"[null,"1","phoenix","heartbeat",{}]"#).await;
    expect(
        &mut ws,
        r#"[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    send(&mut ws, r#"["9","2","phoenix","heartbeat",{}]"#).await;
    expect(
        &mut ws,
        r#"[null,"2","phoenix","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    // §13.3, §13.4, §13.5, §13.6
    join(&mut ws, "3", "room:lobby").await;
    send(&mut ws, r#"["4","4","room:greet","phx_join",{"a":1}]"#).await;
    expect(
        &mut ws,
        r#"["4","4","room:greet","phx_reply",{"response":{"hello":"world"},"status":"ok"}]"#,
    )
    .await;
    send(&mut ws, r#"["5","5","room:private","phx_join",{}]"#).await;
    expect(&mut ws, r#"["5","5","room:private","phx_reply",{"response":{"reason":"unauthorized"},"status":"error"}]"#).await;
    send(&mut ws, r#"["5","6","room:private","ping",{}]"#).await;
    expect(&mut ws, r#"[null,"6","room:private","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#).await;
    send(&mut ws, r#"["7","7","nope:1","phx_join",{}]"#).await;
    expect(&mut ws, r#"[null,"7","nope:1","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#).await;
    // §13.8, §13.9, §13.10 (stale join_ref dropped), §13.11
    send(&mut ws, r#"["3","10","room:lobby","ping",{"x":1}]"#).await;
    expect(
        &mut ws,
        r#"["3","10","room:lobby","phx_reply",{"response":{"x":1},"status":"ok"}]"#,
    )
    .await;
    send(&mut ws, r#"[null,"11","room:lobby","ping",{}]"#).await;
    expect(
        &mut ws,
        r#"["3","11","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    send(&mut ws, r#"["1","12","room:lobby","ping",{}]"#).await;
    send(&mut ws, r#"["3","13","room:lobby","noreply",{}]"#).await;
    send(&mut ws, r#"[null,"14","phoenix","heartbeat",{}]"#).await;
    expect(
        &mut ws,
        r#"[null,"14","phoenix","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    // §13.14 stale leave ignored, §13.12 leave: reply then phx_close, §13.13 leave unjoined.
    send(&mut ws, r#"["1","22","room:lobby","phx_leave",{}]"#).await;
    send(&mut ws, r#"["3","15","room:lobby","phx_leave",{}]"#).await;
    expect(
        &mut ws,
        r#"["3","15","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    expect(&mut ws, r#"["3","3","room:lobby","phx_close",{}]"#).await;
    send(&mut ws, r#"["3","16","room:lobby","ping",{}]"#).await;
    expect(&mut ws, r#"[null,"16","room:lobby","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#).await;
    send(&mut ws, r#"["20","21","room:none","phx_leave",{}]"#).await;
    expect(
        &mut ws,
        r#"["20","21","room:none","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    expect_none(&mut ws, 200).await;
}

#[tokio::test]
async fn duplicate_join_replies_first_then_closes_the_old_join_ref() {
    let s = server().await;
    let mut ws = s.v2().await;
    join(&mut ws, "3", "room:lobby").await;
    send(&mut ws, r#"["30","30","room:lobby","phx_join",{}]"#).await;
    expect(
        &mut ws,
        r#"["30","30","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    expect(&mut ws, r#"["3","3","room:lobby","phx_close",{}]"#).await;
    send(&mut ws, r#"["3","31","room:lobby","ping",{}]"#).await;
    send(&mut ws, r#"["30","32","room:lobby","ping",{}]"#).await;
    expect(
        &mut ws,
        r#"["30","32","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
}

#[tokio::test]
async fn crash_stop_and_join_crash() {
    let s = server().await;
    let mut ws = s.v2().await;
    join(&mut ws, "3", "room:lobby").await;
    // §13.16: an Err from handle_in → phx_error, topic unjoined.
    send(&mut ws, r#"["3","31","room:lobby","boom",{}]"#).await;
    expect(
        &mut ws,
        r#"["3","3","room:lobby","phx_error",{"reason":"channel_crash"}]"#,
    )
    .await;
    send(&mut ws, r#"["3","32","room:lobby","ping",{}]"#).await;
    expect(&mut ws, r#"[null,"32","room:lobby","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#).await;
    // §13.17: stop → ok reply, then phx_close.
    join(&mut ws, "5", "room:lobby").await;
    send(&mut ws, r#"["5","33","room:lobby","stop",{}]"#).await;
    expect(
        &mut ws,
        r#"["5","33","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    expect(&mut ws, r#"["5","5","room:lobby","phx_close",{}]"#).await;
    // Join that raises → "join crashed", nothing registered.
    send(&mut ws, r#"["6","6","room:crash","phx_join",{}]"#).await;
    expect(&mut ws, r#"["6","6","room:crash","phx_reply",{"response":{"reason":"join crashed"},"status":"error"}]"#).await;
    send(&mut ws, r#"["6","7","room:crash","ping",{}]"#).await;
    expect(&mut ws, r#"[null,"7","room:crash","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#).await;
}

#[tokio::test]
async fn panics_are_contained_and_a_hung_channel_blocks_no_sibling() {
    let s = server().await;
    let mut ws = s.v2().await;
    send(&mut ws, r#"["1","1","bad:panic_join","phx_join",{}]"#).await;
    expect(&mut ws, r#"["1","1","bad:panic_join","phx_reply",{"response":{"reason":"join crashed"},"status":"error"}]"#).await;
    join(&mut ws, "2", "bad:a").await;
    join(&mut ws, "3", "bad:b").await;
    send(&mut ws, r#"["2","4","bad:a","panic",{}]"#).await;
    expect(
        &mut ws,
        r#"["2","2","bad:a","phx_error",{"reason":"channel_crash"}]"#,
    )
    .await;
    // bad:b hangs forever inside handle_in; room:lobby on the same socket still answers.
    send(&mut ws, r#"["3","5","bad:b","hang",{}]"#).await;
    join(&mut ws, "6", "room:lobby").await;
    send(
        &mut ws,
        r#"["6","7","room:lobby","ping",{"still":"alive"}]"#,
    )
    .await;
    expect(
        &mut ws,
        r#"["6","7","room:lobby","phx_reply",{"response":{"still":"alive"},"status":"ok"}]"#,
    )
    .await;
    // The server survived the panics: a new socket works.
    let mut other = s.v2().await;
    join(&mut other, "1", "room:lobby").await;
}

#[tokio::test]
async fn join_reply_comes_before_pushes_made_during_join() {
    let s = server().await;
    let mut ws = s.v2().await;
    join(&mut ws, "3", "room:tick").await;
    expect(&mut ws, r#"["3",null,"room:tick","tick",{"n":1}]"#).await;
}

#[tokio::test]
async fn broadcast_fastlane_intercept_and_broadcast_from() {
    let s = server().await;
    let mut a = s.v2().await;
    let mut b = s.v2().await;
    let mut outsider = s.v2().await;
    join(&mut a, "3", "room:lobby").await;
    join(&mut b, "7", "room:lobby").await;
    join(&mut outsider, "1", "room:other").await;
    // §13.19 Endpoint.broadcast: join_ref null for everyone joined, nothing for others.
    s.endpoint
        .broadcast("room:lobby", "new_msg", json!({"body": "hi"}));
    let expected = r#"[null,null,"room:lobby","new_msg",{"body":"hi"}]"#;
    expect(&mut a, expected).await;
    expect(&mut b, expected).await;
    expect_none(&mut outsider, 200).await;
    // §13.20 broadcast_from skips the sender.
    send(&mut a, r#"["3","8","room:lobby","shout_from",{"v":2}]"#).await;
    expect(
        &mut a,
        r#"["3","8","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    expect(&mut b, r#"[null,null,"room:lobby","shout",{"v":2}]"#).await;
    expect_none(&mut a, 200).await;
    // §13.21 intercepted: pushed through handle_out with each socket's join_ref.
    send(&mut a, r#"["3","9","room:lobby","filter",{"v":1}]"#).await;
    expect(
        &mut a,
        r#"["3",null,"room:lobby","filtered",{"seen":true,"v":1}]"#,
    )
    .await;
    expect(
        &mut b,
        r#"["7",null,"room:lobby","filtered",{"seen":true,"v":1}]"#,
    )
    .await;
}

#[tokio::test]
async fn channel_cap_and_malformed_frames() {
    let cfg = Config {
        max_channels: 3,
        ..Config::default()
    };
    let s = start(cfg, routes).await;
    let mut ws = s.v2().await;
    for i in 1..=3 {
        join(&mut ws, &i.to_string(), &format!("room:{i}")).await;
    }
    send(&mut ws, r#"["999","999","room:4","phx_join",{}]"#).await;
    expect(&mut ws, r#"["999","999","room:4","phx_reply",{"response":{"reason":"too many channels joined"},"status":"error"}]"#).await;
    // §13.34: a frame with fewer than 5 elements closes the socket with 1011.
    send(&mut ws, r#"["1","1","t","e"]"#).await;
    assert_eq!(close_code(&mut ws).await, Some(1011));
    // Not JSON at all, and a client binary frame of kind 1: same.
    let mut ws = s.v2().await;
    send(&mut ws, "not json").await;
    assert_eq!(close_code(&mut ws).await, Some(1011));
    let mut ws = s.v2().await;
    futures_util::SinkExt::send(&mut ws, Message::Binary(vec![1u8, 0, 0, 0, 0].into()))
        .await
        .expect("send");
    assert_eq!(close_code(&mut ws).await, Some(1011));
    // Other sockets are unaffected.
    let mut ok = s.v2().await;
    join(&mut ok, "1", "room:lobby").await;
}

#[tokio::test]
async fn oversize_frame_closes_with_1009() {
    let cfg = Config {
        max_frame_size: 1024,
        ..Config::default()
    };
    let s = start(cfg, routes).await;
    let mut ws = s.v2().await;
    let big = format!(
        r#"[null,"1","phoenix","heartbeat",{{"pad":"{}"}}]"#,
        "x".repeat(4096)
    );
    send(&mut ws, &big).await;
    assert_eq!(close_code(&mut ws).await, Some(1009));
}

#[tokio::test]
async fn disconnect_by_socket_id_closes_with_1001_and_spares_others() {
    let s = server().await;
    let t42 = s
        .endpoint
        .sign_token("user socket", &phx_protocol::etf::Term::Int(42));
    let t43 = s
        .endpoint
        .sign_token("user socket", &phx_protocol::etf::Term::Int(43));
    let mut a = s.connect(&format!("token={t42}&vsn=2.0.0")).await;
    let mut b = s.connect(&format!("token={t43}&vsn=2.0.0")).await;
    join(&mut a, "3", "room:lobby").await;
    join(&mut b, "3", "room:lobby").await;
    s.endpoint
        .broadcast("users_socket:42", "disconnect", json!({}));
    assert_eq!(close_code(&mut a).await, Some(1001));
    send(&mut b, r#"[null,"9","phoenix","heartbeat",{}]"#).await;
    expect(
        &mut b,
        r#"[null,"9","phoenix","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    // Other events on the id topic are ignored.
    s.endpoint
        .broadcast("users_socket:43", "something", json!({}));
    send(&mut b, r#"[null,"10","phoenix","heartbeat",{}]"#).await;
    expect(
        &mut b,
        r#"[null,"10","phoenix","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
}

#[tokio::test]
async fn v1_serializer_frames() {
    let s = server().await;
    let mut ws = s.connect("vsn=1.0.0").await;
    send(
        &mut ws,
        r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}"#,
    )
    .await;
    expect(&mut ws, r#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"phoenix"}"#).await;
    send(
        &mut ws,
        r#"{"topic":"room:lobby","event":"phx_join","payload":{},"ref":"2","join_ref":"2"}"#,
    )
    .await;
    expect(&mut ws, r#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"2","topic":"room:lobby"}"#).await;
    s.endpoint.broadcast("room:lobby", "e", json!({}));
    expect(
        &mut ws,
        r#"{"event":"e","payload":{},"ref":null,"topic":"room:lobby"}"#,
    )
    .await;
}

#[tokio::test]
async fn drain_closes_every_socket_with_1012() {
    let s = server().await;
    let mut a = s.v2().await;
    let mut b = s.v2().await;
    join(&mut a, "1", "room:lobby").await;
    send(&mut b, r#"[null,"1","phoenix","heartbeat",{}]"#).await;
    expect(
        &mut b,
        r#"[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    let ep = s.endpoint.clone();
    let drained = tokio::spawn(async move { ep.drain().await });
    assert_eq!(close_code(&mut a).await, Some(1012));
    assert_eq!(close_code(&mut b).await, Some(1012));
    drained.await.expect("drain");
    assert_eq!(s.endpoint.live_sockets(), 0);
}

#[tokio::test(start_paused = true)]
async fn idle_socket_is_closed_with_1002_after_60s() {
    let s = server().await;
    let mut ws = s.v2().await;
    let t0 = tokio::time::Instant::now();
    assert_eq!(close_code(&mut ws).await, Some(1002));
    assert!(
        t0.elapsed() >= Duration::from_secs(60),
        "closed after {:?}",
        t0.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_every_30s_keep_a_socket_open() {
    let s = server().await;
    let mut ws = s.v2().await;
    for i in 1..=5 {
        tokio::time::sleep(Duration::from_secs(30)).await;
        send(
            &mut ws,
            &format!(r#"[null,"{i}","phoenix","heartbeat",{{}}]"#),
        )
        .await;
        expect(
            &mut ws,
            &format!(r#"[null,"{i}","phoenix","phx_reply",{{"response":{{}},"status":"ok"}}]"#),
        )
        .await;
    }
    // 150 s of virtual time with a frame every 30 s: still open. Then silence → 1002.
    let t0 = tokio::time::Instant::now();
    assert_eq!(close_code(&mut ws).await, Some(1002));
    assert!(t0.elapsed() >= Duration::from_secs(59));
}

/// The seed's 5-second `ping`. Runs on the real clock: with tokio's paused clock, a frame
/// that the server writes while the in-process client waits is seen by the client only at the
/// next timer (auto-advance jumps virtual time before the client task reads its loopback
/// socket: a broadcast sent at t=0 arrives at t=60 s, the idle timeout). Frames answering the
/// client's own sends are unaffected, so the idle-timeout tests above keep the paused clock;
/// this one waits 10 real seconds instead.
#[tokio::test]
async fn the_seed_ping_example_pushes_every_5s() {
    let s = server().await;
    let mut ws = s.v2().await;
    join(&mut ws, "3", "ticker:1").await;
    // Nothing before the first period.
    expect_none(&mut ws, 4_000).await;
    for n in 1..=2 {
        expect(
            &mut ws,
            &format!(r#"["3",null,"ticker:1","ping",{{"count":{n}}}]"#),
        )
        .await;
    }
    // Leaving stops the timer: no more pings.
    send(&mut ws, r#"["3","4","ticker:1","phx_leave",{}]"#).await;
    expect(
        &mut ws,
        r#"["3","4","ticker:1","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    expect(&mut ws, r#"["3","3","ticker:1","phx_close",{}]"#).await;
    expect_none(&mut ws, 6_000).await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_and_counted_without_slowing_others() {
    let cfg = Config {
        outbox_capacity: 16,
        ..Config::default()
    };
    let s = start(cfg, routes).await;
    let mut slow = s.v2().await;
    let mut fast = s.v2().await;
    join(&mut slow, "1", "room:flood").await;
    join(&mut fast, "1", "room:calm").await;
    // 64 KiB broadcasts: the kernel buffers fill, then the 16-frame queue, then overflow.
    let pad = "x".repeat(64 * 1024);
    for _ in 0..2_000 {
        s.endpoint
            .broadcast("room:flood", "flood", json!({ "pad": pad }));
        if s.endpoint.metrics().overflow_closes.get() > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(s.endpoint.metrics().overflow_closes.get(), 1);
    // The other socket is unaffected.
    s.endpoint.broadcast("room:calm", "hello", json!({}));
    expect(&mut fast, r#"[null,null,"room:calm","hello",{}]"#).await;
    // The slow socket's stream ends (close 1013 if the writer could still send it, else the
    // connection is dropped) after at most what was queued.
    let mut frames = 0usize;
    loop {
        match tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::StreamExt::next(&mut slow),
        )
        .await
        {
            Ok(Some(Ok(Message::Close(f)))) => {
                if let Some(f) = f {
                    assert_eq!(u16::from(f.code), 1013);
                }
                break;
            }
            Ok(Some(Ok(_))) => frames += 1,
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => panic!("slow socket neither closed nor ended"),
        }
    }
    assert!(frames < 2_000, "got {frames} frames");
}

#[tokio::test]
async fn a_full_channel_inbox_stops_reading_the_socket_and_loses_nothing() {
    let cfg = Config {
        channel_inbox_capacity: 2,
        ..Config::default()
    };
    let s = start(cfg, routes).await;
    let mut ws = s.v2().await;
    join(&mut ws, "1", "gate:1").await;
    // The channel blocks on the first message; two more fill its inbox; the fourth must wait
    // in the session, and the socket stops reading: the heartbeat behind it is not answered.
    send(&mut ws, r#"["1","2","gate:1","wait",{}]"#).await;
    for r in 3..=5 {
        send(
            &mut ws,
            &format!(r#"["1","{r}","gate:1","ping",{{"n":{r}}}]"#),
        )
        .await;
    }
    send(&mut ws, r#"[null,"6","phoenix","heartbeat",{}]"#).await;
    expect_none(&mut ws, 300).await;
    // Open the gate: every message is handled, in order, and then the heartbeat.
    gate().add_permits(1);
    expect(
        &mut ws,
        r#"["1","2","gate:1","phx_reply",{"response":{},"status":"ok"}]"#,
    )
    .await;
    let mut rest = Vec::new();
    for _ in 0..4 {
        rest.push(next_text(&mut ws).await);
    }
    for r in 3..=5 {
        let reply =
            format!(r#"["1","{r}","gate:1","phx_reply",{{"response":{{"n":{r}}},"status":"ok"}}]"#);
        assert!(rest.contains(&reply), "missing {reply} in {rest:?}");
    }
    assert!(rest.contains(
        &r#"[null,"6","phoenix","phx_reply",{"response":{},"status":"ok"}]"#.to_string()
    ));
}
