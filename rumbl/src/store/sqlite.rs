//! SQLite backend: rusqlite (bundled) behind two deadpool-sqlite pools.
//!
//! SQLite calls block, so they must never run on Tokio worker threads (a
//! slow fsync would stall every channel on that worker): every call runs in
//! deadpool-sqlite's `interact`, on the blocking pool. The store owns:
//!
//! * a **writer** pool of exactly one connection: all inserts, fixtures,
//!   migrations and seeding go through it, so writers never fight over the
//!   SQLite write lock inside this process (no `SQLITE_BUSY` between our own
//!   connections) and run one after another in the order they asked;
//! * a **reader** pool of `pool_size` (1..=4) `query_only` connections. WAL
//!   mode lets them read while the writer commits.
//!
//! Each connection gets its settings once, when the pool creates it (a
//! post-create hook). A panic inside a call poisons only that connection:
//! deadpool discards it and opens a fresh one. `busy_timeout` bounds how long
//! we wait on locks held by *other* processes (e.g. a `sqlite3` shell); past
//! it the call fails with [`StoreError::Unavailable`]. A post lowers it to
//! what is left of its deadline, checks the deadline again before COMMIT
//! (past it the transaction rolls back), and runs in a task of its own, so a
//! cancelled caller's committed row is still broadcast.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_sqlite::{Hook, HookError, Manager, Pool, Runtime};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::migrate::{existing_tables, plan, MigrationReport, Step, TRACKING_TABLE};
use super::seed::{SeedReport, DEMO_ANNOTATIONS, DEMO_CATEGORIES, DEMO_USERS, DEMO_VIDEOS};
use super::{
    deadline_passed, validate_annotation, Annotation, AnnotationStore, Backend, Credentials, Post,
    StoreError, StoreOptions, User, Video,
};

/// "now" as ecto_sqlite3 stores a `timestamp(0)`: ISO-8601 text in UTC.
const NOW_UTC: &str = "strftime('%Y-%m-%dT%H:%M:%S', 'now')";

const VIDEO_COLUMNS: &str = "id, COALESCE(url, ''), COALESCE(title, ''), \
     COALESCE(description, ''), slug, user_id, category_id";

const USER_COLUMNS: &str = "id, COALESCE(username, ''), name";

const MAX_READERS: usize = 4;

#[derive(Clone, Copy)]
enum Lane {
    Writer,
    Reader,
}

/// SQLite implementation of [`AnnotationStore`].
pub struct SqliteStore {
    path: PathBuf,
    /// One connection: every write, in order.
    writer: Pool,
    /// `query_only` connections for reads.
    readers: Pool,
    /// The configured `busy_timeout`; a post lowers it to its remaining deadline.
    busy_timeout: Duration,
}

/// The settings every connection needs, applied once when the pool opens it.
fn configure(conn: &Connection, busy_timeout: Duration, read_only: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    // Off by default in SQLite; the schema declares its foreign keys and we
    // want the same integrity as on Postgres.
    conn.pragma_update(None, "foreign_keys", true)?;
    if read_only {
        conn.pragma_update(None, "query_only", true)?;
    } else {
        // WAL: readers do not block the writer and vice versa. Persistent in
        // the file, so setting it once on the writer is enough.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "sqlite did not switch to WAL");
        }
        // Safe with WAL (a power loss may drop the last commits, never
        // corrupts) and avoids an fsync per annotation.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(())
}

/// A pool of `size` connections to `path`, each [`configure`]d as it is created. No wait
/// timeout: a call waits its turn, as the deadline checks inside the calls decide.
fn pool(
    path: &Path,
    size: usize,
    busy_timeout: Duration,
    read_only: bool,
) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(&deadpool_sqlite::Config::new(path), Runtime::Tokio1);
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .post_create(Hook::async_fn(move |conn, _| {
            Box::pin(async move {
                conn.interact(move |c| configure(c, busy_timeout, read_only))
                    .await
                    .map_err(|e| HookError::message(e.to_string()))?
                    .map_err(HookError::Backend)
            })
        }))
        .build()
        .map_err(|e| StoreError::Other(format!("sqlite pool: {e}")))
}

