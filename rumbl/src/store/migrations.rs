//! Schema migrations, shared by both backends.
//!
//! The SQL lives in `migrations/{postgres,sqlite}/*.sql` and is embedded
//! with `include_str!`, so the binary needs no files at runtime. This module
//! holds the *data* (which files, which columns the code reads, which
//! missing columns may be added) and the one runner's decisions, `plan`:
//! each backend only reads what the database holds, asks `plan` what to run,
//! and executes those steps with its own driver in one transaction
//! (`postgres/migrations.rs`, `sqlite/migrations.rs`). Nothing here touches a
//! database, so the rules are unit-tested without one; opening a database to
//! migrate it is [`migrate`](super::migrate)'s job. A run goes:
//!
//! 1. lock (Postgres advisory lock; SQLite `BEGIN IMMEDIATE`) and create our
//!    tracking table `phx_server_migrations` if missing;
//! 2. for every migration in order: if its table already exists, check its
//!    columns (adding the nullable [`ADDABLE_COLUMNS`] when missing, failing
//!    with [`StoreError::Schema`] for any other missing column); if the
//!    migration is not recorded yet, run its `CREATE ... IF NOT EXISTS` SQL
//!    and record it;
//! 3. commit.
//!
//! # Why our own tracking table and not Ecto's `schema_migrations`
//!
//! Ecto's versions are generation timestamps unique to each project
//! (`20170906163920_create_annotation`), so there is no version number of
//! ours that an existing Rumbl checkout would recognise; writing rows there
//! would only make `mix ecto.migrations` list unknown migrations. We detect
//! `schema_migrations` (reported in [`MigrationReport::ecto_schema_migrations`])
//! and otherwise leave it alone. Because every statement is
//! `IF NOT EXISTS`, running our migrations on an Ecto-created database just
//! adopts its tables, and data is never dropped or rewritten.

use serde::Serialize;

use super::{Backend, StoreError};

/// Name of the table that records which of our migrations ran.
pub const TRACKING_TABLE: &str = "phx_server_migrations";

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Monotonic version, recorded in [`TRACKING_TABLE`].
    pub version: i64,
    /// File stem, e.g. `"0001_create_users"`.
    pub name: &'static str,
    /// The table the migration creates (used to detect adoption).
    pub table: &'static str,
    /// The migration for Postgres (the book's Ecto DDL).
    pub postgres_sql: &'static str,
    /// The same schema for SQLite.
    pub sqlite_sql: &'static str,
}

impl Migration {
    /// This migration's SQL for `backend`.
    pub fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Postgres => self.postgres_sql,
            Backend::Sqlite => self.sqlite_sql,
        }
    }
}

macro_rules! migration {
    ($version:expr, $name:literal, $table:literal) => {
        Migration {
            version: $version,
            name: $name,
            table: $table,
            postgres_sql: include_str!(concat!("../../migrations/postgres/", $name, ".sql")),
            sqlite_sql: include_str!(concat!("../../migrations/sqlite/", $name, ".sql")),
        }
    };
}

/// All migrations, in the order they must run (foreign keys point backwards).
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_create_users", "users"),
    migration!(2, "0002_create_categories", "categories"),
    migration!(3, "0003_create_videos", "videos"),
    migration!(4, "0004_create_annotations", "annotations"),
];

/// Columns the store's queries read or write, per table. An adopted table
/// missing one of these (and not in [`ADDABLE_COLUMNS`]) is rejected.
pub const REQUIRED_COLUMNS: &[(&str, &[&str])] = &[
    (
        "users",
        &[
            "id",
            "name",
            "username",
            "password_hash",
            "inserted_at",
            "updated_at",
        ],
    ),
    ("categories", &["id", "name", "inserted_at", "updated_at"]),
    (
        "videos",
        &[
            "id",
            "url",
            "title",
            "description",
            "user_id",
            "category_id",
            "slug",
            "inserted_at",
            "updated_at",
        ],
    ),
    (
        "annotations",
        &[
            "id",
            "body",
            "at",
            "user_id",
            "video_id",
            "inserted_at",
            "updated_at",
        ],
    ),
];

/// A column that may be added to an adopted table: nullable, so adding it
/// never touches existing rows. These are the columns that later chapters of
/// the book add, so a database from an earlier chapter can be upgraded.
#[derive(Debug, Clone, Copy)]
pub struct AddableColumn {
    /// The table it belongs to.
    pub table: &'static str,
    /// The column's name.
    pub column: &'static str,
    /// `ALTER TABLE … ADD COLUMN` for Postgres.
    pub postgres_ddl: &'static str,
    /// The same for SQLite.
    pub sqlite_ddl: &'static str,
}

impl AddableColumn {
    /// The DDL that adds this column on `backend`.
    pub fn ddl(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Postgres => self.postgres_ddl,
            Backend::Sqlite => self.sqlite_ddl,
        }
    }
}

