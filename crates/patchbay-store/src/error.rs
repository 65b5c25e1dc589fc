//! Maps sqlx errors to [`StoreError`]: unique violations become conflicts that
//! name the API field, connection trouble becomes `Unavailable`.

use patchbay_core::StoreError;

pub(crate) fn map(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let what = format!("{} {}", db.constraint().unwrap_or(""), db.message());
            let field = if what.contains("external_id") {
                "external_id"
            } else {
                "id"
            };
            StoreError::Conflict { field }
        }
        // SQLITE_BUSY / SQLITE_LOCKED: another process holds the write lock past the timeout.
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("5" | "6" | "517")) => {
            StoreError::Unavailable(db.message().to_owned())
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        _ => StoreError::Internal(err.to_string()),
    }
}

/// A row whose stored value no longer parses: a bug or tampering, never user error.
pub(crate) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Internal(format!("stored {what} '{value}' is not recognised"))
}
