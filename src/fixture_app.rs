//! `phx-server serve --fixture`: the conformance fixture's endpoint and routes, with Rumbl's
//! `videos:*` channel on its socket over a store of its own.

use std::sync::Arc;

use phx_channels::{http, Config, Endpoint};
use rumbl::store::{AnnotationStore, AutoMigrate, StoreError, StoreOptions};
use rumbl::RumblConfig;

/// The fixture's database: `DATABASE_URL` when set, otherwise a file of its own under the
/// system temp dir (keyed by port, so it survives a restart on the same port and never
/// touches the demo database).
pub fn database_url(config: &Config, rumbl: &RumblConfig) -> String {
    rumbl.database_url.clone().unwrap_or_else(|| {
        let file = std::env::temp_dir().join(format!("phx-server-fixture-{}.sqlite3", config.port));
        format!("sqlite://{}", file.display())
    })
}

/// Opens the fixture's store, migrating whatever database it is pointed at (a test harness
/// must work there; the migrations only create what is missing), without demo data.
pub async fn open_store(
    config: &Config,
    rumbl: &RumblConfig,
) -> Result<Arc<dyn AnnotationStore>, StoreError> {
    let at = RumblConfig {
        database_url: Some(database_url(config, rumbl)),
        ..rumbl.clone()
    };
    let mut opts = StoreOptions::new(rumbl.pool_size);
    opts.auto_migrate = AutoMigrate::Always;
    rumbl::app::open_store(&at, opts, false).await
}

/// The fixture's endpoint (its secret and check_origin host): `/socket` is the fixture's
/// socket, routing its own channels and Rumbl's `videos:*` in fixture mode.
///
/// Rumbl's store calls are timed into the endpoint's `phx_store_duration_seconds`.
pub fn endpoint(config: Config, store: Arc<dyn AnnotationStore>) -> Endpoint {
    let config = phx_fixture::configure(config);
    let builder = Endpoint::builder(config.clone());
    let timed = rumbl::app::timed(store, builder.metrics());
    builder
        .socket(
            "/socket",
            phx_fixture::FixtureSocket,
            rumbl::app::fixture_routes(phx_fixture::router_for(&config), timed.clone(), &config),
        )
        .readiness_check(rumbl::app::store_check(timed))
        .build()
}

/// The fixture server's routes: transports, `/healthz`, `/readyz`, `/fixture/*`.
pub fn router(endpoint: &Endpoint) -> axum::Router {
    http::router(endpoint).merge(phx_fixture::routes(endpoint))
}
