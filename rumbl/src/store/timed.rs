//! [`TimedStore`]: any [`AnnotationStore`] with every call timed into the endpoint's
//! `phx_store_duration_seconds{operation}`.
//!
//! A wrapper rather than timing code in each backend: both backends (and any future one) are
//! timed by the same code under the same operation names, a backend cannot forget a call, and
//! the backends stay free of metrics. The names are fixed (one per trait method, never a
//! query text or an id), so the label set is bounded. Each operation's histogram is looked up
//! once, when the store is wrapped, so a call pays one observation and no family lookup (the
//! family's lookup takes a lock every caller shares).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use phx_channels::metrics::{Histogram, HistogramFamily, StoreLabels};

use super::{
    Annotation, AnnotationStore, Backend, Credentials, MigrationReport, Post, SeedReport,
    StoreError, User, Video,
};

/// A store operation, as `phx_store_duration_seconds` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// [`AnnotationStore::video`].
    GetVideo,
    /// [`AnnotationStore::videos`].
    ListVideos,
    /// [`AnnotationStore::user`].
    GetUser,
    /// [`AnnotationStore::users`].
    ListUsers,
    /// [`AnnotationStore::users_by_ids`] (Presence's `fetch`).
    GetUsers,
    /// [`AnnotationStore::credentials`] (the login).
    GetCredentials,
    /// [`AnnotationStore::annotations`] (a `videos:*` join).
    ListAnnotations,
    /// [`AnnotationStore::post_annotation`] (a `new_annotation`), and `insert_annotation`.
    InsertAnnotation,
    /// [`AnnotationStore::ensure_video`] (fixture mode).
    EnsureVideo,
    /// [`AnnotationStore::ensure_user`] (fixture mode).
    EnsureUser,
    /// [`AnnotationStore::migrate`].
    Migrate,
    /// [`AnnotationStore::seed_demo_if_empty`].
    SeedDemo,
    /// [`AnnotationStore::ping`] (`/readyz`).
    Ping,
}

impl Operation {
    /// Every operation, in label order.
    pub const ALL: [Operation; 13] = [
        Operation::GetVideo,
        Operation::ListVideos,
        Operation::GetUser,
        Operation::ListUsers,
        Operation::GetUsers,
        Operation::GetCredentials,
        Operation::ListAnnotations,
        Operation::InsertAnnotation,
        Operation::EnsureVideo,
        Operation::EnsureUser,
        Operation::Migrate,
        Operation::SeedDemo,
        Operation::Ping,
    ];

    /// The `operation` label.
    pub fn name(self) -> &'static str {
        match self {
            Operation::GetVideo => "get_video",
            Operation::ListVideos => "list_videos",
            Operation::GetUser => "get_user",
            Operation::ListUsers => "list_users",
            Operation::GetUsers => "get_users",
            Operation::GetCredentials => "get_credentials",
            Operation::ListAnnotations => "list_annotations",
            Operation::InsertAnnotation => "insert_annotation",
            Operation::EnsureVideo => "ensure_video",
            Operation::EnsureUser => "ensure_user",
            Operation::Migrate => "migrate",
            Operation::SeedDemo => "seed_demo",
            Operation::Ping => "ping",
        }
    }
}

/// A store whose calls are timed (see the module docs). Errors are timed too: a database that
/// times out shows as slow calls, which is what an operator alerting on latency wants to see.
pub struct TimedStore {
    /// The store doing the work.
    inner: Arc<dyn AnnotationStore>,
    /// One histogram per [`Operation`], in [`Operation::ALL`] order.
    timings: [Histogram; Operation::ALL.len()],
}

impl TimedStore {
    /// `inner`, timed into `family` (the endpoint's `metrics().store_duration`).
    pub fn wrap(
        inner: Arc<dyn AnnotationStore>,
        family: &HistogramFamily<StoreLabels>,
    ) -> Arc<dyn AnnotationStore> {
        let timings = Operation::ALL.map(|op| {
            family
                .get_or_create(&StoreLabels {
                    operation: op.name(),
                })
                .clone()
        });
        Arc::new(TimedStore { inner, timings })
    }

