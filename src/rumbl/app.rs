//! Wiring for `phx-server serve`: which store, which socket, which routes. Kept out of
//! `main.rs` so the integration tests build exactly the server the binary runs.
//!
//! ```elixir
//! # endpoint.ex                         # user_socket.ex
//! socket "/socket", Rumbl.UserSocket    channel "videos:*", Rumbl.VideoChannel
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use super::pages::{self, LoginMode};
use super::store::{self, AnnotationStore, AutoMigrate, StoreError, StoreOptions};
use super::{UserSocket, VideoChannel};
use crate::config::{CheckOrigin, Config};
use crate::endpoint::Endpoint;
use crate::router::Router;
use crate::{fixture, http};

/// The database URL to use: `DATABASE_URL` when set; otherwise, in fixture mode, a file of its
/// own under the system temp dir (keyed by port, so it survives a restart on the same port and
/// never touches the demo database), and in normal mode the store's default
/// (`./data/rumbl.sqlite3`).
pub fn database_url(config: &Config, fixture_mode: bool) -> Option<String> {
    if let Some(url) = &config.database_url {
        return Some(url.clone());
    }
    fixture_mode.then(|| {
        let file = std::env::temp_dir().join(format!("phx-server-fixture-{}.sqlite3", config.port));
        format!("sqlite://{}", file.display())
    })
}

/// Opens the store: SQLite migrates itself; Postgres only with `migrate` (`serve --migrate`)
/// — or in fixture mode, which is a test harness that must work on whatever database it is
/// pointed at (the migrations only create what is missing). In normal mode an empty database
/// gets the demo users, videos and annotations.
pub async fn open_store(
    config: &Config,
    fixture_mode: bool,
    migrate: bool,
) -> Result<Arc<dyn AnnotationStore>, StoreError> {
    let url = database_url(config, fixture_mode);
    let mut opts = StoreOptions::new(config.pool_size);
    if migrate || fixture_mode {
        opts.auto_migrate = AutoMigrate::Always;
    }
    let store = store::open_with(url.as_deref(), opts).await?;
    tracing::info!(
        backend = ?store.backend(),
        url = %url.as_deref().map(store::redact).unwrap_or_else(|| store::DEFAULT_SQLITE_PATH.into()),
        "store opened"
    );
    if !fixture_mode {
        let report = store.seed_demo_if_empty().await?;
        if report.seeded {
            tracing::info!(
                "demo data inserted: log in at /login as jose, chris or bruce{}",
                if config.database_url.is_some() {
                    " (password: see the README)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(store)
}

/// `socket "/socket", Rumbl.UserSocket` with `channel "videos:*", Rumbl.VideoChannel`, serving
/// the transports of `SOCKET_TRANSPORTS` (`config.socket_transports`; default both).
///
/// The embedded demo (no `DATABASE_URL`) with neither `CHECK_ORIGIN` nor `PHX_HOST` set
/// accepts sockets from loopback pages ([`CheckOrigin::loopback`]), as `config/dev.exs` of a
/// Phoenix app relaxes `check_origin`; anything configured keeps the strict check.
pub fn endpoint(mut config: Config, store: Arc<dyn AnnotationStore>) -> Endpoint {
    if config.database_url.is_none() && !config.origin_from_env {
        tracing::info!(
            "embedded demo: sockets are accepted from pages on localhost, 127.0.0.1 and [::1] \
             (set PHX_HOST or CHECK_ORIGIN to serve any other host)"
        );
        config.check_origin = CheckOrigin::loopback();
    }
    let transports = config.socket_transports;
    Endpoint::builder(config)
        .socket_with(
            "/socket",
            UserSocket,
            Router::new().channel("videos:*", VideoChannel::factory(store, false)),
            transports,
        )
        .build()
}

/// The conformance fixture's endpoint (its secret and check_origin host), whose socket also
/// routes `videos:*` to the VideoChannel in fixture mode.
pub fn fixture_endpoint(config: Config, store: Arc<dyn AnnotationStore>) -> Endpoint {
    Endpoint::builder(fixture::configure(config))
        .socket(
            "/socket",
            fixture::FixtureSocket,
            fixture::router_with_videos(store),
        )
        .build()
}

/// Every HTTP route of the normal server: the socket transports, `/healthz`, `/metrics`, and
/// the pages. With a configured `DATABASE_URL` the login checks passwords; without one (the
/// embedded demo database) it is the demo's pick-a-user login.
pub fn router(
    endpoint: &Endpoint,
    store: Arc<dyn AnnotationStore>,
    assets_dir: PathBuf,
) -> axum::Router {
    let login = if endpoint.config().database_url.is_some() {
        LoginMode::Password
    } else {
        LoginMode::Demo
    };
    router_with_login(endpoint, store, assets_dir, login)
}

/// [`router`] with the login mode chosen by the caller (tests of the demo login).
pub fn router_with_login(
    endpoint: &Endpoint,
    store: Arc<dyn AnnotationStore>,
    assets_dir: PathBuf,
    login: LoginMode,
) -> axum::Router {
    if !assets_dir.join("app.js").is_file() {
        tracing::warn!(
            "no app.js in {}: the watch page will have no JavaScript until vendor-js/build.sh \
             is run (or ASSETS_DIR points at a built bundle)",
            assets_dir.display()
        );
    }
    http::router(endpoint).merge(pages::routes(endpoint.clone(), store, assets_dir, login))
}

/// The fixture server's routes: transports, `/healthz`, `/metrics`, `/fixture/*`.
pub fn fixture_router(endpoint: &Endpoint) -> axum::Router {
    http::router(endpoint).merge(fixture::routes(endpoint))
}
