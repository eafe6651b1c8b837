//! `fanout`: N subscribers join one topic; a publisher socket pushes `shout`
//! `{"seq":k,"t":<ns>,"pad":"<pad bytes>"}` K times, `--interval-ms` apart; the fixture
//! broadcasts it to the topic. Per round: time from publish to the first and to the LAST
//! delivery. Over all deliveries: p50/p90/p99/max; missing deliveries; server CPU per delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{self, BoxError, Target};
use crate::procstat::{round3, Delta, Sample};
use crate::report::{self, note};
use crate::Cli;

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Subscribers (one process: at most ~19.9k under a 20k open-file limit).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: u64,
    /// Publish rounds (at most 10,000).
    #[arg(long, default_value_t = 20)]
    pub rounds: u64,
    /// Time between publishes.
    #[arg(long, default_value_t = 500)]
    pub interval_ms: u64,
    /// Bytes of padding in each payload.
    #[arg(long, default_value_t = 200)]
    pub pad: usize,
    /// Topic (default: `room:fanout-<pid>-<time>`, fresh per run).
    #[arg(long)]
    pub topic: Option<String>,
    /// After the last publish, wait at most this long for missing deliveries.
    #[arg(long, default_value_t = 5)]
    pub drain_secs: u64,
    /// Subscribe only: no publisher socket; the rounds are published elsewhere (another
    /// node of a cluster, by another loadgen). Waits at most `--listen-secs` for them.
    #[arg(long)]
    pub listen_only: bool,
    /// With `--listen-only`: how long to wait for every round, counted from the last join.
    #[arg(long, default_value_t = 120)]
    pub listen_secs: u64,
    /// A file created once every socket has joined (for a script coordinating processes).
    #[arg(long)]
    pub ready_file: Option<std::path::PathBuf>,
}

