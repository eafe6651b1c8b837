//! Postgres backend against a real server.
//!
//! Each test creates its own throwaway database `phx_store_test_<pid>_<rand>`
//! through the admin URL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drops it afterwards,
//! also when the test panics. If Postgres is unreachable these tests FAIL:
//! a skipped database test must never count as a pass.

#[path = "store_contract.rs"]
mod contract;

#[path = "../../tests/common_pg.rs"]
mod common_pg;
use common_pg::{admin_url, url_for};
use std::future::Future;
use std::time::{Duration, Instant};

use contract::Store;
use rumbl::store::{
    self, migrate, postgres::PostgresStore, AnnotationStore, AutoMigrate, Backend, StoreError,
    StoreOptions,
};
use tokio_postgres::{Client, NoTls};

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("Postgres must be reachable at {url} for these tests (set DATABASE_URL): {e}")
        });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn drop_database(admin: &Client, name: &str) {
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
}

/// Runs `body` with the URL of a fresh empty database, then drops it.
async fn with_db<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin_url = admin_url();
    let admin = connect(&admin_url).await;
    let name = format!(
        "phx_store_test_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    let result = tokio::spawn(body(url_for(&admin_url, &name))).await;
    drop_database(&admin, &name).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A migrated, empty store on `url`.
async fn store_on(url: &str, pool: usize) -> Store {
    let mut opts = StoreOptions::new(pool);
    opts.auto_migrate = AutoMigrate::Always;
    let s = store::open_with(Some(url), opts)
        .await
        .expect("open postgres");
    assert_eq!(s.backend(), Backend::Postgres);
    s
}

macro_rules! contract_test {
    ($name:ident, $pool:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            with_db(|url| async move {
                let s = store_on(&url, $pool).await;
                contract::$name(&s).await;
                s.close().await;
            })
            .await;
        }
    };
}

contract_test!(migrations_idempotent, 2);
contract_test!(ordering_by_at_then_id, 2);
contract_test!(limit_200_of_250, 2);
contract_test!(after_id_filters, 2);
contract_test!(user_preloaded, 2);
contract_test!(concurrent_inserts, 8);
contract_test!(unknown_and_invalid, 2);
contract_test!(fixtures_create_rows, 2);
contract_test!(seed_once, 2);
contract_test!(deadline_passed_is_not_committed, 2);
contract_test!(every_committed_row_ran_its_hook, 4);
contract_test!(body_limit, 2);

/// `open` does not migrate Postgres by default; the free `migrate(url)`
/// does, once; two concurrent migrations do not trip over each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_explicit_and_concurrent() {
    with_db(|url| async move {
        let s = store::open(Some(&url), 2).await.expect("open");
        let e = s.video(1).await;
        assert!(e.is_err(), "tables must not exist before migrate: {e:?}");
        s.close().await;

        let (a, b) = tokio::join!(migrate(Some(&url)), migrate(Some(&url)));
        let (a, b) = (a.expect("migrate a"), b.expect("migrate b"));
        assert_eq!(a.applied.len() + b.applied.len(), 4, "{a:?} {b:?}");
        assert!(a.is_noop() || b.is_noop());

        let db = connect(&url).await;
        let versions: Vec<i64> = db
            .query(
                "SELECT version FROM phx_server_migrations ORDER BY version",
                &[],
            )
            .await
            .expect("versions")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, vec![1, 2, 3, 4]);
        // column types as Ecto creates them
        let types: Vec<(String, String)> = db
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_name = 'annotations' ORDER BY ordinal_position",
                &[],
            )
            .await
            .expect("columns")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let expect: Vec<(String, String)> = [
            ("id", "bigint"),
            ("body", "text"),
            ("at", "integer"),
            ("user_id", "bigint"),
            ("video_id", "bigint"),
            ("inserted_at", "timestamp without time zone"),
            ("updated_at", "timestamp without time zone"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(types, expect);
    })
    .await;
}

