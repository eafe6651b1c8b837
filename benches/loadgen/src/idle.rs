//! `idle`: N sockets connect and each join one topic, then stay connected for `--hold-secs`
//! sending heartbeats like the JS client. Measures the connect + join rate, the server's CPU per
//! connect + join, its RSS growth per socket along the hold, and its CPU while idle.
//!
//! Above one process's open-file limit, `--processes P` re-executes this binary as P shard
//! processes (`--shard i/P`, disjoint source addresses); this process then only coordinates.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{BoxError, Target, Ws};
use crate::procstat::{round3, Delta, Sample};
use crate::report::{self, note};
use crate::Cli;

/// Upper bound on any hold, whatever the flags say.
const MAX_HOLD_SECS: u64 = 3600;

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    /// Number of sockets (across all processes).
    #[arg(long, default_value_t = 1000)]
    pub sockets: u64,
    /// Topic prefix; socket i joins `<prefix><i>` (or `<prefix>shared` with --shared-topic).
    #[arg(long, default_value = "room:idle-")]
    pub topic_prefix: String,
    /// All sockets join the same topic.
    #[arg(long)]
    pub shared_topic: bool,
    /// How long to hold the sockets after the last join.
    #[arg(long, default_value_t = 60)]
    pub hold_secs: u64,
    /// Seconds after the last join at which the headline RSS per socket is read.
    #[arg(long, default_value_t = 60)]
    pub rss_at_secs: u64,
    /// Heartbeat period per socket (0 = none); the JS client uses 30 s.
    #[arg(long, default_value_t = 30)]
    pub heartbeat_secs: u64,
    /// Sample the server every this many seconds during the hold.
    #[arg(long, default_value_t = 10)]
    pub sample_secs: u64,
    /// Shard the sockets over this many load-generator processes (re-executes itself).
    #[arg(long, default_value_t = 1)]
    pub processes: u32,
    /// Internal: run as shard i of n (`i/n`), report to the parent on stdout, hold until stdin says so.
    #[arg(long, hide = true)]
    pub shard: Option<String>,
}

fn topic(a: &IdleArgs, i: u64) -> String {
    if a.shared_topic {
        format!("{}shared", a.topic_prefix)
    } else {
        format!("{}{}", a.topic_prefix, i)
    }
}

fn shard_range(n_total: u64, shard: u32, shards: u32) -> std::ops::Range<u64> {
    let per = n_total / shards as u64;
    let rem = n_total % shards as u64;
    let s = shard as u64;
    let start = s * per + s.min(rem);
    let len = per + u64::from(s < rem);
    start..start + len
}

/// The sockets held by this process.
struct Held {
    stop: watch::Sender<bool>,
    dropped: Arc<AtomicU64>,
    heartbeats: Arc<AtomicU64>,
    tasks: tokio::task::JoinSet<()>,
}

