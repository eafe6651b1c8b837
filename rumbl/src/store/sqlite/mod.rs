//! SQLite backend: rusqlite (bundled) behind two deadpool-sqlite pools.
//!
//! [`SqliteStore`] only wires the parts together and picks the lane of each call; each
//! concern has its own file:
//!
//! * `pool.rs` — the one-connection writer pool and the `query_only` reader pool, the
//!   settings each connection gets when it is created, and running a call on the blocking
//!   pool (SQLite calls block, so they never run on Tokio worker threads). `busy_timeout`
//!   bounds how long we wait on locks held by *other* processes (e.g. a `sqlite3` shell);
//!   past it the call fails with [`StoreError::Unavailable`].
//! * `queries.rs` — the statements and the row mapping.
//! * `post.rs` — a post under the acknowledgement contract of [`Post`]: the deadline checks,
//!   the lowered `busy_timeout`, the detached write and commit hook.
//! * `migrations.rs`, `seed.rs` — executing the shared migration plan and demo data, each in
//!   one `BEGIN IMMEDIATE` transaction on the writer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    validate_annotation, Annotation, AnnotationStore, Backend, Credentials, MigrationReport, Post,
    SeedReport, StoreError, StoreOptions, User, Video,
};

mod migrations;
mod pool;
mod post;
mod queries;
mod seed;

use pool::{Lane, Pools, MAX_READERS};

/// SQLite implementation of [`AnnotationStore`].
pub struct SqliteStore {
    path: PathBuf,
    /// The writer and reader pools.
    pools: Pools,
    /// The configured `busy_timeout`; a post lowers it to its remaining deadline.
    busy_timeout: Duration,
}

impl SqliteStore {
    /// Opens (creating if needed) the SQLite file at `path` — including its
    /// parent directory — and its pools, opening the writer and one reader
    /// right away so a file that cannot be opened is an error here. Does not
    /// migrate; [`super::open()`] does that according to [`super::AutoMigrate`].
    pub async fn open(path: &Path, opts: &StoreOptions) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        let readers_n = opts.pool_size.clamp(1, MAX_READERS);
        let store = SqliteStore {
            path: path.to_path_buf(),
            pools: Pools::new(path, readers_n, opts.busy_timeout)?,
            busy_timeout: opts.busy_timeout,
        };
        // The writer first: it switches a new file to WAL before anyone reads.
        store.pools.run(Lane::Writer, |_| Ok(())).await?;
        store.pools.run(Lane::Reader, |_| Ok(())).await?;
        tracing::info!(path = %path.display(), readers = readers_n, "sqlite store open");
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl AnnotationStore for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn video(&self, id: i64) -> Result<Option<Video>, StoreError> {
        self.pools
            .run(Lane::Reader, move |conn| queries::video(conn, id))
            .await
    }

    async fn videos(&self) -> Result<Vec<Video>, StoreError> {
        self.pools
            .run(Lane::Reader, |conn| queries::videos(conn))
            .await
    }

    async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.pools
            .run(Lane::Reader, move |conn| queries::user(conn, id))
            .await
    }

    async fn credentials(&self, username: &str) -> Result<Option<Credentials>, StoreError> {
        let username = username.to_string();
        self.pools
            .run(Lane::Reader, move |conn| {
                queries::credentials(conn, username)
            })
            .await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.pools
            .run(Lane::Reader, |conn| queries::users(conn))
            .await
    }

    async fn annotations(
        &self,
        video_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Annotation>, StoreError> {
        let limit = limit.max(0);
        self.pools
            .run(Lane::Reader, move |conn| {
                queries::annotations(conn, video_id, after_id, limit)
            })
            .await
    }

    async fn post_annotation(&self, post: Post) -> Result<Annotation, StoreError> {
        validate_annotation(&post.body, post.at)?;
        post::post(&self.pools, self.busy_timeout, post).await
    }

    async fn ensure_video(&self, id: i64) -> Result<(), StoreError> {
        self.pools
            .run(Lane::Writer, move |conn| queries::ensure_video(conn, id))
            .await
    }

    async fn ensure_user(&self, id: i64) -> Result<(), StoreError> {
        self.pools
            .run(Lane::Writer, move |conn| queries::ensure_user(conn, id))
            .await
    }

    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.pools.run(Lane::Writer, migrations::migrate).await
    }

    async fn seed_demo_if_empty(&self) -> Result<SeedReport, StoreError> {
        self.pools.run(Lane::Writer, seed::seed_demo_if_empty).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.pools
            .run(Lane::Reader, |conn| queries::ping(conn))
            .await
    }

    async fn close(&self) {
        self.pools.close().await;
    }

    async fn users_by_ids(&self, ids: &[i64]) -> Result<HashMap<i64, User>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let list = serde_json::to_string(ids).map_err(|e| StoreError::Other(e.to_string()))?;
        self.pools
            .run(Lane::Reader, move |conn| queries::users_by_ids(conn, list))
            .await
    }
}
