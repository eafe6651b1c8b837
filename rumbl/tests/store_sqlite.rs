//! SQLite backend against real temporary database files.

#[path = "store_contract.rs"]
mod contract;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use contract::Store;
use rumbl::store::{
    self, migrate, open_with, sqlite::SqliteStore, AnnotationStore, AutoMigrate, Backend,
    StoreError, StoreOptions,
};

/// A directory under the system temp dir, removed on drop (also when the
/// test panics).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!(
            "phx_store_sqlite_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    fn db(&self) -> PathBuf {
        self.0.join("rumbl.sqlite3")
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.db().display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn fresh() -> (TempDir, Store) {
    let dir = TempDir::new();
    let store = store::open(Some(&dir.url()), 4).await.expect("open sqlite");
    assert_eq!(store.backend(), Backend::Sqlite);
    (dir, store)
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_idempotent() {
    let (_d, s) = fresh().await;
    contract::migrations_idempotent(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_by_at_then_id() {
    let (_d, s) = fresh().await;
    contract::ordering_by_at_then_id(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_200_of_250() {
    let (_d, s) = fresh().await;
    contract::limit_200_of_250(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_id_filters() {
    let (_d, s) = fresh().await;
    contract::after_id_filters(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_preloaded() {
    let (_d, s) = fresh().await;
    contract::user_preloaded(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts() {
    let (_d, s) = fresh().await;
    contract::concurrent_inserts(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_invalid() {
    let (_d, s) = fresh().await;
    contract::unknown_and_invalid(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_create_rows() {
    let (_d, s) = fresh().await;
    contract::fixtures_create_rows(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_once() {
    let (_d, s) = fresh().await;
    contract::seed_once(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_passed_is_not_committed() {
    let (_d, s) = fresh().await;
    contract::deadline_passed_is_not_committed(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_row_ran_its_hook() {
    let (_d, s) = fresh().await;
    contract::every_committed_row_ran_its_hook(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit() {
    let (_d, s) = fresh().await;
    contract::body_limit(&s).await;
}

/// The busy_timeout is bounded by the post's deadline: another process holds the write lock
/// past it (the store's busy_timeout is the default 5 s), the post gets Unavailable at its
/// deadline, its hook never runs, and after the lock is released its row is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_held_past_the_deadline() {
    let (dir, s) = fresh().await;
    s.ensure_user(1).await.expect("user");
    s.ensure_video(1).await.expect("video");
    let locker = raw(&dir.db());
    locker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take write lock");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(400);
    let (post, hooks) = contract::counted_post(1, 1, "locked out", deadline);
    contract::expect_unavailable(s.post_annotation(post), Duration::from_secs(3)).await;
    locker.execute_batch("ROLLBACK").expect("release");
    s.insert_annotation(1, 1, "after", 0)
        .await
        .expect("after release");
    let bodies: Vec<String> = s
        .annotations(1, 0, 200)
        .await
        .expect("list")
        .into_iter()
        .map(|a| a.body)
        .collect();
    assert_eq!(bodies, vec!["after".to_string()]);
    assert!(hooks.lock().expect("hooks").is_empty());
}

/// The file and its missing parent directories are created; the database
/// is in WAL mode; data survives close + reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_dirs_wal_and_persists() {
    let dir = TempDir::new();
    let nested = dir.0.join("a/b/data.sqlite3");
    let url = format!("sqlite://{}", nested.display());
    let s = store::open(Some(&url), 2).await.expect("open");
    assert!(nested.exists());
    s.ensure_user(1).await.expect("user");
    s.ensure_video(2).await.expect("video");
    let a = s.insert_annotation(2, 1, "kept", 9).await.expect("insert");
    s.close().await;
    let mode: String = raw(&nested)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode.to_lowercase(), "wal");

    let s = store::open(Some(&url), 2).await.expect("reopen");
    let listed = s.annotations(2, 0, 200).await.expect("list");
    assert_eq!(listed, vec![a]);
    let report = s.migrate().await.expect("migrate");
    assert!(report.is_noop());
    s.close().await;
}

/// `AutoMigrate::Never` opens without creating tables; the free
/// `migrate(url)` then applies them once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_migrate_flag_and_free_migrate() {
    let dir = TempDir::new();
    let mut opts = StoreOptions::new(1);
    opts.auto_migrate = AutoMigrate::Never;
    let s = open_with(Some(&dir.url()), opts).await.expect("open");
    let tables: i64 = raw(&dir.db())
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'videos'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(tables, 0, "Never must not migrate");
    s.close().await;

    let report = migrate(Some(&dir.url())).await.expect("migrate");
    assert_eq!(report.applied.len(), 4);
    assert!(report.adopted_tables.is_empty());
    assert!(!report.ecto_schema_migrations);
    let again = migrate(Some(&dir.url())).await.expect("migrate again");
    assert!(again.is_noop());
    assert_eq!(again.already_applied.len(), 4);
}

/// The tables ecto_sqlite3 creates for the book's migrations, with data and
/// a `schema_migrations` table.
const ECTO_SQLITE_SCHEMA: &str = r#"
CREATE TABLE "schema_migrations" ("version" INTEGER PRIMARY KEY, "inserted_at" TEXT);
INSERT INTO "schema_migrations" VALUES (20170901000001, '2017-09-01T00:00:01'),
  (20170906163920, '2017-09-06T16:39:20');
CREATE TABLE "users" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "name" TEXT, "username" TEXT NOT NULL,
  "password_hash" TEXT, "inserted_at" TEXT NOT NULL, "updated_at" TEXT NOT NULL);
CREATE UNIQUE INDEX "users_username_index" ON "users" ("username");
CREATE TABLE "categories" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "name" TEXT NOT NULL,
  "inserted_at" TEXT NOT NULL, "updated_at" TEXT NOT NULL);
CREATE UNIQUE INDEX "categories_name_index" ON "categories" ("name");
CREATE TABLE "videos" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "url" TEXT, "title" TEXT,
  "description" TEXT, "user_id" INTEGER CONSTRAINT "videos_user_id_fkey" REFERENCES "users"("id"),
  "inserted_at" TEXT NOT NULL, "updated_at" TEXT NOT NULL,
  "category_id" INTEGER CONSTRAINT "videos_category_id_fkey" REFERENCES "categories"("id"),
  "slug" TEXT);
CREATE INDEX "videos_user_id_index" ON "videos" ("user_id");
CREATE TABLE "annotations" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "body" TEXT, "at" INTEGER,
  "user_id" INTEGER CONSTRAINT "annotations_user_id_fkey" REFERENCES "users"("id"),
  "video_id" INTEGER CONSTRAINT "annotations_video_id_fkey" REFERENCES "videos"("id"),
  "inserted_at" TEXT NOT NULL, "updated_at" TEXT NOT NULL);
CREATE INDEX "annotations_user_id_index" ON "annotations" ("user_id");
CREATE INDEX "annotations_video_id_index" ON "annotations" ("video_id");
INSERT INTO users VALUES (5, 'Ada L', 'ada', '$pbkdf2$x', '2017-09-01T00:00:00', '2017-09-01T00:00:00');
INSERT INTO categories VALUES (1, 'Drama', '2017-09-01T00:00:00', '2017-09-01T00:00:00');
INSERT INTO videos VALUES (9, 'https://youtu.be/abc', 'Elixir Rocks!', 'd', 5,
  '2017-09-01T00:00:00', '2017-09-01T00:00:00', 1, 'elixir-rocks-');
INSERT INTO annotations VALUES (100, 'first', 1500, 5, 9, '2017-09-06T16:49:10', '2017-09-06T16:49:10');
INSERT INTO annotations VALUES (101, 'second', 700, 5, 9, '2017-09-06T16:49:11', '2017-09-06T16:49:11');
"#;

fn dump(path: &Path, sql: &str) -> Vec<String> {
    let conn = raw(path);
    let mut stmt = conn.prepare(sql).expect("prepare dump");
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        let mut parts = Vec::new();
        for i in 0..n {
            let v: rusqlite::types::Value = r.get(i)?;
            parts.push(format!("{v:?}"));
        }
        Ok(parts.join("|"))
    })
    .expect("query dump")
    .collect::<Result<Vec<_>, _>>()
    .expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_existing_ecto_schema_keeping_data() {
    let dir = TempDir::new();
    raw(&dir.db())
        .execute_batch(ECTO_SQLITE_SCHEMA)
        .expect("ecto schema");
    let before_users = dump(&dir.db(), "SELECT * FROM users ORDER BY id");
    let before_videos = dump(&dir.db(), "SELECT * FROM videos ORDER BY id");
    let before_anns = dump(&dir.db(), "SELECT * FROM annotations ORDER BY id");
    let before_sm = dump(
        &dir.db(),
        "SELECT * FROM schema_migrations ORDER BY version",
    );

    let report = migrate(Some(&dir.url())).await.expect("migrate");
    assert!(report.ecto_schema_migrations);
    assert_eq!(
        report.adopted_tables,
        vec!["users", "categories", "videos", "annotations"]
    );
    assert!(report.added_columns.is_empty(), "{report:?}");
    assert_eq!(report.applied.len(), 4);

    assert_eq!(
        dump(&dir.db(), "SELECT * FROM users ORDER BY id"),
        before_users
    );
    assert_eq!(
        dump(&dir.db(), "SELECT * FROM videos ORDER BY id"),
        before_videos
    );
    assert_eq!(
        dump(&dir.db(), "SELECT * FROM annotations ORDER BY id"),
        before_anns
    );
    assert_eq!(
        dump(
            &dir.db(),
            "SELECT * FROM schema_migrations ORDER BY version"
        ),
        before_sm,
        "Ecto's schema_migrations must not be written"
    );

    let s = store::open(Some(&dir.url()), 2).await.expect("open");
    let v = s.video(9).await.expect("video").expect("video 9");
    assert_eq!(v.param(), "9-elixir-rocks-");
    let anns = s.annotations(9, 0, 200).await.expect("list");
    assert_eq!(
        anns.iter().map(|a| (a.id, a.at)).collect::<Vec<_>>(),
        vec![(101, 700), (100, 1500)]
    );
    assert_eq!(anns[0].user.username, "ada");
    assert_eq!(anns[0].user.name.as_deref(), Some("Ada L"));
    let new = s
        .insert_annotation(9, 5, "third", 2000)
        .await
        .expect("insert");
    assert!(new.id > 101);
    let seeded = s.seed_demo_if_empty().await.expect("seed");
    assert!(!seeded.seeded, "existing database must not get demo data");
    s.close().await;
}

/// A database from before the book's "add slug"/"add category" chapters
/// gets those nullable columns added, rows untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_missing_nullable_columns() {
    let dir = TempDir::new();
    raw(&dir.db())
        .execute_batch(
            r#"
CREATE TABLE "users" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "name" TEXT, "username" TEXT NOT NULL,
  "password_hash" TEXT, "inserted_at" TEXT NOT NULL, "updated_at" TEXT NOT NULL);
CREATE TABLE "videos" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "url" TEXT, "title" TEXT,
  "description" TEXT, "user_id" INTEGER REFERENCES "users"("id"),
  "inserted_at" TEXT NOT NULL, "updated_at" TEXT NOT NULL);
INSERT INTO users VALUES (1, 'J', 'jv', NULL, 'x', 'x');
INSERT INTO videos VALUES (3, 'u', 'Old Video', 'd', 1, 'x', 'x');
"#,
        )
        .expect("old schema");
    let report = migrate(Some(&dir.url())).await.expect("migrate");
    assert_eq!(
        report.added_columns,
        vec!["videos.category_id", "videos.slug"]
    );
    assert_eq!(report.adopted_tables, vec!["users", "videos"]);
    let s = store::open(Some(&dir.url()), 1).await.expect("open");
    let v = s.video(3).await.expect("video").expect("video 3");
    assert_eq!(v.slug, None);
    assert_eq!(v.param(), "3-old-video");
    assert!(s.migrate().await.expect("again").is_noop());
    s.close().await;
}

/// A table we would have to rewrite is refused, and nothing is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_incompatible_table() {
    let dir = TempDir::new();
    raw(&dir.db())
        .execute_batch("CREATE TABLE annotations (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO annotations VALUES (1, 'keep me');")
        .expect("odd schema");
    let e = migrate(Some(&dir.url())).await;
    assert!(
        matches!(e, Err(StoreError::Schema(ref m)) if m.contains("at")),
        "{e:?}"
    );
    // rolled back: no tracking table, no users table, the row is intact
    let conn = raw(&dir.db());
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('phx_server_migrations', 'users')",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n, 0);
    let body: String = conn
        .query_row("SELECT body FROM annotations WHERE id = 1", [], |r| {
            r.get(0)
        })
        .expect("row");
    assert_eq!(body, "keep me");
}

/// After close(), every call fails fast with Unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_store_is_unavailable() {
    let (_d, s) = fresh().await;
    s.ensure_user(1).await.expect("user");
    s.ensure_video(1).await.expect("video");
    s.insert_annotation(1, 1, "before", 0)
        .await
        .expect("insert");
    s.close().await;
    contract::expect_unavailable(
        s.insert_annotation(1, 1, "after", 0),
        Duration::from_millis(500),
    )
    .await;
    contract::expect_unavailable(s.annotations(1, 0, 200), Duration::from_millis(500)).await;
    contract::expect_unavailable(s.ping(), Duration::from_millis(500)).await;
    s.close().await; // idempotent
}

/// Another process holding the write lock past busy_timeout makes inserts
/// fail with Unavailable (not hang); reads keep working under WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_database_is_unavailable() {
    let dir = TempDir::new();
    let mut opts = StoreOptions::new(2);
    opts.busy_timeout = Duration::from_millis(300);
    let s: Arc<dyn AnnotationStore> = open_with(Some(&dir.url()), opts).await.expect("open");
    s.ensure_user(1).await.expect("user");
    s.ensure_video(1).await.expect("video");

    let locker = raw(&dir.db());
    locker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take write lock");
    contract::expect_unavailable(
        s.insert_annotation(1, 1, "blocked", 0),
        Duration::from_secs(2),
    )
    .await;
    assert!(s.video(1).await.expect("reads still work").is_some());
    locker.execute_batch("ROLLBACK").expect("release");
    s.insert_annotation(1, 1, "unblocked", 0)
        .await
        .expect("insert after release");
    s.close().await;
}

/// A path that cannot be created is reported as Unavailable at open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unopenable_path_is_unavailable() {
    let dir = TempDir::new();
    let file = dir.0.join("not_a_dir");
    std::fs::write(&file, b"x").expect("write file");
    let url = format!("sqlite://{}/db.sqlite3", file.display());
    let r = store::open(Some(&url), 1).await;
    assert!(
        matches!(r, Err(StoreError::Unavailable(_))),
        "{:?}",
        r.err()
    );

    let garbage = dir.0.join("garbage.sqlite3");
    std::fs::write(&garbage, vec![b'z'; 4096]).expect("write garbage");
    let r = SqliteStore::open(&garbage, &StoreOptions::new(1)).await;
    let r = match r {
        Ok(s) => {
            let m = s.migrate().await;
            s.close().await;
            m.map(|_| ())
        }
        Err(e) => Err(e),
    };
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_by_ids() {
    let (_d, s) = fresh().await;
    contract::users_by_ids(&s).await;
}