/// Tables exactly as Ecto (3.x, bigserial) creates them for the book, with
/// data and `schema_migrations`.
const ECTO_PG_SCHEMA: &str = r#"
CREATE TABLE schema_migrations (version bigint PRIMARY KEY, inserted_at timestamp(0) without time zone);
INSERT INTO schema_migrations VALUES (20170901000001, '2017-09-01 00:00:01'), (20170906163920, '2017-09-06 16:39:20');
CREATE TABLE users (id bigserial PRIMARY KEY, name varchar(255), username varchar(255) NOT NULL,
  password_hash varchar(255), inserted_at timestamp(0) without time zone NOT NULL,
  updated_at timestamp(0) without time zone NOT NULL);
CREATE UNIQUE INDEX users_username_index ON users (username);
CREATE TABLE categories (id bigserial PRIMARY KEY, name varchar(255) NOT NULL,
  inserted_at timestamp(0) without time zone NOT NULL, updated_at timestamp(0) without time zone NOT NULL);
CREATE UNIQUE INDEX categories_name_index ON categories (name);
CREATE TABLE videos (id bigserial PRIMARY KEY, url varchar(255), title varchar(255), description text,
  user_id bigint CONSTRAINT videos_user_id_fkey REFERENCES users(id),
  inserted_at timestamp(0) without time zone NOT NULL, updated_at timestamp(0) without time zone NOT NULL,
  category_id bigint CONSTRAINT videos_category_id_fkey REFERENCES categories(id), slug varchar(255));
CREATE INDEX videos_user_id_index ON videos (user_id);
CREATE TABLE annotations (id bigserial PRIMARY KEY, body text, at integer,
  user_id bigint CONSTRAINT annotations_user_id_fkey REFERENCES users(id),
  video_id bigint CONSTRAINT annotations_video_id_fkey REFERENCES videos(id),
  inserted_at timestamp(0) without time zone NOT NULL, updated_at timestamp(0) without time zone NOT NULL);
CREATE INDEX annotations_user_id_index ON annotations (user_id);
CREATE INDEX annotations_video_id_index ON annotations (video_id);
INSERT INTO users (name, username, password_hash, inserted_at, updated_at)
  VALUES ('Ada L', 'ada', '$pbkdf2$x', '2017-09-01', '2017-09-01'), ('Bob', 'bob', NULL, '2017-09-01', '2017-09-01');
INSERT INTO categories (name, inserted_at, updated_at) VALUES ('Drama', '2017-09-01', '2017-09-01');
INSERT INTO videos (url, title, description, user_id, category_id, slug, inserted_at, updated_at)
  VALUES ('https://youtu.be/abc', 'Elixir Rocks!', 'd', 1, 1, 'elixir-rocks-', '2017-09-01', '2017-09-01');
INSERT INTO annotations (body, at, user_id, video_id, inserted_at, updated_at) VALUES
  ('first', 1500, 1, 1, '2017-09-06 16:49:10', '2017-09-06 16:49:10'),
  ('second', 700, 2, 1, '2017-09-06 16:49:11', '2017-09-06 16:49:11');
"#;

