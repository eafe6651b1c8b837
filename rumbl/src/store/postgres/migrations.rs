//! Running the shared migration plan on Postgres.
//!
//! The decisions are `store::migrations::plan`'s; this file only reads what it needs
//! (tables, recorded versions, columns of our tables) from `information_schema` and executes
//! the steps, all in one transaction under an advisory lock, so several server processes
//! migrating one database at once run one after another and the second finds nothing to do.

use std::collections::HashMap;

use deadpool_postgres::{Object, Transaction};

use super::queries::NOW_UTC;
use crate::store::migrations::{existing_tables, plan, MigrationReport, Step, TRACKING_TABLE};
use crate::store::{Backend, StoreError};

/// Advisory lock key (an arbitrary constant) serializing concurrent `migrate` runs from
/// several server processes on one database.
const MIGRATE_LOCK_KEY: i64 = 0x0070_6878_5f6d_6967; // "phx_mig"

/// The columns `table` has (for the plan's adopt / add-column decisions).
async fn columns(tx: &Transaction<'_>, table: &str) -> Result<Vec<String>, StoreError> {
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

/// See [`AnnotationStore::migrate`](crate::store::AnnotationStore::migrate).
pub(super) async fn migrate(client: &mut Object) -> Result<MigrationReport, StoreError> {
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

    let mut table_columns = HashMap::new();
    for table in existing_tables(&tables) {
        table_columns.insert(table, columns(&tx, table).await?);
    }
    let (steps, report) = plan(Backend::Postgres, &tables, &applied, &|t| {
        table_columns.get(t).cloned().unwrap_or_default()
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
