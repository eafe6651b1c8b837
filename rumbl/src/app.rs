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
use super::store::{self, AnnotationStore, AutoMigrate, StoreError, StoreOptions, TimedStore};
use super::{UserSocket, VideoChannel};
use phx_channels::config::{CheckOrigin, Config};
use phx_channels::endpoint::Endpoint;
use phx_channels::http;
use phx_channels::metrics::Metrics;
use phx_channels::readiness::Check;
use phx_channels::router::Router;

use crate::config::RumblConfig;

/// Opens the store at `rumbl.database_url`: SQLite migrates itself; Postgres only with
/// `opts.auto_migrate` (`serve --migrate`). With `seed_demo`, an empty database gets the demo
/// users, videos and annotations.
pub async fn open_store(
    rumbl: &RumblConfig,
    opts: StoreOptions,
    seed_demo: bool,
) -> Result<Arc<dyn AnnotationStore>, StoreError> {
    let url = rumbl.database_url.as_deref();
    let store = store::open_with(url, opts).await?;
    tracing::info!(
        backend = ?store.backend(),
        url = %url.map(store::redact).unwrap_or_else(|| store::DEFAULT_SQLITE_PATH.into()),
        "store opened"
    );
    if seed_demo {
        let report = store.seed_demo_if_empty().await?;
        if report.seeded {
            tracing::info!(
                "demo data inserted: log in at /login as jose, chris or bruce{}",
                if rumbl.is_embedded_demo() {
                    ""
                } else {
                    " (password: see the README)"
                }
            );
        }
    }
    Ok(store)
}

/// [`open_store`] as `phx-server serve` opens it: `POOL_SIZE` connections, migrations applied
/// when `migrate` (always for SQLite), demo data seeded into an empty database.
pub async fn open_demo_store(
    rumbl: &RumblConfig,
    migrate: bool,
) -> Result<Arc<dyn AnnotationStore>, StoreError> {
    let mut opts = StoreOptions::new(rumbl.pool_size);
    if migrate {
        opts.auto_migrate = AutoMigrate::Always;
    }
    open_store(rumbl, opts, true).await
}

/// `socket "/socket", Rumbl.UserSocket` with `channel "videos:*", Rumbl.VideoChannel`, serving
/// the transports of `SOCKET_TRANSPORTS` (`config.socket_transports`; default both).
///
/// The embedded demo (no `DATABASE_URL`) with neither `CHECK_ORIGIN` nor `PHX_HOST` set
/// accepts sockets from loopback pages ([`CheckOrigin::loopback`]), as `config/dev.exs` of a
/// Phoenix app relaxes `check_origin`; anything configured keeps the strict check.
pub fn endpoint(
    mut config: Config,
    rumbl: &RumblConfig,
    store: Arc<dyn AnnotationStore>,
) -> Endpoint {
    if rumbl.is_embedded_demo() && !config.origin_from_env {
        tracing::info!(
            "embedded demo: sockets are accepted from pages on localhost, 127.0.0.1 and [::1] \
             (set PHX_HOST or CHECK_ORIGIN to serve any other host)"
        );
        config.check_origin = CheckOrigin::loopback();
    }
    let transports = config.socket_transports;
    let builder = Endpoint::builder(config.clone());
    let store = timed(store, builder.metrics());
    builder
        .socket_with(
            "/socket",
            UserSocket,
            routes(Router::new(), store, &config),
            transports,
        )
        .build()
}

/// `store` with every call timed into `metrics`' `phx_store_duration_seconds{operation}`
/// ([`TimedStore`]): what the endpoint's channels and pages use.
pub fn timed(store: Arc<dyn AnnotationStore>, metrics: &Metrics) -> Arc<dyn AnnotationStore> {
    TimedStore::wrap(store, &metrics.store_duration)
}

/// `/readyz`'s check of the store: a database that does not answer makes the node not ready
/// (posts would fail), with the store's error as the reason.
pub fn store_check(store: Arc<dyn AnnotationStore>) -> Check {
    Check::new("store", move || {
        let store = store.clone();
        async move { store.ping().await.map_err(|e| e.to_string()) }
    })
}

/// Rumbl's channel routes added to `router`: `channel "videos:*", Rumbl.VideoChannel`. The
/// conformance fixture's socket gets them this way too (with `fixture_mode` videos, see
/// [`VideoChannel::factory`]).
pub fn routes(router: Router, store: Arc<dyn AnnotationStore>, config: &Config) -> Router {
    router.channel("videos:*", VideoChannel::factory(store, false, config))
}

/// [`routes`] for the conformance fixture: missing videos and users are created on first use.
pub fn fixture_routes(router: Router, store: Arc<dyn AnnotationStore>, config: &Config) -> Router {
    router.channel("videos:*", VideoChannel::factory(store, true, config))
}

/// Every HTTP route of the normal server: the socket transports, `/healthz`, `/readyz`, and
/// the pages. With a configured `DATABASE_URL` the login checks passwords; without one (the
/// embedded demo database) it is the demo's pick-a-user login.
pub fn router(
    endpoint: &Endpoint,
    rumbl: &RumblConfig,
    store: Arc<dyn AnnotationStore>,
) -> axum::Router {
    let login = if rumbl.is_embedded_demo() {
        LoginMode::Demo
    } else {
        LoginMode::Password
    };
    router_with_login(endpoint, store, rumbl.assets_dir.clone(), login)
}
/// [`router`] with the login mode chosen by the caller (tests of the demo login). The pages'
/// store calls are timed like the channel's ([`timed`]).
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
    let store = timed(store, endpoint.metrics());
    http::router(endpoint).merge(pages::routes(endpoint.clone(), store, assets_dir, login))
}
