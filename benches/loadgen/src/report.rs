//! Output helpers (human lines on stderr, JSON lines on stdout), histograms, and the shared
//! bounded "connect + join many sockets" phase.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::conn::{self, BoxError, Target, Ws};
use crate::procstat;

pub fn note(s: &str) {
    eprintln!("[loadgen] {s}");
}

/// One JSON result line on stdout (what benches/run.sh collects).
pub fn emit(v: &serde_json::Value) {
    println!("{v}");
}

/// Histogram in microseconds, 1 µs .. 1 h, 3 significant digits.
pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.max(1));
}

/// p50/p90/p99/max in milliseconds.
pub fn pct_ms(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |us: u64| procstat::round3(us as f64 / 1000.0);
    serde_json::json!({
        "n": h.len(),
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "max": ms(h.max()),
        "mean": procstat::round3(h.mean() / 1000.0),
    })
}

/// The machine state at the start of a run.
pub fn machine() -> serde_json::Value {
    serde_json::json!({
        "cores": procstat::ncpus(),
        "loadavg_at_start": procstat::loadavg(),
    })
}

pub struct Connected {
    /// (global index, socket, when its websocket opened)
    pub socks: Vec<(u64, Ws, Instant)>,
    pub failed: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Connect + join latency of each socket.
    pub latency: Histogram<u64>,
}

/// Connects and joins the sockets with global indices `indices` (topic from `topic_of`), at
/// most `concurrency` in flight, each bounded by `per_socket_timeout`. Source address from
/// `shard` and the index's position in this batch.
pub async fn connect_many(
    target: &Target,
    shard: u32,
    indices: std::ops::Range<u64>,
    concurrency: usize,
    topic_of: impl Fn(u64) -> String,
    per_socket_timeout: Duration,
) -> Connected {
    let start = Instant::now();
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    type Joined = (u64, Duration, Result<(Ws, Instant), BoxError>);
    let mut set: JoinSet<Joined> = JoinSet::new();
    let first = indices.start;
    for gi in indices {
        let permit = match sem.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => break,
        };
        let target = target.clone();
        let topic = topic_of(gi);
        let src = conn::source_addr(shard, gi - first);
        set.spawn(async move {
            let t0 = Instant::now();
            let r = conn::connect_join(&target, src, &topic, per_socket_timeout)
                .await
                .map(|ws| (ws, Instant::now()));
            drop(permit);
            (gi, t0.elapsed(), r)
        });
    }
    let mut out = Connected {
        socks: Vec::new(),
        failed: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latency: hist(),
    };
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((gi, took, Ok((ws, opened)))) => {
                record(&mut out.latency, took.as_micros() as u64);
                out.socks.push((gi, ws, opened));
            }
            Ok((_, _, Err(e))) => {
                out.failed += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                out.failed += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    out.elapsed = start.elapsed();
    out.socks.sort_by_key(|(gi, _, _)| *gi);
    out
}