/// A pool's error as the store reports it.
fn pool_error(e: deadpool_sqlite::PoolError) -> StoreError {
    use deadpool_sqlite::PoolError;
    match e {
        PoolError::Backend(inner) => inner.into(),
        PoolError::Closed => StoreError::Unavailable("sqlite store is closed".into()),
        PoolError::Timeout(kind) => {
            StoreError::Unavailable(format!("sqlite pool timeout ({kind:?})"))
        }
        PoolError::PostCreateHook(HookError::Backend(inner)) => inner.into(),
        other => StoreError::Unavailable(format!("sqlite: {other}")),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the SQLite file at `path` — including its
    /// parent directory — and its pools, opening the writer and one reader
    /// right away so a file that cannot be opened is an error here. Does not
    /// migrate; [`super::open`] does that according to [`super::AutoMigrate`].
    pub async fn open(path: &Path, opts: &StoreOptions) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        let readers_n = opts.pool_size.clamp(1, MAX_READERS);
        let store = SqliteStore {
            path: path.to_path_buf(),
            writer: pool(path, 1, opts.busy_timeout, false)?,
            readers: pool(path, readers_n, opts.busy_timeout, true)?,
            busy_timeout: opts.busy_timeout,
        };
        // The writer first: it switches a new file to WAL before anyone reads.
        store.run(Lane::Writer, |_| Ok(())).await?;
        store.run(Lane::Reader, |_| Ok(())).await?;
        tracing::info!(path = %path.display(), readers = readers_n, "sqlite store open");
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a connection of `lane` and awaits its result.
    async fn run<T, F>(&self, lane: Lane, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = match lane {
            Lane::Writer => &self.writer,
            Lane::Reader => &self.readers,
        };
        interact(pool.clone(), f).await
    }

    /// Starts `f` on a connection of `lane` now, in a task of its own, so it runs to the end
    /// even if the returned future (which borrows nothing) is dropped.
    fn run_detached<T, F>(
        &self,
        lane: Lane,
        f: F,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = match lane {
            Lane::Writer => self.writer.clone(),
            Lane::Reader => self.readers.clone(),
        };
        let task = tokio::spawn(interact(pool, f));
        async move {
            task.await
                .map_err(|_| StoreError::Unavailable("sqlite call stopped".into()))?
        }
    }
}

/// One call: a connection from `pool`, `f` on the blocking pool.
async fn interact<T, F>(pool: Pool, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
{
    let conn = pool.get().await.map_err(pool_error)?;
    match conn.interact(f).await {
        Ok(result) => result,
        Err(e) => {
            // A panic poisons the connection; deadpool discards it on return.
            tracing::error!("sqlite call failed: {e}");
            Err(StoreError::Unavailable(format!("sqlite call failed: {e}")))
        }
    }
}

fn video_from_row(row: &Row<'_>) -> rusqlite::Result<Video> {
    Ok(Video {
        id: row.get(0)?,
        url: row.get(1)?,
        title: row.get(2)?,
        description: row.get(3)?,
        slug: row.get(4)?,
        user_id: row.get(5)?,
        category_id: row.get(6)?,
    })
}

fn user_from_row(row: &Row<'_>, offset: usize) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(offset)?,
        username: row.get(offset + 1)?,
        name: row.get(offset + 2)?,
    })
}

fn find_user(conn: &Connection, id: i64) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], |r| user_from_row(r, 0))
        .optional()
}

fn table_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let cols = stmt
        .query_map([table], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>();
    cols
}

