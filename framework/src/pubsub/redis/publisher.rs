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
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = Backoff::new();
    let mut next_attempt = Instant::now();
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    // Connect at once, so that readiness reflects Redis before the first broadcast.
    conn = connect(&client, &links, &mut backoff, &mut next_attempt, conn).await;
    loop {
        let first = tokio::select! {
            m = queue.recv() => m,
            _ = links.stopped() => None,
        };
        let Some(first) = first else { return };
        batch.push(first);
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if conn.is_none() && Instant::now() >= next_attempt {
            conn = connect(&client, &links, &mut backoff, &mut next_attempt, None).await;
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
                links.publishing.store(false, Ordering::Relaxed);
                metrics.cluster_connected.set(0);
                next_attempt = Instant::now() + backoff.next_delay();
            }
        }
    }
}

async fn connect(
    client: &redis::Client,
    links: &Links,
    backoff: &mut Backoff,
    next_attempt: &mut Instant,
    current: Option<MultiplexedConnection>,
) -> Option<MultiplexedConnection> {
    if current.is_some() {
        return current;
    }
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
