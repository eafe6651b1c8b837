//! Group commit for the Postgres store's `post_annotation`, and the acknowledgement contract
//! it keeps (see [`InsertBatcher`]).
//!
//! A file of its own because it is the one place where Postgres writes are concurrent,
//! cancellable and may lose their answer: queueing, leading a batch, the multi-row INSERT
//! (its row layout and the transaction id it returns are this file's protocol, so the
//! statement lives here rather than in `queries.rs`), the deadline check before COMMIT and
//! resolving a COMMIT whose answer was lost all belong together.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::time::Instant;

use super::queries::{annotation_from_row, NOW_UTC};
use crate::store::{deadline_passed, Annotation, Post, StoreError};

/// Most rows in one group-commit statement.
const MAX_BATCH: usize = 128;

/// How long past the latest deadline of a batch its COMMIT may take before the outcome is
/// treated as unknown (and learned from `txid_status`).
const COMMIT_GRACE: Duration = Duration::from_millis(1500);

/// How long the outcome of a COMMIT whose answer was lost is looked up before the callers are
/// told `Unavailable`; the lookup goes on in the background (for the broadcast) until
/// [`RESOLVE_LATE`].
const RESOLVE_BOUND: Duration = Duration::from_millis(1500);
/// How long a background lookup of a lost COMMIT's outcome goes on.
const RESOLVE_LATE: Duration = Duration::from_secs(120);

/// One `post_annotation` call waiting in the group-commit queue.
struct InsertReq {
    post: Post,
    done: tokio::sync::oneshot::Sender<Result<Annotation, StoreError>>,
}

impl InsertReq {
    /// Past its deadline, or its caller is gone: must not be committed.
    fn expired(&self, now: Instant) -> bool {
        now >= self.post.deadline || self.done.is_closed()
    }

    fn answer(self, r: Result<Annotation, StoreError>) {
        let _ = self.done.send(r);
    }
}

/// Group commit for `post_annotation`.
///
/// Every call queues its row. A caller that gets one of the `leaders` permits (half the pool)
/// takes everything queued (at most [`MAX_BATCH`]) and hands it to a spawned task, which
/// inserts it with one multi-row `INSERT … RETURNING` in an explicit transaction: one commit,
/// one WAL flush for the whole group. While those batches wait on Postgres, new calls queue
/// up, so batches grow with the load and a lone call is inserted at once (no timer).
///
/// The acknowledgement contract (see [`Post`]) is kept by the batch task, which no caller can
/// cancel:
///
/// * Before COMMIT every row is checked against its caller's deadline; the rows of callers past
///   it (or gone) are deleted in the transaction, and a batch with none left rolls back. A
///   statement that does not answer by the batch's latest deadline has its connection closed
///   before COMMIT was ever sent, so the server rolls it back.
/// * After COMMIT the task runs each row's commit hook (the broadcast), then answers.
/// * A COMMIT whose answer is lost (connection dropped, server hung) has an unknown outcome:
///   the transaction id read in the same statement is looked up with `txid_status()` on a
///   fresh connection. Until that lookup succeeds the callers are not answered `Ok`; if it
///   cannot succeed within [`RESOLVE_BOUND`], they get `Unavailable` while the lookup goes on
///   in the background so a row that did commit is still broadcast. (That one window — the
///   server stops answering between receiving COMMIT and acknowledging it — is the only case
///   where an error reply may belong to a committed row.)
///
/// If a multi-row statement fails (e.g. one row's video does not exist), nothing of it was
/// committed and every row is retried alone, so each caller gets its own error.
pub(super) struct InsertBatcher {
    queue: std::sync::Mutex<Vec<InsertReq>>,
    leaders: Arc<tokio::sync::Semaphore>,
}

impl InsertBatcher {
    pub(super) fn new(pool_size: usize) -> Self {
        InsertBatcher {
            queue: std::sync::Mutex::new(Vec::new()),
            leaders: Arc::new(tokio::sync::Semaphore::new((pool_size / 2).max(1))),
        }
    }

