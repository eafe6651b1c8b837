//! The application's own settings (`DATABASE_URL`, `POOL_SIZE`, `ASSETS_DIR`), declared once
//! beside the store and pages that use them, in the framework's way
//! ([`phx_channels::settings`]): the `phx-server` command flattens [`RumblSettings`] beside
//! the framework's [`Settings`](phx_channels::settings::Settings), so they are read from the
//! same places, listed by `phx-server config` and documented in the same table.

use std::path::PathBuf;

use phx_channels::settings::at_least;

/// Rumbl's settings as `clap` arguments (flag, variable, TOML key, default).
#[derive(Debug, Clone, clap::Args)]
pub struct RumblSettings {
    /// `postgres://user:password@host/db` (also `postgresql://`, and `ecto://` as a Phoenix
    /// release's runtime.exs writes it) or `sqlite://path`; a password in it is masked in
    /// output. Unset: the embedded SQLite demo database `./data/rumbl.sqlite3`, created,
    /// migrated and seeded on first start.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_parser = database_url,
        help_heading = "Application (Rumbl)"
    )]
    pub database_url: Option<String>,
    /// Postgres connection pool size (≥ 1).
    #[arg(long, env = "POOL_SIZE", default_value_t = 10, value_parser = at_least(1usize), help_heading = "Application (Rumbl)")]
    pub pool_size: usize,
    /// Where `/assets/*` (the esbuild bundle of `vendor-js/`) is served from. Unset:
    /// `./vendor-js/dist`, else the one beside the source tree.
    #[arg(long, env = "ASSETS_DIR", help_heading = "Application (Rumbl)")]
    pub assets_dir: Option<PathBuf>,
}

/// A `DATABASE_URL` the store can open (checked at start, so `phx-server config` catches it).
fn database_url(s: &str) -> Result<String, String> {
    crate::store::DatabaseUrl::parse(Some(s))
        .map(|_| s.to_string())
        .map_err(|_| "must be a postgres://, postgresql://, ecto:// or sqlite://path URL".into())
}

/// Where Rumbl keeps its data and finds its assets.
#[derive(Debug, Clone)]
pub struct RumblConfig {
    /// `DATABASE_URL` (unset → embedded SQLite at [`crate::store::DEFAULT_SQLITE_PATH`]).
    pub database_url: Option<String>,
    /// `POOL_SIZE` for Postgres (default 10).
    pub pool_size: usize,
    /// `ASSETS_DIR`: the built JS/CSS bundle served at `/assets` (see
    /// [`crate::assets::default_assets_dir`]).
    pub assets_dir: PathBuf,
}

impl Default for RumblConfig {
    fn default() -> Self {
        RumblConfig {
            database_url: None,
            pool_size: 10,
            assets_dir: crate::assets::default_assets_dir(),
        }
    }
}

impl RumblConfig {
    /// What `settings` describe.
    pub fn from_settings(settings: &RumblSettings) -> RumblConfig {
        RumblConfig {
            database_url: settings.database_url.clone().filter(|s| !s.is_empty()),
            pool_size: settings.pool_size,
            assets_dir: settings
                .assets_dir
                .clone()
                .unwrap_or_else(crate::assets::default_assets_dir),
        }
    }

    /// Whether this is the embedded demo database (no `DATABASE_URL`): the pick-a-user login
    /// and, unless an origin is configured, sockets from loopback pages.
    pub fn is_embedded_demo(&self) -> bool {
        self.database_url.is_none()
    }
}
