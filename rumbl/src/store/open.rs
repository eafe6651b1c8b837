//! Opening a store from a database URL: which backend a URL names, the options a store is
//! opened with, and the free functions ([`open`], [`open_with`], [`migrate`]) that the app,
//! the CLI and the tests call.
//!
//! This is the one place that knows both backends; everything below it (the trait, the
//! migration plan, the seed data) is backend-independent, and each backend only knows itself.
//! Keeping the choice here means a caller never names `PostgresStore` or `SqliteStore` unless
//! it wants one in particular (as the backend tests do).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{postgres, sqlite, AnnotationStore, MigrationReport, StoreError};

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
        // `ecto://USER:PASS@HOST/DATABASE` is the form a Phoenix release's runtime.exs
        // documents for DATABASE_URL: the same thing for Postgres.
        if let Some(rest) = url.strip_prefix("ecto://") {
            return Ok(DatabaseUrl::Postgres(format!("postgres://{rest}")));
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
            "unsupported database URL (expected postgres://, postgresql://, ecto:// or sqlite://): {}",
            redact(url)
        )))
    }
}

/// Hides a password in a URL before it goes into an error message or log: the framework's
/// [`mask`](phx_channels::settings::report::mask) (`phx-server config` shows URLs the same
/// way), which also masks a password containing `/` or `@` and a query's `password=`.
pub fn redact(url: &str) -> String {
    if url.contains("://") {
        phx_channels::settings::report::mask(url)
    } else {
        url.to_string()
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

/// Opens the database at `database_url` (same rules as
/// [`open`]), applies the migrations and closes it again.
/// Used by `phx-server migrate` and `serve --migrate`.
pub async fn migrate(database_url: Option<&str>) -> Result<MigrationReport, StoreError> {
    let mut opts = StoreOptions::new(1);
    opts.auto_migrate = AutoMigrate::Never;
    let store: Box<dyn AnnotationStore> = match DatabaseUrl::parse(database_url)? {
        DatabaseUrl::Postgres(url) => Box::new(postgres::PostgresStore::new(&url, &opts)?),
        DatabaseUrl::Sqlite(path) => Box::new(sqlite::SqliteStore::open(&path, &opts).await?),
    };
    let report = store.migrate().await;
    store.close().await;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_wherever_it_is() {
        assert_eq!(redact("postgres://u:p@ss/w@h/db"), "postgres://u:****@h/db");
        assert_eq!(redact("postgres://h/db?password=x"), "postgres://h/db?****");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
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
