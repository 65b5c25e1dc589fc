//! Storage for Patchbay: the `Store` port of `patchbay-core`, implemented for
//! embedded SQLite (the default) and PostgreSQL (for several replicas).
//!
//! Each backend has its own module and migrations (`migrations/sqlite`,
//! `migrations/postgres`, embedded at build time) and shares the row mapping in
//! [`rows`]. Queries are built at run time, so building needs no database.

mod error;
mod page;
mod postgres;
mod rows;
mod sqlite;
mod types;

use std::sync::Arc;
use std::time::Duration;

use patchbay_core::{Store, StoreError};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Connection pool settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Largest number of pooled connections (readers, for SQLite).
    pub max_connections: u32,
    /// How long a caller waits for a free connection.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens the store a database URL names (`sqlite://…` or `postgres://…`) and
/// applies pending migrations unless `migrate` is false.
pub async fn open(
    url: &str,
    settings: &PoolSettings,
    migrate: bool,
) -> Result<Arc<dyn Store>, StoreError> {
    let store: Arc<dyn Store> = if is_postgres_url(url) {
        Arc::new(PostgresStore::connect(url, settings).await?)
    } else if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::connect(url, settings).await?)
    } else {
        return Err(StoreError::Internal(
            "database URL must start with sqlite:// or postgres://".into(),
        ));
    };
    if migrate {
        store.migrate().await?;
    }
    Ok(store)
}

/// Whether a URL names PostgreSQL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}
