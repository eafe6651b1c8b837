//! Postgres backend: tokio-postgres behind a deadpool pool.
//!
//! Design notes:
//!
//! * Every statement is parameterized and prepared through deadpool's
//!   per-connection statement cache, so the hot paths (join → list,
//!   `new_annotation` → insert) are a single round trip after warm-up.
//! * Ids and `at` are cast to `bigint` in SQL (`$1::bigint`, `id::bigint`):
//!   databases created by older Ecto versions use `serial`/`integer` ids and
//!   the book's `at` column is `integer`, and tokio-postgres refuses to bind
//!   an `i64` to an `int4` parameter. With explicit casts one set of
//!   queries works against every variant.
//! * A down database must not hang a channel: the pool has a short wait
//!   timeout and connections a short connect timeout, and connection-level
//!   failures map to [`StoreError::Unavailable`] (see `error.rs`).
//! * TLS is not configured (`NoTls`); point the server at a local or
//!   private-network database, or a TLS-terminating proxy.

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};

use super::migrate::{columns_to_add, MigrationReport, MIGRATIONS, TRACKING_TABLE};
use super::seed::{SeedReport, DEMO_ANNOTATIONS, DEMO_CATEGORIES, DEMO_USERS, DEMO_VIDEOS};
use super::{
    redact, validate_annotation, Annotation, AnnotationStore, Backend, StoreError, StoreOptions,
    User, Video,
};

/// Advisory lock keys (arbitrary constants) serializing concurrent
/// `migrate`/seed runs from several server processes on one database.
const MIGRATE_LOCK_KEY: i64 = 0x0070_6878_5f6d_6967; // "phx_mig"
const SEED_LOCK_KEY: i64 = 0x0070_6878_5f73_6565; // "phx_see"

/// "now" as Ecto writes it: UTC, `timestamp(0) without time zone`.
const NOW_UTC: &str = "(now() AT TIME ZONE 'utc')::timestamp(0)";

const VIDEO_COLUMNS: &str = "id::bigint, COALESCE(url, '')::text, COALESCE(title, '')::text, \
     COALESCE(description, '')::text, slug::text, user_id::bigint, category_id::bigint";

const USER_COLUMNS: &str = "id::bigint, COALESCE(username, '')::text, name::text";

/// Postgres implementation of [`AnnotationStore`].
pub struct PostgresStore {
    pool: Pool,
    /// Group commit for `insert_annotation` (see [`InsertBatcher`]).
    batcher: InsertBatcher,
}

/// Most rows in one group-commit statement.
const MAX_BATCH: usize = 128;

/// One `insert_annotation` call waiting in the group-commit queue.
struct InsertReq {
    video_id: i64,
    user_id: i64,
    body: String,
    at: i64,
    done: tokio::sync::oneshot::Sender<Result<Annotation, StoreError>>,
}

/// Group commit for `insert_annotation`, behind the unchanged trait call.
///
/// Every call queues its row. A caller that gets one of the `leaders`
/// permits (half the pool) takes everything queued (at most [`MAX_BATCH`])
/// and inserts it with one multi-row `INSERT … RETURNING` statement: one
/// implicit transaction, one commit, one WAL flush for the whole group.
/// While those leaders wait on Postgres, new calls queue up, so batches grow
/// with the load and a lone call is inserted at once (no timer, no added
/// latency). Each caller gets its own row only after the statement has
/// completed — tokio-postgres resolves it at ReadyForQuery, after the
/// COMMIT — so nothing is acknowledged (or broadcast) before commit.
///
/// A batch of one uses the single-row statement. If a multi-row statement
/// fails (e.g. one row's video does not exist), nothing of it was committed
/// and every row is retried alone, so one bad row costs the others nothing
/// but time and each caller gets its own error.
///
/// No task is spawned: the work runs inside the callers' futures. If a
/// leader's future is dropped (the channel's timeout), the callers of its
/// batch get `Unavailable` — as for a single insert cut off by a timeout,
/// the rows may or may not have been committed.
struct InsertBatcher {
    queue: std::sync::Mutex<Vec<InsertReq>>,
    leaders: tokio::sync::Semaphore,
}

impl InsertBatcher {
    fn new(pool_size: usize) -> Self {
        InsertBatcher {
            queue: std::sync::Mutex::new(Vec::new()),
            leaders: tokio::sync::Semaphore::new((pool_size / 2).max(1)),
        }
    }