/// The columns later chapters add, in the order they are added to an adopted database.
pub const ADDABLE_COLUMNS: &[AddableColumn] = &[
    AddableColumn {
        table: "users",
        column: "password_hash",
        postgres_ddl: "ALTER TABLE users ADD COLUMN password_hash varchar(255)",
        sqlite_ddl: r#"ALTER TABLE "users" ADD COLUMN "password_hash" TEXT"#,
    },
    AddableColumn {
        table: "users",
        column: "name",
        postgres_ddl: "ALTER TABLE users ADD COLUMN name varchar(255)",
        sqlite_ddl: r#"ALTER TABLE "users" ADD COLUMN "name" TEXT"#,
    },
    AddableColumn {
        table: "videos",
        column: "category_id",
        postgres_ddl: "ALTER TABLE videos ADD COLUMN category_id bigint \
                       CONSTRAINT videos_category_id_fkey REFERENCES categories (id)",
        sqlite_ddl: r#"ALTER TABLE "videos" ADD COLUMN "category_id" INTEGER CONSTRAINT "videos_category_id_fkey" REFERENCES "categories" ("id")"#,
    },
    AddableColumn {
        table: "videos",
        column: "slug",
        postgres_ddl: "ALTER TABLE videos ADD COLUMN slug varchar(255)",
        sqlite_ddl: r#"ALTER TABLE "videos" ADD COLUMN "slug" TEXT"#,
    },
];

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationReport {
    /// The database it ran on.
    pub backend: Backend,
    /// Migrations run (and recorded) by this call, e.g. `"0001_create_users"`.
    pub applied: Vec<String>,
    /// Migrations that were already recorded before this call.
    pub already_applied: Vec<String>,
    /// Tables that existed before their migration was recorded (created by
    /// Ecto or by hand) and were adopted without changes.
    pub adopted_tables: Vec<String>,
    /// Columns added to adopted tables, as `"table.column"`.
    pub added_columns: Vec<String>,
    /// Whether Ecto's `schema_migrations` table exists (read-only detection).
    pub ecto_schema_migrations: bool,
}

impl MigrationReport {
    pub(crate) fn new(backend: Backend) -> Self {
        MigrationReport {
            backend,
            applied: Vec::new(),
            already_applied: Vec::new(),
            adopted_tables: Vec::new(),
            added_columns: Vec::new(),
            ecto_schema_migrations: false,
        }
    }

    /// True when the call changed nothing (a second run).
    pub fn is_noop(&self) -> bool {
        self.applied.is_empty() && self.added_columns.is_empty()
    }
}

/// Which columns of `table` must be added, given the columns it has.
/// Errors if a required column is missing and cannot be added.
pub(crate) fn columns_to_add(
    table: &str,
    existing: &[String],
) -> Result<Vec<&'static AddableColumn>, StoreError> {
    let Some((_, required)) = REQUIRED_COLUMNS.iter().find(|(t, _)| *t == table) else {
        return Ok(Vec::new());
    };
    let mut add = Vec::new();
    let mut missing = Vec::new();
    for col in required.iter() {
        if existing.iter().any(|c| c.eq_ignore_ascii_case(col)) {
            continue;
        }
        match ADDABLE_COLUMNS
            .iter()
            .find(|a| a.table == table && a.column == *col)
        {
            Some(a) => add.push(a),
            None => missing.push(*col),
        }
    }
    if missing.is_empty() {
        Ok(add)
    } else {
        Err(StoreError::Schema(format!(
            "existing table `{table}` lacks required column(s) {}; refusing to alter it",
            missing.join(", ")
        )))
    }
}

