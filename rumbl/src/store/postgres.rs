//! Postgres backend: tokio-postgres behind a deadpool pool.
//!
//! Design notes:
//!
//! * Every statement is parameterized and prepared through deadpool's
//!   per-connection statement cache, so a join's list is a single round trip
//!   after warm-up. A post (`new_annotation`) takes two: BEGIN + the INSERT
//!   pipelined, then COMMIT after the deadline check — for a whole group of
//!   posts at once (see `group_commit.rs`, which also keeps the
//!   acknowledgement contract of [`Post`]).
//! * Ids and `at` are cast to `bigint` in SQL (`$1::bigint`, `id::bigint`):
//!   databases created by older Ecto versions use `serial`/`integer` ids and
//!   the book's `at` column is `integer`, and tokio-postgres refuses to bind
//!   an `i64` to an `int4` parameter. With explicit casts one set of
//!   queries works against every variant.
//! * A down database must not hang a channel: the pool has a short wait
//!   timeout and connections a short connect timeout, and connection-level
//!   failures map to [`StoreError::Unavailable`] (see `error.rs`).
//! * TLS is not configured (`NoTls`); point the server at a local or
//!   private-network database, or a TLS-terminating proxy.

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};

use super::migrate::{existing_tables, plan, MigrationReport, Step, TRACKING_TABLE};
use super::seed::{SeedReport, DEMO_ANNOTATIONS, DEMO_CATEGORIES, DEMO_USERS, DEMO_VIDEOS};
use super::{
    redact, validate_annotation, Annotation, AnnotationStore, Backend, Credentials, Post,
    StoreError, StoreOptions, User, Video,
};

/// Advisory lock keys (arbitrary constants) serializing concurrent
/// `migrate`/seed runs from several server processes on one database.
const MIGRATE_LOCK_KEY: i64 = 0x0070_6878_5f6d_6967; // "phx_mig"
const SEED_LOCK_KEY: i64 = 0x0070_6878_5f73_6565; // "phx_see"

/// "now" as Ecto writes it: UTC, `timestamp(0) without time zone`.
pub(super) const NOW_UTC: &str = "(now() AT TIME ZONE 'utc')::timestamp(0)";

const VIDEO_COLUMNS: &str = "id::bigint, COALESCE(url, '')::text, COALESCE(title, '')::text, \
     COALESCE(description, '')::text, slug::text, user_id::bigint, category_id::bigint";

const USER_COLUMNS: &str = "id::bigint, COALESCE(username, '')::text, name::text";

mod group_commit;
use group_commit::InsertBatcher;

/// Postgres implementation of [`AnnotationStore`].
pub struct PostgresStore {
    pool: Pool,
    /// Group commit for `post_annotation` (see [`InsertBatcher`]).
    batcher: InsertBatcher,
}