    fn take(&self) -> Vec<InsertReq> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        // A caller that gave up (its future dropped) is not inserted late.
        q.retain(|r| !r.done.is_closed());
        let n = q.len().min(MAX_BATCH);
        q.drain(..n).collect()
    }
}

impl PostgresStore {
    /// Builds the pool without connecting (connections are made on first
    /// use), so this only fails on a malformed URL. [`super::open`] pings
    /// right after to fail fast at startup.
    pub fn new(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let mut cfg: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Invalid(format!("invalid postgres URL {}: {e}", redact(url)))
        })?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(opts.connect_timeout);
        }
        if cfg.get_application_name().is_none() {
            cfg.application_name("phx-server");
        }
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                // Fast: only checks `is_closed()`; a connection the server
                // dropped is discarded, without an extra query per checkout.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(opts.pool_size.max(1))
            .wait_timeout(Some(opts.wait_timeout))
            .create_timeout(Some(opts.connect_timeout))
            .recycle_timeout(Some(opts.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Other(format!("building connection pool: {e}")))?;
        Ok(PostgresStore {
            pool,
            batcher: InsertBatcher::new(opts.pool_size.max(1)),
        })
    }

    /// The single-row insert (a batch of one, and the fallback).
    async fn insert_one(
        &self,
        video_id: i64,
        user_id: i64,
        body: &str,
        at: i64,
    ) -> Result<Annotation, StoreError> {
        let client = self.client().await?;
        // One statement, one round trip, one implicit transaction: the user
        // row is read and the annotation inserted only if that user exists
        // (no orphan rows even without a foreign key), and the joined row
        // comes back for the broadcast. tokio-postgres resolves the query
        // only at ReadyForQuery, i.e. after the implicit COMMIT.
        let sql = format!(
            "WITH u AS (SELECT id, username, name FROM users WHERE id = $3::bigint), \
                  ins AS ( \
                    INSERT INTO annotations (body, at, user_id, video_id, inserted_at, updated_at) \
                    SELECT $1::text, $2::bigint, u.id, $4::bigint, {NOW_UTC}, {NOW_UTC} FROM u \
                    RETURNING id, body, at, video_id) \
             SELECT ins.id::bigint, ins.body::text, ins.at::bigint, ins.video_id::bigint, \
                    u.id::bigint, COALESCE(u.username, '')::text, u.name::text \
             FROM ins CROSS JOIN u"
        );
        let stmt = client.prepare_cached(&sql).await?;
        let row = match client
            .query_opt(&stmt, &[&body, &at, &user_id, &video_id])
            .await
        {
            Ok(row) => row,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
                // The user was checked in the same statement, so a foreign
                // key failure is the video (or a user deleted concurrently).
                let constraint = e.as_db_error().and_then(|d| d.constraint()).unwrap_or("");
                return Err(if constraint.contains("user") {
                    StoreError::NotFound(format!("user {user_id}"))
                } else {
                    StoreError::NotFound(format!("video {video_id}"))
                });
            }
            Err(e) => return Err(e.into()),
        };
        match row {
            Some(row) => annotation_from_row(&row),
            None => Err(StoreError::NotFound(format!("user {user_id}"))),
        }
    }

    /// Queues the row and waits for it; leads a batch when a leader slot
    /// is free (see [`InsertBatcher`]).
    async fn insert_batched(
        &self,
        video_id: i64,
        user_id: i64,
        body: &str,
        at: i64,
    ) -> Result<Annotation, StoreError> {
        let (done, mut rx) = tokio::sync::oneshot::channel();
        self.batcher
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(InsertReq {
                video_id,
                user_id,
                body: body.to_string(),
                at,
                done,
            });
        let dropped = || StoreError::Unavailable("insert batch abandoned".into());
        loop {
            tokio::select! {
                biased;
                r = &mut rx => return r.unwrap_or_else(|_| Err(dropped())),
                permit = self.batcher.leaders.acquire() => {
                    let Ok(_permit) = permit else {
                        return Err(dropped());
                    };
                    let batch = self.batcher.take();
                    if batch.is_empty() {
                        // Our row is in another leader's batch.
                        drop(_permit);
                        return rx.await.unwrap_or_else(|_| Err(dropped()));
                    }
                    self.run_batch(batch).await;
                }
            }
        }
    }

    /// Inserts `batch` and answers every caller in it.
    async fn run_batch(&self, mut batch: Vec<InsertReq>) {
        if batch.len() > 1 {
            match self.insert_many(&batch).await {
                Ok(results) => {
                    for (req, r) in batch.into_iter().zip(results) {
                        let _ = req.done.send(r);
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(
                        "batched insert of {} rows failed ({e}); one by one",
                        batch.len()
                    );
                }
            }
        }
        for req in batch.drain(..) {
            let r = self
                .insert_one(req.video_id, req.user_id, &req.body, req.at)
                .await;
            let _ = req.done.send(r);
        }
    }

    /// One multi-row statement (one transaction) for the whole batch;
    /// result `i` belongs to `batch[i]`. Rows whose user does not exist
    /// are not inserted (`NotFound`), as in [`Self::insert_one`].
    async fn insert_many(
        &self,
        batch: &[InsertReq],
    ) -> Result<Vec<Result<Annotation, StoreError>>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "WITH input AS ( \
                SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
                WITH ORDINALITY AS t(body, at, user_id, video_id, ord)), \
                  ins AS ( \
                INSERT INTO annotations (body, at, user_id, video_id, inserted_at, updated_at) \
                SELECT i.body, i.at, u.id, i.video_id, {NOW_UTC}, {NOW_UTC} \
                FROM input i JOIN users u ON u.id = i.user_id ORDER BY i.ord \
                RETURNING id, body, at, user_id, video_id) \
             SELECT ins.id::bigint, ins.body::text, ins.at::bigint, ins.video_id::bigint, \
                    u.id::bigint, COALESCE(u.username, '')::text, u.name::text \
             FROM ins JOIN users u ON u.id = ins.user_id"
        );
        let stmt = client.prepare_cached(&sql).await?;
        let bodies: Vec<&str> = batch.iter().map(|r| r.body.as_str()).collect();
        let ats: Vec<i64> = batch.iter().map(|r| r.at).collect();
        let users: Vec<i64> = batch.iter().map(|r| r.user_id).collect();
        let videos: Vec<i64> = batch.iter().map(|r| r.video_id).collect();
        let rows = client
            .query(&stmt, &[&bodies, &ats, &users, &videos])
            .await?;
        // Hand each returned row to the first unanswered request with the
        // same (video, user, body, at): identical requests are
        // interchangeable, and each gets a distinct row.
        let mut out: Vec<Option<Result<Annotation, StoreError>>> =
            (0..batch.len()).map(|_| None).collect();
        for row in &rows {
            let ann = annotation_from_row(row)?;
            let slot = batch.iter().enumerate().position(|(i, r)| {
                out[i].is_none()
                    && r.video_id == ann.video_id
                    && r.user_id == ann.user.id
                    && r.at == ann.at
                    && r.body == ann.body
            });
            match slot {
                Some(i) => out[i] = Some(Ok(ann)),
                None => {
                    return Err(StoreError::Other(
                        "batched insert returned a row no request matches".into(),
                    ))
                }
            }
        }
        Ok(out
            .into_iter()
            .zip(batch)
            .map(|(r, req)| {
                r.unwrap_or_else(|| Err(StoreError::NotFound(format!("user {}", req.user_id))))
            })
            .collect())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Ensures `table` has every column the store needs; adds the addable
    /// ones. Returns `"table.column"` for each column added.
    async fn fix_columns(
        tx: &deadpool_postgres::Transaction<'_>,
        table: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = tx
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1",
                &[&table],
            )
            .await?;
        let existing = rows
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<Vec<_>, _>>()?;
        let mut added = Vec::new();
        for col in columns_to_add(table, &existing)? {
            tx.batch_execute(col.ddl(Backend::Postgres)).await?;
            added.push(format!("{}.{}", col.table, col.column));
        }
        Ok(added)
    }

    /// Moves `table`'s id sequence (if it has one) past `id`, so rows
    /// inserted with explicit ids do not collide with later serial ids.
    /// Never moves a sequence backwards.
    fn bump_sequence_sql(table: &str) -> String {
        format!(
            "SELECT setval(s::regclass, GREATEST($1::bigint, \
                COALESCE(pg_sequence_last_value(s::regclass), 0))) \
             FROM pg_get_serial_sequence('{table}', 'id') AS s WHERE s IS NOT NULL"
        )
    }
}

