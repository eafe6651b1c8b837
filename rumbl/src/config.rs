//! The application's own settings (`DATABASE_URL`, `POOL_SIZE`, `ASSETS_DIR`): they live here,
//! beside the store and pages that use them, not in the framework's [`Config`].
//!
//! [`Config`]: phx_channels::Config

use std::path::PathBuf;

use phx_channels::config::{env_parse, ConfigError};

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
    /// Reads the environment on top of the defaults.
    pub fn from_env() -> Result<RumblConfig, ConfigError> {
        let d = RumblConfig::default();
        Ok(RumblConfig {
            database_url: std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()),
            pool_size: env_parse("POOL_SIZE", d.pool_size)?,
            assets_dir: d.assets_dir,
        })
    }

    /// Whether this is the embedded demo database (no `DATABASE_URL`): the pick-a-user login
    /// and, unless an origin is configured, sockets from loopback pages.
    pub fn is_embedded_demo(&self) -> bool {
        self.database_url.is_none()
    }
}
