//! Annotation storage for the Rumbl app (issue 4).
//!
//! The video channel needs exactly three things from a database: look up a
//! video, list a video's annotations after a `last_seen_id` (ordered by
//! player time, user preloaded, at most 200), and insert an annotation and
//! get the committed row back (with its user, for the broadcast). Everything
//! else here (users/videos listing, fixtures, migrations, demo seed) serves
//! the pages, the CLI and the tests.
//!
//! # Backends
//!
//! [`AnnotationStore`] is one async trait with two real implementations:
//!
//! * [`postgres::PostgresStore`] — `tokio-postgres` behind a `deadpool`
//!   pool. Used for `postgres://` / `postgresql://` URLs, including an
//!   existing database created by the book's Ecto migrations.
//! * [`sqlite::SqliteStore`] — `rusqlite` (bundled SQLite) behind two
//!   deadpool-sqlite pools (one writer connection, N readers), every call on
//!   the blocking pool, so blocking SQLite calls never run on Tokio worker
//!   threads. The zero-configuration default: with no URL the
//!   file `./data/rumbl.sqlite3` is created on first start.
//!
//! Both backends use the book's table and column names (see
//! [`migrations`] and `migrations/`), so phx-server can be pointed at an
//! existing Rumbl database unchanged.
//!
//! # Layout
//!
//! One concern per file, so a change to (say) how connections are pooled touches one file
//! and cannot quietly change a query:
//!
//! * this file: the trait and the values it hands out;
//! * `open.rs`: which backend a URL names, [`StoreOptions`], [`open()`]/[`open_with`]/[`migrate`];
//! * `post.rs`: [`Post`] and the acknowledgement contract, and the input checks;
//! * [`migrations`]: the embedded SQL and the one migration plan both backends execute;
//! * [`seed`]: the demo rows both backends insert;
//! * `error.rs`: [`StoreError`] and how driver errors map onto it;
//! * `timed.rs`: [`TimedStore`], any store with each call timed into
//!   `phx_store_duration_seconds{operation}`;
//! * [`postgres`] and [`sqlite`]: each split the same way — `pool.rs` (connections),
//!   `queries.rs` (statements and rows), `migrations.rs` and `seed.rs` (executing the shared
//!   plan and data), plus how a post is committed (`batcher.rs` / `post.rs`).
//!
//! # Errors
//!
//! Every call returns [`StoreError`]; a database that is down, dropped or
//! locked maps to [`StoreError::Unavailable`] quickly (short pool wait /
//! connect timeouts, SQLite busy timeout) instead of hanging the channel.

use async_trait::async_trait;
use serde::Serialize;

mod error;
pub mod migrations;
mod open;
mod post;
pub mod postgres;
pub mod seed;
pub mod sqlite;
mod timed;

pub use error::StoreError;
pub use migrations::MigrationReport;
pub use open::{
    migrate, open, open_with, redact, AutoMigrate, DatabaseUrl, StoreOptions, DEFAULT_SQLITE_PATH,
};
pub(crate) use post::{deadline_passed, validate_annotation};
pub use post::{OnCommit, Post, POST_DEADLINE};
pub use seed::{seed_demo_if_empty, SeedReport};
pub use timed::{Operation, TimedStore};

/// A video row (`videos` table).
///
/// `slug` holds the slugified title only (e.g. `"elixir"`), exactly like the
/// book's schema; the URL parameter `"2-elixir"` is [`Video::param`]. It is
/// optional because videos created before the book's "add slug" migration
/// have `NULL` there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Video {
    /// Primary key (`videos:<id>` is its channel topic).
    pub id: i64,
    /// The video's URL (a YouTube link in the book).
    pub url: String,
    /// Title, shown on the watch page.
    pub title: String,
    /// Free text.
    pub description: String,
    /// The `"elixir"` of `/watch/2-elixir`; `NULL` before the slug migration.
    pub slug: Option<String>,
    /// Who added it.
    pub user_id: Option<i64>,
    /// Its category, if any.
    pub category_id: Option<i64>,
}

