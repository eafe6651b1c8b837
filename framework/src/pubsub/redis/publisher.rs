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
use super::{Backoff, Links};
use crate::metrics::Metrics;

/// Envelopes sent in one pipeline.
const BATCH: usize = 128;

/// How long a connect or a pipeline may take before the connection is given up.
const TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn run(
    client: redis::Client,
    channel: String,
    mut queue: mpsc::Receiver<Vec<u8>>,
    links: Arc<Links>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = Backoff::new();
    let mut next_attempt = Instant::now();
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
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
            m = queue.recv() => match m {
                Some(m) => m,
                None => return,
            },
            _ = tick.tick() => {
                conn = check(conn, &client, &links, &mut backoff, &mut next_attempt).await;
                links.report(&metrics);
                continue;
            }
            _ = links.stopped() => return,
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
        let n = batch.len() as u64;
        let Some(c) = conn.as_mut() else {
            metrics.cluster_lost.add(n);
            batch.clear();
            continue;
        };
        let mut pipe = redis::pipe();
        for envelope in batch.drain(..) {
            pipe.cmd("PUBLISH").arg(&channel).arg(envelope).ignore();
        }
        match tokio::time::timeout(TIMEOUT, pipe.query_async::<()>(c)).await {
            Ok(Ok(())) => metrics.cluster_published.add(n),
            outcome => {
                metrics.cluster_lost.add(n);
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                crate::warn_limited!("PubSub: Redis publish failed ({why}); reconnecting");
                conn = None;
                lost(&links, &mut backoff, &mut next_attempt);
                links.report(&metrics);
            }
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