    /// Queues the post and waits for its answer; leads a batch when a leader slot is free
    /// (see [`InsertBatcher`]). The batch runs in a task of its own, so a caller cancelled
    /// here abandons nothing: its row is either committed (and broadcast) or not at all.
    pub(super) async fn post(&self, pool: &Pool, post: Post) -> Result<Annotation, StoreError> {
        let (done, mut rx) = tokio::sync::oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(InsertReq { post, done });
        let dropped = || StoreError::Unavailable("insert batch abandoned".into());
        loop {
            tokio::select! {
                biased;
                r = &mut rx => return r.unwrap_or_else(|_| Err(dropped())),
                permit = self.leaders.clone().acquire_owned() => {
                    let Ok(permit) = permit else {
                        return Err(dropped());
                    };
                    let batch = self.take();
                    if batch.is_empty() {
                        // Our row is in another leader's batch (or was answered).
                        drop(permit);
                        return rx.await.unwrap_or_else(|_| Err(dropped()));
                    }
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        run_batch(pool, batch).await;
                        drop(permit);
                    });
                }
            }
        }
    }

    /// The next batch; requests already past their deadline are answered and left out.
    fn take(&self) -> Vec<InsertReq> {
        let now = Instant::now();
        let (batch, expired) = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let mut expired = Vec::new();
            let mut i = 0;
            while i < q.len() {
                if q[i].expired(now) {
                    expired.push(q.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            let n = q.len().min(MAX_BATCH);
            (q.drain(..n).collect::<Vec<_>>(), expired)
        };
        for r in expired {
            r.answer(Err(deadline_passed()));
        }
        batch
    }
}

/// The multi-row insert: one statement for any number of rows; each returned row carries the
/// transaction id, for [`resolve_commit`].
fn insert_sql() -> String {
    format!(
        "WITH input AS ( \
            SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
            WITH ORDINALITY AS t(body, at, user_id, video_id, ord)), \
              ins AS ( \
            INSERT INTO annotations (body, at, user_id, video_id, inserted_at, updated_at) \
            SELECT i.body, i.at, u.id, i.video_id, {NOW_UTC}, {NOW_UTC} \
            FROM input i JOIN users u ON u.id = i.user_id ORDER BY i.ord \
            RETURNING id, body, at, user_id, video_id) \
         SELECT ins.id::bigint, ins.body::text, ins.at::bigint, ins.video_id::bigint, \
                u.id::bigint, COALESCE(u.username, '')::text, u.name::text, \
                txid_current()::bigint \
         FROM ins JOIN users u ON u.id = ins.user_id"
    )
}

/// Closes a connection instead of returning it to the pool (it may be inside a transaction
/// or waiting on a hung server): the server rolls back whatever was not committed.
fn discard(client: deadpool_postgres::Object) {
    drop(deadpool_postgres::Object::take(client));
}

/// How one attempt at a group of rows ended.
enum Attempt {
    /// Every request was answered (and every committed row's hook ran).
    Done,
    /// The statement was refused by the database: nothing was committed; the requests are
    /// handed back with the error.
    Refused(Vec<InsertReq>, StoreError),
}

/// Answers every request of `reqs` with (a clone of) `e`.
fn fail_all(reqs: Vec<InsertReq>, e: &StoreError) {
    for r in reqs {
        r.answer(Err(clone_error(e)));
    }
}

fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::NotFound(m) => StoreError::NotFound(m.clone()),
        StoreError::Constraint(m) => StoreError::Constraint(m.clone()),
        StoreError::Invalid(m) => StoreError::Invalid(m.clone()),
        StoreError::Schema(m) => StoreError::Schema(m.clone()),
        StoreError::Other(m) => StoreError::Other(m.clone()),
    }
}

/// Inserts `batch` and answers every caller in it (the spawned batch task).
async fn run_batch(pool: Pool, batch: Vec<InsertReq>) {
    match attempt(&pool, batch).await {
        Attempt::Done => {}
        Attempt::Refused(reqs, e) if reqs.len() == 1 => fail_all(reqs, &e),
        Attempt::Refused(reqs, e) => {
            tracing::debug!(
                "batched insert of {} rows failed ({e}); one by one",
                reqs.len()
            );
            for req in reqs {
                if let Attempt::Refused(one, e) = attempt(&pool, vec![req]).await {
                    fail_all(one, &e);
                }
            }
        }
    }
}

/// Maps a refused single-row statement to what its caller is told.
/// A statement's error before COMMIT: refused by the database (the caller retries row by row)
/// or a lost connection (every request fails). Nothing was committed either way.
fn refused_or_failed(e: tokio_postgres::Error, reqs: Vec<InsertReq>) -> Attempt {
    let refused = e.as_db_error().is_some();
    let e = refused_error(e, &reqs);
    if refused {
        return Attempt::Refused(reqs, e);
    }
    fail_all(reqs, &e);
    Attempt::Done
}