impl Video {
    /// The path parameter used by `/watch/:id`, e.g. `"2-elixir"`.
    ///
    /// Mirrors the book's `Phoenix.Param` implementation for videos
    /// (`"<id>-<slug>"`); when the slug column is empty it is derived from
    /// the title so links never degrade to a bare `"2-"`.
    pub fn param(&self) -> String {
        match self.slug.as_deref() {
            Some(s) if !s.is_empty() => format!("{}-{}", self.id, s),
            _ => {
                let s = slugify(&self.title);
                if s.is_empty() {
                    self.id.to_string()
                } else {
                    format!("{}-{}", self.id, s)
                }
            }
        }
    }
}

/// A user row (`users` table), without its `password_hash` (only the login reads that, via
/// [`AnnotationStore::credentials`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Primary key (the id a socket token carries).
    pub id: i64,
    /// Login name, unique.
    pub username: String,
    /// Display name (a later chapter's column; may be `NULL`).
    pub name: Option<String>,
}

/// A user with the stored hash of its password (`NULL` → `None`: that user cannot log in with
/// a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub user: User,
    /// Comeonin's pbkdf2 or bcrypt hash, as the Elixir app stored it.
    pub password_hash: Option<String>,
}

/// An annotation with its user preloaded, as the channel renders it
/// (`{id, user: {id, username}, body, at}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    /// Primary key; ids grow, which `last_seen_id` relies on.
    pub id: i64,
    /// The text (at most 1,000 characters).
    pub body: String,
    /// Player time in milliseconds.
    pub at: i64,
    /// The video it annotates.
    pub video_id: i64,
    /// Who wrote it.
    pub user: User,
}

/// Which backend a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Backend {
    /// PostgreSQL (tokio-postgres + deadpool-postgres).
    Postgres,
    /// The embedded SQLite file (rusqlite).
    Sqlite,
}

/// Most Unicode scalar values in an annotation body. The book has no bound; without one, a
/// single post (up to the frame limit) lands in the table and in every later join reply (200
/// of them), so the limit also bounds a join reply's size: 200 × 1000 scalars × 4 bytes. The
/// store refuses a longer body whoever calls it; the changeset
/// ([`crate::annotation`]) checks it first to answer with Ecto's message.
pub const MAX_BODY_CHARS: usize = 1000;