async fn dump(db: &Client, sql: &str) -> Vec<String> {
    // row_to_json renders every column, whatever its type
    db.query(&format!("SELECT row_to_json(t)::text FROM ({sql}) t"), &[])
        .await
        .expect("dump")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_existing_ecto_schema_keeping_data() {
    with_db(|url| async move {
        let db = connect(&url).await;
        db.batch_execute(ECTO_PG_SCHEMA).await.expect("ecto schema");
        let queries = [
            "SELECT * FROM users ORDER BY id",
            "SELECT * FROM categories ORDER BY id",
            "SELECT * FROM videos ORDER BY id",
            "SELECT * FROM annotations ORDER BY id",
            "SELECT * FROM schema_migrations ORDER BY version",
        ];
        let mut before = Vec::new();
        for q in queries {
            before.push(dump(&db, q).await);
        }

        let report = migrate(Some(&url)).await.expect("migrate");
        assert!(report.ecto_schema_migrations);
        assert_eq!(
            report.adopted_tables,
            vec!["users", "categories", "videos", "annotations"]
        );
        assert!(report.added_columns.is_empty(), "{report:?}");
        for (q, b) in queries.iter().zip(&before) {
            assert_eq!(&dump(&db, q).await, b, "data changed: {q}");
        }
        assert!(migrate(Some(&url)).await.expect("again").is_noop());

        let s = store::open(Some(&url), 2).await.expect("open");
        let v = s.video(1).await.expect("video").expect("video 1");
        assert_eq!(v.param(), "1-elixir-rocks-");
        assert_eq!(v.category_id, Some(1));
        let anns = s.annotations(1, 0, 200).await.expect("list");
        assert_eq!(
            anns.iter()
                .map(|a| (a.id, a.at, a.user.username.as_str()))
                .collect::<Vec<_>>(),
            vec![(2, 700, "bob"), (1, 1500, "ada")]
        );
        let new = s
            .insert_annotation(1, 1, "third", 2000)
            .await
            .expect("insert");
        assert_eq!(new.id, 3, "serial sequence continues");
        let ts: String = db
            .query_one(
                "SELECT inserted_at::text FROM annotations WHERE id = 3",
                &[],
            )
            .await
            .expect("ts")
            .get(0);
        assert!(!ts.contains('.'), "timestamp(0) has no fraction: {ts}");
        assert!(!s.seed_demo_if_empty().await.expect("seed").seeded);
        s.close().await;
    })
    .await;
}

/// An older Ecto database: `serial`/`integer` ids and foreign keys, no
/// slug/category_id. Columns get added, int4 ids work end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_int4_schema_without_slug() {
    with_db(|url| async move {
        let db = connect(&url).await;
        db.batch_execute(
            r#"
CREATE TABLE users (id serial PRIMARY KEY, name varchar(255), username varchar(255) NOT NULL,
  password_hash varchar(255), inserted_at timestamp NOT NULL, updated_at timestamp NOT NULL);
CREATE TABLE videos (id serial PRIMARY KEY, url varchar(255), title varchar(255), description text,
  user_id integer REFERENCES users(id), inserted_at timestamp NOT NULL, updated_at timestamp NOT NULL);
CREATE TABLE annotations (id serial PRIMARY KEY, body text, at integer,
  user_id integer REFERENCES users(id), video_id integer REFERENCES videos(id),
  inserted_at timestamp NOT NULL, updated_at timestamp NOT NULL);
INSERT INTO users (username, inserted_at, updated_at) VALUES ('old', now(), now());
INSERT INTO videos (title, user_id, inserted_at, updated_at) VALUES ('Legacy Talk', 1, now(), now());
"#,
        )
        .await
        .expect("legacy schema");
        let report = migrate(Some(&url)).await.expect("migrate");
        assert_eq!(
            report.added_columns,
            vec!["videos.category_id", "videos.slug"]
        );
        assert_eq!(report.adopted_tables, vec!["users", "videos", "annotations"]);

        let s = store::open(Some(&url), 2).await.expect("open");
        let v = s.video(1).await.expect("video").expect("video 1");
        assert_eq!((v.slug.clone(), v.param()), (None, "1-legacy-talk".to_string()));
        let a = s.insert_annotation(1, 1, "int4 ok", 42).await.expect("insert");
        assert_eq!((a.id, a.user.username.as_str()), (1, "old"));
        assert_eq!(s.annotations(1, 0, 200).await.expect("list"), vec![a]);
        s.ensure_user(5).await.expect("fixture user on int4 table");
        assert_eq!(s.user(5).await.expect("user").map(|u| u.username), Some("user5".into()));
        s.close().await;
    })
    .await;
}

