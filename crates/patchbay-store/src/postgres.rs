//! The PostgreSQL engine, for deployments where several stateless replicas
//! share one database. Row-level locking and compare-and-swap updates keep
//! replicas from stepping on each other; migrations take an advisory lock.
//!
//! Dialect differences live here, each marked `Dialect:`; every other store
//! method is written once in the crate's shared modules.

use std::str::FromStr;

use patchbay_core::StoreError;
use patchbay_core::job::ClaimRequest;
use patchbay_core::sealed::Rewrap;
use patchbay_core::stats::PoolStats;
use patchbay_core::store::{Backend, StoreResult};
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

use crate::PoolSettings;
use crate::error::map;
use crate::rows::{JOB_COLUMNS, JobRow};
use crate::types::DbTime;

/// Patchbay's store on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Which engine this is.
    pub(crate) const BACKEND: Backend = Backend::Postgres;
    /// Dialect: each engine has its own migration folder.
    pub(crate) const MIGRATOR: sqlx::migrate::Migrator =
        sqlx::migrate!("../../migrations/postgres");

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

    /// A pooled connection for one read statement.
    pub(crate) async fn reader(&self) -> StoreResult<PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(map)
    }

    /// The pool, for one write statement.
    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// Dialect: one pool for reads and writes.
    pub(crate) fn pools(&self) -> Vec<PoolStats> {
        vec![PoolStats {
            pool: "main",
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }]
    }

    /// Dialect: `LISTEN/NOTIFY` carries messages between replicas (see
    /// [`crate::notify`]).
    pub(crate) fn feed(
        &self,
    ) -> Option<std::sync::Arc<dyn patchbay_core::change_feed::ChangeFeed>> {
        Some(std::sync::Arc::new(crate::notify::PgChangeFeed::new(
            self.pool.clone(),
        )))
    }

    /// Closes the pool, waiting for connections to return.
    pub(crate) async fn close_connections(&self) {
        self.pool.close().await;
    }

    /// A transaction at the default isolation (row locks and compare-and-swap
    /// conditions do the rest).
    pub(crate) async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(map)
    }

    /// Dialect: claiming jobs. `FOR UPDATE SKIP LOCKED` lets replicas claiming
    /// at the same moment take disjoint rows instead of waiting on each other.
    pub(crate) async fn claim_due_jobs(
        &self,
        claim: &ClaimRequest,
        token: Uuid,
    ) -> StoreResult<Vec<JobRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH due AS (SELECT id FROM jobs \
               WHERE ((status = 'queued' AND run_at <= $4) \
                  OR (status = 'running' AND lease_expires_at <= $4 AND attempts < max_attempts)) \
                 AND ($6 IS NULL OR kind = $6) AND ($7 IS NULL OR kind <> $7) \
               ORDER BY run_at LIMIT $5 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs SET status = 'running', attempts = jobs.attempts + 1, lease_owner = $1, \
             lease_token = $2, lease_expires_at = $3, updated_at = $4 \
             FROM due WHERE jobs.id = due.id \
             RETURNING {}",
            JOB_COLUMNS
                .split(", ")
                .map(|c| format!("jobs.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(&claim.owner)
        .bind(token)
        .bind(DbTime(claim.lease_until))
        .bind(DbTime(claim.now))
        .bind(i64::from(claim.limit))
        .bind(claim.kinds.only())
        .bind(claim.kinds.except())
        .fetch_all(&self.pool)
        .await
        .map_err(map)
    }

    /// Dialect: re-wrapping data keys in one statement per batch: the arrays
    /// travel in one round trip, and the statement is atomic on its own.
    pub(crate) async fn rewrap(&self, rewraps: &[Rewrap]) -> StoreResult<u64> {
        let ids: Vec<Uuid> = rewraps.iter().map(|r| r.id.uuid()).collect();
        let tenants: Vec<Uuid> = rewraps.iter().map(|r| r.tenant_id.uuid()).collect();
        let masters: Vec<&str> = rewraps
            .iter()
            .map(|r| r.new_master_key_id.as_str())
            .collect();
        let old: Vec<&[u8]> = rewraps.iter().map(|r| r.old_wrapped.as_slice()).collect();
        let new: Vec<&[u8]> = rewraps.iter().map(|r| r.new_wrapped.as_slice()).collect();
        let applied = sqlx::query(
            "UPDATE data_keys d SET master_key_id = u.master_key_id, wrapped = u.new_wrapped \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], $5::bytea[]) \
               AS u(id, tenant_id, master_key_id, old_wrapped, new_wrapped) \
             WHERE d.id = u.id AND d.tenant_id = u.tenant_id AND d.wrapped = u.old_wrapped",
        )
        .bind(ids)
        .bind(tenants)
        .bind(masters)
        .bind(old)
        .bind(new)
        .execute(&self.pool)
        .await
        .map_err(map)?
        .rows_affected();
        Ok(applied)
    }
}
