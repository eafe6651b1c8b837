//! Postgres backend: tokio-postgres behind a deadpool pool.
//!
//! [`PostgresStore`] only wires the parts together; each concern has its own file:
//!
//! * `pool.rs` — the pool, its timeouts and `RecyclingMethod::Fast`, and what a failed
//!   checkout means. A down database must not hang a channel: the pool has a short wait
//!   timeout and connections a short connect timeout, and connection-level failures map to
//!   [`StoreError::Unavailable`] (see also `store/error.rs`). TLS is not configured
//!   (`NoTls`).
//! * `queries.rs` — the reads and fixtures: parameterized, prepared through deadpool's
//!   per-connection statement cache, with explicit `bigint` casts so one set of queries works
//!   against every Ecto-created variant of the schema.
//! * `batcher.rs` — a post (`new_annotation`): two round trips (BEGIN + the INSERT
//!   pipelined, then COMMIT after the deadline check) for a whole group of posts at once,
//!   keeping the acknowledgement contract of [`Post`].
//! * `migrations.rs`, `seed.rs` — executing the shared migration plan and demo data, each in
//!   one transaction under an advisory lock.

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};

use super::{
    validate_annotation, Annotation, AnnotationStore, Backend, Credentials, MigrationReport, Post,
    SeedReport, StoreError, StoreOptions, User, Video,
};

mod batcher;
mod migrations;
mod pool;
mod queries;
mod seed;

use batcher::InsertBatcher;

/// Postgres implementation of [`AnnotationStore`].
pub struct PostgresStore {
    pool: Pool,
    /// Group commit for `post_annotation` (see [`InsertBatcher`]).
    batcher: InsertBatcher,
}

impl PostgresStore {
    /// Builds the pool without connecting (connections are made on first
    /// use), so this only fails on a malformed URL. [`super::open()`] pings
    /// right after to fail fast at startup.
    pub fn new(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        Ok(PostgresStore {
            pool: pool::build(url, opts)?,
            batcher: InsertBatcher::new(opts.pool_size.max(1)),
        })
    }

    async fn client(&self) -> Result<Object, StoreError> {
        pool::client(&self.pool).await
    }
}

#[async_trait]
impl AnnotationStore for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn video(&self, id: i64) -> Result<Option<Video>, StoreError> {
        queries::video(&self.client().await?, id).await
    }

    async fn videos(&self) -> Result<Vec<Video>, StoreError> {
        queries::videos(&self.client().await?).await
    }

    async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        queries::user(&self.client().await?, id).await
    }

    async fn credentials(&self, username: &str) -> Result<Option<Credentials>, StoreError> {
        queries::credentials(&self.client().await?, username).await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        queries::users(&self.client().await?).await
    }

    async fn annotations(
        &self,
        video_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Annotation>, StoreError> {
        queries::annotations(&self.client().await?, video_id, after_id, limit).await
    }

    async fn post_annotation(&self, post: Post) -> Result<Annotation, StoreError> {
        validate_annotation(&post.body, post.at)?;
        self.batcher.post(&self.pool, post).await
    }

    async fn ensure_video(&self, id: i64) -> Result<(), StoreError> {
        queries::ensure_video(&mut self.client().await?, id).await
    }

    async fn ensure_user(&self, id: i64) -> Result<(), StoreError> {
        queries::ensure_user(&mut self.client().await?, id).await
    }

    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        migrations::migrate(&mut self.client().await?).await
    }

    async fn seed_demo_if_empty(&self) -> Result<SeedReport, StoreError> {
        seed::seed_demo_if_empty(&mut self.client().await?).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        queries::ping(&self.client().await?).await
    }

    async fn close(&self) {
        self.pool.close();
    }

    async fn users_by_ids(&self, ids: &[i64]) -> Result<HashMap<i64, User>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        queries::users_by_ids(&self.client().await?, ids).await
    }
}
