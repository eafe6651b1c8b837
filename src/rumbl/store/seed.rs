//! Demo data for a brand-new database.
//!
//! A fresh checkout should show something at `/watch/2-elixir` without
//! manual setup, so on first start of an *empty* database (no users and no
//! videos) the server inserts a few users, two categories, videos 1 and 2
//! and a couple of annotations on video 2. A database that already has users
//! or videos (e.g. an existing Rumbl database) is never touched.
//!
//! The rows are defined here once; each backend inserts them with its own
//! driver inside one transaction (see `seed_demo_if_empty` in `postgres.rs`
//! and `sqlite.rs`). Ids are explicit so tokens/fixtures can refer to user 1
//! and video 2; Postgres sequences are advanced past them afterwards.

use serde::Serialize;

use super::{AnnotationStore, StoreError};

/// `(id, username, name)`
pub const DEMO_USERS: &[(i64, &str, &str)] = &[
    (1, "jose", "José Valim"),
    (2, "chris", "Chris McCord"),
    (3, "bruce", "Bruce Tate"),
];

/// Category names (unique).
pub const DEMO_CATEGORIES: &[&str] = &["Education", "Conference Talks"];

/// A demo video; its slug is `slugify(title)`, so the page for video 2 is
/// `/watch/2-elixir`.
#[derive(Debug, Clone, Copy)]
pub struct DemoVideo {
    pub id: i64,
    pub user_id: i64,
    /// Index into [`DEMO_CATEGORIES`].
    pub category: usize,
    pub title: &'static str,
    pub url: &'static str,
    pub description: &'static str,
}

/// The URLs are demo placeholders for the YouTube player; replace them with
/// real videos in a real deployment.
pub const DEMO_VIDEOS: &[DemoVideo] = &[
    DemoVideo {
        id: 1,
        user_id: 2,
        category: 1,
        title: "Phoenix Channels",
        url: "https://www.youtube.com/watch?v=phxchannels",
        description: "Real-time conversations over a topic, from socket to broadcast.",
    },
    DemoVideo {
        id: 2,
        user_id: 1,
        category: 0,
        title: "Elixir",
        url: "https://www.youtube.com/watch?v=elixirintro",
        description: "A short tour of the language the original Rumbl app is written in.",
    },
];

/// `(video_id, user_id, body, at_ms)`
pub const DEMO_ANNOTATIONS: &[(i64, i64, &str, i64)] = &[
    (
        2,
        1,
        "Welcome! Annotations appear at their point in the video.",
        1_000,
    ),
    (2, 2, "Pattern matching shows up right about here.", 4_500),
    (
        2,
        3,
        "Processes are cheap: spawn thousands of them.",
        12_000,
    ),
];

/// What [`seed_demo_if_empty`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SeedReport {
    /// False when the database already had users or videos.
    pub seeded: bool,
    pub users: usize,
    pub categories: usize,
    pub videos: usize,
    pub annotations: usize,
}

impl SeedReport {
    /// The report for a completed seed (all demo rows inserted).
    pub(crate) fn full() -> Self {
        SeedReport {
            seeded: true,
            users: DEMO_USERS.len(),
            categories: DEMO_CATEGORIES.len(),
            videos: DEMO_VIDEOS.len(),
            annotations: DEMO_ANNOTATIONS.len(),
        }
    }
}

/// Inserts the demo rows if the database has no users and no videos.
/// Safe to call on every start: it is a no-op afterwards.
pub async fn seed_demo_if_empty(store: &dyn AnnotationStore) -> Result<SeedReport, StoreError> {
    store.seed_demo_if_empty().await
}
