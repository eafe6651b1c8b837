//! Inserting the demo rows (`store::seed`) on SQLite.
//!
//! One `BEGIN IMMEDIATE` transaction on the writer connection, so the emptiness check and the
//! inserts see one state even if another process seeds the same file at the same moment.
//! Unlike Postgres there are no sequences to move: SQLite's next rowid follows the largest id.

use rusqlite::{params, Connection, TransactionBehavior};

use super::queries::NOW_UTC;
use crate::store::seed::{SeedReport, DEMO_ANNOTATIONS, DEMO_CATEGORIES, DEMO_USERS, DEMO_VIDEOS};
use crate::store::{slugify, StoreError};

/// See [`AnnotationStore::seed_demo_if_empty`](crate::store::AnnotationStore::seed_demo_if_empty).
pub(super) fn seed_demo_if_empty(conn: &mut Connection) -> Result<SeedReport, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let non_empty: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM videos)",
        [],
        |r| r.get(0),
    )?;
    if non_empty {
        return Ok(SeedReport::default());
    }
    for (id, username, name, hash) in DEMO_USERS {
        tx.execute(
            &format!(
                "INSERT INTO users (id, username, name, password_hash, inserted_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, {NOW_UTC}, {NOW_UTC})"
            ),
            params![id, username, name, hash],
        )?;
    }
    let mut report = SeedReport::full();
    report.categories = 0;
    for name in DEMO_CATEGORIES {
        report.categories += tx.execute(
            &format!(
                "INSERT INTO categories (name, inserted_at, updated_at) \
                 VALUES (?1, {NOW_UTC}, {NOW_UTC}) ON CONFLICT DO NOTHING"
            ),
            [name],
        )?;
    }
    for v in DEMO_VIDEOS {
        let category = DEMO_CATEGORIES.get(v.category).copied().unwrap_or_default();
        tx.execute(
            &format!(
                "INSERT INTO videos (id, url, title, description, slug, user_id, \
                                     category_id, inserted_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
                         (SELECT id FROM categories WHERE name = ?7), \
                         {NOW_UTC}, {NOW_UTC})"
            ),
            params![
                v.id,
                v.url,
                v.title,
                v.description,
                slugify(v.title),
                v.user_id,
                category
            ],
        )?;
    }
    for (video_id, user_id, body, at) in DEMO_ANNOTATIONS {
        tx.execute(
            &format!(
                "INSERT INTO annotations (body, at, user_id, video_id, inserted_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, {NOW_UTC}, {NOW_UTC})"
            ),
            params![body, at, user_id, video_id],
        )?;
    }
    tx.commit()?;
    tracing::info!(?report, "seeded demo data");
    Ok(report)
}
