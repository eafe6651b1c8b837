//! `Rumbl.VideoChannel`: the channels chapter's final version.
//!
//! ```elixir
//! def join("videos:" <> video_id, params, socket) do
//!   last_seen_id = params["last_seen_id"] || 0
//!   video_id = String.to_integer(video_id)
//!   video = Repo.get!(Rumbl.Video, video_id)
//!   annotations = Repo.all(
//!     from a in assoc(video, :annotations),
//!     where: a.id > ^last_seen_id, order_by: [asc: a.at, asc: a.id],
//!     limit: 200, preload: [:user])
//!   {:ok, %{annotations: render_many(annotations, AnnotationView, "annotation.json")},
//!    assign(socket, :video_id, video_id)}
//! end
//!
//! def handle_in("new_annotation", params, socket) do
//!   user = Repo.get(Rumbl.User, socket.assigns.user_id)
//!   changeset = user |> build_assoc(:annotations, video_id: socket.assigns.video_id)
//!                    |> Rumbl.Annotation.changeset(params)
//!   case Repo.insert(changeset) do
//!     {:ok, annotation} ->
//!       broadcast! socket, "new_annotation", %{id: annotation.id, user: ..., body: ..., at: ...}
//!       {:reply, :ok, socket}
//!     {:error, changeset} -> {:reply, {:error, %{errors: changeset}}, socket}
//!   end
//! end
//! ```
//!
//! Where the book raises (`String.to_integer`, `Repo.get!`, a database error), this channel
//! answers instead, so a bad topic or a database outage costs the client one error reply and
//! never the channel or the socket:
//!
//! | situation | reply |
//! |---|---|
//! | `videos:abc` (id not an integer) | join error `{"reason":"invalid video"}` |
//! | unknown video (normal mode) | join error `{"reason":"video not found"}` |
//! | `last_seen_id` neither an integer, a string holding one, nor null | join error `{"reason":"invalid last_seen_id"}` |
//! | post from an anonymous socket | error `{"reason":"unauthenticated"}` |
//! | invalid body/at | error `{"errors":{"field":["message"]}}` (see [`super::annotation`]) |
//! | database down, slow (a join: > [`DB_TIMEOUT`]; a post: past its deadline, [`POST_DEADLINE`] from its arrival) or failing | error `{"reason":"database unavailable"}` / `{"reason":"database error"}` |
//!
//! A post is answered under the store's acknowledgement contract (see [`Post`]): `ok` only for
//! a committed row, an error only for a row that is not and never will be committed, and the
//! broadcast is the store's commit hook, so every committed row is broadcast even if this
//! channel stops waiting.
//!
//! Every channel runs in its own task, so a slow query here delays only this channel's
//! messages; other channels (and other sockets) carry on. (A *join* is answered before the
//! socket reads its next frame, as in Phoenix, where join runs in the socket process — hence
//! the [`DB_TIMEOUT`] bound on every store call.)
//!
//! Presence (the book's "Tracking Presence" section): after join the channel tracks the viewer
//! under its user id with `{online_at}` and pushes `presence_state`; `RumblWeb.Presence.fetch/2`
//! adds `user: {username}` to every entry, which the watch page lists.
//!
//! ```elixir
//! def handle_info(:after_join, socket) do
//!   push(socket, "presence_state", RumblWeb.Presence.list(socket))
//!   {:ok, _} = RumblWeb.Presence.track(socket, socket.assigns.user_id, %{online_at: ...})
//!   {:noreply, socket}
//! end
//! ```
//!
//! (Here `track` comes first, so the viewer's own entry is in the state it gets.)
//!
//! Fixture mode (`serve --fixture`, see CONFORMANCE_FIXTURE.md): any integer video id can be
//! joined and any authenticated user can post; the missing video/user rows are created first
//! (`ensure_video` / `ensure_user`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use phx_channels::Config;
use phx_protocol::Payload;
use serde_json::{json, Value};

