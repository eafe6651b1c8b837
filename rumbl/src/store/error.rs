//! The single error type of the store layer.
//!
//! Callers (the video channel, the CLI) only need to decide *what to tell the
//! client*: "try again later" ([`StoreError::Unavailable`]), "no such thing"
//! ([`StoreError::NotFound`]), "your input was rejected"
//! ([`StoreError::Invalid`] / [`StoreError::Constraint`]) or "bug / unexpected"
//! ([`StoreError::Other`]). Driver errors are therefore classified here, in one
//! place, instead of leaking `tokio_postgres::Error` / `rusqlite::Error` into
//! the channel code. A failed pool checkout (pool closed, wait timed out) is
//! about the pool rather than the database, so each backend's `pool.rs` maps
//! it, handing the driver error inside it back to the classification here.

/// Everything that can go wrong in an [`AnnotationStore`](super::AnnotationStore) call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now: connection refused or
    /// dropped, pool wait timeout, database missing, SQLite file locked past
    /// the busy timeout, store closed. Retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A referenced row (video, user) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database rejected the write because of a constraint (unique,
    /// foreign key, not-null, check).
    #[error("constraint violated: {0}")]
    Constraint(String),
    /// The arguments were rejected before touching the database (blank body,
    /// `at` out of range, malformed database URL).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The existing schema cannot be used (a required table/column is
    /// missing and cannot be added without rewriting data).
    #[error("incompatible schema: {0}")]
    Schema(String),
    /// Anything else (driver protocol error, unexpected row shape, ...).
    #[error("store error: {0}")]
    Other(String),
}

impl StoreError {
    /// True for errors where retrying later (e.g. after the database comes
    /// back) can succeed; the channel uses this to pick its reply.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Postgres SQLSTATE classes/codes that mean "the database is not reachable
/// or not usable right now" rather than "your statement is wrong".
fn pg_code_is_unavailable(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (too many connections, disk full)
        || code.starts_with("57P") // admin/crash shutdown, cannot connect now
        || code == "3D000" // database does not exist (dropped underneath us)
        || code == "28000" // invalid authorization
        || code == "28P01" // invalid password
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            let msg = format!("{} ({})", db.message(), code);
            if pg_code_is_unavailable(code) {
                return StoreError::Unavailable(msg);
            }
            if code.starts_with("23") {
                return StoreError::Constraint(msg);
            }
            if code == "22003" {
                // numeric value out of range, e.g. `at` beyond an int4 column
                return StoreError::Invalid(msg);
            }
            return StoreError::Other(msg);
        }
        // No server-side error. tokio-postgres only exposes its error kind
        // through the fixed Display strings, so classify on those: socket
        // I/O, closed connection, connect failure/timeout, auth and TLS
        // problems all mean "database unreachable from here".
        let kind = e.to_string();
        let detail = match std::error::Error::source(&e) {
            Some(src) => format!("{kind}: {src}"),
            None => kind.clone(),
        };
        const UNAVAILABLE_KINDS: [&str; 6] = [
            "error communicating with the server",
            "connection closed",
            "error connecting to server",
            "timeout waiting for server",
            "authentication error",
            "error performing TLS handshake",
        ];
        if e.is_closed() || UNAVAILABLE_KINDS.contains(&kind.as_str()) {
            StoreError::Unavailable(detail)
        } else {
            StoreError::Other(detail)
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            match f.code {
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::ReadOnly
                | ErrorCode::NotADatabase
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::PermissionDenied => return StoreError::Unavailable(e.to_string()),
                ErrorCode::ConstraintViolation => return StoreError::Constraint(e.to_string()),
                _ => {}
            }
        }
        StoreError::Other(e.to_string())
    }
}
