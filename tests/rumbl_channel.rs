//! The Rumbl VideoChannel end to end: an in-process server on 127.0.0.1:0 (UserSocket +
//! `videos:*`, exactly as `phx-server serve` wires it) and a raw WebSocket client speaking
//! the V2 JSON protocol, over a temporary SQLite file and over a throwaway Postgres database.
//!
//! Postgres tests create their own database through `DATABASE_URL` (the admin URL, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drop it afterwards. If Postgres is
//! unreachable they FAIL: a skipped database test must never count as a pass.

mod common_pg;
use common_pg::{admin_url, url_for};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use phx_channels::{Config, Endpoint, Router};
use phx_protocol::etf::Term;
use rumbl::store::{self, postgres::PostgresStore, AnnotationStore, AutoMigrate, StoreOptions};
use rumbl::{app, RumblConfig, UserSocket, VideoChannel};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Store = Arc<dyn AnnotationStore>;

// ------------------------------------------------------------------------------------------
// server

/// A running server. `/socket` is the app's UserSocket; `/anon` mounts the same `videos:*`
/// route behind the fixture's socket, which lets anonymous clients in (to test the channel's
/// own "unauthenticated" check).
struct Server {
    addr: SocketAddr,
    endpoint: Endpoint,
    store: Store,
    _stop: oneshot::Sender<()>,
}