use super::annotation::{self, changeset, errors_payload};
use super::join_boundary::JoinBoundary;
use super::store::{Annotation, AnnotationStore, OnCommit, Post, StoreError, POST_DEADLINE};
use phx_channels::channel::{
    async_trait, Channel, ChannelError, ChannelSocket, HandleResult, Info, JoinReply, Reply,
    UnmatchedEvent,
};
use phx_channels::presence::{Presence, Presences};

/// The book's `limit: 200` on the annotations sent at join.
pub const JOIN_LIMIT: i64 = 200;

/// Upper bound on one store call. The store's own pool and connect timeouts are shorter; this
/// catches a database that accepts connections but never answers, so the client hears back
/// well within phoenix.js's 10 s push timeout.
pub const DB_TIMEOUT: Duration = Duration::from_secs(5);

/// How long past a post's deadline the channel still waits for the store's answer (the
/// store's own bound is 3 s past it: see `store::postgres`), still inside phoenix.js's 10 s.
const STORE_ANSWER_GRACE: Duration = Duration::from_millis(4500);

/// The `videos:*` channel. One value per join, holding the shared store.
pub struct VideoChannel {
    /// Where annotations live (shared by every channel of every socket).
    store: Arc<dyn AnnotationStore>,
    /// Fixture mode: create missing videos and users instead of refusing them.
    fixture_mode: bool,
    /// `socket.assigns.video_id`, set by a successful join.
    video_id: i64,
    /// `RumblWeb.Presence`: who is watching (shared by every join of this router).
    presence: Presence,
    /// Orders this router's posts and join reads per video (see [`JoinBoundary`]).
    boundary: JoinBoundary,
}

/// `send(self(), :after_join)`.
struct AfterJoin;

impl VideoChannel {
    /// A channel value for one join.
    pub fn new(
        store: Arc<dyn AnnotationStore>,
        fixture_mode: bool,
        presence: Presence,
        boundary: JoinBoundary,
    ) -> Self {
        VideoChannel {
            store,
            fixture_mode,
            video_id: 0,
            presence,
            boundary,
        }
    }

    /// The router factory: `channel "videos:*", VideoChannel` over `store`, with the viewers'
    /// Presence ([`presence`], timed by `config`).
    pub fn factory(
        store: Arc<dyn AnnotationStore>,
        fixture_mode: bool,
        config: &Config,
    ) -> impl Fn() -> VideoChannel + Send + Sync + 'static {
        let presence = presence(store.clone(), config);
        let boundary = JoinBoundary::default();
        move || {
            VideoChannel::new(
                store.clone(),
                fixture_mode,
                presence.clone(),
                boundary.clone(),
            )
        }
    }
}

/// `RumblWeb.Presence`: window and down timeout from `config` (`PRESENCE_BATCH_MS`,
/// `PRESENCE_DOWN_MS`); `fetch/2` adds `user: {username}` to each entry (key = user id),
/// `null` for a user the store cannot find.
pub fn presence(store: Arc<dyn AnnotationStore>, config: &Config) -> Presence {
    Presence::builder()
        .name("RumblWeb.Presence")
        .timing_from(config)
        .fetch(move |topic, entries| fetch_users(store.clone(), topic, entries))
        .build()
}

/// One `users_by_ids` query for the whole batch (a list or a diff), as the book's
/// `Accounts.list_users_with_ids/1`.
async fn fetch_users(
    store: Arc<dyn AnnotationStore>,
    topic: String,
    mut entries: Presences,
) -> Presences {
    let ids: Vec<i64> = entries.keys().filter_map(|k| k.parse().ok()).collect();
    let users = match db(store.users_by_ids(&ids)).await {
        Ok(users) => users,
        Err(e) => {
            tracing::warn!(%topic, "presence fetch: {e}");
            Default::default()
        }
    };
    for (key, entry) in entries.iter_mut() {
        let user = key
            .parse::<i64>()
            .ok()
            .and_then(|id| users.get(&id))
            .map_or(Value::Null, |u| json!({ "username": u.username }));
        if let Some(entry) = entry.as_object_mut() {
            entry.insert("user".into(), user);
        }
    }
    entries
}

/// `inspect(System.system_time(:second))`, as the Phoenix guides' `online_at`.
fn online_at() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string()
}

