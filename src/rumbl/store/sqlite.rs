//! SQLite backend: rusqlite (bundled) on dedicated threads.
//!
//! SQLite calls block, so they must never run on Tokio worker threads (a
//! slow fsync would stall every channel on that worker). The store owns:
//!
//! * one **writer** thread with one connection: all inserts, fixtures,
//!   migrations and seeding go through it, so writers never fight over the
//!   SQLite write lock inside this process (no `SQLITE_BUSY` between our own
//!   connections);
//! * `pool_size` (1..=4) **reader** threads, each with its own `query_only`
//!   connection. WAL mode lets them read while the writer commits.
//!
//! Async callers send a closure over a channel and await a oneshot reply.
//! `busy_timeout` bounds how long we wait on locks held by *other* processes
//! (e.g. a `sqlite3` shell); past it the call fails with
//! [`StoreError::Unavailable`]. A post lowers it to what is left of its deadline, checks the
//! deadline again before COMMIT (past it the transaction rolls back), and runs its commit hook
//! in a task of its own, so a cancelled caller's committed row is still broadcast.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};

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

type Job = Box<dyn FnOnce(&mut Connection) + Send + 'static>;

#[derive(Clone, Copy)]
enum Lane {
    Writer,
    Reader,
}

/// SQLite implementation of [`AnnotationStore`].
pub struct SqliteStore {
    path: PathBuf,
    writer: RwLock<Option<mpsc::Sender<Job>>>,
    readers: RwLock<Option<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The configured `busy_timeout`; a post lowers it to its remaining deadline.
    busy_timeout: std::time::Duration,
}

fn closed() -> StoreError {
    StoreError::Unavailable("sqlite store is closed".into())
}

/// Opens one connection with the settings every connection needs.
fn connect(path: &Path, opts: &StoreOptions, read_only: bool) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(opts.busy_timeout)?;
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
            tracing::warn!(%mode, path = %path.display(), "sqlite did not switch to WAL");
        }
        // Safe with WAL (a power loss may drop the last commits, never
        // corrupts) and avoids an fsync per annotation.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(conn)
}

fn spawn_worker(
    name: String,
    mut conn: Connection,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
) -> Result<JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || loop {
            // Only one idle worker waits in recv() at a time; the others wait
            // on the mutex. Either way a job goes to exactly one worker.
            let job = rx.lock().recv();
            match job {
                Ok(job) => {
                    // A panic inside one job must not take the worker (and
                    // with it every later call) down; the caller sees its
                    // oneshot dropped and gets Unavailable.
                    if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn))).is_err() {
                        tracing::error!("sqlite job panicked");
                    }
                }
                Err(_) => break, // all senders dropped: store closed
            }
        })
        .map_err(|e| StoreError::Other(format!("spawning sqlite worker: {e}")))
}

impl SqliteStore {
    /// Opens (creating if needed) the SQLite file at `path` — including its
    /// parent directory — and starts the worker threads. Does not migrate;
    /// [`super::open`] does that according to [`super::AutoMigrate`].
    pub async fn open(path: &Path, opts: &StoreOptions) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        let path_buf = path.to_path_buf();
        let opts_c = opts.clone();
        let readers_n = opts.pool_size.clamp(1, MAX_READERS);
        // Opening may touch the disk (create file, WAL switch): blocking.
        let (writer_conn, reader_conns) = tokio::task::spawn_blocking(move || {
            let w = connect(&path_buf, &opts_c, false)?;
            let rs = (0..readers_n)
                .map(|_| connect(&path_buf, &opts_c, true))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, StoreError>((w, rs))
        })
        .await
        .map_err(|e| StoreError::Other(format!("sqlite open task failed: {e}")))??;

        let mut threads = Vec::with_capacity(readers_n + 1);
        let (wtx, wrx) = mpsc::channel::<Job>();
        threads.push(spawn_worker(
            "sqlite-writer".into(),
            writer_conn,
            Arc::new(Mutex::new(wrx)),
        )?);
        let (rtx, rrx) = mpsc::channel::<Job>();
        let rrx = Arc::new(Mutex::new(rrx));
        for (i, conn) in reader_conns.into_iter().enumerate() {
            threads.push(spawn_worker(
                format!("sqlite-reader-{i}"),
                conn,
                rrx.clone(),
            )?);
        }
        tracing::info!(path = %path.display(), readers = readers_n, "sqlite store open");
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: RwLock::new(Some(wtx)),
            readers: RwLock::new(Some(rtx)),
            threads: Mutex::new(threads),
            busy_timeout: opts.busy_timeout,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a worker thread of `lane` and awaits its result.
    async fn run<T, F>(&self, lane: Lane, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run_detached(lane, f).await
    }

    /// Queues `f` on a worker thread of `lane` now; the returned future (which borrows
    /// nothing) resolves with its result.
    fn run_detached<T, F>(
        &self,
        lane: Lane,
        f: F,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // The receiver may be gone (caller cancelled); nothing to do then.
            let _ = tx.send(f(conn));
        });
        {
            let guard = match lane {
                Lane::Writer => self.writer.read(),
                Lane::Reader => self.readers.read(),
            };
            let queued = guard
                .as_ref()
                .ok_or_else(closed)
                .and_then(|sender| sender.send(job).map_err(|_| closed()));
            if let Err(e) = queued {
                return futures_or_ready(Err(e));
            }
        }
        futures_or_ready(Ok(rx))
    }
}

/// The future of [`SqliteStore::run_detached`]: an error found while queueing, or the job's
/// answer.
async fn futures_or_ready<T>(
    queued: Result<tokio::sync::oneshot::Receiver<Result<T, StoreError>>, StoreError>,
) -> Result<T, StoreError> {
    queued?
        .await
        .map_err(|_| StoreError::Unavailable("sqlite worker stopped".into()))?
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
        // Dropping the senders lets each worker finish queued jobs, exit
        // its loop and drop (close) its connection.
        self.writer.write().take();
        self.readers.write().take();
        let threads: Vec<JoinHandle<()>> = std::mem::take(&mut *self.threads.lock());
        if threads.is_empty() {
            return;
        }
        // Joining blocks; do it off the async runtime. Waiting matters: when
        // close() returns the file handles are released.
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("sqlite worker thread panicked");
                }
            }
        })
        .await;
        if let Err(e) = joined {
            tracing::error!(error = %e, "joining sqlite workers failed");
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
