//! `echo`: C sockets each join their own topic and keep exactly one `ping` push in flight for
//! `--secs`; the fixture replies with the payload. Round trips/s, p50/p99, server CPU per round
//! trip.

use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{self, BoxError, Target};
use crate::procstat::{round3, Delta, Sample};
use crate::report::{self, note};
use crate::Cli;

#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    /// Sockets, each with one push in flight.
    #[arg(long, default_value_t = 1000)]
    pub sockets: u64,
    /// Duration of the measured phase (at most 600 s).
    #[arg(long, default_value_t = 20)]
    pub secs: u64,
    /// Socket i joins `<prefix><i>`.
    #[arg(long, default_value = "room:echo-")]
    pub topic_prefix: String,
}

pub async fn run(cli: &Cli, target: &Target, a: EchoArgs) -> Result<(), BoxError> {
    let secs = a.secs.clamp(1, 600);
    let machine = report::machine();
    note(&format!(
        "echo: {} sockets, {secs} s, load {}",
        a.sockets, machine["loadavg_at_start"]
    ));
    let c = report::connect_many(
        target,
        0,
        0..a.sockets,
        cli.concurrency,
        |i| format!("{}{}", a.topic_prefix, i),
        Duration::from_secs(30),
    )
    .await;
    note(&format!(
        "joined {} of {} in {:.2} s{}",
        c.socks.len(),
        a.sockets,
        c.elapsed.as_secs_f64(),
        c.first_error
            .as_deref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    ));
    let s0 = Sample::take(cli.server_pid);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for (gi, mut ws, _) in c.socks {
        let topic = conn::json_str(&format!("{}{}", a.topic_prefix, gi));
        tasks.spawn(async move {
            let mut h = report::hist();
            let mut errors = 0u64;
            let mut r: u64 = 1;
            'outer: while Instant::now() < deadline {
                r += 1;
                let rs = r.to_string();
                let f = format!(r#"["1","{rs}",{topic},"ping",{{"n":{r}}}]"#);
                let t0 = Instant::now();
                if ws.send(Message::text(f)).await.is_err() {
                    errors += 1;
                    break;
                }
                loop {
                    let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
                    match m {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            if conn::frame_ref(t.as_str()) == Some(rs.as_str()) {
                                report::record(&mut h, t0.elapsed().as_micros() as u64);
                                break;
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => {
                            errors += 1;
                            break 'outer;
                        }
                    }
                }
            }
            (h, errors)
        });
    }
    let mut all = report::hist();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        if let Ok((h, e)) = r {
            let _ = all.add(&h);
            errors += e;
        }
    }
    let s1 = Sample::take(cli.server_pid);
    let d = Delta::between(&s0, &s1);
    let n = all.len();
    let rate = n as f64 / d.secs;
    let cpu_us = d.server_cpu_s.map(|c| round3(c / n.max(1) as f64 * 1e6));
    let lg_us = round3(d.self_cpu_s / n.max(1) as f64 * 1e6);
    note(&format!(
        "round trips {n} in {:.2} s → {:.0}/s; p50 {:.3} ms p99 {:.3} ms; server CPU/round trip {} µs; \
         loadgen CPU/round trip {lg_us:.2} µs; errors {errors}",
        d.secs,
        rate,
        all.value_at_quantile(0.5) as f64 / 1000.0,
        all.value_at_quantile(0.99) as f64 / 1000.0,
        cpu_us
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "n/a".into()),
    ));
    report::emit(&serde_json::json!({
        "result": "echo",
        "label": cli.label,
        "sockets": a.sockets,
        "joined": all_joined(a.sockets, c.failed),
        "join_failed": c.failed,
        "first_error": c.first_error,
        "secs": secs,
        "round_trips": n,
        "round_trips_per_s": round3(rate),
        "latency_ms": report::pct_ms(&all),
        "server_cpu_per_round_trip_us": cpu_us,
        "loadgen_cpu_per_round_trip_us": lg_us,
        "errors": errors,
        "phase": d.json(),
        "machine": machine,
    }));
    Ok(())
}

fn all_joined(n: u64, failed: u64) -> u64 {
    n - failed.min(n)
}