fn video_from_row(row: &Row) -> Result<Video, StoreError> {
    Ok(Video {
        id: row.try_get(0)?,
        url: row.try_get(1)?,
        title: row.try_get(2)?,
        description: row.try_get(3)?,
        slug: row.try_get(4)?,
        user_id: row.try_get(5)?,
        category_id: row.try_get(6)?,
    })
}

fn user_from_row(row: &Row, offset: usize) -> Result<User, StoreError> {
    Ok(User {
        id: row.try_get(offset)?,
        username: row.try_get(offset + 1)?,
        name: row.try_get(offset + 2)?,
    })
}

/// Row layout: id, body, at, video_id, then the user columns.
fn annotation_from_row(row: &Row) -> Result<Annotation, StoreError> {
    Ok(Annotation {
        id: row.try_get(0)?,
        body: row.try_get(1)?,
        at: row.try_get(2)?,
        video_id: row.try_get(3)?,
        user: user_from_row(row, 4)?,
    })
}

#[async_trait]
impl AnnotationStore for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn video(&self, id: i64) -> Result<Option<Video>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {VIDEO_COLUMNS} FROM videos WHERE id = $1::bigint");
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query_opt(&stmt, &[&id])
            .await?
            .as_ref()
            .map(video_from_row)
            .transpose()
    }

    async fn videos(&self) -> Result<Vec<Video>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {VIDEO_COLUMNS} FROM videos ORDER BY id");
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(video_from_row)
            .collect()
    }

    async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1::bigint");
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query_opt(&stmt, &[&id])
            .await?
            .map(|r| user_from_row(&r, 0))
            .transpose()
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(|r| user_from_row(r, 0))
            .collect()
    }

    async fn annotations(
        &self,
        video_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Annotation>, StoreError> {
        let client = self.client().await?;
        // NULLS LAST spelled out so both backends order a NULL `at` the same.
        let stmt = client
            .prepare_cached(
                "SELECT a.id::bigint, COALESCE(a.body, '')::text, COALESCE(a.at, 0)::bigint, \
                        a.video_id::bigint, u.id::bigint, COALESCE(u.username, '')::text, u.name::text \
                 FROM annotations a JOIN users u ON u.id = a.user_id \
                 WHERE a.video_id = $1::bigint AND a.id > $2::bigint \
                 ORDER BY a.at ASC NULLS LAST, a.id ASC \
                 LIMIT $3::bigint",
            )
            .await?;
        let limit = limit.max(0);
        client
            .query(&stmt, &[&video_id, &after_id, &limit])
            .await?
            .iter()
            .map(annotation_from_row)
            .collect()
    }

    async fn insert_annotation(
        &self,
        video_id: i64,
        user_id: i64,
        body: &str,
        at: i64,
    ) -> Result<Annotation, StoreError> {
        validate_annotation(body, at)?;
        self.insert_batched(video_id, user_id, body, at).await
    }

    async fn ensure_video(&self, id: i64) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let title = format!("Video {id}");
        let slug = super::slugify(&title);
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO videos (id, url, title, description, slug, inserted_at, updated_at) \
                     VALUES ($1::bigint, '', $2::text, '', $3::text, {NOW_UTC}, {NOW_UTC}) \
                     ON CONFLICT (id) DO NOTHING"
                ),
                &[&id, &title, &slug],
            )
            .await?;
        if inserted > 0 {
            tx.execute(&Self::bump_sequence_sql("videos"), &[&id])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn ensure_user(&self, id: i64) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        // Fast path (every fixture-mode `new_annotation` calls this): one
        // prepared-once statement, no transaction, when the user exists.
        let exists = client
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1::bigint)")
            .await?;
        if client
            .query_one(&exists, &[&id])
            .await?
            .try_get::<_, bool>(0)?
        {
            return Ok(());
        }
        let tx = client.transaction().await?;
        let username = format!("user{id}");
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO users (id, username, name, inserted_at, updated_at) \
                     VALUES ($1::bigint, $2::text, $2::text, {NOW_UTC}, {NOW_UTC}) \
                     ON CONFLICT DO NOTHING"
                ),
                &[&id, &username],
            )
            .await?;
        if inserted > 0 {
            tx.execute(&Self::bump_sequence_sql("users"), &[&id])
                .await?;
        } else {
            // Nothing inserted: either the id exists (fine) or the
            // username is taken by another id (a fixture conflict).
            let exists = tx
                .query_opt("SELECT 1 FROM users WHERE id = $1::bigint", &[&id])
                .await?
                .is_some();
            if !exists {
                return Err(StoreError::Constraint(format!(
                    "cannot create user {id}: username {username} already taken"
                )));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK_KEY])
            .await?;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} ( \
                version bigint PRIMARY KEY, \
                name varchar(255) NOT NULL, \
                inserted_at timestamp(0) without time zone NOT NULL)"
        ))
        .await?;

        let tables: Vec<String> = tx
            .query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema()",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<_, _>>()?;
        let applied: Vec<i64> = tx
            .query(&format!("SELECT version FROM {TRACKING_TABLE}"), &[])
            .await?
            .iter()
            .map(|r| r.try_get::<_, i64>(0))
            .collect::<Result<_, _>>()?;

        let mut report = MigrationReport::new(Backend::Postgres);
        report.ecto_schema_migrations = tables.iter().any(|t| t == "schema_migrations");
        for m in MIGRATIONS {
            let table_exists = tables.iter().any(|t| t == m.table);
            if table_exists {
                report
                    .added_columns
                    .extend(Self::fix_columns(&tx, m.table).await?);
            }
            if applied.contains(&m.version) {
                report.already_applied.push(m.name.to_string());
                continue;
            }
            if table_exists {
                report.adopted_tables.push(m.table.to_string());
            }
            tx.batch_execute(m.sql(Backend::Postgres)).await?;
            tx.execute(
                &format!(
                    "INSERT INTO {TRACKING_TABLE} (version, name, inserted_at) \
                     VALUES ($1, $2, {NOW_UTC})"
                ),
                &[&m.version, &m.name],
            )
            .await?;
            report.applied.push(m.name.to_string());
        }
        tx.commit().await?;
        tracing::info!(?report, "postgres migrations done");
        Ok(report)
    }

    async fn seed_demo_if_empty(&self) -> Result<SeedReport, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SEED_LOCK_KEY])
            .await?;
        let non_empty = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM videos)",
                &[],
            )
            .await?
            .try_get::<_, bool>(0)?;
        if non_empty {
            return Ok(SeedReport::default());
        }
        for (id, username, name) in DEMO_USERS {
            tx.execute(
                &format!(
                    "INSERT INTO users (id, username, name, inserted_at, updated_at) \
                     VALUES ($1::bigint, $2::text, $3::text, {NOW_UTC}, {NOW_UTC})"
                ),
                &[id, username, name],
            )
            .await?;
        }
        let mut report = SeedReport::full();
        report.categories = 0;
        for name in DEMO_CATEGORIES {
            // The book seeds categories separately, so some may exist already.
            report.categories += tx
                .execute(
                    &format!(
                        "INSERT INTO categories (name, inserted_at, updated_at) \
                         VALUES ($1::text, {NOW_UTC}, {NOW_UTC}) ON CONFLICT DO NOTHING"
                    ),
                    &[name],
                )
                .await? as usize;
        }
        for v in DEMO_VIDEOS {
            let category = DEMO_CATEGORIES.get(v.category).copied().unwrap_or_default();
            let slug = super::slugify(v.title);
            tx.execute(
                &format!(
                    "INSERT INTO videos (id, url, title, description, slug, user_id, category_id, \
                                         inserted_at, updated_at) \
                     VALUES ($1::bigint, $2::text, $3::text, $4::text, $5::text, $6::bigint, \
                             (SELECT id FROM categories WHERE name = $7::text), \
                             {NOW_UTC}, {NOW_UTC})"
                ),
                &[
                    &v.id,
                    &v.url,
                    &v.title,
                    &v.description,
                    &slug,
                    &v.user_id,
                    &category,
                ],
            )
            .await?;
        }
        for (video_id, user_id, body, at) in DEMO_ANNOTATIONS {
            tx.execute(
                &format!(
                    "INSERT INTO annotations (body, at, user_id, video_id, inserted_at, updated_at) \
                     VALUES ($1::text, $2::bigint, $3::bigint, $4::bigint, {NOW_UTC}, {NOW_UTC})"
                ),
                &[body, at, user_id, video_id],
            )
            .await?;
        }
        let max_user = DEMO_USERS.iter().map(|u| u.0).max().unwrap_or(0);
        let max_video = DEMO_VIDEOS.iter().map(|v| v.id).max().unwrap_or(0);
        tx.execute(&Self::bump_sequence_sql("users"), &[&max_user])
            .await?;
        tx.execute(&Self::bump_sequence_sql("videos"), &[&max_video])
            .await?;
        tx.commit().await?;
        tracing::info!(?report, "seeded demo data");
        Ok(report)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close();
    }

    async fn users_by_ids(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, User>, StoreError> {
        if ids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let client = self.client().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1::bigint[])");
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query(&stmt, &[&ids])
            .await?
            .iter()
            .map(|r| user_from_row(r, 0).map(|u| (u.id, u)))
            .collect()
    }
}