pub async fn run(cli: &Cli, target: &Target, a: FanoutArgs) -> Result<(), BoxError> {
    let rounds = a.rounds.clamp(1, 10_000) as usize;
    let n = a.subscribers;
    let topic = a
        .topic
        .clone()
        .unwrap_or_else(|| format!("room:fanout-{}-{}", std::process::id(), conn::now_ns()));
    let machine = report::machine();
    note(&format!(
        "fanout: {n} subscribers on {topic}, {rounds} rounds every {} ms, pad {} B, load {}",
        a.interval_ms, a.pad, machine["loadavg_at_start"]
    ));
    let s_start = Sample::take(cli.server_pid);
    let c = report::connect_many(
        target,
        0,
        0..n + u64::from(!a.listen_only),
        cli.concurrency,
        |_| topic.clone(),
        Duration::from_secs(30),
    )
    .await;
    let s_joined = Sample::take(cli.server_pid);
    note(&format!(
        "joined {} of {} sockets in {:.2} s{}",
        c.socks.len(),
        n + 1,
        c.elapsed.as_secs_f64(),
        c.first_error
            .as_deref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    ));
    let mut socks = c.socks;
    if socks.is_empty() {
        return Err("no socket joined".into());
    }
    // The last joined socket publishes; the rest subscribe.
    let publisher = if a.listen_only {
        None
    } else {
        Some(socks.pop().ok_or("no publisher")?.1)
    };
    if let Some(path) = &a.ready_file {
        std::fs::write(path, format!("{}\n", socks.len()))?;
    }
    let subs = socks.len() as u64;
    let expected = subs * rounds as u64;

    let delivered = Arc::new(AtomicU64::new(0));
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for (_, ws, _) in socks {
        let delivered = delivered.clone();
        let mut stop_rx = stop_rx.clone();
        tasks.spawn(async move {
            // Latency (ns) per round, 0 = not received.
            let mut lat = vec![0u64; rounds + 1];
            let (_tx, mut rx) = ws.split();
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    m = rx.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            let now = conn::now_ns();
                            let t = t.as_str();
                            if !t.contains(r#","shout","#) {
                                continue;
                            }
                            if let (Some(seq), Some(sent)) =
                                (conn::scan_u64(t, r#""seq":"#), conn::scan_u64(t, r#""t":"#))
                            {
                                let k = seq as usize;
                                if k >= 1 && k <= rounds && lat[k] == 0 {
                                    lat[k] = now.saturating_sub(sent).max(1);
                                    delivered.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
            }
            lat
        });
    }

    let replies = Arc::new(AtomicU64::new(0));
    let pad = "x".repeat(a.pad);
    let s0 = Sample::take(cli.server_pid);
    let bound = match publisher {
        Some(publisher) => {
            publish(
                publisher,
                &topic,
                &pad,
                rounds,
                a.interval_ms,
                &replies,
                &stop_rx,
            )
            .await?;
            Instant::now() + Duration::from_secs(a.drain_secs)
        }
        None => Instant::now() + Duration::from_secs(a.listen_secs),
    };
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < bound {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let s1 = Sample::take(cli.server_pid);
    let _ = stop.send(true);

    let mut per_sub = Vec::with_capacity(subs as usize);
    while let Some(r) = tasks.join_next().await {
        if let Ok(lat) = r {
            per_sub.push(lat);
        }
    }

    let mut all = report::hist();
    let mut to_last = report::hist();
    let mut to_first = report::hist();
    let mut per_round = Vec::new();
    let mut got = 0u64;
    for k in 1..=rounds {
        let mut first = u64::MAX;
        let mut last = 0u64;
        let mut n_k = 0u64;
        for lat in &per_sub {
            let v = lat[k];
            if v > 0 {
                first = first.min(v);
                last = last.max(v);
                n_k += 1;
                report::record(&mut all, v / 1000);
            }
        }
        got += n_k;
        if n_k > 0 {
            report::record(&mut to_first, first / 1000);
            report::record(&mut to_last, last / 1000);
        }
        per_round.push(serde_json::json!({
            "seq": k,
            "first_ms": if n_k > 0 { Some(round3(first as f64 / 1e6)) } else { None },
            "last_ms": if n_k > 0 { Some(round3(last as f64 / 1e6)) } else { None },
            "received": n_k,
        }));
    }
    let missing = expected - got;
    let d = Delta::between(&s0, &s1);
    let cpu_per_delivery_us = d.server_cpu_s.map(|c| round3(c / got.max(1) as f64 * 1e6));
    let loadgen_per_delivery_us = round3(d.self_cpu_s / got.max(1) as f64 * 1e6);
    let p50_last_ms = to_last.value_at_quantile(0.5) as f64 / 1000.0;
    let burst_rate = if p50_last_ms > 0.0 {
        subs as f64 / (p50_last_ms / 1000.0)
    } else {
        0.0
    };
    note(&format!(
        "deliveries {got}/{expected} (missing {missing}); time to last p50 {:.2} ms p99 {:.2} ms max {:.2} ms; \
         time to first p50 {:.2} ms; all deliveries p50 {:.2} p99 {:.2} ms; server CPU/delivery {} µs; \
         loadgen CPU/delivery {:.2} µs; publisher replies {}",
        p50_last_ms,
        to_last.value_at_quantile(0.99) as f64 / 1000.0,
        to_last.max() as f64 / 1000.0,
        to_first.value_at_quantile(0.5) as f64 / 1000.0,
        all.value_at_quantile(0.5) as f64 / 1000.0,
        all.value_at_quantile(0.99) as f64 / 1000.0,
        cpu_per_delivery_us.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into()),
        loadgen_per_delivery_us,
        replies.load(Ordering::Relaxed),
    ));
    report::emit(&serde_json::json!({
        "result": if a.listen_only { "fanout-listen" } else { "fanout" },
        "label": cli.label,
        "subscribers": subs,
        "requested_subscribers": n,
        "join_failed": c.failed,
        "first_error": c.first_error,
        "rounds": rounds,
        "interval_ms": a.interval_ms,
        "pad": a.pad,
        "expected": expected,
        "delivered": got,
        "missing": missing,
        "time_to_last_ms": report::pct_ms(&to_last),
        "time_to_first_ms": report::pct_ms(&to_first),
        "delivery_latency_ms": report::pct_ms(&all),
        "burst_deliveries_per_s": round3(burst_rate),
        "deliveries_per_s_over_phase": round3(got as f64 / d.secs),
        "server_cpu_per_delivery_us": cpu_per_delivery_us,
        "loadgen_cpu_per_delivery_us": loadgen_per_delivery_us,
        "publisher_replies": replies.load(Ordering::Relaxed),
        "join_phase": Delta::between(&s_start, &s_joined).json(),
        "server_cpu_per_connect_join_us": Delta::between(&s_start, &s_joined).server_cpu_s.map(|c| round3(c / (subs + 1) as f64 * 1e6)),
        "publish_phase": d.json(),
        "per_round": per_round,
        "machine": machine,
    }));
    Ok(())
}

/// The publisher: `rounds` shouts `interval_ms` apart on its own socket, whose own copy of the
/// broadcast and whose `ok` replies are read (and counted) until `stop`.
async fn publish(
    publisher: conn::Ws,
    topic: &str,
    pad: &str,
    rounds: usize,
    interval_ms: u64,
    replies: &Arc<AtomicU64>,
    stop_rx: &watch::Receiver<bool>,
) -> Result<(), BoxError> {
    let (mut ptx, mut prx) = publisher.split();
    {
        let replies = replies.clone();
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    m = prx.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            if t.as_str().contains(r#""phx_reply""#) {
                                replies.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
            }
        });
    }
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for k in 1..=rounds {
        tick.tick().await;
        let t = conn::now_ns();
        let f = format!(
            r#"["1","{}",{},"shout",{{"seq":{k},"t":{t},"pad":"{pad}"}}]"#,
            k + 1,
            conn::json_str(topic)
        );
        ptx.send(Message::text(f)).await?;
    }
    Ok(())
}