/// Rows created with explicit ids (fixtures, seed) move the sequence, so
/// later serial inserts (e.g. by the Phoenix app) do not collide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_ids_advance_sequences() {
    with_db(|url| async move {
        let s = store_on(&url, 2).await;
        s.ensure_user(40).await.expect("user 40");
        s.ensure_video(30).await.expect("video 30");
        s.ensure_user(3).await.expect("user 3 (below) must not move it back");
        let db = connect(&url).await;
        let uid: i64 = db
            .query_one(
                "INSERT INTO users (username, inserted_at, updated_at) VALUES ('serial', now(), now()) RETURNING id",
                &[],
            )
            .await
            .expect("serial user")
            .get(0);
        assert_eq!(uid, 41);
        let vid: i64 = db
            .query_one(
                "INSERT INTO videos (title, inserted_at, updated_at) VALUES ('s', now(), now()) RETURNING id",
                &[],
            )
            .await
            .expect("serial video")
            .get(0);
        assert_eq!(vid, 31);
        // a fixture whose username is taken by another id is a conflict
        db.batch_execute(
            "INSERT INTO users (username, inserted_at, updated_at) VALUES ('user77', now(), now())",
        )
        .await
        .expect("squat username");
        let e = s.ensure_user(77).await;
        assert!(matches!(e, Err(StoreError::Constraint(_))), "{e:?}");
        s.close().await;
    })
    .await;
}

/// A closed port: open fails and a lazily built store's insert fails with
/// Unavailable quickly instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_is_unavailable_quickly() {
    let url = "postgres://postgres@127.0.0.1:1/nothing_here";
    let started = Instant::now();
    let r = store::open(Some(url), 2).await;
    assert!(
        matches!(r, Err(StoreError::Unavailable(_))),
        "{:?}",
        r.err()
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    let s = PostgresStore::new(url, &StoreOptions::new(2)).expect("lazy store");
    contract::expect_unavailable(
        s.insert_annotation(1, 1, "hello", 0),
        Duration::from_secs(3),
    )
    .await;
    contract::expect_unavailable(s.annotations(1, 0, 200), Duration::from_secs(3)).await;
    contract::expect_unavailable(migrate(Some(url)), Duration::from_secs(3)).await;
}

/// The database disappears under a working store (connections killed,
/// database dropped): the next insert fails with Unavailable, quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_gone_is_unavailable() {
    let admin_url = admin_url();
    let admin = connect(&admin_url).await;
    let name = format!(
        "phx_store_test_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create");
    let url = url_for(&admin_url, &name);
    let s = store_on(&url, 2).await;
    s.ensure_user(1).await.expect("user");
    s.ensure_video(1).await.expect("video");
    s.insert_annotation(1, 1, "before", 0)
        .await
        .expect("insert while up");

    drop_database(&admin, &name).await;

    // First call may hit the killed pooled connection, later ones must
    // fail to connect to the dropped database; both are Unavailable.
    for _ in 0..2 {
        contract::expect_unavailable(
            s.insert_annotation(1, 1, "after", 0),
            Duration::from_secs(3),
        )
        .await;
    }
    contract::expect_unavailable(s.ping(), Duration::from_secs(3)).await;
    s.close().await;
    contract::expect_unavailable(s.ping(), Duration::from_secs(1)).await;
}