/// Runs a store call with [`DB_TIMEOUT`].
async fn db<T>(fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    match tokio::time::timeout(DB_TIMEOUT, fut).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {DB_TIMEOUT:?}"
        ))),
    }
}

/// What the client is told about a store error; the details go to the log only.
fn store_error_reason(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable(_) => "database unavailable",
        StoreError::NotFound(what) if what.starts_with("video") => "video not found",
        StoreError::NotFound(what) if what.starts_with("user") => "user not found",
        StoreError::NotFound(_) => "not found",
        StoreError::Invalid(_) | StoreError::Constraint(_) => "invalid annotation",
        StoreError::Schema(_) | StoreError::Other(_) => "database error",
    }
}

fn reason(r: &str) -> Payload {
    Payload::Json(json!({ "reason": r }))
}

/// `params["last_seen_id"] || 0`, accepting what phoenix.js sends (an integer) and what an
/// Ecto query would cast (a string holding an integer). `None` for anything else.
fn last_seen_id(payload: &Payload) -> Option<i64> {
    let Payload::Json(Value::Object(params)) = payload else {
        // `{}` is the usual join payload; a binary or non-object one carries no params.
        return Some(0);
    };
    match params.get("last_seen_id") {
        None | Some(Value::Null) => Some(0),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    }
}

