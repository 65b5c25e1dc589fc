//! What the store reports for metrics: work waiting in its tables and the
//! state of its connection pools. Counts only, across tenants, no ids.

use crate::job::JobStatus;

/// Jobs and webhook deliveries by state, counted in the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkCounts {
    /// Jobs by kind (as stored) and status.
    pub jobs: Vec<(String, JobStatus, u64)>,
    /// Deliveries still to be made (first attempt or a retry).
    pub deliveries_pending: u64,
    /// Deliveries that gave up.
    pub deliveries_failed: u64,
}

/// One connection pool of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Which pool: `main` (PostgreSQL), `writer` or `reader` (SQLite).
    pub pool: &'static str,
    /// Connections open.
    pub size: u32,
    /// Connections open and not in use.
    pub idle: u32,
    /// The most connections it may open.
    pub max: u32,
}