    /// Runs `call`, observing how long it took under `op`.
    async fn timed<T>(&self, op: Operation, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        self.timings[op as usize].observe(started.elapsed().as_secs_f64());
        out
    }
}

#[async_trait]
impl AnnotationStore for TimedStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    async fn video(&self, id: i64) -> Result<Option<Video>, StoreError> {
        self.timed(Operation::GetVideo, self.inner.video(id)).await
    }

    async fn videos(&self) -> Result<Vec<Video>, StoreError> {
        self.timed(Operation::ListVideos, self.inner.videos()).await
    }

    async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.timed(Operation::GetUser, self.inner.user(id)).await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.timed(Operation::ListUsers, self.inner.users()).await
    }

    async fn credentials(&self, username: &str) -> Result<Option<Credentials>, StoreError> {
        self.timed(Operation::GetCredentials, self.inner.credentials(username))
            .await
    }

    async fn annotations(
        &self,
        video_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Annotation>, StoreError> {
        self.timed(
            Operation::ListAnnotations,
            self.inner.annotations(video_id, after_id, limit),
        )
        .await
    }

    async fn post_annotation(&self, post: Post) -> Result<Annotation, StoreError> {
        self.timed(
            Operation::InsertAnnotation,
            self.inner.post_annotation(post),
        )
        .await
    }

    async fn ensure_video(&self, id: i64) -> Result<(), StoreError> {
        self.timed(Operation::EnsureVideo, self.inner.ensure_video(id))
            .await
    }

    async fn ensure_user(&self, id: i64) -> Result<(), StoreError> {
        self.timed(Operation::EnsureUser, self.inner.ensure_user(id))
            .await
    }

    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.timed(Operation::Migrate, self.inner.migrate()).await
    }

    async fn seed_demo_if_empty(&self) -> Result<SeedReport, StoreError> {
        self.timed(Operation::SeedDemo, self.inner.seed_demo_if_empty())
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(Operation::Ping, self.inner.ping()).await
    }

    /// Not timed: once per process, and not a database round trip worth a series.
    async fn close(&self) {
        self.inner.close().await
    }

    async fn users_by_ids(&self, ids: &[i64]) -> Result<HashMap<i64, User>, StoreError> {
        self.timed(Operation::GetUsers, self.inner.users_by_ids(ids))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phx_channels::metrics::Metrics;

    #[test]
    fn every_operation_has_its_own_label_and_slot() {
        for (i, op) in Operation::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "{op:?} out of order");
        }
        let names: std::collections::HashSet<&str> =
            Operation::ALL.iter().map(|op| op.name()).collect();
        assert_eq!(names.len(), Operation::ALL.len());
    }

    #[tokio::test]
    async fn calls_are_observed_under_their_operation() {
        let metrics = Metrics::new();
        let dir = std::env::temp_dir().join(format!("rumbl-timed-{}.sqlite3", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let url = format!("sqlite://{}", dir.display());
        let mut opts = super::super::StoreOptions::new(2);
        opts.auto_migrate = super::super::AutoMigrate::Always;
        let inner = super::super::open_with(Some(&url), opts)
            .await
            .expect("sqlite store");
        let store = TimedStore::wrap(inner, &metrics.store_duration);
        store.ensure_video(7).await.expect("ensure_video");
        store.ensure_user(3).await.expect("ensure_user");
        store
            .insert_annotation(7, 3, "hello", 10)
            .await
            .expect("insert");
        assert_eq!(store.annotations(7, 0, 10).await.expect("list").len(), 1);
        store.close().await;
        let _ = std::fs::remove_file(&dir);
        let text = metrics.render();
        for (op, n) in [
            ("insert_annotation", 1),
            ("list_annotations", 1),
            ("ensure_video", 1),
            ("get_video", 0),
        ] {
            let line = format!("phx_store_duration_seconds_count{{operation=\"{op}\"}} {n}");
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }
}