#[async_trait]
impl Channel for VideoChannel {
    fn name() -> &'static str {
        "Rumbl.VideoChannel"
    }

    async fn join(
        &mut self,
        topic: &str,
        payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<JoinReply, ChannelError> {
        let Some(video_id) = topic
            .strip_prefix("videos:")
            .and_then(|id| id.parse::<i64>().ok())
        else {
            return Ok(JoinReply::error_reason("invalid video"));
        };
        let Some(last_seen_id) = last_seen_id(&payload) else {
            return Ok(JoinReply::error_reason("invalid last_seen_id"));
        };
        let found = if self.fixture_mode {
            db(self.store.ensure_video(video_id)).await.map(|()| true)
        } else {
            db(self.store.video(video_id)).await.map(|v| v.is_some())
        };
        match found {
            Ok(true) => {}
            Ok(false) => return Ok(JoinReply::error_reason("video not found")),
            Err(e) => {
                tracing::error!(%topic, "join failed: {e}");
                return Ok(JoinReply::Error(reason(store_error_reason(&e))));
            }
        }
        // No post of this video is between its COMMIT and its broadcast while we read. A post
        // whose COMMIT outcome is being looked up holds its share longer than a query takes,
        // so the wait is bounded like a store call.
        let Ok(read_guard) = tokio::time::timeout(DB_TIMEOUT, self.boundary.read(video_id)).await
        else {
            tracing::error!(%topic, "join failed: posts of this video did not finish within {DB_TIMEOUT:?}");
            return Ok(JoinReply::Error(reason("database unavailable")));
        };
        let annotations = match db(self.store.annotations(video_id, last_seen_id, JOIN_LIMIT)).await
        {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(%topic, "join failed: {e}");
                return Ok(JoinReply::Error(reason(store_error_reason(&e))));
            }
        };
        drop(read_guard);
        // The channel was subscribed before this join started reading, so an annotation
        // broadcast before the read is both in `annotations` and in a held broadcast: once.
        let covered: std::collections::HashSet<i64> = annotations.iter().map(|a| a.id).collect();
        socket.skip_held_broadcasts(move |event, payload| {
            event == "new_annotation"
                && matches!(payload, Payload::Json(v)
                    if v["id"].as_i64().is_some_and(|id| covered.contains(&id)))
        });
        self.video_id = video_id;
        socket.assign("video_id", video_id);
        socket.send_self(AfterJoin);
        let rendered: Vec<Value> = annotations.iter().map(annotation::render).collect();
        Ok(JoinReply::Ok(Payload::Json(
            json!({ "annotations": rendered }),
        )))
    }

    async fn handle_info(
        &mut self,
        msg: Info,
        socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        if msg.is::<AfterJoin>() {
            // An anonymous socket (fixture mode only) watches without being listed.
            if let Some(user_id) = socket.get_assign("user_id").and_then(Value::as_i64) {
                self.presence.track(
                    socket,
                    user_id.to_string(),
                    json!({ "online_at": online_at() }),
                )?;
            }
            // One encode per read of the topic, shared by every joiner it serves.
            let state = self.presence.list_shared(socket.topic()).await;
            socket.push_encoded("presence_state", state.encoded());
        }
        Ok(HandleResult::NoReply)
    }

    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut ChannelSocket,
    ) -> Result<HandleResult, ChannelError> {
        if event != "new_annotation" {
            // The book has no other clause: an unknown event crashes the channel, as a
            // FunctionClauseError does in Elixir (the client gets phx_error and rejoins).
            return Err(Box::new(UnmatchedEvent(event.to_string())));
        }
        let Some(user_id) = socket.get_assign("user_id").and_then(Value::as_i64) else {
            return Ok(HandleResult::Reply(Reply::Error(reason("unauthenticated"))));
        };
        let new = match changeset(&payload) {
            Ok(new) => new,
            Err(errors) => {
                return Ok(HandleResult::Reply(Reply::Error(Payload::Json(
                    errors_payload(&errors),
                ))))
            }
        };
        // The post's deadline runs from its arrival, not from now: posts queued behind a
        // slow one have waited already, and the client times out 10 s after sending.
        let deadline = socket.received_at() + POST_DEADLINE;
        if self.fixture_mode {
            let ensured =
                match tokio::time::timeout_at(deadline, self.store.ensure_user(user_id)).await {
                    Ok(r) => r,
                    Err(_) => Err(StoreError::Unavailable(
                        "no answer within the post deadline".into(),
                    )),
                };
            if let Err(e) = ensured {
                tracing::error!(topic = %socket.topic(), "new_annotation failed: {e}");
                return Ok(HandleResult::Reply(Reply::Error(reason(
                    store_error_reason(&e),
                ))));
            }
        }
        // Held until the broadcast is out (see [`JoinBoundary`]): it moves into the commit
        // hook, which the store runs in the code path that learns of the commit — so every
        // committed row is broadcast, even if this call is cancelled (a drain) meanwhile.
        let post_guard = self.boundary.post(self.video_id).await;
        let context = socket.context().clone();
        let topic = socket.topic().to_string();
        let on_commit: OnCommit = Box::new(move |ann: &Annotation| {
            // Only the rendered fields: never the client's payload, which may carry anything
            // (the book's security note).
            context.broadcast(&topic, "new_annotation", annotation::render(ann));
            drop(post_guard);
        });
        let post = Post {
            video_id: self.video_id,
            user_id,
            body: new.body,
            at: new.at,
            deadline,
            on_commit: Some(on_commit),
        };
        // The store answers by the deadline (a COMMIT whose answer was lost is looked up a
        // little longer); the bound here only guards against a store that never answers.
        let inserted = match tokio::time::timeout_at(
            deadline + STORE_ANSWER_GRACE,
            self.store.post_annotation(post),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable("the store did not answer".into())),
        };
        match inserted {
            Ok(_) => Ok(HandleResult::Reply(Reply::ok())),
            Err(e) => {
                tracing::error!(topic = %socket.topic(), "new_annotation failed: {e}");
                Ok(HandleResult::Reply(Reply::Error(reason(
                    store_error_reason(&e),
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_seen_id_params() {
        let p = |v: Value| last_seen_id(&Payload::Json(v));
        assert_eq!(p(json!({})), Some(0));
        assert_eq!(p(json!({"last_seen_id": null})), Some(0));
        assert_eq!(p(json!({"last_seen_id": 7})), Some(7));
        assert_eq!(p(json!({"last_seen_id": "7"})), Some(7));
        assert_eq!(p(json!({"last_seen_id": "x"})), None);
        assert_eq!(p(json!({"last_seen_id": 1.5})), None);
        assert_eq!(p(json!({"last_seen_id": [1]})), None);
        assert_eq!(p(json!({"last_seen_id": u64::MAX})), None);
    }
}
