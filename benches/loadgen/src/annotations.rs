//! `annotations`: the Rumbl annotation path (`videos:<id>`, VideoChannel) under load.
//!
//! V videos × W watchers: every watcher is an authenticated socket (its own user id, token from
//! `GET /fixture/token?user_id=N`) joined to `videos:<id>` (fresh random video ids per run, so
//! the join replies are empty). The first P watchers of each video also post: each keeps K
//! `new_annotation` `{body, at}` pushes in flight for S seconds. The body is
//! `"b <video> <poster> <seq> <t_ns>"`, so each watcher can check that it received every
//! acknowledged annotation of its video exactly once, and how long after the push it arrived.
//!
//! Reports acknowledged annotations/s, reply latency, broadcast latency, missing / duplicate /
//! unacknowledged deliveries per watcher, and server, Postgres and loadgen CPU per annotation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{self, BoxError, Target, Ws};
use crate::procstat::{self, round3, Delta, Sample};
use crate::report::{self, note};
use crate::Cli;

#[derive(Args, Debug, Clone)]
pub struct AnnotationsArgs {
    /// Videos (topics `videos:<base + i>`).
    #[arg(long, default_value_t = 20)]
    pub videos: u64,
    /// Watcher sockets per video (each its own user).
    #[arg(long, default_value_t = 100)]
    pub watchers: u64,
    /// Posters per video: the first P watchers of each video also push `new_annotation`.
    #[arg(long, default_value_t = 5)]
    pub posters: u64,
    /// Pushes each poster keeps in flight.
    #[arg(long, default_value_t = 1)]
    pub in_flight: u64,
    /// Duration of the posting phase (at most 600 s).
    #[arg(long, default_value_t = 20)]
    pub secs: u64,
    /// After the last reply, wait at most this long for missing broadcasts (at most 60 s).
    #[arg(long, default_value_t = 5)]
    pub drain_secs: u64,
    /// First video id (default: random per run, so that no video has annotations yet).
    #[arg(long)]
    pub video_base: Option<i64>,
    /// First user id (default: random per run).
    #[arg(long)]
    pub user_base: Option<i64>,
    /// Also sum the CPU of the Postgres processes (`postgres: …` in /proc); the backends whose
    /// title names this database are reported separately.
    #[arg(long)]
    pub pg_db: Option<String>,
}

/// What one socket saw.
struct SockOut {
    video: usize,
    /// `counts[poster][seq]`: how many times this watcher received that annotation.
    counts: Vec<Vec<u8>>,
    /// Broadcasts that could not be attributed (other video, unparseable body).
    foreign: u64,
    /// Publish → receipt (µs), for every broadcast received.
    bcast: Histogram<u64>,
    poster: Option<PosterOut>,
}

#[derive(Default)]
struct PosterOut {
    local: usize,
    /// Acknowledged (ok reply) sequence numbers.
    acked: Vec<u32>,
    acked_in_window: u64,
    errors: u64,
    first_error: Option<String>,
    /// Pushes still unanswered when the poster gave up.
    unanswered: u64,
    latency: Option<Histogram<u64>>,
}

fn light_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid histogram bounds")
}

/// `GET /fixture/token?user_id=N` over a fresh loopback connection.
async fn fetch_token(target: &Target, user_id: i64) -> Result<String, BoxError> {
    let mut s = tokio::net::TcpStream::connect(target.addr).await?;
    let req = format!(
        "GET /fixture/token?user_id={user_id} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        target.addr
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8(buf)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("token: no HTTP body")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("token: {}", head.lines().next().unwrap_or("")).into());
    }
    let token = body.trim();
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!("token: unexpected body {token:?}").into());
    }
    Ok(token.to_string())
}

/// `"b <video> <poster> <seq> <t>"` inside a `new_annotation` broadcast.
fn parse_body(t: &str) -> Option<(u64, usize, usize, u64)> {
    let key = r#""body":"b "#;
    let start = t.find(key)? + key.len();
    let rest = &t[start..];
    let body = &rest[..rest.find('"')?];
    let mut it = body.split(' ').map(|x| x.parse::<u64>().ok());
    let v = it.next()??;
    let p = it.next()?? as usize;
    let s = it.next()?? as usize;
    let ts = it.next()??;
    Some((v, p, s, ts))
}

