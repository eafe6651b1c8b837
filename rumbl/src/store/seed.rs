//! Demo data for a brand-new database.
//!
//! A fresh checkout should show something at `/watch/2-elixir` without
//! manual setup, so on first start of an *empty* database (no users and no
//! videos) the server inserts a few users, two categories, videos 1 and 2
//! and a couple of annotations on video 2. A database that already has users
//! or videos (e.g. an existing Rumbl database) is never touched.
//!
//! The rows are defined here once, so both backends seed the same demo; each
//! backend inserts them with its own driver inside one transaction
//! (`postgres/seed.rs`, `sqlite/seed.rs`). Ids are explicit so tokens/fixtures
//! can refer to user 1 and video 2; Postgres sequences are advanced past them
//! afterwards.

use serde::Serialize;

use super::{AnnotationStore, StoreError};

/// The password of every demo user, for `serve` with a `DATABASE_URL` (which checks
/// passwords); the embedded demo (no `DATABASE_URL`) logs in without one. Documented in the
/// README: change it (or drop the demo users) on a database anyone else can reach.
pub const DEMO_PASSWORD: &str = "phoenix";

/// `(id, username, name, password_hash)`; the hashes are pbkdf2_elixir's default format and
/// rounds for [`DEMO_PASSWORD`], precomputed (scripts/password_vectors.py) so a first start
/// does not spend seconds hashing.
pub const DEMO_USERS: &[(i64, &str, &str, &str)] = &[
    (1, "jose", "José Valim", "$pbkdf2-sha512$160000$8BaiAAx7/neyWeK5syS6rA$jRgNEytu30VH0rg6aj7U8eLNGIp4AwRX9yJbAM7BQdXdkgPDWxF7k9TZXXcEiMB6u8qNYhDWOJim1ANU1kEOMQ"),
    (2, "chris", "Chris McCord", "$pbkdf2-sha512$160000$mG3tx1IA1WdYuC1lzr209w$PHFugBpLCJI/4QU9M1us64rbosFV3J2wEePXkZfPZc6TIhkxTIOCmzpRM0SYRVRg4W0KfjvsBQnCEngKJA.SnA"),
    (3, "bruce", "Bruce Tate", "$pbkdf2-sha512$160000$b6/oTcIbc1Gqh2cmzmVi1g$0YJy/cvRtOA4A2HPlE7OvvOuymZ14S3Pl.Qp0strSNQJNhUyN6Lmw9GR0JSKEgsIn3FwrHiqun8jhhbjmFtZaA"),
];

/// Category names (unique).
pub const DEMO_CATEGORIES: &[&str] = &["Education", "Conference Talks"];

/// A demo video; its slug is `slugify(title)`, so the page for video 2 is
/// `/watch/2-elixir`.
#[derive(Debug, Clone, Copy)]
pub struct DemoVideo {
    /// Its fixed id (video 2 is the README's `/watch/2-elixir`).
    pub id: i64,
    /// The demo user who added it.
    pub user_id: i64,
    /// Index into [`DEMO_CATEGORIES`].
    pub category: usize,
    /// Title (its slug is made from it).
    pub title: &'static str,
    /// YouTube URL.
    pub url: &'static str,
    /// Free text.
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
    /// Users inserted.
    pub users: usize,
    /// Categories inserted.
    pub categories: usize,
    /// Videos inserted.
    pub videos: usize,
    /// Annotations inserted.
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
