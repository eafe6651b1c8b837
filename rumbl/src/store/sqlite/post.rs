//! A post on SQLite, under the acknowledgement contract of [`Post`].
//!
//! SQLite's counterpart of `postgres/batcher.rs`, much simpler because there is one writer
//! connection and no lost COMMIT answers: the write is queued on the writer lane, waits on
//! other processes' locks only until the post's deadline (`busy_timeout` lowered to what is
//! left of it), checks the deadline again before COMMIT (past it the transaction rolls
//! back), and runs in a task of its own, as does the commit hook, so a cancelled caller's
//! committed row is still broadcast.

use std::time::Duration;

use rusqlite::TransactionBehavior;

use super::pool::{Lane, Pools};
use super::queries;
use crate::store::{deadline_passed, Annotation, Post, StoreError};

/// Writes `post` on the writer lane; `busy_default` is the configured `busy_timeout`, put
/// back on the connection afterwards.
pub(super) async fn post(
    pools: &Pools,
    busy_default: Duration,
    mut post: Post,
) -> Result<Annotation, StoreError> {
    let (video_id, user_id, at, deadline) = (post.video_id, post.user_id, post.at, post.deadline);
    let body = std::mem::take(&mut post.body);
    let written = pools.run_detached(Lane::Writer, move |conn| {
        // Queued behind other writes past the deadline: not written at all.
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return Err(deadline_passed());
        }
        // A lock held by another process is waited on only until the deadline.
        conn.busy_timeout(remaining.min(busy_default))?;
        let result = (|| {
            // IMMEDIATE takes the write lock up front, so the checks and the
            // insert see one consistent state.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let ann = queries::insert_annotation(&tx, video_id, user_id, body, at)?;
            // Checked before COMMIT: past the deadline the transaction rolls back (drop).
            if tokio::time::Instant::now() >= deadline {
                return Err(deadline_passed());
            }
            tx.commit()?;
            Ok(ann)
        })();
        let _ = conn.busy_timeout(busy_default);
        result
    });
    // The commit hook runs in a task of its own, so a caller that was cancelled while
    // the writer thread committed still has its row broadcast.
    tokio::spawn(async move {
        let result = written.await;
        if let Ok(ann) = &result {
            post.committed(ann);
        }
        result
    })
    .await
    .unwrap_or_else(|e| Err(StoreError::Other(format!("sqlite post task: {e}"))))
}