fn refused_error(e: tokio_postgres::Error, reqs: &[InsertReq]) -> StoreError {
    if reqs.len() == 1 && e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION)
    {
        // The user was checked in the same statement, so a foreign key failure is the
        // video (or a user deleted concurrently).
        let constraint = e.as_db_error().and_then(|d| d.constraint()).unwrap_or("");
        let p = &reqs[0].post;
        return if constraint.contains("user") {
            StoreError::NotFound(format!("user {}", p.user_id))
        } else {
            StoreError::NotFound(format!("video {}", p.video_id))
        };
    }
    e.into()
}

/// One transaction for `reqs`: BEGIN + INSERT, the deadline check, COMMIT.
async fn attempt(pool: &Pool, reqs: Vec<InsertReq>) -> Attempt {
    let Some(latest) = reqs.iter().map(|r| r.post.deadline).max() else {
        return Attempt::Done;
    };
    let client = match tokio::time::timeout_at(latest, pool.get()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            fail_all(reqs, &e.into());
            return Attempt::Done;
        }
        Err(_) => {
            fail_all(reqs, &deadline_passed());
            return Attempt::Done;
        }
    };
    let bodies: Vec<&str> = reqs.iter().map(|r| r.post.body.as_str()).collect();
    let ats: Vec<i64> = reqs.iter().map(|r| r.post.at).collect();
    let users: Vec<i64> = reqs.iter().map(|r| r.post.user_id).collect();
    let videos: Vec<i64> = reqs.iter().map(|r| r.post.video_id).collect();
    let sql = insert_sql();
    // BEGIN and the INSERT are pipelined (one round trip); COMMIT is sent only after the
    // deadline check.
    let inserted = tokio::time::timeout_at(latest, async {
        let stmt = client.prepare_cached(&sql).await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&bodies, &ats, &users, &videos];
        let (begun, rows) =
            tokio::join!(client.batch_execute("BEGIN"), client.query(&stmt, &params));
        Ok::<_, tokio_postgres::Error>((begun, rows))
    })
    .await;
    drop((bodies, ats, users, videos));
    let rows = match inserted {
        Err(_) => {
            // No answer by the last deadline: COMMIT was never sent; closing the connection
            // makes the server roll back.
            discard(client);
            fail_all(reqs, &deadline_passed());
            return Attempt::Done;
        }
        Ok(Err(e)) => {
            // prepare failed
            discard(client);
            return refused_or_failed(e, reqs);
        }
        Ok(Ok((Err(e), _))) => {
            discard(client);
            fail_all(reqs, &e.into());
            return Attempt::Done;
        }
        Ok(Ok((Ok(()), Err(e)))) => {
            discard(client);
            return refused_or_failed(e, reqs);
        }
        Ok(Ok((Ok(()), Ok(rows)))) => rows,
    };
    // Pair each returned row with the first unanswered request with the same
    // (video, user, body, at): identical requests are interchangeable.
    let mut slots: Vec<Option<Annotation>> = (0..reqs.len()).map(|_| None).collect();
    let mut txid: Option<i64> = None;
    for row in &rows {
        let paired = annotation_from_row(row).and_then(|ann| {
            txid = row.try_get::<_, i64>(7).ok();
            reqs.iter()
                .enumerate()
                .position(|(i, r)| {
                    slots[i].is_none()
                        && r.post.video_id == ann.video_id
                        && r.post.user_id == ann.user.id
                        && r.post.at == ann.at
                        && r.post.body == ann.body
                })
                .map(|i| slots[i] = Some(ann))
                .ok_or_else(|| {
                    StoreError::Other("batched insert returned a row no request matches".into())
                })
        });
        if let Err(e) = paired {
            discard(client);
            fail_all(reqs, &e);
            return Attempt::Done;
        }
    }
    // The deadline check, before COMMIT: rows of callers past their deadline are deleted in
    // the transaction (and checked again, since the DELETE takes time too).
    let mut reqs: Vec<(InsertReq, Option<Annotation>)> = reqs.into_iter().zip(slots).collect();
    loop {
        let now = Instant::now();
        let late: Vec<i64> = reqs
            .iter()
            .filter(|(r, a)| a.is_some() && r.expired(now))
            .filter_map(|(_, a)| a.as_ref().map(|a| a.id))
            .collect();
        let live_latest = reqs
            .iter()
            .filter(|(r, a)| a.is_some() && !r.expired(now))
            .map(|(r, _)| r.post.deadline)
            .max();
        let Some(live_latest) = live_latest else {
            // Nothing left to commit: roll back (closing the connection does it for sure).
            discard(client);
            for (r, a) in reqs {
                let user = r.post.user_id;
                r.answer(Err(match a {
                    Some(_) => deadline_passed(),
                    None => StoreError::NotFound(format!("user {user}")),
                }));
            }
            return Attempt::Done;
        };
        if late.is_empty() {
            break commit(pool.clone(), client, reqs, txid, live_latest).await;
        }
        let deleted = tokio::time::timeout_at(
            live_latest,
            client.execute(
                "DELETE FROM annotations WHERE id = ANY($1::bigint[])",
                &[&late],
            ),
        )
        .await;
        if !matches!(deleted, Ok(Ok(_))) {
            discard(client);
            for (r, _) in reqs {
                r.answer(Err(deadline_passed()));
            }
            return Attempt::Done;
        }
        // The deleted rows' callers get the deadline error; the rest go round again.
        let (deleted, kept): (Vec<_>, Vec<_>) = reqs
            .into_iter()
            .partition(|(_, a)| a.as_ref().is_some_and(|a| late.contains(&a.id)));
        for (r, _) in deleted {
            r.answer(Err(deadline_passed()));
        }
        reqs = kept;
    }
    Attempt::Done
}

