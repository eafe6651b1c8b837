//! Publishing: one task, one multiplexed connection, envelopes pipelined in batches.
//!
//! Nothing is retried or queued across an outage: phoenix_pubsub_redis drops a broadcast it
//! cannot publish (Redis pub/sub is at-most-once anyway), and so does this task — each one
//! counted in `phx_cluster_lost_total`. While Redis is unreachable the task tries to reconnect
//! at most once per backoff step, dropping what arrives in between, so an outage costs no
//! connect storm and no memory.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::subscriber::PING_EVERY;
use super::{Backoff, Links, Outgoing};
use crate::metrics::Metrics;

/// Envelopes sent in one pipeline.
const BATCH: usize = 128;

/// How long a connect or a pipeline may take before the connection is given up.
const TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn run(
    client: redis::Client,
    mut queue: mpsc::Receiver<Outgoing>,
    links: Arc<Links>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = Backoff::new();
    let mut next_attempt = Instant::now();
    let mut batch: Vec<Outgoing> = Vec::with_capacity(BATCH);
    // Connect at once, so that readiness reflects Redis before the first broadcast.
    let mut conn = connect(&client, &links, &mut backoff, &mut next_attempt).await;
    links.report(&metrics);
    // An idle connection is checked (and a lost one retried) on this tick, so that readiness
    // follows Redis without traffic and the first broadcast after an outage is not lost on
    // a connection that died in it.
    let mut tick = tokio::time::interval(PING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            biased;
            m = queue.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = links.stopped() => break,
            _ = tick.tick() => {
                conn = check(conn, &client, &links, &mut backoff, &mut next_attempt).await;
                links.report(&metrics);
                continue;
            }
        };
        batch.push(first);
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if conn.is_none() && Instant::now() >= next_attempt {
            conn = connect(&client, &links, &mut backoff, &mut next_attempt).await;
            links.report(&metrics);
        }
        if !publish(&mut conn, &mut batch, &metrics).await {
            lost(&links, &mut backoff, &mut next_attempt);
            links.report(&metrics);
        }
    }
    // Stopping: what is already queued (a Presence's `bye`) still goes out, once.
    while let Ok(m) = queue.try_recv() {
        batch.push(m);
        if batch.len() == BATCH {
            publish(&mut conn, &mut batch, &metrics).await;
        }
    }
    publish(&mut conn, &mut batch, &metrics).await;
    links.flushed.store(true, Ordering::Relaxed);
    links.flush_done.notify_waiters();
}

/// Publishes `batch` (emptying it) in one pipeline; false when the connection failed (it is
/// dropped). Without a connection everything is lost.
async fn publish(
    conn: &mut Option<MultiplexedConnection>,
    batch: &mut Vec<Outgoing>,
    metrics: &Metrics,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let broadcasts = batch.iter().filter(|m| m.broadcast).count() as u64;
    let Some(c) = conn.as_mut() else {
        metrics.cluster_lost.inc_by(broadcasts);
        batch.clear();
        return true;
    };
    let mut pipe = redis::pipe();
    for m in batch.drain(..) {
        pipe.cmd("PUBLISH").arg(&*m.channel).arg(m.bytes).ignore();
    }
    match tokio::time::timeout(TIMEOUT, pipe.query_async::<()>(c)).await {
        Ok(Ok(())) => {
            metrics.cluster_published.inc_by(broadcasts);
            true
        }
        outcome => {
            metrics.cluster_lost.inc_by(broadcasts);
            let why = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_string(),
            };
            crate::warn_limited!("PubSub: Redis publish failed ({why}); reconnecting");
            *conn = None;
            false
        }
    }
}

/// On the tick: PINGs a live connection (dropping it if it does not answer), or retries a
/// lost one when its backoff has passed.
async fn check(
    conn: Option<MultiplexedConnection>,
    client: &redis::Client,
    links: &Links,
    backoff: &mut Backoff,
    next_attempt: &mut Instant,
) -> Option<MultiplexedConnection> {
    match conn {
        Some(mut c) => {
            let cmd = redis::cmd("PING");
            let ping = cmd.query_async::<redis::Value>(&mut c);
            match tokio::time::timeout(TIMEOUT, ping).await {
                Ok(Ok(_)) => Some(c),
                _ => {
                    crate::warn_limited!(
                        "PubSub: the Redis publishing connection stopped answering; reconnecting"
                    );
                    lost(links, backoff, next_attempt);
                    None
                }
            }
        }
        None if Instant::now() >= *next_attempt => {
            connect(client, links, backoff, next_attempt).await
        }
        None => None,
    }
}

fn lost(links: &Links, backoff: &mut Backoff, next_attempt: &mut Instant) {
    links.publishing.store(false, Ordering::Relaxed);
    *next_attempt = Instant::now() + backoff.next_delay();
}

async fn connect(
    client: &redis::Client,
    links: &Links,
    backoff: &mut Backoff,
    next_attempt: &mut Instant,
) -> Option<MultiplexedConnection> {
    match tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection()).await {
        Ok(Ok(c)) => {
            links.publishing.store(true, Ordering::Relaxed);
            backoff.reset();
            Some(c)
        }
        outcome => {
            let why = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_string(),
            };
            crate::warn_limited!("PubSub: cannot connect to Redis for publishing ({why})");
            links.publishing.store(false, Ordering::Relaxed);
            *next_attempt = Instant::now() + backoff.next_delay();
            None
        }
    }
}