#[async_trait]
impl AnnotationStore for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn video(&self, id: i64) -> Result<Option<Video>, StoreError> {
        self.run(Lane::Reader, move |conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {VIDEO_COLUMNS} FROM videos WHERE id = ?1"))?
                .query_row([id], video_from_row)
                .optional()?)
        })
        .await
    }

    async fn videos(&self) -> Result<Vec<Video>, StoreError> {
        self.run(Lane::Reader, |conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {VIDEO_COLUMNS} FROM videos ORDER BY id"))?;
            let rows = stmt
                .query_map([], video_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.run(Lane::Reader, move |conn| Ok(find_user(conn, id)?))
            .await
    }

    async fn credentials(&self, username: &str) -> Result<Option<Credentials>, StoreError> {
        let username = username.to_string();
        self.run(Lane::Reader, move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = ?1"
                ))?
                .query_row([username], |r| {
                    Ok(Credentials {
                        user: user_from_row(r, 0)?,
                        password_hash: r.get(3)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.run(Lane::Reader, |conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))?;
            let rows = stmt
                .query_map([], |r| user_from_row(r, 0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn annotations(
        &self,
        video_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Annotation>, StoreError> {
        let limit = limit.max(0);
        self.run(Lane::Reader, move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT a.id, COALESCE(a.body, ''), COALESCE(a.at, 0), a.video_id, \
                        u.id, COALESCE(u.username, ''), u.name \
                 FROM annotations a JOIN users u ON u.id = a.user_id \
                 WHERE a.video_id = ?1 AND a.id > ?2 \
                 ORDER BY a.at ASC NULLS LAST, a.id ASC \
                 LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![video_id, after_id, limit], |r| {
                    Ok(Annotation {
                        id: r.get(0)?,
                        body: r.get(1)?,
                        at: r.get(2)?,
                        video_id: r.get(3)?,
                        user: user_from_row(r, 4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn post_annotation(&self, mut post: Post) -> Result<Annotation, StoreError> {
        validate_annotation(&post.body, post.at)?;
        let (video_id, user_id, at, deadline) =
            (post.video_id, post.user_id, post.at, post.deadline);
        let body = std::mem::take(&mut post.body);
        let busy_default = self.busy_timeout;
        let written = self.run_detached(Lane::Writer, move |conn| {
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
                let user = find_user(&tx, user_id)?
                    .ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))?;
                let video_exists = tx
                    .prepare_cached("SELECT 1 FROM videos WHERE id = ?1")?
                    .query_row([video_id], |_| Ok(()))
                    .optional()?
                    .is_some();
                if !video_exists {
                    return Err(StoreError::NotFound(format!("video {video_id}")));
                }
                tx.prepare_cached(&format!(
                    "INSERT INTO annotations (body, at, user_id, video_id, inserted_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, {NOW_UTC}, {NOW_UTC})"
                ))?
                .execute(params![body, at, user_id, video_id])?;
                let id = tx.last_insert_rowid();
                // Checked before COMMIT: past the deadline the transaction rolls back (drop).
                if tokio::time::Instant::now() >= deadline {
                    return Err(deadline_passed());
                }
                tx.commit()?;
                Ok(Annotation {
                    id,
                    body,
                    at,
                    video_id,
                    user,
                })
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

    async fn ensure_video(&self, id: i64) -> Result<(), StoreError> {
        self.run(Lane::Writer, move |conn| {
            let title = format!("Video {id}");
            let slug = super::slugify(&title);
            conn.execute(
                &format!(
                    "INSERT INTO videos (id, url, title, description, slug, inserted_at, updated_at) \
                     VALUES (?1, '', ?2, '', ?3, {NOW_UTC}, {NOW_UTC}) \
                     ON CONFLICT (id) DO NOTHING"
                ),
                params![id, title, slug],
            )?;
            Ok(())
        })
        .await
    }

    async fn ensure_user(&self, id: i64) -> Result<(), StoreError> {
        self.run(Lane::Writer, move |conn| {
            let username = format!("user{id}");
            let inserted = conn.execute(
                &format!(
                    "INSERT INTO users (id, username, name, inserted_at, updated_at) \
                     VALUES (?1, ?2, ?2, {NOW_UTC}, {NOW_UTC}) ON CONFLICT DO NOTHING"
                ),
                params![id, username],
            )?;
            if inserted == 0 && find_user(conn, id)?.is_none() {
                return Err(StoreError::Constraint(format!(
                    "cannot create user {id}: username {username} already taken"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.run(Lane::Writer, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS \"{TRACKING_TABLE}\" ( \
                    \"version\" INTEGER PRIMARY KEY, \
                    \"name\" TEXT NOT NULL, \
                    \"inserted_at\" TEXT NOT NULL)"
            ))?;
            let tables: Vec<String> = tx
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let applied: Vec<i64> = tx
                .prepare(&format!("SELECT version FROM \"{TRACKING_TABLE}\""))?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;

            let mut columns = std::collections::HashMap::new();
            for table in existing_tables(&tables) {
                columns.insert(table, table_columns(&tx, table)?);
            }
            let (steps, report) = plan(Backend::Sqlite, &tables, &applied, &|t| {
                columns.get(t).cloned().unwrap_or_default()
            })?;
            for step in steps {
                match step {
                    Step::Sql(sql) => tx.execute_batch(sql)?,
                    Step::Record(m) => {
                        tx.execute(
                            &format!(
                                "INSERT INTO \"{TRACKING_TABLE}\" (version, name, inserted_at) \
                                 VALUES (?1, ?2, {NOW_UTC})"
                            ),
                            params![m.version, m.name],
                        )?;
                    }
                }
            }
            tx.commit()?;
            tracing::info!(?report, "sqlite migrations done");
            Ok(report)
        })
        .await
    }

    async fn seed_demo_if_empty(&self) -> Result<SeedReport, StoreError> {
        self.run(Lane::Writer, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let non_empty: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM videos)",
                [],
                |r| r.get(0),
            )?;
            if non_empty {
                return Ok(SeedReport::default());
            }
            for (id, username, name, hash) in DEMO_USERS {
                tx.execute(
                    &format!(
                        "INSERT INTO users (id, username, name, password_hash, inserted_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, {NOW_UTC}, {NOW_UTC})"
                    ),
                    params![id, username, name, hash],
                )?;
            }
            let mut report = SeedReport::full();
            report.categories = 0;
            for name in DEMO_CATEGORIES {
                report.categories += tx.execute(
                    &format!(
                        "INSERT INTO categories (name, inserted_at, updated_at) \
                         VALUES (?1, {NOW_UTC}, {NOW_UTC}) ON CONFLICT DO NOTHING"
                    ),
                    [name],
                )?;
            }
            for v in DEMO_VIDEOS {
                let category = DEMO_CATEGORIES.get(v.category).copied().unwrap_or_default();
                tx.execute(
                    &format!(
                        "INSERT INTO videos (id, url, title, description, slug, user_id, \
                                             category_id, inserted_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
                                 (SELECT id FROM categories WHERE name = ?7), \
                                 {NOW_UTC}, {NOW_UTC})"
                    ),
                    params![
                        v.id,
                        v.url,
                        v.title,
                        v.description,
                        super::slugify(v.title),
                        v.user_id,
                        category
                    ],
                )?;
            }
            for (video_id, user_id, body, at) in DEMO_ANNOTATIONS {
                tx.execute(
                    &format!(
                        "INSERT INTO annotations (body, at, user_id, video_id, inserted_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, {NOW_UTC}, {NOW_UTC})"
                    ),
                    params![body, at, user_id, video_id],
                )?;
            }
            tx.commit()?;
            tracing::info!(?report, "seeded demo data");
            Ok(report)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(Lane::Reader, |conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    async fn close(&self) {
        // Refuse new calls and drop idle connections; a call in flight keeps its connection
        // until it returns. Waiting matters: when close() returns the file handles are
        // released (bounded, so a hung call cannot hold shutdown forever).
        self.writer.close();
        self.readers.close();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.writer.status().size + self.readers.status().size > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::error!("sqlite connections still in use 10 s after close");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn users_by_ids(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, User>, StoreError> {
        if ids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        // One statement over a JSON array of the ids (no parameter limit, one prepared plan).
        let list = serde_json::to_string(ids).map_err(|e| StoreError::Other(e.to_string()))?;
        self.run(Lane::Reader, move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id IN (SELECT value FROM json_each(?1))"
            ))?;
            let rows = stmt
                .query_map([list], |r| user_from_row(r, 0))?
                .map(|u| u.map(|u| (u.id, u)))
                .collect::<rusqlite::Result<std::collections::HashMap<_, _>>>()?;
            Ok(rows)
        })
        .await
    }
}
