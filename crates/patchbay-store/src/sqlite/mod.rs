//! The SQLite engine: one writer connection (SQLite allows one writer at a
//! time; queueing in-process beats `SQLITE_BUSY`) and held reader connections,
//! WAL journal, foreign keys on, and `secure_delete` so deleted secrets are
//! zeroed on disk rather than left in free pages.
//!
//! Dialect differences live here, each marked `Dialect:`; every other store
//! method is written once in the crate's shared modules.

mod readers;

use std::str::FromStr;
use std::time::Duration;

use patchbay_core::StoreError;
use patchbay_core::job::ClaimRequest;
use patchbay_core::sealed::Rewrap;
use patchbay_core::stats::PoolStats;
use patchbay_core::store::{Backend, StoreResult};
use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use uuid::Uuid;

use self::readers::{Reader, Readers};
use crate::PoolSettings;
use crate::error::map;
use crate::rows::{JOB_COLUMNS, JobRow};
use crate::types::DbTime;

/// Patchbay's store on an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    read: Readers,
    write: SqlitePool,
}

impl SqliteStore {
    /// Which engine this is.
    pub(crate) const BACKEND: Backend = Backend::Sqlite;
    /// Dialect: each engine has its own migration folder.
    pub(crate) const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

    /// Opens (creating if missing) the database at `url` (`sqlite://path/to.db`).
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("secure_delete", "on");
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // An embedded database does not drop connections, so the pool's ping
        // before every checkout would only add a round trip to the worker thread.
        let write = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .acquire_timeout(settings.acquire_timeout.max(Duration::from_secs(10)))
            .connect_with(options.clone())
            .await
            .map_err(map)?;
        // An in-memory database exists once per connection: share the writer.
        let read = if in_memory {
            Readers::Shared(write.clone())
        } else {
            Readers::open(&options, readers(settings.max_connections)).await?
        };
        Ok(Self { read, write })
    }

    /// A connection for one read statement.
    pub(crate) async fn reader(&self) -> StoreResult<Reader<'_>> {
        self.read.get().await
    }

    /// The single writer, for one write statement.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.write
    }

    /// Dialect: the single writer's pool and the reader connections (which,
    /// for an in-memory database, are the writer's).
    pub(crate) fn pools(&self) -> Vec<PoolStats> {
        let writer = PoolStats {
            pool: "writer",
            size: self.write.size(),
            idle: u32::try_from(self.write.num_idle()).unwrap_or(u32::MAX),
            max: 1,
        };
        match self.read.stats() {
            Some(reader) => vec![writer, reader],
            None => vec![writer],
        }
    }

    /// Dialect: closing means the held readers and the writer.
    pub(crate) async fn close_connections(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Dialect: one process owns an embedded database, so there are no
    /// other replicas to tell about changes.
    pub(crate) fn feed(
        &self,
    ) -> Option<std::sync::Arc<dyn patchbay_core::change_feed::ChangeFeed>> {
        None
    }

    /// Dialect: a write transaction takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so it never fails half-way on a lock upgrade.
    pub(crate) async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, Sqlite>> {
        self.write.begin_with("BEGIN IMMEDIATE").await.map_err(map)
    }

    /// Dialect: claiming jobs. SQLite has one writer at a time (in this process
    /// and, through the file lock, in any other), so selecting and leasing in
    /// one statement is already atomic; there is no `SKIP LOCKED` to need.
    pub(crate) async fn claim_due_jobs(
        &self,
        claim: &ClaimRequest,
        token: Uuid,
    ) -> StoreResult<Vec<JobRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = $1, \
             lease_token = $2, lease_expires_at = $3, updated_at = $4 \
             WHERE id IN (SELECT id FROM jobs \
               WHERE ((status = 'queued' AND run_at <= $4) \
                  OR (status = 'running' AND lease_expires_at <= $4 AND attempts < max_attempts)) \
                 AND ($6 IS NULL OR kind = $6) AND ($7 IS NULL OR kind <> $7) \
               ORDER BY run_at LIMIT $5) \
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(&claim.owner)
        .bind(token)
        .bind(DbTime(claim.lease_until))
        .bind(DbTime(claim.now))
        .bind(i64::from(claim.limit))
        .bind(claim.kinds.only())
        .bind(claim.kinds.except())
        .fetch_all(&self.write)
        .await
        .map_err(map)
    }

    /// Dialect: re-wrapping data keys, one compare-and-swap statement per key
    /// inside one transaction (SQLite has no array parameters).
    pub(crate) async fn rewrap(&self, rewraps: &[Rewrap]) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let mut applied = 0;
        for rw in rewraps {
            applied += sqlx::query(
                "UPDATE data_keys SET master_key_id = $1, wrapped = $2 \
                 WHERE id = $3 AND tenant_id = $4 AND wrapped = $5",
            )
            .bind(&rw.new_master_key_id)
            .bind(&rw.new_wrapped)
            .bind(rw.id.uuid())
            .bind(rw.tenant_id.uuid())
            .bind(&rw.old_wrapped)
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
        }
        tx.commit().await.map_err(map)?;
        Ok(applied)
    }
}

/// Reader connections: each has its own worker thread, and more of them than
/// twice the cores only adds thread switches (measured: 4 readers serve ~8%
/// more requests per second than 16 on two cores).
fn readers(configured: u32) -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    configured.clamp(1, (2 * cores).max(2))
}
