//! Storage for Patchbay: the `Store` port of `patchbay-core`, implemented for
//! embedded SQLite (the default) and PostgreSQL (for several replicas).
//!
//! **Each statement and each method body is written once.** The shared modules
//! (`tenants`, `api_keys`, `connections`, `keyring`, `audit`, `jobs`) hold the
//! trait implementations inside [`engine::for_each_engine!`], which expands
//! them once per engine with `Db` and `Engine` bound to that engine's sqlx
//! database and store type. sqlx-sqlite binds `$1`-style placeholders by
//! number, so one SQL text serves both; rows map through [`rows`], timestamps
//! through [`types`], keyset pages through [`page`], errors through [`error`].
//!
//! Why a macro and not code generic over a dialect trait: a generic body needs
//! `Encode + Type` bounds for every bound value type and `Executor` bounds with
//! higher-ranked lifetimes for every connection kind; those bounds outgrow the
//! SQL they wrap and make each error message about the bounds, not the query
//! (the shared `page.rs` is generic because it binds one type). Expanding a
//! plain body per engine, as vaultwarden's `db_run!` does, keeps every method
//! ordinary sqlx code that is type-checked against both databases.
//!
//! What truly differs lives in the engine modules, each marked `Dialect:`:
//! `sqlite` (the single writer, held readers, `BEGIN IMMEDIATE`, the job
//! claim, the keyring re-wrap) and `postgres` (the pool, `FOR UPDATE SKIP
//! LOCKED` in the job claim, the re-wrap as one array statement). Migrations
//! are per dialect (`migrations/sqlite`, `migrations/postgres`, embedded at
//! build time; a test proves they define the same tables, columns and
//! indexes). Queries are built at run time, so building needs no database.

mod engine;
mod error;
mod notify;
mod page;
mod postgres;
mod rows;
mod sqlite;
mod types;
mod webhook_rows;

mod api_keys;
mod audit;
mod connect;
mod connections;
mod events;
mod health;
mod jobs;
mod keyring;
mod signing_secrets;
mod subscriptions;
mod tenants;
mod webhook_endpoints;

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

/// The names of the unique constraints the store maps to API fields (the
/// schema test checks that both migration folders define each).
pub fn known_unique_constraints() -> impl Iterator<Item = &'static str> {
    error::unique_constraint_names()
}

/// Whether a URL names PostgreSQL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}
