//! The SQLite statements behind the store's reads, fixtures and the post's INSERT, and the
//! mapping from their rows to the store's types.
//!
//! Plain synchronous functions over a [`Connection`]: which pool (writer or reader) runs
//! them, on which thread, is `pool.rs`'s business, and the post's transaction and deadline
//! checks are `post.rs`'s, so these stay the same statements whichever way they are called.
//! Statements that run often are prepared through rusqlite's per-connection cache.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::store::{slugify, Annotation, Credentials, StoreError, User, Video};

/// "now" as ecto_sqlite3 stores a `timestamp(0)`: ISO-8601 text in UTC.
pub(super) const NOW_UTC: &str = "strftime('%Y-%m-%dT%H:%M:%S', 'now')";

const VIDEO_COLUMNS: &str = "id, COALESCE(url, ''), COALESCE(title, ''), \
     COALESCE(description, ''), slug, user_id, category_id";

const USER_COLUMNS: &str = "id, COALESCE(username, ''), name";

fn video_from_row(row: &Row<'_>) -> rusqlite::Result<Video> {
    Ok(Video {
        id: row.get(0)?,
        url: row.get(1)?,
        title: row.get(2)?,
        description: row.get(3)?,
        slug: row.get(4)?,
        user_id: row.get(5)?,
        category_id: row.get(6)?,
    })
}

fn user_from_row(row: &Row<'_>, offset: usize) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(offset)?,
        username: row.get(offset + 1)?,
        name: row.get(offset + 2)?,
    })
}

fn find_user(conn: &Connection, id: i64) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], |r| user_from_row(r, 0))
        .optional()
}

/// See [`AnnotationStore::video`](crate::store::AnnotationStore::video).
pub(super) fn video(conn: &Connection, id: i64) -> Result<Option<Video>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {VIDEO_COLUMNS} FROM videos WHERE id = ?1"))?
        .query_row([id], video_from_row)
        .optional()?)
}

/// See [`AnnotationStore::videos`](crate::store::AnnotationStore::videos).
pub(super) fn videos(conn: &Connection) -> Result<Vec<Video>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {VIDEO_COLUMNS} FROM videos ORDER BY id"))?;
    let rows = stmt
        .query_map([], video_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// See [`AnnotationStore::user`](crate::store::AnnotationStore::user).
pub(super) fn user(conn: &Connection, id: i64) -> Result<Option<User>, StoreError> {
    Ok(find_user(conn, id)?)
}

/// See [`AnnotationStore::credentials`](crate::store::AnnotationStore::credentials).
pub(super) fn credentials(
    conn: &Connection,
    username: String,
) -> Result<Option<Credentials>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = ?1"
        ))?
        .query_row([username], |r| {
            Ok(Credentials {
                user: user_from_row(r, 0)?,
                password_hash: r.get(3)?,
            })
        })
        .optional()?)
}

/// See [`AnnotationStore::users`](crate::store::AnnotationStore::users).
pub(super) fn users(conn: &Connection) -> Result<Vec<User>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))?;
    let rows = stmt
        .query_map([], |r| user_from_row(r, 0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// See [`AnnotationStore::users_by_ids`](crate::store::AnnotationStore::users_by_ids):
/// `ids_json` is the ids as a JSON array, one statement over `json_each` (no parameter limit,
/// one prepared plan).
pub(super) fn users_by_ids(
    conn: &Connection,
    ids_json: String,
) -> Result<HashMap<i64, User>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id IN (SELECT value FROM json_each(?1))"
    ))?;
    let rows = stmt
        .query_map([ids_json], |r| user_from_row(r, 0))?
        .map(|u| u.map(|u| (u.id, u)))
        .collect::<rusqlite::Result<HashMap<_, _>>>()?;
    Ok(rows)
}

/// See [`AnnotationStore::annotations`](crate::store::AnnotationStore::annotations);
/// `limit` is not negative.
pub(super) fn annotations(
    conn: &Connection,
    video_id: i64,
    after_id: i64,
    limit: i64,
) -> Result<Vec<Annotation>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.id, COALESCE(a.body, ''), COALESCE(a.at, 0), a.video_id, \
                u.id, COALESCE(u.username, ''), u.name \
         FROM annotations a JOIN users u ON u.id = a.user_id \
         WHERE a.video_id = ?1 AND a.id > ?2 \
         ORDER BY a.at ASC NULLS LAST, a.id ASC \
         LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(params![video_id, after_id, limit], |r| {
            Ok(Annotation {
                id: r.get(0)?,
                body: r.get(1)?,
                at: r.get(2)?,
                video_id: r.get(3)?,
                user: user_from_row(r, 4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The post's statements, inside the caller's `IMMEDIATE` transaction (so the checks and the
/// insert see one consistent state): the user and the video must exist, then the row is
/// inserted. Committing (or not) is the caller's decision.
pub(super) fn insert_annotation(
    tx: &Connection,
    video_id: i64,
    user_id: i64,
    body: String,
    at: i64,
) -> Result<Annotation, StoreError> {
    let user =
        find_user(tx, user_id)?.ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))?;
    let video_exists = tx
        .prepare_cached("SELECT 1 FROM videos WHERE id = ?1")?
        .query_row([video_id], |_| Ok(()))
        .optional()?
        .is_some();
    if !video_exists {
        return Err(StoreError::NotFound(format!("video {video_id}")));
    }
    tx.prepare_cached(&format!(
        "INSERT INTO annotations (body, at, user_id, video_id, inserted_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, {NOW_UTC}, {NOW_UTC})"
    ))?
    .execute(params![body, at, user_id, video_id])?;
    let id = tx.last_insert_rowid();
    Ok(Annotation {
        id,
        body,
        at,
        video_id,
        user,
    })
}

/// See [`AnnotationStore::ensure_video`](crate::store::AnnotationStore::ensure_video).
pub(super) fn ensure_video(conn: &Connection, id: i64) -> Result<(), StoreError> {
    let title = format!("Video {id}");
    let slug = slugify(&title);
    conn.execute(
        &format!(
            "INSERT INTO videos (id, url, title, description, slug, inserted_at, updated_at) \
             VALUES (?1, '', ?2, '', ?3, {NOW_UTC}, {NOW_UTC}) \
             ON CONFLICT (id) DO NOTHING"
        ),
        params![id, title, slug],
    )?;
    Ok(())
}

/// See [`AnnotationStore::ensure_user`](crate::store::AnnotationStore::ensure_user).
pub(super) fn ensure_user(conn: &Connection, id: i64) -> Result<(), StoreError> {
    let username = format!("user{id}");
    let inserted = conn.execute(
        &format!(
            "INSERT INTO users (id, username, name, inserted_at, updated_at) \
             VALUES (?1, ?2, ?2, {NOW_UTC}, {NOW_UTC}) ON CONFLICT DO NOTHING"
        ),
        params![id, username],
    )?;
    if inserted == 0 && find_user(conn, id)?.is_none() {
        return Err(StoreError::Constraint(format!(
            "cannot create user {id}: username {username} already taken"
        )));
    }
    Ok(())
}

/// See [`AnnotationStore::ping`](crate::store::AnnotationStore::ping).
pub(super) fn ping(conn: &Connection) -> Result<(), StoreError> {
    conn.query_row("SELECT 1", [], |_| Ok(()))?;
    Ok(())
}
