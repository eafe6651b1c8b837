//! Readiness: whether this node should be sent traffic, with the reason when not — what
//! `/readyz` answers (`/healthz` only says the process is alive, so a draining or degraded
//! node is not restarted for it).
//!
//! Not ready while the endpoint drains, while its cluster adapter is disconnected (broadcasts
//! would not reach the other nodes), or while a check the application registered fails —
//! Rumbl registers its store (`SELECT 1`), so a database that is down shows here before users
//! meet it. Checks run on each request, concurrently, each bounded by [`CHECK_TIMEOUT`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A named check: `Ok` when the dependency it looks at is usable.
#[derive(Clone)]
pub struct Check {
    /// Shown in `/readyz`'s body (`store: connection refused`).
    pub name: &'static str,
    run: Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>,
}

impl Check {
    /// A check named `name` that runs `f`.
    pub fn new<F, Fut>(name: &'static str, f: F) -> Check
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Check {
            name,
            run: Arc::new(move || Box::pin(f())),
        }
    }

    /// Runs the check within [`CHECK_TIMEOUT`]; the reason it failed, if it did.
    pub async fn failure(&self) -> Option<String> {
        match tokio::time::timeout(CHECK_TIMEOUT, (self.run)()).await {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(format!("{}: {why}", self.name)),
            Err(_) => Some(format!(
                "{}: no answer within {} s",
                self.name,
                CHECK_TIMEOUT.as_secs()
            )),
        }
    }
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check").field("name", &self.name).finish()
    }
}
