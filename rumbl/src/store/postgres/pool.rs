//! The Postgres connection pool: how it is built from a URL and [`StoreOptions`], how a
//! connection is checked out, and what a failed checkout tells the caller.
//!
//! A down database must not hang a channel, so everything here is bounded: the pool waits
//! [`StoreOptions::wait_timeout`] for a free connection, and new connections (and the
//! recycling check) get [`StoreOptions::connect_timeout`]. A checkout that fails for any of
//! those reasons maps to [`StoreError::Unavailable`] here, next to the pool whose states
//! (closed, timed out) it describes; the errors of the driver itself are classified in
//! `store/error.rs`.

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::store::{redact, StoreError, StoreOptions};

/// Builds the pool for `url` without connecting (connections are made on first use), so
/// this only fails on a malformed URL.
///
/// TLS is not configured (`NoTls`); point the server at a local or private-network
/// database, or a TLS-terminating proxy.
pub(super) fn build(url: &str, opts: &StoreOptions) -> Result<Pool, StoreError> {
    let mut cfg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Invalid(format!("invalid postgres URL {}: {e}", redact(url))))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(opts.connect_timeout);
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("phx-server");
    }
    let mgr = Manager::from_config(
        cfg,
        NoTls,
        ManagerConfig {
            // Fast: only checks `is_closed()`; a connection the server
            // dropped is discarded, without an extra query per checkout.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(opts.pool_size.max(1))
        .wait_timeout(Some(opts.wait_timeout))
        .create_timeout(Some(opts.connect_timeout))
        .recycle_timeout(Some(opts.connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Other(format!("building connection pool: {e}")))
}

/// A connection from `pool`, or the reason there is none (see the module docs).
pub(super) async fn client(pool: &Pool) -> Result<Object, StoreError> {
    Ok(pool.get().await?)
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match e {
            PoolError::Backend(inner) => inner.into(),
            PoolError::Timeout(kind) => {
                StoreError::Unavailable(format!("connection pool timeout ({kind:?})"))
            }
            PoolError::Closed => StoreError::Unavailable("connection pool closed".into()),
            PoolError::PostCreateHook(h) => StoreError::Unavailable(h.to_string()),
            PoolError::NoRuntimeSpecified => StoreError::Other("pool has no runtime".into()),
        }
    }
}