async fn start(store: Store, fixture_mode: bool) -> Server {
    let config = Config {
        port: 0,
        ..Config::default()
    };
    let endpoint = if fixture_mode {
        phx_server::fixture_app::endpoint(config, store.clone())
    } else {
        Endpoint::builder(config.clone())
            .socket(
                "/socket",
                UserSocket,
                Router::new().channel(
                    "videos:*",
                    VideoChannel::factory(store.clone(), false, &config),
                ),
            )
            .socket(
                "/anon",
                phx_fixture::FixtureSocket,
                Router::new().channel(
                    "videos:*",
                    VideoChannel::factory(store.clone(), false, &config),
                ),
            )
            .build()
    };
    let rumbl = RumblConfig {
        assets_dir: PathBuf::from("vendor-js/dist"),
        ..RumblConfig::default()
    };
    let router = app::router(&endpoint, &rumbl, store.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(phx_channels::http::serve(
        endpoint.clone(),
        listener,
        router,
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        endpoint,
        store,
        _stop: tx,
    }
}

impl Server {
    fn token(&self, user_id: i64) -> String {
        self.endpoint
            .sign_token(rumbl::user_socket::USER_SALT, &Term::Int(user_id))
    }

    async fn client(&self, user_id: i64) -> Client {
        let token = self.token(user_id);
        Client::connect(self.addr, "/socket", &format!("token={token}"))
            .await
            .expect("UserSocket accepts a valid token")
    }

    /// A video and two users (`user1`, `user2`) to annotate it with.
    async fn video(&self) -> i64 {
        let id = i64::from(rand::random::<u32>() % 1_000_000) + 10;
        self.store.ensure_video(id).await.expect("video");
        for u in [1, 2] {
            self.store.ensure_user(u).await.expect("user");
        }
        id
    }
}

// ------------------------------------------------------------------------------------------
// client

/// A raw V2 client: frames are `[join_ref, ref, topic, event, payload]` JSON arrays.
struct Client {
    ws: Ws,
    next_ref: u64,
    join_refs: HashMap<String, String>,
    /// Frames read while waiting for something else (pushes, broadcasts).
    pending: VecDeque<Value>,
}

impl Client {
    /// Connects, or returns the HTTP status of the refusal.
    async fn connect(addr: SocketAddr, path: &str, query: &str) -> Result<Client, u16> {
        let url = format!("ws://{addr}{path}/websocket?vsn=2.0.0&{query}");
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => Ok(Client {
                ws,
                next_ref: 0,
                join_refs: HashMap::new(),
                pending: VecDeque::new(),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    fn make_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    /// The next frame from the socket (not from `pending`), within 10 s.
    async fn read(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a frame within 10 s")
                .expect("socket open")
                .expect("frame ok");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Reads until the reply to `ref_`; returns the frames that came before it (in order)
    /// and the reply's status and response. Presence frames (`presence_state` after a join,
    /// `presence_diff` as viewers come and go) arrive on their own schedule: they are kept in
    /// `pending` but not counted in `before`.
    async fn reply(&mut self, ref_: &str) -> (Vec<Value>, String, Value) {
        let mut before = Vec::new();
        loop {
            let f = self.read().await;
            if f[3] == "phx_reply" && f[1] == ref_ {
                let status = f[4]["status"].as_str().expect("status").to_string();
                return (before, status, f[4]["response"].clone());
            }
            if f[3] != "presence_state" && f[3] != "presence_diff" {
                before.push(f.clone());
            }
            self.pending.push_back(f);
        }
    }

    async fn join(&mut self, topic: &str, payload: Value) -> (String, Value) {
        let r = self.make_ref();
        self.join_refs.insert(topic.to_string(), r.clone());
        self.send(json!([r, r, topic, "phx_join", payload])).await;
        let (_, status, resp) = self.reply(&r).await;
        (status, resp)
    }

    async fn leave(&mut self, topic: &str) {
        let jr = self.join_refs.get(topic).cloned().expect("joined");
        let r = self.make_ref();
        self.send(json!([jr, r, topic, "phx_leave", {}])).await;
        self.reply(&r).await;
    }

    /// Pushes `event`; returns the frames received before the reply, status and response.
    async fn push(
        &mut self,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> (Vec<Value>, String, Value) {
        let jr = self.join_refs.get(topic).cloned().expect("joined");
        let r = self.make_ref();
        self.send(json!([jr, r, topic, event, payload])).await;
        self.reply(&r).await
    }

    async fn heartbeat(&mut self) -> String {
        let r = self.make_ref();
        self.send(json!([null, r, "phoenix", "heartbeat", {}]))
            .await;
        let (_, status, _) = self.reply(&r).await;
        status
    }

    /// The next pushed/broadcast frame with `event` on `topic` (pending first).
    async fn next_event(&mut self, topic: &str, event: &str) -> Value {
        if let Some(i) = self
            .pending
            .iter()
            .position(|f| f[2] == topic && f[3] == event)
        {
            return self.pending.remove(i).expect("frame");
        }
        loop {
            let f = self.read().await;
            if f[2] == topic && f[3] == event {
                return f;
            }
            self.pending.push_back(f);
        }
    }
}

fn ids(resp: &Value) -> Vec<i64> {
    resp["annotations"]
        .as_array()
        .expect("annotations list")
        .iter()
        .map(|a| a["id"].as_i64().expect("id"))
        .collect()
}

// ------------------------------------------------------------------------------------------
// the cases, each run on SQLite and on Postgres

/// Join replies every annotation ordered by (at, id), rendered as `{id, body, at, user}`;
/// `last_seen_id` (integer or numeric string) returns only newer ones.
async fn join_orders_and_last_seen_id(s: &Server) {
    let v = s.video().await;
    let topic = format!("videos:{v}");
    let a = s
        .store
        .insert_annotation(v, 1, "first!", 100)
        .await
        .expect("insert");
    let b = s
        .store
        .insert_annotation(v, 1, "earlier", 50)
        .await
        .expect("insert");
    let c = s
        .store
        .insert_annotation(v, 2, "third", 200)
        .await
        .expect("insert");
    let d = s
        .store
        .insert_annotation(v, 2, "same at", 100)
        .await
        .expect("insert");

    let mut cl = s.client(1).await;
    let (status, resp) = cl.join(&topic, json!({})).await;
    assert_eq!(status, "ok", "{resp}");
    assert_eq!(ids(&resp), vec![b.id, a.id, d.id, c.id]);
    assert_eq!(
        resp["annotations"][0],
        json!({"id": b.id, "body": "earlier", "at": 50, "user": {"id": 1, "username": "user1"}})
    );
    cl.leave(&topic).await;

    let (status, resp) = cl.join(&topic, json!({"last_seen_id": a.id})).await;
    assert_eq!(status, "ok");
    assert_eq!(ids(&resp), vec![b.id, d.id, c.id]);
    cl.leave(&topic).await;

    let (_, resp) = cl
        .join(&topic, json!({"last_seen_id": c.id.to_string()}))
        .await;
    assert_eq!(ids(&resp), vec![d.id]);
    cl.leave(&topic).await;

    let (_, resp) = cl.join(&topic, json!({"last_seen_id": null})).await;
    assert_eq!(ids(&resp).len(), 4);
    cl.leave(&topic).await;

    let (status, resp) = cl.join(&topic, json!({"last_seen_id": "abc"})).await;
    assert_eq!(
        (status.as_str(), resp),
        ("error", json!({"reason": "invalid last_seen_id"}))
    );
}

/// At most 200 annotations on join (the lowest `at` first); the rest via last_seen_id.
async fn join_caps_at_200(s: &Server) {
    let v = s.video().await;
    let topic = format!("videos:{v}");
    for i in 0..250 {
        s.store
            .insert_annotation(v, 1, &format!("n{i}"), 250 - i)
            .await
            .expect("insert");
    }
    let mut cl = s.client(1).await;
    let (status, resp) = cl.join(&topic, json!({})).await;
    assert_eq!(status, "ok");
    let list = resp["annotations"].as_array().expect("list");
    assert_eq!(list.len(), 200);
    assert_eq!(list[0]["at"], 1);
    assert_eq!(list[199]["at"], 200);
}

/// The join errors: non-integer id, unknown video.
async fn join_errors(s: &Server) {
    let mut cl = s.client(1).await;
    for topic in [
        "videos:abc",
        "videos:",
        "videos:1.5",
        "videos:99999999999999999999",
    ] {
        let (status, resp) = cl.join(topic, json!({})).await;
        assert_eq!(
            (status.as_str(), resp),
            ("error", json!({"reason": "invalid video"})),
            "{topic}"
        );
    }
    let (status, resp) = cl.join("videos:987654321", json!({})).await;
    assert_eq!(
        (status.as_str(), resp),
        ("error", json!({"reason": "video not found"}))
    );
    assert_eq!(cl.heartbeat().await, "ok");
}

/// Invalid input gets Ecto's changeset error shape, as in the Phoenix transcript.
async fn invalid_annotation(s: &Server) {
    let v = s.video().await;
    let topic = format!("videos:{v}");
    let mut cl = s.client(1).await;
    cl.join(&topic, json!({})).await;
    let (_, status, resp) = cl
        .push(&topic, "new_annotation", json!({"body": "", "at": "abc"}))
        .await;
    assert_eq!(status, "error");
    assert_eq!(
        resp,
        json!({"errors": {"at": ["is invalid"], "body": ["can't be blank"]}})
    );
    let (_, status, resp) = cl.push(&topic, "new_annotation", json!({"at": 5})).await;
    assert_eq!(
        (status.as_str(), resp),
        ("error", json!({"errors": {"body": ["can't be blank"]}}))
    );
    // Integer-valued strings are cast, as Ecto does.
    let (_, status, _) = cl
        .push(&topic, "new_annotation", json!({"body": "ok", "at": "42"}))
        .await;
    assert_eq!(status, "ok");
    let stored = s.store.annotations(v, 0, 10).await.expect("list");
    assert_eq!(stored.len(), 1, "only the valid one is stored");
    assert_eq!(stored[0].at, 42);
}

/// An anonymous socket can join and read, but not post.
async fn anonymous_post_refused(s: &Server) {
    let v = s.video().await;
    let topic = format!("videos:{v}");
    let mut anon = Client::connect(s.addr, "/anon", "")
        .await
        .expect("anon socket");
    let (status, _) = anon.join(&topic, json!({})).await;
    assert_eq!(status, "ok");
    let (_, status, resp) = anon
        .push(&topic, "new_annotation", json!({"body": "x", "at": 1}))
        .await;
    assert_eq!(
        (status.as_str(), resp),
        ("error", json!({"reason": "unauthenticated"}))
    );
    assert!(s
        .store
        .annotations(v, 0, 10)
        .await
        .expect("list")
        .is_empty());
}

/// The broadcast carries exactly `{id, user: {id, username}, body, at}` from the stored row —
/// never the client's extra fields — and reaches the sender before its ok reply.
async fn broadcast_whitelisted(s: &Server) {
    let v = s.video().await;
    let topic = format!("videos:{v}");
    let mut alice = s.client(1).await;
    let mut bob = s.client(2).await;
    alice.join(&topic, json!({})).await;
    bob.join(&topic, json!({})).await;
    let (before, status, resp) = alice
        .push(
            &topic,
            "new_annotation",
            json!({"body": "x", "at": 1, "user_id": 999, "admin": true, "id": 5, "user": {"id": 999, "username": "root"}}),
        )
        .await;
    assert_eq!((status.as_str(), resp), ("ok", json!({})));
    // Phoenix order: the broadcast reaches the sender before the reply.
    assert_eq!(
        before.len(),
        1,
        "the broadcast comes before the reply: {before:?}"
    );
    let own = &before[0];
    assert_eq!(own[0], Value::Null);
    assert_eq!(own[1], Value::Null);
    assert_eq!(own[3], "new_annotation");
    let stored = s.store.annotations(v, 0, 10).await.expect("list");
    assert_eq!(stored.len(), 1);
    let expected =
        json!({"id": stored[0].id, "user": {"id": 1, "username": "user1"}, "body": "x", "at": 1});
    assert_eq!(own[4], expected);
    let seen = bob.next_event(&topic, "new_annotation").await;
    assert_eq!(seen[4], expected);
    assert_eq!(seen[4].as_object().map(|m| m.len()), Some(4));
}

/// The database goes away under a joined channel: the post gets an error reply (never ok,
/// no broadcast), a later join gets an error reply, and the socket keeps answering.
async fn database_down(s: &Server) {
    let v = s.video().await;
    let topic = format!("videos:{v}");
    let mut cl = s.client(1).await;
    let (status, _) = cl.join(&topic, json!({})).await;
    assert_eq!(status, "ok");
    s.store.close().await;
    let (before, status, resp) = cl
        .push(&topic, "new_annotation", json!({"body": "lost?", "at": 1}))
        .await;
    assert_eq!(
        (status.as_str(), resp),
        ("error", json!({"reason": "database unavailable"}))
    );
    assert!(before.is_empty(), "no broadcast without a row: {before:?}");
    assert_eq!(cl.heartbeat().await, "ok");
    let (status, resp) = cl.join(&format!("videos:{}", v + 1), json!({})).await;
    assert_eq!(
        (status.as_str(), resp),
        ("error", json!({"reason": "database unavailable"}))
    );
    // The channel joined before the outage is still alive and answers.
    let (_, status, _) = cl
        .push(&topic, "new_annotation", json!({"body": "", "at": 1}))
        .await;
    assert_eq!(status, "error");
    assert_eq!(cl.heartbeat().await, "ok");
}

/// Fixture mode: any integer video, any authenticated user; rows are created on first use.
async fn fixture_mode_creates_rows(store: Store) {
    let s = start(store, true).await;
    let v = i64::from(rand::random::<u32>()) + 1_000_000_000;
    let topic = format!("videos:{v}");
    let uid = i64::from(rand::random::<u16>()) + 5000;
    let token = s.token(uid);
    let mut cl = Client::connect(s.addr, "/socket", &format!("token={token}"))
        .await
        .expect("fixture socket");
    let (status, resp) = cl.join(&topic, json!({})).await;
    assert_eq!((status.as_str(), resp), ("ok", json!({"annotations": []})));
    let (before, status, _) = cl
        .push(&topic, "new_annotation", json!({"body": "hi", "at": 3}))
        .await;
    assert_eq!(status, "ok");
    assert_eq!(
        before[0][4]["user"],
        json!({"id": uid, "username": format!("user{uid}")})
    );
    let mut anon = Client::connect(s.addr, "/socket", "")
        .await
        .expect("anonymous");
    let (_, resp) = anon.join(&topic, json!({})).await;
    assert_eq!(ids(&resp).len(), 1);
    let (_, status, resp) = anon
        .push(&topic, "new_annotation", json!({"body": "x", "at": 1}))
        .await;
    assert_eq!(
        (status.as_str(), resp),
        ("error", json!({"reason": "unauthenticated"}))
    );
    // The fixture's endpoint times the store, whichever backend it is: one committed post
    // (the refused one never reached the store), one list per join.
    let text = s.endpoint.metrics().render();
    for line in [
        r#"phx_store_duration_seconds_count{operation="insert_annotation"} 1"#,
        r#"phx_store_duration_seconds_count{operation="list_annotations"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    }
}

// ------------------------------------------------------------------------------------------
// backends

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!(
            "phx_rumbl_channel_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn sqlite_store(dir: &TempDir) -> Store {
    let url = format!("sqlite://{}", dir.0.join("rumbl.sqlite3").display());
    store::open(Some(&url), 2).await.expect("open sqlite")
}

async fn pg_admin() -> tokio_postgres::Client {
    let url = admin_url();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("Postgres must be reachable at {url} for these tests (set DATABASE_URL): {e}")
        });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Runs `body` with a migrated store on a fresh Postgres database, then drops the database
/// (also when the body panics).
async fn with_pg<F, Fut>(body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin = pg_admin().await;
    let name = format!(
        "phx_rumbl_test_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    let mut opts = StoreOptions::new(4);
    opts.auto_migrate = AutoMigrate::Always;
    let store = store::open_with(Some(&url_for(&admin_url(), &name)), opts)
        .await
        .expect("open postgres");
    let result = tokio::spawn(body(store.clone())).await;
    store.close().await;
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .expect("terminate backends");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
        .await
        .expect("drop test database");
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let dir = super::TempDir::new();
                    let s = super::start(super::sqlite_store(&dir).await, false).await;
                    super::$case(&s).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::with_pg(|store| async move {
                        let s = super::start(store, false).await;
                        super::$case(&s).await;
                    })
                    .await;
                }
            )*
        }
    };
}

both_backends!(
    join_orders_and_last_seen_id,
    join_caps_at_200,
    join_errors,
    invalid_annotation,
    anonymous_post_refused,
    broadcast_whitelisted,
    database_down,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_mode_sqlite() {
    let dir = TempDir::new();
    fixture_mode_creates_rows(sqlite_store(&dir).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_mode_postgres() {
    with_pg(fixture_mode_creates_rows).await;
}

// ------------------------------------------------------------------------------------------
// backend-independent

/// UserSocket: no token, a garbage token, a token signed with another secret or salt → 403;
/// the `auth_token` subprotocol works like the `token` param.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_socket_requires_a_valid_token() {
    let dir = TempDir::new();
    let s = start(sqlite_store(&dir).await, false).await;
    assert_eq!(
        Client::connect(s.addr, "/socket", "").await.err(),
        Some(403)
    );
    assert_eq!(
        Client::connect(s.addr, "/socket", "token=garbage")
            .await
            .err(),
        Some(403)
    );
    let other_salt = s.endpoint.sign_token("session", &Term::Int(1));
    assert_eq!(
        Client::connect(s.addr, "/socket", &format!("token={other_salt}"))
            .await
            .err(),
        Some(403)
    );
    let other = Config {
        secret_key_base: "another-secret-key-base-of-enough-length-0123456789".into(),
        ..Config::default()
    };
    let foreign = Endpoint::builder(other)
        .build()
        .sign_token("user socket", &Term::Int(1));
    assert_eq!(
        Client::connect(s.addr, "/socket", &format!("token={foreign}"))
            .await
            .err(),
        Some(403)
    );
    let mut cl = s.client(7).await;
    assert_eq!(cl.heartbeat().await, "ok");

    // Phoenix 1.8's authToken: the token in the Sec-WebSocket-Protocol header.
    use base64::Engine;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let token = s.token(7);
    let proto = format!(
        "base64url.bearer.phx.{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(token)
    );
    let mut req = format!("ws://{}/socket/websocket?vsn=2.0.0", s.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("phoenix, {proto}").parse().expect("header"),
    );
    let connected = tokio_tungstenite::connect_async(req).await;
    assert!(
        connected.is_ok(),
        "auth_token connect: {:?}",
        connected.err()
    );
}

/// A Postgres store whose server is gone (a closed port): the join is answered with an
/// error reply quickly, and the socket keeps answering heartbeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_at_join() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{closed}/rumbl");
    let store: Store = Arc::new(PostgresStore::new(&url, &StoreOptions::new(2)).expect("config"));
    let s = start(store, false).await;
    let mut cl = s.client(1).await;
    let t0 = std::time::Instant::now();
    let (status, resp) = cl.join("videos:2", json!({})).await;
    assert_eq!(
        (status.as_str(), resp),
        ("error", json!({"reason": "database unavailable"}))
    );
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "answered in {:?}",
        t0.elapsed()
    );
    assert_eq!(cl.heartbeat().await, "ok");
    let (status, _) = cl.join("videos:abc", json!({})).await;
    assert_eq!(status, "error");
    assert_eq!(cl.heartbeat().await, "ok");
}

/// A slow database delays only the channel waiting on it: another channel on the same socket
/// (and the socket's heartbeat) answers meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_database_blocks_only_its_channel() {
    let dir = TempDir::new();
    let inner = sqlite_store(&dir).await;
    for v in [1, 2] {
        inner.ensure_video(v).await.expect("video");
    }
    inner.ensure_user(1).await.expect("user");
    let slow: Store = Arc::new(SlowInserts {
        inner,
        video_id: 1,
        delay: Duration::from_millis(1500),
    });
    let s = start(slow, false).await;
    let mut cl = s.client(1).await;
    cl.join("videos:1", json!({})).await;
    cl.join("videos:2", json!({})).await;
    let jr1 = cl.join_refs["videos:1"].clone();
    let jr2 = cl.join_refs["videos:2"].clone();
    cl.send(json!([jr1, "slow", "videos:1", "new_annotation", {"body": "slow", "at": 1}]))
        .await;
    cl.send(json!([jr2, "fast", "videos:2", "new_annotation", {"body": "fast", "at": 1}]))
        .await;
    cl.send(json!([null, "hb", "phoenix", "heartbeat", {}]))
        .await;
    let mut replies = Vec::new();
    while replies.len() < 3 {
        let f = cl.read().await;
        if f[3] == "phx_reply" {
            replies.push(f[1].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(
        replies.last().map(String::as_str),
        Some("slow"),
        "{replies:?}"
    );
}

/// A drain answers what the channel received: a post in flight (its insert takes 1.5 s) when
/// the server starts draining gets its `ok` reply and its broadcast before the socket's 1012
/// close, and the row is in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_in_flight_during_a_drain_is_answered() {
    let dir = TempDir::new();
    let inner = sqlite_store(&dir).await;
    inner.ensure_video(1).await.expect("video");
    inner.ensure_user(1).await.expect("user");
    let slow: Store = Arc::new(SlowInserts {
        inner: inner.clone(),
        video_id: 1,
        delay: Duration::from_millis(1500),
    });
    let s = start(slow, false).await;
    let mut cl = s.client(1).await;
    cl.join("videos:1", json!({})).await;
    let jr = cl.join_refs["videos:1"].clone();
    cl.send(json!([jr, "post", "videos:1", "new_annotation", {"body": "in flight", "at": 1}]))
        .await;
    // The heartbeat's answer means the session has routed the post to the channel already.
    cl.send(json!([null, "hb", "phoenix", "heartbeat", {}]))
        .await;
    let (_, status, _) = cl.reply("hb").await;
    assert_eq!(status, "ok");
    let endpoint = s.endpoint.clone();
    let drained = tokio::spawn(async move { endpoint.drain().await });
    let mut frames = Vec::new();
    let close = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), cl.ws.next())
            .await
            .expect("a frame within 10 s");
        match msg {
            Some(Ok(Message::Text(t))) => {
                frames.push(serde_json::from_str::<Value>(&t).expect("JSON"))
            }
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("socket ended without a Close: {other:?} after {frames:?}"),
        }
    };
    assert_eq!(close, Some(1012), "{frames:?}");
    let reply = frames
        .iter()
        .find(|f| f[3] == "phx_reply" && f[1] == "post")
        .unwrap_or_else(|| panic!("no reply to the post before the close: {frames:?}"));
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    assert!(
        frames
            .iter()
            .any(|f| f[3] == "new_annotation" && f[4]["body"] == "in flight"),
        "no broadcast before the close: {frames:?}"
    );
    let rows = inner.annotations(1, 0, 10).await.expect("list");
    assert_eq!(rows.len(), 1);
    let _ = drained.await;
}

/// A store whose inserts into one video take `delay`; everything else is the inner store.
struct SlowInserts {
    inner: Store,
    video_id: i64,
    delay: Duration,
}

#[async_trait::async_trait]
impl AnnotationStore for SlowInserts {
    fn backend(&self) -> store::Backend {
        self.inner.backend()
    }
    async fn video(&self, id: i64) -> Result<Option<store::Video>, store::StoreError> {
        self.inner.video(id).await
    }
    async fn videos(&self) -> Result<Vec<store::Video>, store::StoreError> {
        self.inner.videos().await
    }
    async fn user(&self, id: i64) -> Result<Option<store::User>, store::StoreError> {
        self.inner.user(id).await
    }
    async fn users(&self) -> Result<Vec<store::User>, store::StoreError> {
        self.inner.users().await
    }
    async fn annotations(
        &self,
        video_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<store::Annotation>, store::StoreError> {
        self.inner.annotations(video_id, after_id, limit).await
    }
    async fn credentials(
        &self,
        username: &str,
    ) -> Result<Option<store::Credentials>, store::StoreError> {
        self.inner.credentials(username).await
    }
    async fn post_annotation(
        &self,
        post: store::Post,
    ) -> Result<store::Annotation, store::StoreError> {
        if post.video_id == self.video_id {
            tokio::time::sleep(self.delay).await;
        }
        self.inner.post_annotation(post).await
    }
    async fn ensure_video(&self, id: i64) -> Result<(), store::StoreError> {
        self.inner.ensure_video(id).await
    }
    async fn ensure_user(&self, id: i64) -> Result<(), store::StoreError> {
        self.inner.ensure_user(id).await
    }
    async fn migrate(&self) -> Result<store::MigrationReport, store::StoreError> {
        self.inner.migrate().await
    }
    async fn seed_demo_if_empty(&self) -> Result<store::SeedReport, store::StoreError> {
        self.inner.seed_demo_if_empty().await
    }
    async fn ping(&self) -> Result<(), store::StoreError> {
        self.inner.ping().await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}