/// The storage interface used by the Rumbl channel, pages and CLI.
///
/// Implementations are cheap to share (`Arc<dyn AnnotationStore>`) and safe
/// to call from many channel tasks at once.
#[async_trait]
pub trait AnnotationStore: Send + Sync + 'static {
    /// Which backend this is (for logs and `/health`).
    fn backend(&self) -> Backend;

    /// One video by id, `None` if it does not exist.
    async fn video(&self, id: i64) -> Result<Option<Video>, StoreError>;

    /// All videos ordered by id.
    async fn videos(&self) -> Result<Vec<Video>, StoreError>;

    /// One user by id, `None` if it does not exist.
    async fn user(&self, id: i64) -> Result<Option<User>, StoreError>;

    /// All users ordered by id.
    async fn users(&self) -> Result<Vec<User>, StoreError>;

    /// The user named `username` with its `password_hash` (for `POST /login`), `None` if
    /// there is no such user.
    async fn credentials(&self, username: &str) -> Result<Option<Credentials>, StoreError>;

    /// At most `limit` annotations of `video_id` whose id is greater than
    /// `after_id`, ordered by `(at, id)` ascending, each with its user.
    ///
    /// `after_id` is the client's `last_seen_id` (0 for "everything"), so a
    /// rejoining client only receives what it missed. Annotations whose user
    /// row is missing are skipped (they cannot be rendered). A negative
    /// `limit` is treated as 0. An unknown video yields an empty list; use
    /// [`AnnotationStore::video`] to tell the two apart.
    async fn annotations(
        &self,
        video_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Annotation>, StoreError>;

    /// Inserts an annotation under the acknowledgement contract (see [`Post`]): `Ok` only
    /// for a committed row; an error only when the row is not (and never will be) committed;
    /// the row is checked against `post.deadline` before COMMIT, and `post.on_commit` runs
    /// for every committed row whether or not the caller still waits.
    ///
    /// Errors: [`StoreError::Invalid`] for a blank or too long body or `at` outside
    /// `0..=i32::MAX` (the book's column is a 32-bit `integer`),
    /// [`StoreError::NotFound`] for an unknown video or user, [`StoreError::Unavailable`]
    /// for an unreachable database or a deadline passed before commit.
    async fn post_annotation(&self, post: Post) -> Result<Annotation, StoreError>;

    /// [`AnnotationStore::post_annotation`] with a deadline [`POST_DEADLINE`] from now and
    /// nothing to run on commit (the CLI, tests, seeds).
    async fn insert_annotation(
        &self,
        video_id: i64,
        user_id: i64,
        body: &str,
        at: i64,
    ) -> Result<Annotation, StoreError> {
        self.post_annotation(Post::new(video_id, user_id, body, at))
            .await
    }

    /// Fixture mode: create video `id` (title `"Video <id>"`) if missing.
    async fn ensure_video(&self, id: i64) -> Result<(), StoreError>;

    /// Fixture mode: create user `id` (username `"user<id>"`) if missing.
    async fn ensure_user(&self, id: i64) -> Result<(), StoreError>;

    /// Applies the embedded migrations (idempotent; adopts tables created by
    /// Ecto). See [`migrations`].
    async fn migrate(&self) -> Result<MigrationReport, StoreError>;

    /// Inserts the demo users/categories/videos/annotations if the database
    /// has no users and no videos. See [`seed`].
    async fn seed_demo_if_empty(&self) -> Result<SeedReport, StoreError>;

    /// Cheap round trip to the database (health checks, startup check).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stops accepting calls and releases connections/threads. Later calls
    /// fail with [`StoreError::Unavailable`]. Idempotent.
    async fn close(&self);

    /// The users among `ids`, by id (unknown ids are absent) — one query, for
    /// presence `fetch`, which decorates a whole list or diff at once. The
    /// default asks [`AnnotationStore::user`] per id; the backends override it.
    async fn users_by_ids(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, User>, StoreError> {
        let mut found = std::collections::HashMap::with_capacity(ids.len());
        for &id in ids {
            if let Some(u) = self.user(id).await? {
                found.insert(id, u);
            }
        }
        Ok(found)
    }
}

/// The book's slug function: lowercase, and every run of characters that
/// are not letters, digits, `_` or `-` becomes a single `-`.
pub fn slugify(title: &str) -> String {
    let mut out = String::with_capacity(title.len());
    let mut in_gap = false;
    for c in title.chars() {
        if c.is_alphanumeric() || c == '_' || c == '-' {
            out.extend(c.to_lowercase());
            in_gap = false;
        } else if !in_gap {
            out.push('-');
            in_gap = true;
        }
    }
    out
}

/// Parses a `/watch/:id` parameter like `"2-elixir"` into the video id `2`
/// (the leading integer, as the book's permalink type does). `None` when the
/// parameter does not start with digits or the number overflows.
pub fn parse_video_param(param: &str) -> Option<i64> {
    let digits: &str = {
        let end = param
            .char_indices()
            .find(|(_, c)| !c.is_ascii_digit())
            .map(|(i, _)| i)
            .unwrap_or(param.len());
        &param[..end]
    };
    if digits.is_empty() {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugify_like_the_book() {
        assert_eq!(slugify("Elixir"), "elixir");
        assert_eq!(
            slugify("What's new in Phoenix 1.2?"),
            "what-s-new-in-phoenix-1-2-"
        );
        assert_eq!(slugify("a  --  b"), "a----b");
        assert_eq!(slugify("Ünïcödé ok"), "ünïcödé-ok");
    }

    #[test]
    fn param_roundtrip() {
        assert_eq!(parse_video_param("2-elixir"), Some(2));
        assert_eq!(parse_video_param("17"), Some(17));
        assert_eq!(parse_video_param("elixir"), None);
        assert_eq!(parse_video_param(""), None);
        assert_eq!(parse_video_param("99999999999999999999-x"), None);
    }
}