/// Group commit (`insert_annotation` batches concurrent calls into one
/// multi-row statement): 400 concurrent inserts on a pool of 4, mixed with
/// rows whose user or video does not exist (a video FK failure makes the
/// multi-row statement fail and every row retry alone). Each caller gets its
/// own committed row (its body, a distinct id, visible at once) or its own
/// error; identical requests get distinct rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_concurrent_inserts() {
    with_db(|url| async move {
        let s = store_on(&url, 4).await;
        for u in [1, 2] {
            s.ensure_user(u).await.expect("user");
        }
        for v in [1, 2] {
            s.ensure_video(v).await.expect("video");
        }
        let mut set = tokio::task::JoinSet::new();
        for i in 0..400i64 {
            let s = s.clone();
            set.spawn(async move {
                // every 50th: unknown user; every 70th: unknown video;
                // every 10th: the same body/at as its neighbour (identical rows)
                let user = if i % 50 == 49 { 999 } else { 1 + i % 2 };
                let video = if i % 70 == 69 { 4242 } else { 1 + i % 2 };
                let (body, at) = if i % 10 == 1 {
                    ("same".to_string(), 7)
                } else {
                    (format!("row {i}"), i)
                };
                let r = s.insert_annotation(video, user, &body, at).await;
                if r.is_ok() {
                    // committed before the call returned: another connection sees it
                    let id = r.as_ref().map(|a| a.id).unwrap_or(0);
                    let seen = s.annotations(video, id - 1, 1000).await.expect("list");
                    assert!(seen.iter().any(|a| a.id == id), "row {i} not visible");
                }
                (i, user, video, body, at, r)
            });
        }
        let mut ids = std::collections::HashSet::new();
        let mut ok = 0;
        while let Some(j) = set.join_next().await {
            let (i, user, video, body, at, r) = j.expect("task");
            match r {
                Ok(a) => {
                    assert!(user != 999 && video != 4242, "row {i} should have failed");
                    assert_eq!(
                        (a.video_id, a.user.id, a.body.as_str(), a.at),
                        (video, user, body.as_str(), at)
                    );
                    assert_eq!(a.user.username, format!("user{user}"));
                    assert!(ids.insert(a.id), "id {} handed out twice", a.id);
                    ok += 1;
                }
                Err(StoreError::NotFound(what)) => {
                    if user == 999 {
                        assert_eq!(what, "user 999", "row {i}");
                    } else {
                        assert_eq!(video, 4242, "row {i}: {what}");
                        assert_eq!(what, "video 4242", "row {i}");
                    }
                }
                Err(e) => panic!("row {i}: {e}"),
            }
        }
        // 8 unknown users + 5 unknown videos, one (i = 349) both
        assert_eq!(ok, 400 - 12);
        let mut listed = 0;
        for v in [1, 2] {
            listed += s.annotations(v, 0, 1000).await.expect("list").len();
        }
        assert_eq!(listed, ok, "exactly the acknowledged rows were committed");
        s.close().await;
    })
    .await;
}

/// The acknowledgement contract against a held table: another connection holds
/// `LOCK TABLE annotations` past the post's deadline, so the INSERT waits; the post gets
/// Unavailable at its deadline (COMMIT never sent), its hook never runs, and once the lock is
/// released its row never appears — a later post commits and is alone in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_held_past_the_deadline_never_commits() {
    with_db(|url| async move {
        let s = store_on(&url, 4).await;
        s.ensure_user(1).await.expect("user");
        s.ensure_video(1).await.expect("video");
        let mut locker = connect(&url).await;
        let tx = locker.transaction().await.expect("begin");
        tx.batch_execute("LOCK TABLE annotations IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("lock");
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        let (post, hooks) = contract::counted_post(1, 1, "locked out", deadline);
        contract::expect_unavailable(s.post_annotation(post), Duration::from_secs(3)).await;
        // Two more, queued together: both past their deadline → the whole batch rolls back.
        let d2 = tokio::time::Instant::now() + Duration::from_millis(300);
        let (p2, h2) = contract::counted_post(1, 1, "locked out 2", d2);
        let (p3, h3) = contract::counted_post(1, 1, "locked out 3", d2);
        let (r2, r3) = tokio::join!(s.post_annotation(p2), s.post_annotation(p3));
        assert!(matches!(r2, Err(StoreError::Unavailable(_))), "{r2:?}");
        assert!(matches!(r3, Err(StoreError::Unavailable(_))), "{r3:?}");
        tx.rollback().await.expect("release");
        s.insert_annotation(1, 1, "after", 0)
            .await
            .expect("after release");
        // The abandoned backends hold no transaction that could still commit.
        let db = connect(&url).await;
        let bodies: Vec<String> = db
            .query("SELECT body FROM annotations ORDER BY id", &[])
            .await
            .expect("select")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(bodies, vec!["after".to_string()]);
        for h in [hooks, h2, h3] {
            assert!(
                h.lock().expect("hooks").is_empty(),
                "hook ran for an uncommitted row"
            );
        }
        s.close().await;
    })
    .await;
}