fn hold(socks: Vec<(u64, Ws, Instant)>, heartbeat_secs: u64) -> Held {
    let (stop, stop_rx) = watch::channel(false);
    let dropped = Arc::new(AtomicU64::new(0));
    let heartbeats = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (_, ws, opened) in socks {
        let mut stop_rx = stop_rx.clone();
        let dropped = dropped.clone();
        let heartbeats = heartbeats.clone();
        tasks.spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let period = Duration::from_secs(heartbeat_secs.max(1));
            // Like the JS client: the first heartbeat one period after the socket opened.
            let mut hb =
                tokio::time::interval_at(tokio::time::Instant::from_std(opened) + period, period);
            let mut r: u64 = 1;
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    m = rx.next() => match m {
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Some(Ok(_)) => {}
                    },
                    _ = hb.tick(), if heartbeat_secs > 0 => {
                        r += 1;
                        let f = format!(r#"[null,"{r}","phoenix","heartbeat",{{}}]"#);
                        if tx.send(Message::text(f)).await.is_err() {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        heartbeats.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    Held {
        stop,
        dropped,
        heartbeats,
        tasks,
    }
}

impl Held {
    async fn release(mut self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

pub async fn run(cli: &Cli, target: &Target, a: IdleArgs) -> Result<(), BoxError> {
    if let Some(spec) = a.shard.clone() {
        return run_shard(cli, target, &a, &spec).await;
    }
    let hold_secs = a.hold_secs.min(MAX_HOLD_SECS);
    let machine = report::machine();
    note(&format!(
        "idle: {} sockets → {} ({} process(es)), hold {} s, heartbeat {} s, load {}",
        a.sockets,
        target.url,
        a.processes,
        hold_secs,
        a.heartbeat_secs,
        machine["loadavg_at_start"]
    ));
    let connect_timeout = Duration::from_secs(30);
    let s0 = Sample::take(cli.server_pid);

    // Phase 1: connect + join.
    let mut local: Option<Held> = None;
    let mut children: Vec<Child> = Vec::new();
    let mut connected: u64 = 0;
    let mut failed: u64 = 0;
    let mut first_error: Option<String> = None;
    let mut latency = report::hist();
    let mut children_join_cpu = 0.0;
    if a.processes <= 1 {
        let c = report::connect_many(
            target,
            0,
            0..a.sockets,
            cli.concurrency,
            |i| topic(&a, i),
            connect_timeout,
        )
        .await;
        connected = c.socks.len() as u64;
        failed = c.failed;
        first_error = c.first_error;
        latency = c.latency;
        local = Some(hold(c.socks, a.heartbeat_secs));
    } else {
        for i in 0..a.processes {
            children.push(Child::spawn(cli, &a, i)?);
        }
        for ch in children.iter_mut() {
            let j = ch.wait_line("joined", connect_timeout * 20).await?;
            connected += j["connected"].as_u64().unwrap_or(0);
            children_join_cpu += j["cpu_s"].as_f64().unwrap_or(0.0);
            failed += j["failed"].as_u64().unwrap_or(0);
            if first_error.is_none() {
                first_error = j["first_error"].as_str().map(str::to_owned);
            }
        }
    }
    let s1 = Sample::take(cli.server_pid);
    let d_join = Delta::between(&s0, &s1);
    let rate = connected as f64 / d_join.secs;
    note(&format!(
        "connect+join: {connected} ok, {failed} failed in {:.2} s → {:.0}/s{}",
        d_join.secs,
        rate,
        first_error
            .as_deref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    ));

    // Phase 2: hold, sampling the server.
    let mut timeline = Vec::new();
    let rss0 = s0.server_rss;
    let per_socket = |s: &Sample| -> Option<f64> {
        match (rss0, s.server_rss) {
            (Some(a0), Some(x)) if connected > 0 => Some((x as f64 - a0 as f64) / connected as f64),
            _ => None,
        }
    };
    timeline.push(serde_json::json!({"t": 0, "rss": s1.server_rss, "per_socket_b": per_socket(&s1).map(round3)}));
    let mut at_rss: Option<Sample> = None;
    let mut last = s1;
    let step = a.sample_secs.max(1);
    let mut t = 0;
    while t < hold_secs {
        let next = (t + step).min(hold_secs);
        let mut due = next;
        if t < a.rss_at_secs && a.rss_at_secs < next {
            due = a.rss_at_secs;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            s1.at + Duration::from_secs(due),
        ))
        .await;
        t = due;
        let s = Sample::take(cli.server_pid);
        if t == a.rss_at_secs {
            at_rss = Some(s);
        }
        timeline.push(serde_json::json!({"t": t, "rss": s.server_rss, "per_socket_b": per_socket(&s).map(round3)}));
        if let Some(p) = per_socket(&s) {
            note(&format!(
                "  +{t:>4} s: server RSS {:.1} MiB, {:.0} B/socket",
                s.server_rss.unwrap_or(0) as f64 / 1048576.0,
                p
            ));
        }
        last = s;
    }
    let s2 = last;
    let d_hold = Delta::between(&s1, &s2);

    // Release.
    let mut dropped = 0;
    let mut heartbeats = 0;
    if let Some(h) = local {
        dropped = h.dropped.load(Ordering::Relaxed);
        heartbeats = h.heartbeats.load(Ordering::Relaxed);
        h.release().await;
    }
    for ch in children.iter_mut() {
        ch.release().await;
    }
    for ch in children.iter_mut() {
        if let Ok(j) = ch.wait_line("done", Duration::from_secs(30)).await {
            dropped += j["dropped"].as_u64().unwrap_or(0);
            heartbeats += j["heartbeats"].as_u64().unwrap_or(0);
        }
        ch.reap().await;
    }

    let cpu_per_join_us = d_join
        .server_cpu_s
        .map(|c| round3(c / connected.max(1) as f64 * 1e6));
    let at = at_rss.unwrap_or(s2);
    let rss_per_socket = per_socket(&at).map(round3);
    let plateau = per_socket(&s2).map(round3);
    let heartbeat_cpu_pct = d_hold.server_pct().map(round3);
    // Server CPU per heartbeat (everything the server did in the hold ÷ heartbeats: an upper
    // bound), and what that means for 10k sockets at one heartbeat per 30 s.
    let cpu_per_heartbeat_us = d_hold
        .server_cpu_s
        .filter(|_| heartbeats > 0)
        .map(|c| round3(c / heartbeats as f64 * 1e6));
    let pct_10k_30s = cpu_per_heartbeat_us.map(|us| round3(us * 10_000.0 / 30.0 / 1e6 * 100.0));
    note(&format!(
        "server CPU per connect+join: {} µs; RSS per socket at +{} s: {} B; at +{} s: {} B; \
         server CPU during hold: {} % of a core; sockets dropped: {dropped}; heartbeats sent: {heartbeats}",
        fmt_opt(cpu_per_join_us),
        at.at.duration_since(s1.at).as_secs(),
        fmt_opt(rss_per_socket),
        hold_secs,
        fmt_opt(plateau),
        fmt_opt(heartbeat_cpu_pct),
    ));
    let loadgen_cpu_s = crate::procstat::cpu("self")
        .map(|c| c.own_s + c.children_s)
        .unwrap_or(0.0);
    let join_phase = {
        let mut j = d_join.json();
        // Shard processes' CPU is not in this process's counters until they are reaped.
        let lg = d_join.self_cpu_s + children_join_cpu;
        j["loadgen_cpu_s"] = round3(lg).into();
        j["loadgen_cpu_pct"] = round3(lg / d_join.secs * 100.0).into();
        if let Some(h) = d_join.host_busy_core_pct {
            let other = h - d_join.server_pct().unwrap_or(0.0) - lg / d_join.secs * 100.0;
            j["other_busy_core_pct"] = round3(other.max(0.0)).into();
        }
        j
    };
    report::emit(&serde_json::json!({
        "result": "idle",
        "label": cli.label,
        "sockets": a.sockets,
        "processes": a.processes,
        "shared_topic": a.shared_topic,
        "connected": connected,
        "failed": failed,
        "first_error": first_error,
        "connect_join_secs": round3(d_join.secs),
        "connect_join_rate": round3(rate),
        "connect_join_latency_ms": if a.processes <= 1 { report::pct_ms(&latency) } else { serde_json::Value::Null },
        "server_cpu_per_connect_join_us": cpu_per_join_us,
        "server_rss_before": s0.server_rss,
        "server_rss_after_join": s1.server_rss,
        "rss_at_secs": at.at.duration_since(s1.at).as_secs(),
        "rss_per_socket_b": rss_per_socket,
        "rss_per_socket_end_b": plateau,
        "hold_secs": hold_secs,
        "heartbeat_secs": a.heartbeat_secs,
        "heartbeats_sent": heartbeats,
        "server_cpu_hold_pct": heartbeat_cpu_pct,
        "server_cpu_per_heartbeat_us": cpu_per_heartbeat_us,
        "server_cpu_pct_10k_sockets_30s_heartbeat": pct_10k_30s,
        "dropped_during_hold": dropped,
        "join_phase": join_phase,
        "hold_phase": d_hold.json(),
        "loadgen_cpu_total_s": round3(loadgen_cpu_s),
        "loadgen_cpu_join_s": round3(d_join.self_cpu_s + children_join_cpu),
        "loadgen_cpu_per_connect_join_us": round3((d_join.self_cpu_s + children_join_cpu) / connected.max(1) as f64 * 1e6),
        "rss_timeline": timeline,
        "machine": machine,
    }));
    Ok(())
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into())
}

/// A shard process: connect its slice, say "joined", hold until the parent writes a line (or
/// closes stdin, or the bound passes), say "done".
async fn run_shard(cli: &Cli, target: &Target, a: &IdleArgs, spec: &str) -> Result<(), BoxError> {
    let (i, n) = spec
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<u32>().ok()?, n.parse::<u32>().ok()?)))
        .filter(|(i, n)| *n > 0 && i < n)
        .ok_or("--shard wants i/n")?;
    let range = shard_range(a.sockets, i, n);
    let c = report::connect_many(
        target,
        i,
        range,
        cli.concurrency,
        |g| topic(a, g),
        Duration::from_secs(30),
    )
    .await;
    let me = crate::procstat::cpu("self").unwrap_or_default();
    report::emit(&serde_json::json!({
        "child": "joined", "shard": i, "connected": c.socks.len(), "failed": c.failed,
        "first_error": c.first_error, "secs": c.elapsed.as_secs_f64(), "cpu_s": me.own_s,
    }));
    let held = hold(c.socks, a.heartbeat_secs);
    let bound = Duration::from_secs(a.hold_secs.min(MAX_HOLD_SECS) + 600);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let _ = tokio::time::timeout(bound, stdin.next_line()).await;
    let dropped = held.dropped.load(Ordering::Relaxed);
    let heartbeats = held.heartbeats.load(Ordering::Relaxed);
    held.release().await;
    let me = crate::procstat::cpu("self").unwrap_or_default();
    report::emit(&serde_json::json!({
        "child": "done", "shard": i, "dropped": dropped, "heartbeats": heartbeats, "cpu_s": me.own_s,
    }));
    Ok(())
}

struct Child {
    proc: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stdin: Option<tokio::process::ChildStdin>,
}

impl Child {
    fn spawn(cli: &Cli, a: &IdleArgs, i: u32) -> Result<Child, BoxError> {
        let exe = std::env::current_exe()?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("--host")
            .arg(&cli.host)
            .arg("--port")
            .arg(cli.port.to_string())
            .arg("--path")
            .arg(&cli.path)
            .arg("--concurrency")
            .arg((cli.concurrency / a.processes as usize).max(1).to_string());
        if let Some(t) = cli.threads {
            cmd.arg("--threads").arg(t.to_string());
        }
        cmd.arg("idle")
            .arg("--sockets")
            .arg(a.sockets.to_string())
            .arg("--topic-prefix")
            .arg(&a.topic_prefix)
            .arg("--hold-secs")
            .arg(a.hold_secs.to_string())
            .arg("--heartbeat-secs")
            .arg(a.heartbeat_secs.to_string())
            .arg("--shard")
            .arg(format!("{i}/{}", a.processes));
        if a.shared_topic {
            cmd.arg("--shared-topic");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut proc = cmd.spawn()?;
        let stdout = proc.stdout.take().ok_or("no child stdout")?;
        let stdin = proc.stdin.take();
        Ok(Child {
            proc,
            lines: BufReader::new(stdout).lines(),
            stdin,
        })
    }

    async fn wait_line(
        &mut self,
        kind: &str,
        bound: Duration,
    ) -> Result<serde_json::Value, BoxError> {
        let deadline = Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, self.lines.next_line())
                .await
                .map_err(|_| format!("shard: no '{kind}' line in time"))??
                .ok_or_else(|| format!("shard exited before '{kind}'"))?;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["child"] == kind {
                    return Ok(v);
                }
            }
        }
    }

    async fn release(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.write_all(b"release\n").await;
            let _ = s.flush().await;
        }
    }

    async fn reap(&mut self) {
        if tokio::time::timeout(Duration::from_secs(15), self.proc.wait())
            .await
            .is_err()
        {
            let _ = self.proc.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shard_range;

    #[test]
    fn shards_cover_everything_once() {
        let n = 19_901;
        let mut next = 0;
        for s in 0..3 {
            let r = shard_range(n, s, 3);
            assert_eq!(r.start, next);
            next = r.end;
        }
        assert_eq!(next, n);
    }
}
