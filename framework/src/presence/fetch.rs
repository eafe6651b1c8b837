//! The `fetch/2` hook: decorates presence entries before they go to clients.
//!
//! Phoenix calls `fetch(topic, presences)` on every list and on the joins and leaves of every
//! diff, with a map of key → `%{metas: [...]}`, and sends what it returns — typically the same
//! map with one more field per entry, loaded for all keys in one query. Here it is called once
//! per batch with every key of it: once per list read (shared by the lists of a join wave) and
//! once per diff (joins and leaves together; what it adds beside `metas` goes on both sides):
//!
//! ```elixir
//! def fetch(_topic, presences) do
//!   users = presences |> Map.keys() |> Accounts.list_users_with_ids() |> Map.new(&{to_string(&1.id), &1})
//!   for {key, %{metas: metas}} <- presences, into: %{} do
//!     {key, %{metas: metas, user: %{username: users[key].username}}}
//!   end
//! end
//! ```

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

/// key → `{"metas": [...], ...}`, as `list` returns and diffs carry.
pub type Presences = Map<String, Value>;

type FetchFn = dyn Fn(String, Presences) -> BoxFuture<'static, Presences> + Send + Sync;

/// A `fetch` callback: `async fn(topic, presences) -> presences`.
#[derive(Clone)]
pub struct Fetch(Arc<FetchFn>);

impl Fetch {
    /// Wraps `f`. It is called with the topic and the entries; it should keep `"metas"` as it
    /// is (the client matches metas by `phx_ref`) and may add fields next to it.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(String, Presences) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Presences> + Send + 'static,
    {
        Fetch(Arc::new(move |topic, entries| Box::pin(f(topic, entries))))
    }

    /// Runs the callback.
    pub async fn call(&self, topic: &str, entries: Presences) -> Presences {
        (self.0)(topic.to_string(), entries).await
    }
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fetch(..)")
    }
}
