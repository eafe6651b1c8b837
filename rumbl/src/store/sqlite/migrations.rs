//! Running the shared migration plan on SQLite.
//!
//! The decisions are `store::migrations::plan`'s; this file only reads what it needs
//! (`sqlite_master`, the recorded versions, `pragma_table_info`) and executes the steps in one
//! `BEGIN IMMEDIATE` transaction on the writer connection, which takes the write lock up front
//! so another process migrating the same file waits instead of interleaving.

use std::collections::HashMap;

use rusqlite::{params, Connection, TransactionBehavior};

use super::queries::NOW_UTC;
use crate::store::migrations::{existing_tables, plan, MigrationReport, Step, TRACKING_TABLE};
use crate::store::{Backend, StoreError};

/// The columns `table` has (for the plan's adopt / add-column decisions).
fn table_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let cols = stmt
        .query_map([table], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>();
    cols
}

/// See [`AnnotationStore::migrate`](crate::store::AnnotationStore::migrate).
pub(super) fn migrate(conn: &mut Connection) -> Result<MigrationReport, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{TRACKING_TABLE}\" ( \
            \"version\" INTEGER PRIMARY KEY, \
            \"name\" TEXT NOT NULL, \
            \"inserted_at\" TEXT NOT NULL)"
    ))?;
    let tables: Vec<String> = tx
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let applied: Vec<i64> = tx
        .prepare(&format!("SELECT version FROM \"{TRACKING_TABLE}\""))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;

    let mut columns = HashMap::new();
    for table in existing_tables(&tables) {
        columns.insert(table, table_columns(&tx, table)?);
    }
    let (steps, report) = plan(Backend::Sqlite, &tables, &applied, &|t| {
        columns.get(t).cloned().unwrap_or_default()
    })?;
    for step in steps {
        match step {
            Step::Sql(sql) => tx.execute_batch(sql)?,
            Step::Record(m) => {
                tx.execute(
                    &format!(
                        "INSERT INTO \"{TRACKING_TABLE}\" (version, name, inserted_at) \
                         VALUES (?1, ?2, {NOW_UTC})"
                    ),
                    params![m.version, m.name],
                )?;
            }
        }
    }
    tx.commit()?;
    tracing::info!(?report, "sqlite migrations done");
    Ok(report)
}
