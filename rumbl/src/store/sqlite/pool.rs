//! The SQLite connection pools and how a call reaches a connection.
//!
//! SQLite calls block, so they must never run on Tokio worker threads (a slow fsync would
//! stall every channel on that worker): every call runs in deadpool-sqlite's `interact`, on
//! the blocking pool. There are two pools, one per [`Lane`]:
//!
//! * a **writer** pool of exactly one connection: all inserts, fixtures, migrations and
//!   seeding go through it, so writers never fight over the SQLite write lock inside this
//!   process (no `SQLITE_BUSY` between our own connections) and run one after another in the
//!   order they asked;
//! * a **reader** pool of up to [`MAX_READERS`] `query_only` connections. WAL mode lets them
//!   read while the writer commits.
//!
//! Each connection gets its settings once, when the pool creates it (a post-create hook),
//! rather than per call. A panic inside a call poisons only that connection: deadpool
//! discards it and opens a fresh one (see [`FastRecycle`]: that is the only check made when
//! a connection is handed out again). Neither pool has a wait timeout: a call waits its
//! turn, and the deadline checks inside the calls decide what is too late.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_sqlite::Runtime;
use rusqlite::Connection;

use crate::store::StoreError;

/// deadpool-sqlite's manager with a cheaper recycle check.
///
/// deadpool-sqlite 0.14 has no `RecyclingMethod` (unlike deadpool-postgres, where the store
/// uses `Fast`): its recycle runs `SELECT $1` through `interact` on every checkout, so every
/// store call made two hops through the blocking pool, one of them only to ask a local file
/// whether it still answers. It always does: a SQLite connection does not go stale the way a
/// socket does, and a real I/O error shows up in the call itself (mapped to
/// [`StoreError::Unavailable`]). What the check did catch is a connection whose mutex a
/// panicking call poisoned; that is tested here without a query, so such a connection is
/// still discarded and replaced. (The one difference: a panic in a call whose caller was
/// cancelled, and which is still running at the next checkout, now fails that next call once
/// instead of being caught by the recycle query; a panic in a call is a bug either way.)
/// Connections are still created by deadpool-sqlite's own manager.
#[derive(Debug)]
struct FastRecycle(deadpool_sqlite::Manager);

impl managed::Manager for FastRecycle {
    type Type = <deadpool_sqlite::Manager as managed::Manager>::Type;
    type Error = rusqlite::Error;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        self.0.create().await
    }

    async fn recycle(&self, conn: &mut Self::Type, _: &Metrics) -> RecycleResult<Self::Error> {
        if conn.is_mutex_poisoned() {
            return Err(RecycleError::message(
                "a call panicked on this connection; it is discarded",
            ));
        }
        Ok(())
    }
}

type Pool = managed::Pool<FastRecycle>;
type Hook = managed::Hook<FastRecycle>;
type HookError = managed::HookError<rusqlite::Error>;
type PoolError = managed::PoolError<rusqlite::Error>;

/// Most reader connections, whatever the configured pool size: SQLite reads are fast and the
/// blocking pool is shared with everything else.
pub(super) const MAX_READERS: usize = 4;

/// Which pool a call goes to.
#[derive(Clone, Copy)]
pub(super) enum Lane {
    /// The one writer connection.
    Writer,
    /// A `query_only` reader connection.
    Reader,
}

/// The writer and reader pools of one database file.
pub(super) struct Pools {
    /// One connection: every write, in order.
    writer: Pool,
    /// `query_only` connections for reads.
    readers: Pool,
}

impl Pools {
    /// The pools for `path`, with `readers` reader connections. Connections are opened on
    /// first use.
    pub(super) fn new(
        path: &Path,
        readers: usize,
        busy_timeout: Duration,
    ) -> Result<Self, StoreError> {
        Ok(Pools {
            writer: pool(path, 1, busy_timeout, false)?,
            readers: pool(path, readers, busy_timeout, true)?,
        })
    }

    fn lane(&self, lane: Lane) -> &Pool {
        match lane {
            Lane::Writer => &self.writer,
            Lane::Reader => &self.readers,
        }
    }

    /// Runs `f` on a connection of `lane` and awaits its result.
    pub(super) async fn run<T, F>(&self, lane: Lane, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        interact(self.lane(lane).clone(), f).await
    }

