//! Maps sqlx errors to [`StoreError`]: a unique violation becomes a conflict
//! naming the API field, found by the constraint's name (PostgreSQL) or by its
//! column list (SQLite, whose messages name columns, not indexes), never by
//! searching the message for a word; connection trouble becomes `Unavailable`.

use patchbay_core::StoreError;

/// A unique constraint of the schema and the API field it protects. Both
/// migration folders define each under the same name (a test checks it).
struct Unique {
    /// The index or constraint name.
    name: &'static str,
    /// How SQLite names it in its message: `table.column, table.column`.
    sqlite_columns: &'static str,
    /// The API field to name in the error.
    field: &'static str,
}

const UNIQUE: &[Unique] = &[
    Unique {
        name: "connections_external_id",
        sqlite_columns: "connections.tenant_id, connections.external_id",
        field: "external_id",
    },
    Unique {
        name: "jobs_pending_subject",
        sqlite_columns: "jobs.kind, jobs.subject_id",
        field: "subject_id",
    },
];

pub(crate) fn unique_constraint_names() -> impl Iterator<Item = &'static str> {
    UNIQUE.iter().map(|u| u.name)
}

/// The field a unique violation is about: a known constraint's field, `id` for
/// primary keys, `None` for anything unknown (a bug to surface, not to guess).
fn unique_field(constraint: Option<&str>, message: &str) -> Option<&'static str> {
    if let Some(name) = constraint {
        if let Some(u) = UNIQUE.iter().find(|u| u.name == name) {
            return Some(u.field);
        }
        return name.ends_with("_pkey").then_some("id");
    }
    let columns = message.strip_prefix("UNIQUE constraint failed: ")?;
    if let Some(u) = UNIQUE.iter().find(|u| u.sqlite_columns == columns) {
        return Some(u.field);
    }
    let (_, column) = columns.split_once('.')?;
    (column == "id" || column == "key_id").then_some("id")
}

pub(crate) fn map(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            match unique_field(db.constraint(), db.message()) {
                Some(field) => StoreError::Conflict { field },
                None => StoreError::Internal(format!(
                    "unexpected unique violation ({}): {}",
                    db.constraint().unwrap_or("unnamed"),
                    db.message()
                )),
            }
        }
        // SQLITE_BUSY / SQLITE_LOCKED: another process holds the write lock past the timeout.
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("5" | "6" | "517")) => {
            StoreError::Unavailable(db.message().to_owned())
        }
        sqlx::Error::Database(db) if db.code().as_deref().is_some_and(server_unavailable) => {
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

/// PostgreSQL SQLSTATEs that say the server, not the statement, failed:
/// connection exceptions (class 08), a server shutting down or not yet
/// accepting sessions (57P01 `admin_shutdown`, as `pg_ctl stop -m fast`
/// sends to every session; 57P02 `crash_shutdown`; 57P03
/// `cannot_connect_now`) and too many connections (53300). Retrying shortly
/// may work, so they are `Unavailable`, never an internal error.
fn server_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// A row whose stored value no longer parses: a bug or tampering, never user error.
pub(crate) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Internal(format!("stored {what} '{value}' is not recognised"))
}

#[cfg(test)]
mod tests {
    use super::{server_unavailable, unique_field};

    #[test]
    fn a_server_going_away_is_unavailable_not_internal() {
        for code in [
            "57P01", "57P02", "57P03", "53300", "08006", "08001", "08003",
        ] {
            assert!(server_unavailable(code), "{code}");
        }
        // Statement errors stay what they are.
        for code in ["23505", "42P01", "40001", "57014", "22P02"] {
            assert!(!server_unavailable(code), "{code}");
        }
    }

    #[test]
    fn postgres_constraints_map_by_name() {
        assert_eq!(
            unique_field(Some("connections_external_id"), "duplicate key value"),
            Some("external_id")
        );
        assert_eq!(unique_field(Some("tenants_pkey"), ""), Some("id"));
        assert_eq!(unique_field(Some("something_else"), "external_id"), None);
    }

    #[test]
    fn sqlite_constraints_map_by_column_list() {
        assert_eq!(
            unique_field(
                None,
                "UNIQUE constraint failed: connections.tenant_id, connections.external_id"
            ),
            Some("external_id")
        );
        assert_eq!(
            unique_field(None, "UNIQUE constraint failed: tenants.id"),
            Some("id")
        );
        // A message that merely mentions a column is not a match.
        assert_eq!(
            unique_field(None, "UNIQUE constraint failed: other.external_id_x"),
            None
        );
    }
}
