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
//! [`migrate`](mod@migrate) and `migrations/`), so phx-server can be pointed at an
//! existing Rumbl database unchanged.
//!
//! # Errors
//!
//! Every call returns [`StoreError`]; a database that is down, dropped or
//! locked maps to [`StoreError::Unavailable`] quickly (short pool wait /
//! connect timeouts, SQLite busy timeout) instead of hanging the channel.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

mod error;
pub mod migrate;
pub mod postgres;
pub mod seed;
pub mod sqlite;

pub use error::StoreError;
pub use migrate::{migrate, MigrationReport};
pub use seed::{seed_demo_if_empty, SeedReport};

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
    /// Ecto). See [`migrate`](mod@migrate).
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

/// How long a post may take, counted from its arrival: well inside phoenix.js's 10 s push
/// timeout, so the client hears the answer (ok or error) itself instead of timing out.
pub const POST_DEADLINE: Duration = Duration::from_secs(5);

/// Runs once for a committed row, in the code path that learned of the commit — the video
/// channel broadcasts the row here, so no row is committed unbroadcast even when its caller
/// was cancelled or gave up.
pub type OnCommit = Box<dyn FnOnce(&Annotation) + Send + 'static>;

/// One annotation to insert, with what the acknowledgement contract needs:
///
/// * a caller that gets `Ok` has its row;
/// * a caller that gets an error (or gives up at its deadline) does not, and never will: the
///   store checks `deadline` before COMMIT and leaves a row whose deadline passed uncommitted;
/// * nothing commits unbroadcast: `on_commit` runs for every committed row.
pub struct Post {
    /// The video annotated.
    pub video_id: i64,
    /// The author (the socket's user).
    pub user_id: i64,
    /// The text.
    pub body: String,
    /// Player time in milliseconds.
    pub at: i64,
    /// Past this instant the row is not committed any more (the caller gets an error).
    pub deadline: tokio::time::Instant,
    /// Runs once if (and only if) the row is committed.
    pub on_commit: Option<OnCommit>,
}

impl Post {
    /// A post with a deadline [`POST_DEADLINE`] from now and no commit hook.
    pub fn new(video_id: i64, user_id: i64, body: &str, at: i64) -> Self {
        Post {
            video_id,
            user_id,
            body: body.to_string(),
            at,
            deadline: tokio::time::Instant::now() + POST_DEADLINE,
            on_commit: None,
        }
    }

    /// Runs the commit hook (at most once).
    pub(crate) fn committed(&mut self, ann: &Annotation) {
        if let Some(f) = self.on_commit.take() {
            f(ann);
        }
    }
}

/// The error for a post whose deadline passed before its row could be committed.
pub(crate) fn deadline_passed() -> StoreError {
    StoreError::Unavailable(format!(
        "no commit within the post deadline ({POST_DEADLINE:?} from arrival)"
    ))
}

/// When to run migrations as part of [`open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoMigrate {
    /// SQLite migrates on open (it is the zero-configuration local default);
    /// Postgres does not (shared databases are migrated explicitly with
    /// `phx-server migrate` or `serve --migrate`).
    #[default]
    SqliteOnly,
    /// Migrate on open for both backends.
    Always,
    /// Never migrate on open.
    Never,
}

/// Tuning knobs for [`open_with`]. `StoreOptions::new(pool_size)` gives the
/// defaults used by [`open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Postgres: maximum pooled connections. SQLite: number of reader
    /// threads (clamped to 1..=4; there is always exactly one writer).
    pub pool_size: usize,
    /// How long a caller waits for a free pooled connection (Postgres) before
    /// getting [`StoreError::Unavailable`].
    pub wait_timeout: Duration,
    /// TCP connect timeout for new Postgres connections.
    pub connect_timeout: Duration,
    /// SQLite `busy_timeout`: how long a statement waits on a lock held by
    /// another process before failing with [`StoreError::Unavailable`].
    pub busy_timeout: Duration,
    /// Whether [`open_with`] migrates.
    pub auto_migrate: AutoMigrate,
}

impl StoreOptions {
    /// Defaults around a pool of `pool_size` connections (at least 1): 2 s to get a
    /// connection or to connect, SQLite's busy timeout 5 s, migrations as [`AutoMigrate`]'s
    /// default.
    pub fn new(pool_size: usize) -> Self {
        StoreOptions {
            pool_size: pool_size.max(1),
            wait_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            busy_timeout: Duration::from_secs(5),
            auto_migrate: AutoMigrate::default(),
        }
    }
}

