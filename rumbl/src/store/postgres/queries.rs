//! The Postgres statements behind the store's reads and fixtures, and the mapping from their
//! rows to the store's types.
//!
//! * Every statement is parameterized and prepared through deadpool's per-connection
//!   statement cache, so a join's list is a single round trip after warm-up.
//! * Ids and `at` are cast to `bigint` in SQL (`$1::bigint`, `id::bigint`): databases
//!   created by older Ecto versions use `serial`/`integer` ids and the book's `at` column is
//!   `integer`, and tokio-postgres refuses to bind an `i64` to an `int4` parameter. With
//!   explicit casts one set of queries works against every variant.
//!
//! Each function takes a checked-out connection and leaves the choice of pool (and the
//! checkout's errors) to `pool.rs`. The group-commit INSERT is not here: its shape is part of
//! the batcher's protocol (see `batcher.rs`).

use std::collections::HashMap;

use deadpool_postgres::Object;
use tokio_postgres::Row;

use crate::store::{slugify, Annotation, Credentials, StoreError, User, Video};

/// "now" as Ecto writes it: UTC, `timestamp(0) without time zone`.
pub(super) const NOW_UTC: &str = "(now() AT TIME ZONE 'utc')::timestamp(0)";

const VIDEO_COLUMNS: &str = "id::bigint, COALESCE(url, '')::text, COALESCE(title, '')::text, \
     COALESCE(description, '')::text, slug::text, user_id::bigint, category_id::bigint";

const USER_COLUMNS: &str = "id::bigint, COALESCE(username, '')::text, name::text";

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

/// Moves `table`'s id sequence (if it has one) past `id`, so rows
/// inserted with explicit ids do not collide with later serial ids.
/// Never moves a sequence backwards.
pub(super) fn bump_sequence_sql(table: &str) -> String {
    format!(
        "SELECT setval(s::regclass, GREATEST($1::bigint, \
            COALESCE(pg_sequence_last_value(s::regclass), 0))) \
         FROM pg_get_serial_sequence('{table}', 'id') AS s WHERE s IS NOT NULL"
    )
}

/// See [`AnnotationStore::video`](crate::store::AnnotationStore::video).
pub(super) async fn video(client: &Object, id: i64) -> Result<Option<Video>, StoreError> {
    let sql = format!("SELECT {VIDEO_COLUMNS} FROM videos WHERE id = $1::bigint");
    let stmt = client.prepare_cached(&sql).await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(video_from_row)
        .transpose()
}

/// See [`AnnotationStore::videos`](crate::store::AnnotationStore::videos).
pub(super) async fn videos(client: &Object) -> Result<Vec<Video>, StoreError> {
    let sql = format!("SELECT {VIDEO_COLUMNS} FROM videos ORDER BY id");
    let stmt = client.prepare_cached(&sql).await?;
    client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(video_from_row)
        .collect()
}

/// See [`AnnotationStore::user`](crate::store::AnnotationStore::user).
pub(super) async fn user(client: &Object, id: i64) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1::bigint");
    let stmt = client.prepare_cached(&sql).await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .map(|r| user_from_row(&r, 0))
        .transpose()
}

/// See [`AnnotationStore::credentials`](crate::store::AnnotationStore::credentials).
pub(super) async fn credentials(
    client: &Object,
    username: &str,
) -> Result<Option<Credentials>, StoreError> {
    let sql =
        format!("SELECT {USER_COLUMNS}, password_hash::text FROM users WHERE username = $1::text");
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

/// See [`AnnotationStore::users`](crate::store::AnnotationStore::users).
pub(super) async fn users(client: &Object) -> Result<Vec<User>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
    let stmt = client.prepare_cached(&sql).await?;
    client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| user_from_row(r, 0))
        .collect()
}

/// See [`AnnotationStore::users_by_ids`](crate::store::AnnotationStore::users_by_ids);
/// `ids` is not empty.
pub(super) async fn users_by_ids(
    client: &Object,
    ids: &[i64],
) -> Result<HashMap<i64, User>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1::bigint[])");
    let stmt = client.prepare_cached(&sql).await?;
    client
        .query(&stmt, &[&ids])
        .await?
        .iter()
        .map(|r| user_from_row(r, 0).map(|u| (u.id, u)))
        .collect()
}

/// See [`AnnotationStore::annotations`](crate::store::AnnotationStore::annotations).
pub(super) async fn annotations(
    client: &Object,
    video_id: i64,
    after_id: i64,
    limit: i64,
) -> Result<Vec<Annotation>, StoreError> {
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

/// See [`AnnotationStore::ensure_video`](crate::store::AnnotationStore::ensure_video).
pub(super) async fn ensure_video(client: &mut Object, id: i64) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    let title = format!("Video {id}");
    let slug = slugify(&title);
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
        tx.execute(&bump_sequence_sql("videos"), &[&id]).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// See [`AnnotationStore::ensure_user`](crate::store::AnnotationStore::ensure_user).
pub(super) async fn ensure_user(client: &mut Object, id: i64) -> Result<(), StoreError> {
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
        tx.execute(&bump_sequence_sql("users"), &[&id]).await?;
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

/// See [`AnnotationStore::ping`](crate::store::AnnotationStore::ping).
pub(super) async fn ping(client: &Object) -> Result<(), StoreError> {
    client.simple_query("SELECT 1").await?;
    Ok(())
}