/// One step of a migration run, in the order the backend executes it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// Run this SQL (a migration's file, or a column's `ALTER TABLE`).
    Sql(&'static str),
    /// Record this migration in the tracking table.
    Record(&'static Migration),
}

/// The migration runner's decisions, shared by both backends: given what the database holds
/// (its tables, the versions recorded in the tracking table, and the columns of those of our
/// tables that exist), the steps to run and the report they will make. Pure, so the rules are
/// tested once without a database; each backend only reads the inputs and executes the steps
/// in its own transaction (step 2 of the module docs).
pub(crate) fn plan(
    backend: Backend,
    tables: &[String],
    applied: &[i64],
    columns: &dyn Fn(&str) -> Vec<String>,
) -> Result<(Vec<Step>, MigrationReport), StoreError> {
    let mut report = MigrationReport::new(backend);
    report.ecto_schema_migrations = tables.iter().any(|t| t == "schema_migrations");
    let mut steps = Vec::new();
    for m in MIGRATIONS {
        let table_exists = tables.iter().any(|t| t == m.table);
        if table_exists {
            for col in columns_to_add(m.table, &columns(m.table))? {
                steps.push(Step::Sql(col.ddl(backend)));
                report
                    .added_columns
                    .push(format!("{}.{}", col.table, col.column));
            }
        }
        if applied.contains(&m.version) {
            report.already_applied.push(m.name.to_string());
            continue;
        }
        if table_exists {
            report.adopted_tables.push(m.table.to_string());
        }
        steps.push(Step::Sql(m.sql(backend)));
        steps.push(Step::Record(m));
        report.applied.push(m.name.to_string());
    }
    Ok((steps, report))
}

/// The tables of [`MIGRATIONS`] that `tables` holds: the ones whose columns [`plan`] needs.
pub(crate) fn existing_tables<'a>(tables: &'a [String]) -> impl Iterator<Item = &'static str> + 'a {
    MIGRATIONS
        .iter()
        .map(|m| m.table)
        .filter(move |t| tables.iter().any(|x| x == t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_tables_covered() {
        for w in MIGRATIONS.windows(2) {
            assert!(w[0].version < w[1].version);
        }
        for m in MIGRATIONS {
            assert!(REQUIRED_COLUMNS.iter().any(|(t, _)| *t == m.table));
            assert!(m.postgres_sql.contains(m.table));
            assert!(m.sqlite_sql.contains(m.table));
        }
    }

    #[test]
    fn missing_columns_classified() {
        let have: Vec<String> = ["id", "url", "title", "description", "user_id"]
            .iter()
            .chain(["inserted_at", "updated_at"].iter())
            .map(|s| s.to_string())
            .collect();
        let add = columns_to_add("videos", &have).map_err(|e| e.to_string());
        let names: Vec<&str> = add.iter().flatten().map(|a| a.column).collect();
        assert_eq!(names, vec!["category_id", "slug"]);

        let bad = columns_to_add("annotations", &["id".to_string()]);
        assert!(matches!(bad, Err(StoreError::Schema(_))));
    }

    fn strings(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    /// Every required column of `table`, minus `without`.
    fn columns_of(table: &str, without: &[&str]) -> Vec<String> {
        let (_, cols) = REQUIRED_COLUMNS
            .iter()
            .find(|(t, _)| *t == table)
            .expect("known table");
        cols.iter()
            .filter(|c| !without.contains(c))
            .map(|c| c.to_string())
            .collect()
    }

    fn sqls(steps: &[Step]) -> Vec<&'static str> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Sql(sql) => Some(*sql),
                Step::Record(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_fresh_database_runs_and_records_every_migration_in_order() {
        for backend in [Backend::Postgres, Backend::Sqlite] {
            let (steps, report) = plan(backend, &[], &[], &|_| Vec::new()).expect("plan");
            assert_eq!(steps.len(), 2 * MIGRATIONS.len());
            for (pair, m) in steps.chunks(2).zip(MIGRATIONS) {
                assert!(matches!(pair[0], Step::Sql(sql) if sql == m.sql(backend)));
                assert!(matches!(pair[1], Step::Record(r) if r.version == m.version));
            }
            assert_eq!(report.applied.len(), MIGRATIONS.len());
            assert!(report.adopted_tables.is_empty() && report.added_columns.is_empty());
        }
    }

    #[test]
    fn a_second_run_changes_nothing() {
        let tables = strings(&["users", "categories", "videos", "annotations"]);
        let applied: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        let (steps, report) =
            plan(Backend::Sqlite, &tables, &applied, &|t| columns_of(t, &[])).expect("plan");
        assert!(steps.is_empty());
        assert!(report.is_noop());
        assert_eq!(report.already_applied.len(), MIGRATIONS.len());
    }

    #[test]
    fn an_ecto_database_from_an_early_chapter_is_adopted_and_its_columns_added() {
        // Ecto made users and videos (before the slug and category chapters); no tracking rows.
        let tables = strings(&["schema_migrations", "users", "videos"]);
        let (steps, report) = plan(Backend::Postgres, &tables, &[], &|t| match t {
            "videos" => columns_of(t, &["slug", "category_id"]),
            _ => columns_of(t, &[]),
        })
        .expect("plan");
        assert!(report.ecto_schema_migrations);
        assert_eq!(report.adopted_tables, strings(&["users", "videos"]));
        assert_eq!(
            report.added_columns,
            strings(&["videos.category_id", "videos.slug"])
        );
        // The ALTERs come before the videos migration's own (IF NOT EXISTS) SQL.
        let sql = sqls(&steps);
        let alter = sql.iter().position(|s| s.contains("ADD COLUMN slug"));
        let create = sql.iter().position(|s| *s == MIGRATIONS[2].postgres_sql);
        assert!(alter.is_some() && alter < create, "{sql:?}");
        assert_eq!(report.applied.len(), MIGRATIONS.len(), "all four recorded");
    }

    #[test]
    fn a_table_missing_a_column_we_cannot_add_refuses_the_whole_run() {
        let tables = strings(&["annotations"]);
        let r = plan(Backend::Sqlite, &tables, &[], &|t| columns_of(t, &["body"]));
        assert!(matches!(r, Err(StoreError::Schema(m)) if m.contains("body")));
    }
}
