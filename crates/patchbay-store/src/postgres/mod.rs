//! The PostgreSQL backend, for deployments where several stateless replicas
//! share one database. Row-level locking and compare-and-swap updates keep
//! replicas from stepping on each other; migrations take an advisory lock.

mod api_keys;
mod audit;
mod connections;
mod keyring;
mod tenants;

use std::str::FromStr;

use async_trait::async_trait;
use patchbay_core::StoreError;
use patchbay_core::audit::AuditEvent;
use patchbay_core::store::{Backend, Store, StoreResult};
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::types::Json;

use crate::PoolSettings;
use crate::error::map;
use crate::types::DbTime;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Patchbay's store on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host/db`; add
    /// `?options=-csearch_path%3Dschema` to use a schema other than `public`).
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("invalid PostgreSQL URL: {e}")))?
            .application_name("patchbay");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(map)?;
        Ok(Self { pool })
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(map)
    }
}

/// Appends an audit event inside the caller's transaction.
async fn insert_audit(conn: &mut PgConnection, event: &AuditEvent) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (id, tenant_id, actor, action, target_id, details, request_id, client_request_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(event.id.uuid())
    .bind(event.tenant_id.map(|t| t.uuid()))
    .bind(event.actor.to_string())
    .bind(&event.action)
    .bind(&event.target_id)
    .bind(Json(&event.details))
    .bind(&event.request_id)
    .bind(&event.client_request_id)
    .bind(DbTime(event.created_at))
    .execute(conn)
    .await
    .map_err(map)?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map)?;
        Ok(())
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