/// A cancelled batch leader abandons nothing: with the table locked, 20 posts queue (the
/// first callers lead the batches); the leaders' futures are dropped while their batches wait
/// on the lock; after the lock is released every other caller gets `Ok`, and each row is in
/// the table exactly when its hook ran (a caller gone before COMMIT has no row). Then, unlocked, 40 posts whose leaders are cancelled right after starting: the
/// callers that kept waiting all get `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_leader_does_not_fail_committed_callers() {
    with_db(|url| async move {
        let s = store_on(&url, 4).await;
        s.ensure_user(1).await.expect("user");
        s.ensure_video(1).await.expect("video");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);

        let mut locker = connect(&url).await;
        let tx = locker.transaction().await.expect("begin");
        tx.batch_execute("LOCK TABLE annotations IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("lock");
        let mut hooks = Vec::new();
        let mut handles = Vec::new();
        for i in 0..20 {
            let (post, seen) = contract::counted_post(1, 1, &format!("held {i}"), deadline);
            hooks.push((format!("held {i}"), seen));
            let s = s.clone();
            handles.push(tokio::spawn(async move { s.post_annotation(post).await }));
        }
        // Let the leaders reach the database (their INSERT waits on the lock)…
        let db = connect(&url).await;
        loop {
            let waiting: i64 = db
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .expect("activity")
                .get(0);
            if waiting > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // …then cancel the first callers (the batch leaders: 2 leader slots on a pool of 4)
        // and release the lock. Every caller that kept waiting gets its row.
        for h in &handles[..2] {
            h.abort();
        }
        tx.rollback().await.expect("release");
        for (i, h) in handles.into_iter().enumerate().skip(2) {
            let r = h.await.expect("caller task");
            assert!(r.is_ok(), "held {i}, whose caller kept waiting: {r:?}");
        }
        // The batches run to their end on their own: poll until the table and the hooks
        // agree (a row without its hook or a hook without its row never settles; the timeout
        // only detects that).
        let settle_by = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let rows = db
                .query("SELECT body, id::bigint FROM annotations", &[])
                .await
                .expect("select");
            let in_table: std::collections::HashMap<String, i64> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let disagree: Vec<String> = hooks
                .iter()
                .filter_map(|(body, seen)| {
                    let seen = seen.lock().expect("hooks").clone();
                    let agrees = match in_table.get(body) {
                        Some(id) => seen == vec![*id],
                        None => seen.is_empty(),
                    };
                    (!agrees)
                        .then(|| format!("{body}: row {:?}, hooks {seen:?}", in_table.get(body)))
                })
                .collect();
            if disagree.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < settle_by,
                "rows and hooks disagree: {disagree:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let mut set = tokio::task::JoinSet::new();
        for i in 0..40i64 {
            let s = s.clone();
            let (post, _) = contract::counted_post(1, 1, &format!("free {i}"), deadline);
            let h = set.spawn(async move { (i, s.post_annotation(post).await) });
            if i % 8 == 0 {
                h.abort();
            }
        }
        while let Some(j) = set.join_next().await {
            if let Ok((i, r)) = j {
                assert!(r.is_ok(), "post {i}, whose caller kept waiting: {r:?}");
            }
        }
        s.close().await;
    })
    .await;
}

contract_test!(users_by_ids, 2);
