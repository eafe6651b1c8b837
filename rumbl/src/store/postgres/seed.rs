//! Inserting the demo rows (`store::seed`) on Postgres.
//!
//! Postgres-specific beyond the SQL dialect in two ways: an advisory lock makes concurrent
//! first starts of several servers seed once, and the id sequences are moved past the demo's
//! explicit ids afterwards, so the next serial id does not collide with them.

use deadpool_postgres::Object;

use super::queries::{bump_sequence_sql, NOW_UTC};
use crate::store::seed::{SeedReport, DEMO_ANNOTATIONS, DEMO_CATEGORIES, DEMO_USERS, DEMO_VIDEOS};
use crate::store::{slugify, StoreError};

/// Advisory lock key (an arbitrary constant) serializing concurrent seed runs from several
/// server processes on one database.
const SEED_LOCK_KEY: i64 = 0x0070_6878_5f73_6565; // "phx_see"

/// See [`AnnotationStore::seed_demo_if_empty`](crate::store::AnnotationStore::seed_demo_if_empty).
pub(super) async fn seed_demo_if_empty(client: &mut Object) -> Result<SeedReport, StoreError> {
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
        let slug = slugify(v.title);
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
    tx.execute(&bump_sequence_sql("users"), &[&max_user])
        .await?;
    tx.execute(&bump_sequence_sql("videos"), &[&max_video])
        .await?;
    tx.commit().await?;
    tracing::info!(?report, "seeded demo data");
    Ok(report)
}