    /// Starts `f` on a connection of `lane` now, in a task of its own, so it runs to the end
    /// even if the returned future (which borrows nothing) is dropped.
    pub(super) fn run_detached<T, F>(
        &self,
        lane: Lane,
        f: F,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let task = tokio::spawn(interact(self.lane(lane).clone(), f));
        async move {
            task.await
                .map_err(|_| StoreError::Unavailable("sqlite call stopped".into()))?
        }
    }

    /// Refuses new calls and drops idle connections; a call in flight keeps its connection
    /// until it returns. Waiting matters: when this returns the file handles are released
    /// (bounded, so a hung call cannot hold shutdown forever).
    pub(super) async fn close(&self) {
        self.writer.close();
        self.readers.close();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.writer.status().size + self.readers.status().size > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::error!("sqlite connections still in use 10 s after close");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The settings every connection needs, applied once when the pool opens it.
fn configure(conn: &Connection, busy_timeout: Duration, read_only: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    // Off by default in SQLite; the schema declares its foreign keys and we
    // want the same integrity as on Postgres.
    conn.pragma_update(None, "foreign_keys", true)?;
    if read_only {
        conn.pragma_update(None, "query_only", true)?;
    } else {
        // WAL: readers do not block the writer and vice versa. Persistent in
        // the file, so setting it once on the writer is enough.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "sqlite did not switch to WAL");
        }
        // Safe with WAL (a power loss may drop the last commits, never
        // corrupts) and avoids an fsync per annotation.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(())
}

/// A pool of `size` connections to `path`, each [`configure`]d as it is created. No wait
/// timeout: a call waits its turn, as the deadline checks inside the calls decide.
fn pool(
    path: &Path,
    size: usize,
    busy_timeout: Duration,
    read_only: bool,
) -> Result<Pool, StoreError> {
    let manager = FastRecycle(deadpool_sqlite::Manager::from_config(
        &deadpool_sqlite::Config::new(path),
        Runtime::Tokio1,
    ));
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .post_create(Hook::async_fn(move |conn, _| {
            Box::pin(async move {
                conn.interact(move |c| configure(c, busy_timeout, read_only))
                    .await
                    .map_err(|e| HookError::message(e.to_string()))?
                    .map_err(HookError::Backend)
            })
        }))
        .build()
        .map_err(|e| StoreError::Other(format!("sqlite pool: {e}")))
}

/// A pool's error as the store reports it.
fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(inner) => inner.into(),
        PoolError::Closed => StoreError::Unavailable("sqlite store is closed".into()),
        PoolError::Timeout(kind) => {
            StoreError::Unavailable(format!("sqlite pool timeout ({kind:?})"))
        }
        PoolError::PostCreateHook(HookError::Backend(inner)) => inner.into(),
        other => StoreError::Unavailable(format!("sqlite: {other}")),
    }
}

/// One call: a connection from `pool`, `f` on the blocking pool.
async fn interact<T, F>(pool: Pool, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
{
    let conn = pool.get().await.map_err(pool_error)?;
    match conn.interact(f).await {
        Ok(result) => result,
        Err(e) => {
            // A panic poisons the connection; deadpool discards it on return.
            tracing::error!("sqlite call failed: {e}");
            Err(StoreError::Unavailable(format!("sqlite call failed: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the recycle check is for: a call that panics poisons its connection, and the
    /// next call on that lane gets a fresh one instead of the poisoned mutex.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_panicked_connection_is_replaced() {
        let dir = std::env::temp_dir().join(format!(
            "phx_sqlite_pool_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pools = Pools::new(&dir.join("db.sqlite3"), 1, Duration::from_secs(1)).expect("pools");
        let one = |c: &mut Connection| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?);

        assert_eq!(pools.run(Lane::Writer, one).await.ok(), Some(1));
        let panicked = pools
            .run(Lane::Writer, |_| -> Result<(), StoreError> {
                panic!("a bug inside a call")
            })
            .await;
        assert!(
            matches!(panicked, Err(StoreError::Unavailable(_))),
            "{panicked:?}"
        );
        assert_eq!(pools.run(Lane::Writer, one).await.ok(), Some(1));

        pools.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