/// The outcome of transaction `txid`, asked on another connection until `until`:
/// `Some(true)` committed, `Some(false)` rolled back, `None` not known by then.
async fn resolve_commit(pool: &Pool, txid: i64, until: Instant) -> Option<bool> {
    loop {
        let asked = tokio::time::timeout_at(until, async {
            let c = pool.get().await.map_err(StoreError::from)?;
            let row = c
                .query_one("SELECT txid_status($1::bigint)::text", &[&txid])
                .await?;
            Ok::<_, StoreError>(row.try_get::<_, Option<String>>(0)?)
        })
        .await;
        match asked {
            Err(_) => return None,
            Ok(Ok(Some(status))) if status == "committed" => return Some(true),
            Ok(Ok(Some(status))) if status == "aborted" => return Some(false),
            // "in progress" (the old backend has not finished), or the connection failed.
            Ok(_) => {}
        }
        if tokio::time::timeout_at(until, tokio::time::sleep(Duration::from_millis(50)))
            .await
            .is_err()
        {
            return None;
        }
    }
}

/// Sends COMMIT and answers: `Ok` (after the commit hook) for committed rows, `NotFound` for
/// requests whose user does not exist (no row), an error for all when the commit failed.
async fn commit(
    pool: Pool,
    client: deadpool_postgres::Object,
    reqs: Vec<(InsertReq, Option<Annotation>)>,
    txid: Option<i64>,
    live_latest: Instant,
) {
    let outcome =
        tokio::time::timeout_at(live_latest + COMMIT_GRACE, client.batch_execute("COMMIT")).await;
    let committed = match outcome {
        Ok(Ok(())) => Some(true),
        // The server answered with an error: the transaction is rolled back.
        Ok(Err(e)) if e.as_db_error().is_some() => {
            let e: StoreError = e.into();
            discard(client);
            for (r, _) in reqs {
                r.answer(Err(clone_error(&e)));
            }
            return;
        }
        // Lost answer: the outcome is unknown.
        _ => {
            discard(client);
            None
        }
    };
    let committed = match (committed, txid) {
        (Some(c), _) => c,
        (None, Some(txid)) => {
            match resolve_commit(&pool, txid, Instant::now() + RESOLVE_BOUND).await {
                Some(c) => c,
                None => {
                    // Tell the callers now; keep looking in the background for the broadcast.
                    let mut hooks = Vec::new();
                    for (mut r, a) in reqs {
                        if let Some(a) = a {
                            hooks.push((r.post.on_commit.take(), a));
                        }
                        r.answer(Err(StoreError::Unavailable(
                            "the database stopped answering during COMMIT".into(),
                        )));
                    }
                    tokio::spawn(async move {
                        if resolve_commit(&pool, txid, Instant::now() + RESOLVE_LATE).await
                            == Some(true)
                        {
                            tracing::warn!(txid, "a COMMIT whose answer was lost did commit: broadcasting its rows late");
                            for (hook, a) in hooks {
                                if let Some(h) = hook {
                                    h(&a);
                                }
                            }
                        }
                    });
                    return;
                }
            }
        }
        (None, None) => false,
    };
    for (mut r, a) in reqs {
        match a {
            Some(a) if committed => {
                r.post.committed(&a);
                r.answer(Ok(a));
            }
            Some(_) => r.answer(Err(StoreError::Unavailable("COMMIT did not happen".into()))),
            None => {
                let user = r.post.user_id;
                r.answer(Err(StoreError::NotFound(format!("user {user}"))));
            }
        }
    }
}