/// Where the SQLite file lives when no database URL is configured.
pub const DEFAULT_SQLITE_PATH: &str = "./data/rumbl.sqlite3";

/// A parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `postgres://` or `postgresql://`: the URL as given.
    Postgres(String),
    /// `sqlite://<path>` (or no URL: [`DEFAULT_SQLITE_PATH`]).
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    /// `None`/empty → the default SQLite file; `sqlite://PATH` or
    /// `sqlite:PATH` → SQLite file (`sqlite:///abs/path` for absolute
    /// paths; a `?query` suffix is ignored); `postgres://` or
    /// `postgresql://` → Postgres (passed to tokio-postgres as is).
    pub fn parse(url: Option<&str>) -> Result<DatabaseUrl, StoreError> {
        let url = match url.map(str::trim) {
            None | Some("") => return Ok(DatabaseUrl::Sqlite(PathBuf::from(DEFAULT_SQLITE_PATH))),
            Some(u) => u,
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or("");
            if path.is_empty() || path == ":memory:" {
                return Err(StoreError::Invalid(format!(
                    "sqlite URL needs a file path (in-memory databases are not supported): {url}"
                )));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        Err(StoreError::Invalid(format!(
            "unsupported database URL (expected postgres://, postgresql:// or sqlite://): {}",
            redact(url)
        )))
    }
}

/// Hides a password in a URL before it goes into an error message or log.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}://{}:***{}",
            &url[..scheme_end],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// Opens the store for `database_url` with default options and
/// `pool_size` connections. See [`DatabaseUrl::parse`] for accepted URLs
/// and [`AutoMigrate::SqliteOnly`] for the migration default.
pub async fn open(
    database_url: Option<&str>,
    pool_size: usize,
) -> Result<Arc<dyn AnnotationStore>, StoreError> {
    open_with(database_url, StoreOptions::new(pool_size)).await
}

/// Opens the store with explicit options. Postgres is pinged once so a
/// wrong URL or a down database fails at startup with
/// [`StoreError::Unavailable`] instead of on the first channel join.
pub async fn open_with(
    database_url: Option<&str>,
    opts: StoreOptions,
) -> Result<Arc<dyn AnnotationStore>, StoreError> {
    let store: Arc<dyn AnnotationStore> = match DatabaseUrl::parse(database_url)? {
        DatabaseUrl::Postgres(url) => {
            let store = postgres::PostgresStore::new(&url, &opts)?;
            store.ping().await?;
            if opts.auto_migrate == AutoMigrate::Always {
                store.migrate().await?;
            }
            Arc::new(store)
        }
        DatabaseUrl::Sqlite(path) => {
            let store = sqlite::SqliteStore::open(&path, &opts).await?;
            if opts.auto_migrate != AutoMigrate::Never {
                store.migrate().await?;
            }
            Arc::new(store)
        }
    };
    Ok(store)
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

/// Input checks shared by both backends, so they reject the same things.
pub(crate) fn validate_annotation(body: &str, at: i64) -> Result<(), StoreError> {
    if body.trim().is_empty() {
        return Err(StoreError::Invalid("body can't be blank".into()));
    }
    if body.chars().count() > crate::annotation::MAX_BODY_CHARS {
        return Err(StoreError::Invalid(format!(
            "body should be at most {} character(s)",
            crate::annotation::MAX_BODY_CHARS
        )));
    }
    if !(0..=i64::from(i32::MAX)).contains(&at) {
        return Err(StoreError::Invalid(format!(
            "at must be between 0 and {} milliseconds, got {at}",
            i32::MAX
        )));
    }
    Ok(())
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

    #[test]
    fn url_parsing() {
        assert_eq!(
            DatabaseUrl::parse(None).ok(),
            Some(DatabaseUrl::Sqlite(PathBuf::from(DEFAULT_SQLITE_PATH)))
        );
        assert_eq!(
            DatabaseUrl::parse(Some("sqlite:///tmp/x.db?mode=rwc")).ok(),
            Some(DatabaseUrl::Sqlite(PathBuf::from("/tmp/x.db")))
        );
        assert_eq!(
            DatabaseUrl::parse(Some("sqlite://data/x.db")).ok(),
            Some(DatabaseUrl::Sqlite(PathBuf::from("data/x.db")))
        );
        assert!(matches!(
            DatabaseUrl::parse(Some("postgresql://u@h/db")),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(matches!(
            DatabaseUrl::parse(Some("mysql://u:secret@h/db")),
            Err(StoreError::Invalid(m)) if !m.contains("secret")
        ));
    }
}