fn is_ok_reply(t: &str) -> bool {
    t.contains(r#""phx_reply""#) && t.contains(r#""status":"ok""#)
}

struct Shared {
    /// Deliveries of distinct annotations (first receipt per watcher).
    delivered: AtomicU64,
    /// Acks per video.
    acked: Vec<AtomicU64>,
    /// Posters that have finished (deadline passed and nothing in flight, or gave up).
    posters_done: AtomicU64,
}

#[allow(clippy::too_many_arguments)]
async fn socket_task(
    ws: Ws,
    video: usize,
    video_num: u64,
    topic: String,
    poster: Option<usize>,
    posters: usize,
    in_flight: usize,
    deadline: Instant,
    give_up: Instant,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> SockOut {
    let mut out = SockOut {
        video,
        counts: vec![Vec::new(); posters],
        foreign: 0,
        bcast: light_hist(),
        poster: poster.map(|local| PosterOut {
            local,
            latency: Some(report::hist()),
            ..Default::default()
        }),
    };
    let (mut tx, mut rx) = ws.split();
    let topic_json = conn::json_str(&topic);
    // (ref, seq, sent at)
    let mut pending: Vec<(u64, u32, Instant)> = Vec::new();
    let mut next_ref: u64 = 1;
    let mut seq: u32 = 0;
    let mut done = poster.is_none();
    if let Some(p) = poster {
        for _ in 0..in_flight {
            next_ref += 1;
            seq += 1;
            let f = push_frame(&topic_json, next_ref, video_num, p, seq);
            pending.push((next_ref, seq, Instant::now()));
            if tx.send(Message::text(f)).await.is_err() {
                break;
            }
        }
    }
    loop {
        // Posters give up at `give_up`; watchers (and finished posters) wait for `stop`.
        let bound = if done {
            give_up + Duration::from_secs(3600)
        } else {
            give_up
        };
        let m = tokio::select! {
            _ = stop.changed() => break,
            m = tokio::time::timeout_at(tokio::time::Instant::from_std(bound), rx.next()) => m,
        };
        let m = match m {
            Ok(m) => m,
            Err(_) => {
                // Poster: replies did not come back in time.
                if let Some(po) = out.poster.as_mut() {
                    po.unanswered += pending.len() as u64;
                    pending.clear();
                }
                done = true;
                shared.posters_done.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let t = match m {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            _ => break,
        };
        let now_ns = conn::now_ns();
        let t = t.as_str();
        if t.contains(r#""new_annotation""#) && t.starts_with("[null,null,") {
            match parse_body(t) {
                Some((v, p, s, ts)) if v == video_num && p < posters => {
                    let c = &mut out.counts[p];
                    if s >= c.len() {
                        if s > 50_000_000 {
                            out.foreign += 1;
                            continue;
                        }
                        c.resize((s + 1).max(c.len() * 2), 0);
                    }
                    if c[s] == 0 {
                        shared.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    c[s] = c[s].saturating_add(1);
                    report::record(&mut out.bcast, now_ns.saturating_sub(ts) / 1000);
                }
                _ => out.foreign += 1,
            }
            continue;
        }
        let (Some(po), false) = (out.poster.as_mut(), done) else {
            continue;
        };
        if !t.contains(r#""phx_reply""#) {
            continue;
        }
        let Some(r) = conn::frame_ref(t).and_then(|r| r.parse::<u64>().ok()) else {
            continue;
        };
        let Some(i) = pending.iter().position(|(pr, _, _)| *pr == r) else {
            continue;
        };
        let (_, s, sent) = pending.swap_remove(i);
        let now = Instant::now();
        if is_ok_reply(t) {
            po.acked.push(s);
            shared.acked[video].fetch_add(1, Ordering::Relaxed);
            if now <= deadline {
                po.acked_in_window += 1;
            }
            if let Some(h) = po.latency.as_mut() {
                report::record(h, now.duration_since(sent).as_micros() as u64);
            }
        } else {
            po.errors += 1;
            po.first_error.get_or_insert_with(|| t.to_string());
        }
        if now < deadline {
            next_ref += 1;
            seq += 1;
            let f = push_frame(&topic_json, next_ref, video_num, po.local, seq);
            pending.push((next_ref, seq, Instant::now()));
            if tx.send(Message::text(f)).await.is_err() {
                break;
            }
        } else if pending.is_empty() {
            done = true;
            shared.posters_done.fetch_add(1, Ordering::Relaxed);
        }
    }
    if !done {
        shared.posters_done.fetch_add(1, Ordering::Relaxed);
        if let Some(po) = out.poster.as_mut() {
            po.unanswered += pending.len() as u64;
        }
    }
    out
}

fn push_frame(topic_json: &str, r: u64, video: u64, poster: usize, seq: u32) -> String {
    let t = conn::now_ns();
    let at = seq % 2_000_000_000;
    format!(
        r#"["1","{r}",{topic_json},"new_annotation",{{"body":"b {video} {poster} {seq} {t}","at":{at}}}]"#
    )
}

/// utime + stime of every `postgres` process, by pid; `db`: which of them are backends of it.
fn pg_sample(db: Option<&str>) -> Vec<(u32, f64, bool)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "postgres" {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let ours = db.is_some_and(|d| cmd.contains(&format!(" {d} ")));
        if let Some(c) = procstat::cpu(&pid.to_string()) {
            out.push((pid, c.own_s, ours));
        }
    }
    out
}

/// (all postgres processes, backends of the db) CPU seconds between two samples.
fn pg_delta(a: &[(u32, f64, bool)], b: &[(u32, f64, bool)]) -> (f64, f64) {
    let mut all = 0.0;
    let mut ours = 0.0;
    for (pid, c1, is_ours) in b {
        let c0 = a
            .iter()
            .find(|(p, _, _)| p == pid)
            .map(|x| x.1)
            .unwrap_or(0.0);
        all += c1 - c0;
        if *is_ours {
            ours += c1 - c0;
        }
    }
    (all, ours)
}

pub async fn run(cli: &Cli, target: &Target, a: AnnotationsArgs) -> Result<(), BoxError> {
    let videos = a.videos.clamp(1, 10_000);
    let watchers = a.watchers.clamp(1, 20_000);
    let posters = a.posters.clamp(1, watchers) as usize;
    let in_flight = a.in_flight.clamp(1, 1000) as usize;
    let secs = a.secs.clamp(1, 600);
    let n = videos * watchers;
    if n > 19_900 {
        return Err(format!("{n} sockets: at most 19,900 in one process").into());
    }
    // Random bases below 2^50 (JSON-safe), far from the demo seed's small ids.
    let rnd = conn::now_ns() ^ (u64::from(std::process::id()) << 32);
    let video_base = a
        .video_base
        .unwrap_or(1_000_000_000 + (rnd % 1_000_000_000) as i64 * 10_000);
    let user_base = a
        .user_base
        .unwrap_or(1_000_000_000 + ((rnd / 7) % 1_000_000_000) as i64 * 100_000);
    let machine = report::machine();
    note(&format!(
        "annotations: {videos} videos × {watchers} watchers ({n} sockets), {posters} posters per video × {in_flight} in flight, {secs} s; videos:{video_base}.., users {user_base}..; load {}",
        machine["loadavg_at_start"]
    ));

    // Connect + join: token, websocket with ?token=, join videos:<id>.
    let s_start = Sample::take(cli.server_pid);
    let t_join = Instant::now();
    let sem = Arc::new(Semaphore::new(cli.concurrency.max(1)));
    let mut set: JoinSet<(u64, Result<Ws, BoxError>)> = JoinSet::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let target = target.clone();
        let v = i / watchers;
        let topic = format!("videos:{}", video_base + v as i64);
        set.spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(30), async {
                let token = fetch_token(&target, user_base + i as i64).await?;
                let t = Target {
                    addr: target.addr,
                    url: format!("{}&token={token}", target.url),
                };
                conn::connect_join(&t, conn::source_addr(0, i), &topic, Duration::from_secs(30))
                    .await
            })
            .await
            .unwrap_or_else(|_| Err("token+connect+join timed out".into()));
            drop(permit);
            (i, r)
        });
    }
    let mut socks: Vec<(u64, Ws)> = Vec::with_capacity(n as usize);
    let mut join_failed = 0u64;
    let mut first_error: Option<String> = None;
    while let Some(j) = set.join_next().await {
        match j {
            Ok((i, Ok(ws))) => socks.push((i, ws)),
            Ok((_, Err(e))) => {
                join_failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                join_failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let join_secs = t_join.elapsed().as_secs_f64();
    let s_joined = Sample::take(cli.server_pid);
    note(&format!(
        "joined {} of {n} sockets in {join_secs:.2} s{}",
        socks.len(),
        first_error
            .as_deref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    ));
    if socks.is_empty() {
        return Err("no socket joined".into());
    }
    // Let the presence diffs of the join wave settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let shared = Arc::new(Shared {
        delivered: AtomicU64::new(0),
        acked: (0..videos).map(|_| AtomicU64::new(0)).collect(),
        posters_done: AtomicU64::new(0),
    });
    let (stop, stop_rx) = watch::channel(false);
    let pg0 = a.pg_db.as_ref().map(|d| pg_sample(Some(d)));
    let s0 = Sample::take(cli.server_pid);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let give_up = deadline + Duration::from_secs(15);
    let mut tasks = JoinSet::new();
    let mut n_posters = 0u64;
    // Watchers present per video (a failed join lowers the expectation for that video only).
    let mut present = vec![0u64; videos as usize];
    for (i, ws) in socks {
        let v = (i / watchers) as usize;
        let w = (i % watchers) as usize;
        present[v] += 1;
        let poster = (w < posters).then_some(w);
        n_posters += poster.is_some() as u64;
        let video_num = (video_base + v as i64) as u64;
        tasks.spawn(socket_task(
            ws,
            v,
            video_num,
            format!("videos:{video_num}"),
            poster,
            posters,
            in_flight,
            deadline,
            give_up,
            shared.clone(),
            stop_rx.clone(),
        ));
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
    let s_deadline = Sample::take(cli.server_pid);
    let pg_deadline = a.pg_db.as_ref().map(|d| pg_sample(Some(d)));
    // Wait for the posters' last replies, then for the broadcasts.
    while shared.posters_done.load(Ordering::Relaxed) < n_posters && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last_reply = Instant::now();
    let expected_now = |sh: &Shared| -> u64 {
        sh.acked
            .iter()
            .zip(&present)
            .map(|(a, w)| a.load(Ordering::Relaxed) * w)
            .sum()
    };
    let drain_bound = last_reply + Duration::from_secs(a.drain_secs.min(60));
    while shared.delivered.load(Ordering::Relaxed) < expected_now(&shared)
        && Instant::now() < drain_bound
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s1 = Sample::take(cli.server_pid);
    let pg1 = a.pg_db.as_ref().map(|d| pg_sample(Some(d)));
    let _ = stop.send(true);

    let mut outs = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(o) = r {
            outs.push(o);
        }
    }

    // Acked sets per video and poster.
    let mut acked: Vec<Vec<Vec<u32>>> = vec![vec![Vec::new(); posters]; videos as usize];
    let mut latency = report::hist();
    let (mut acks, mut acks_window, mut errors, mut unanswered) = (0u64, 0u64, 0u64, 0u64);
    let mut push_error: Option<String> = None;
    for o in &outs {
        if let Some(po) = &o.poster {
            acks += po.acked.len() as u64;
            acks_window += po.acked_in_window;
            errors += po.errors;
            unanswered += po.unanswered;
            if push_error.is_none() {
                push_error.clone_from(&po.first_error);
            }
            if let Some(h) = &po.latency {
                let _ = latency.add(h);
            }
            acked[o.video][po.local] = po.acked.clone();
        }
    }
    let (mut missing, mut dups, mut unacked_seen, mut foreign) = (0u64, 0u64, 0u64, 0u64);
    let mut watchers_complete = 0u64;
    let mut bcast = light_hist();
    let mut per_watcher = report::hist();
    for o in &outs {
        let _ = bcast.add(&o.bcast);
        foreign += o.foreign;
        let mut got = 0u64;
        let mut miss = 0u64;
        for (p, seqs) in acked[o.video].iter().enumerate() {
            let c = &o.counts[p];
            let mut is_acked = vec![false; c.len().max(1)];
            for &s in seqs {
                let k = c.get(s as usize).copied().unwrap_or(0);
                if (s as usize) < is_acked.len() {
                    is_acked[s as usize] = true;
                }
                if k == 0 {
                    miss += 1;
                } else {
                    got += 1;
                    dups += u64::from(k - 1);
                }
            }
            for (s, &k) in c.iter().enumerate() {
                if k > 0 && !is_acked[s] {
                    unacked_seen += 1;
                    dups += u64::from(k - 1);
                }
            }
        }
        missing += miss;
        watchers_complete += (miss == 0) as u64;
        report::record(&mut per_watcher, got.max(1));
    }

    let d = Delta::between(&s0, &s1);
    let dw = Delta::between(&s0, &s_deadline);
    let rate = acks_window as f64 / secs as f64;
    let expected_deliveries: u64 = (0..videos as usize)
        .map(|v| acked[v].iter().map(|s| s.len() as u64).sum::<u64>() * present[v])
        .sum();
    let per_ann = |c: f64| round3(c / acks.max(1) as f64 * 1e6);
    let server_us = d.server_cpu_s.map(per_ann);
    let loadgen_us = per_ann(d.self_cpu_s);
    let (pg_all_us, pg_ours_us, pg_all_pct) = match (&pg0, &pg1, &pg_deadline) {
        (Some(a0), Some(a1), Some(ad)) => {
            let (all, ours) = pg_delta(a0, a1);
            let (all_w, _) = pg_delta(a0, ad);
            (
                Some(per_ann(all)),
                Some(per_ann(ours)),
                Some(round3(all_w / dw.secs * 100.0)),
            )
        }
        _ => (None, None, None),
    };
    note(&format!(
        "annotations acked {acks} ({acks_window} within {secs} s → {rate:.0}/s), errors {errors}, unanswered {unanswered}{}; \
         reply p50 {:.2} ms p99 {:.2} ms max {:.2} ms; broadcast p50 {:.2} ms p99 {:.2} ms; \
         deliveries expected {expected_deliveries}, missing {missing}, duplicates {dups}, unacked seen {unacked_seen}, foreign {foreign}; \
         watchers complete {watchers_complete}/{}; server CPU/annotation {} µs ({} % of a core while posting); \
         postgres CPU/annotation {} µs (our backends {} µs; {} % of a core); loadgen CPU/annotation {loadgen_us:.1} µs ({:.0} %)",
        push_error.as_deref().map(|e| format!(" (first error: {e})")).unwrap_or_default(),
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        latency.max() as f64 / 1000.0,
        bcast.value_at_quantile(0.5) as f64 / 1000.0,
        bcast.value_at_quantile(0.99) as f64 / 1000.0,
        outs.len(),
        server_us.map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into()),
        dw.server_pct().map(|v| format!("{v:.0}")).unwrap_or_else(|| "n/a".into()),
        pg_all_us.map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into()),
        pg_ours_us.map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into()),
        pg_all_pct.map(|v| format!("{v:.0}")).unwrap_or_else(|| "n/a".into()),
        dw.self_pct(),
    ));
    report::emit(&serde_json::json!({
        "result": "annotations",
        "label": cli.label,
        "videos": videos,
        "watchers_per_video": watchers,
        "posters_per_video": posters,
        "in_flight": in_flight,
        "secs": secs,
        "sockets": n,
        "joined": outs.len(),
        "join_failed": join_failed,
        "first_error": first_error,
        "join_secs": round3(join_secs),
        "server_cpu_per_connect_join_us": Delta::between(&s_start, &s_joined).server_cpu_s.map(|c| round3(c / n.max(1) as f64 * 1e6)),
        "acked": acks,
        "acked_in_window": acks_window,
        "annotations_per_s": round3(rate),
        "push_errors": errors,
        "push_first_error": push_error,
        "unanswered": unanswered,
        "reply_latency_ms": report::pct_ms(&latency),
        "broadcast_latency_ms": report::pct_ms(&bcast),
        "deliveries_expected": expected_deliveries,
        "deliveries_missing": missing,
        "deliveries_duplicate": dups,
        "deliveries_unacked": unacked_seen,
        "deliveries_foreign": foreign,
        "watchers_complete": watchers_complete,
        "per_watcher_received": {
            "min": per_watcher.min(), "p50": per_watcher.value_at_quantile(0.5), "max": per_watcher.max()
        },
        "server_cpu_per_annotation_us": server_us,
        "server_cpu_per_delivery_us": d.server_cpu_s.map(|c| round3(c / expected_deliveries.max(1) as f64 * 1e6)),
        "postgres_cpu_per_annotation_us": pg_all_us,
        "postgres_backends_cpu_per_annotation_us": pg_ours_us,
        "postgres_cpu_pct_while_posting": pg_all_pct,
        "loadgen_cpu_per_annotation_us": loadgen_us,
        "posting_phase": dw.json(),
        "phase_with_drain": d.json(),
        "machine": machine,
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broadcast_body() {
        let t = r#"[null,null,"videos:7","new_annotation",{"at":3,"body":"b 7 2 3 1700000000000000000","id":9,"user":{"id":1,"username":"user1"}}]"#;
        assert_eq!(parse_body(t), Some((7, 2, 3, 1_700_000_000_000_000_000)));
        assert_eq!(parse_body(r#"{"body":"hello"}"#), None);
    }

    #[test]
    fn frames_carry_the_body() {
        let f = push_frame(r#""videos:7""#, 5, 7, 2, 3);
        assert!(f.starts_with(r#"["1","5","videos:7","new_annotation",{"body":"b 7 2 3 "#));
        assert!(f.ends_with(r#","at":3}]"#));
    }
}