impl PostgresStore {
    /// Builds the pool without connecting (connections are made on first
    /// use), so this only fails on a malformed URL. [`super::open`] pings
    /// right after to fail fast at startup.
    pub fn new(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let mut cfg: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Invalid(format!("invalid postgres URL {}: {e}", redact(url)))
        })?;
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
        let pool = Pool::builder(mgr)
            .max_size(opts.pool_size.max(1))
            .wait_timeout(Some(opts.wait_timeout))
            .create_timeout(Some(opts.connect_timeout))
            .recycle_timeout(Some(opts.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Other(format!("building connection pool: {e}")))?;
        Ok(PostgresStore {
            pool,
            batcher: InsertBatcher::new(opts.pool_size.max(1)),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Ensures `table` has every column the store needs; adds the addable
    /// ones. Returns `"table.column"` for each column added.
    async fn columns(
        tx: &deadpool_postgres::Transaction<'_>,
        table: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = tx
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1",
                &[&table],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Moves `table`'s id sequence (if it has one) past `id`, so rows
    /// inserted with explicit ids do not collide with later serial ids.
    /// Never moves a sequence backwards.
    fn bump_sequence_sql(table: &str) -> String {
        format!(
            "SELECT setval(s::regclass, GREATEST($1::bigint, \
                COALESCE(pg_sequence_last_value(s::regclass), 0))) \
             FROM pg_get_serial_sequence('{table}', 'id') AS s WHERE s IS NOT NULL"
        )
    }
}

fn video_from_row(row: &Row) -> Result<Video, StoreError> {
    Ok(Video {
        id: row.try_get(0)?,
        url: row.try_get(1)?,
        title: row.try_get(2)?,
        description: row.try_get(3)?,
        slug: row.try_get(4)?,
        user_id: row.try_get(5)?,
        category_id: row.try_get(6)?,
    })
}

fn user_from_row(row: &Row, offset: usize) -> Result<User, StoreError> {
    Ok(User {
        id: row.try_get(offset)?,
        username: row.try_get(offset + 1)?,
        name: row.try_get(offset + 2)?,
    })
}

/// Row layout: id, body, at, video_id, then the user columns.
pub(super) fn annotation_from_row(row: &Row) -> Result<Annotation, StoreError> {
    Ok(Annotation {
        id: row.try_get(0)?,
        body: row.try_get(1)?,
        at: row.try_get(2)?,
        video_id: row.try_get(3)?,
        user: user_from_row(row, 4)?,
    })
}

#[async_trait]
impl AnnotationStore for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn video(&self, id: i64) -> Result<Option<Video>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {VIDEO_COLUMNS} FROM videos WHERE id = $1::bigint");
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query_opt(&stmt, &[&id])
            .await?
            .as_ref()
            .map(video_from_row)
            .transpose()
    }

    async fn videos(&self) -> Result<Vec<Video>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {VIDEO_COLUMNS} FROM videos ORDER BY id");
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(video_from_row)
            .collect()
    }

    async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1::bigint");
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query_opt(&stmt, &[&id])
            .await?
            .map(|r| user_from_row(&r, 0))
            .transpose()
    }

    async fn credentials(&self, username: &str) -> Result<Option<Credentials>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {USER_COLUMNS}, password_hash::text FROM users WHERE username = $1::text"
        );
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query_opt(&stmt, &[&username])
            .await?
            .map(|r| {
                Ok(Credentials {
                    user: user_from_row(&r, 0)?,
                    password_hash: r.try_get(3)?,
                })
            })
            .transpose()
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(|r| user_from_row(r, 0))
            .collect()
    }

    async fn annotations(
        &self,
        video_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Annotation>, StoreError> {
        let client = self.client().await?;
        // NULLS LAST spelled out so both backends order a NULL `at` the same.
        let stmt = client
            .prepare_cached(
                "SELECT a.id::bigint, COALESCE(a.body, '')::text, COALESCE(a.at, 0)::bigint, \
                        a.video_id::bigint, u.id::bigint, COALESCE(u.username, '')::text, u.name::text \
                 FROM annotations a JOIN users u ON u.id = a.user_id \
                 WHERE a.video_id = $1::bigint AND a.id > $2::bigint \
                 ORDER BY a.at ASC NULLS LAST, a.id ASC \
                 LIMIT $3::bigint",
            )
            .await?;
        let limit = limit.max(0);
        client
            .query(&stmt, &[&video_id, &after_id, &limit])
            .await?
            .iter()
            .map(annotation_from_row)
            .collect()
    }

    async fn post_annotation(&self, post: Post) -> Result<Annotation, StoreError> {
        validate_annotation(&post.body, post.at)?;
        self.batcher.post(&self.pool, post).await
    }

    async fn ensure_video(&self, id: i64) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let title = format!("Video {id}");
        let slug = super::slugify(&title);
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO videos (id, url, title, description, slug, inserted_at, updated_at) \
                     VALUES ($1::bigint, '', $2::text, '', $3::text, {NOW_UTC}, {NOW_UTC}) \
                     ON CONFLICT (id) DO NOTHING"
                ),
                &[&id, &title, &slug],
            )
            .await?;
        if inserted > 0 {
            tx.execute(&Self::bump_sequence_sql("videos"), &[&id])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn ensure_user(&self, id: i64) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        // Fast path (every fixture-mode `new_annotation` calls this): one
        // prepared-once statement, no transaction, when the user exists.
        let exists = client
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1::bigint)")
            .await?;
        if client
            .query_one(&exists, &[&id])
            .await?
            .try_get::<_, bool>(0)?
        {
            return Ok(());
        }
        let tx = client.transaction().await?;
        let username = format!("user{id}");
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO users (id, username, name, inserted_at, updated_at) \
                     VALUES ($1::bigint, $2::text, $2::text, {NOW_UTC}, {NOW_UTC}) \
                     ON CONFLICT DO NOTHING"
                ),
                &[&id, &username],
            )
            .await?;
        if inserted > 0 {
            tx.execute(&Self::bump_sequence_sql("users"), &[&id])
                .await?;
        } else {
            // Nothing inserted: either the id exists (fine) or the
            // username is taken by another id (a fixture conflict).
            let exists = tx
                .query_opt("SELECT 1 FROM users WHERE id = $1::bigint", &[&id])
                .await?
                .is_some();
            if !exists {
                return Err(StoreError::Constraint(format!(
                    "cannot create user {id}: username {username} already taken"
                )));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK_KEY])
            .await?;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} ( \
                version bigint PRIMARY KEY, \
                name varchar(255) NOT NULL, \
                inserted_at timestamp(0) without time zone NOT NULL)"
        ))
        .await?;

        let tables: Vec<String> = tx
            .query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema()",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<_, _>>()?;
        let applied: Vec<i64> = tx
            .query(&format!("SELECT version FROM {TRACKING_TABLE}"), &[])
            .await?
            .iter()
            .map(|r| r.try_get::<_, i64>(0))
            .collect::<Result<_, _>>()?;

        let mut columns = std::collections::HashMap::new();
        for table in existing_tables(&tables) {
            columns.insert(table, Self::columns(&tx, table).await?);
        }
        let (steps, report) = plan(Backend::Postgres, &tables, &applied, &|t| {
            columns.get(t).cloned().unwrap_or_default()
        })?;
        for step in steps {
            match step {
                Step::Sql(sql) => tx.batch_execute(sql).await?,
                Step::Record(m) => {
                    tx.execute(
                        &format!(
                            "INSERT INTO {TRACKING_TABLE} (version, name, inserted_at) \
                             VALUES ($1, $2, {NOW_UTC})"
                        ),
                        &[&m.version, &m.name],
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        tracing::info!(?report, "postgres migrations done");
        Ok(report)
    }

    async fn seed_demo_if_empty(&self) -> Result<SeedReport, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SEED_LOCK_KEY])
            .await?;
        let non_empty = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM videos)",
                &[],
            )
            .await?
            .try_get::<_, bool>(0)?;
        if non_empty {
            return Ok(SeedReport::default());
        }
        for (id, username, name, hash) in DEMO_USERS {
            tx.execute(
                &format!(
                    "INSERT INTO users (id, username, name, password_hash, inserted_at, updated_at) \
                     VALUES ($1::bigint, $2::text, $3::text, $4::text, {NOW_UTC}, {NOW_UTC})"
                ),
                &[id, username, name, hash],
            )
            .await?;
        }
        let mut report = SeedReport::full();
        report.categories = 0;
        for name in DEMO_CATEGORIES {
            // The book seeds categories separately, so some may exist already.
            report.categories += tx
                .execute(
                    &format!(
                        "INSERT INTO categories (name, inserted_at, updated_at) \
                         VALUES ($1::text, {NOW_UTC}, {NOW_UTC}) ON CONFLICT DO NOTHING"
                    ),
                    &[name],
                )
                .await? as usize;
        }
        for v in DEMO_VIDEOS {
            let category = DEMO_CATEGORIES.get(v.category).copied().unwrap_or_default();
            let slug = super::slugify(v.title);
            tx.execute(
                &format!(
                    "INSERT INTO videos (id, url, title, description, slug, user_id, category_id, \
                                         inserted_at, updated_at) \
                     VALUES ($1::bigint, $2::text, $3::text, $4::text, $5::text, $6::bigint, \
                             (SELECT id FROM categories WHERE name = $7::text), \
                             {NOW_UTC}, {NOW_UTC})"
                ),
                &[
                    &v.id,
                    &v.url,
                    &v.title,
                    &v.description,
                    &slug,
                    &v.user_id,
                    &category,
                ],
            )
            .await?;
        }
        for (video_id, user_id, body, at) in DEMO_ANNOTATIONS {
            tx.execute(
                &format!(
                    "INSERT INTO annotations (body, at, user_id, video_id, inserted_at, updated_at) \
                     VALUES ($1::text, $2::bigint, $3::bigint, $4::bigint, {NOW_UTC}, {NOW_UTC})"
                ),
                &[body, at, user_id, video_id],
            )
            .await?;
        }
        let max_user = DEMO_USERS.iter().map(|u| u.0).max().unwrap_or(0);
        let max_video = DEMO_VIDEOS.iter().map(|v| v.id).max().unwrap_or(0);
        tx.execute(&Self::bump_sequence_sql("users"), &[&max_user])
            .await?;
        tx.execute(&Self::bump_sequence_sql("videos"), &[&max_video])
            .await?;
        tx.commit().await?;
        tracing::info!(?report, "seeded demo data");
        Ok(report)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close();
    }

    async fn users_by_ids(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, User>, StoreError> {
        if ids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let client = self.client().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1::bigint[])");
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query(&stmt, &[&ids])
            .await?
            .iter()
            .map(|r| user_from_row(r, 0).map(|u| (u.id, u)))
            .collect()
    }
}
