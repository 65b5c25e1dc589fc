//! Gauges read from the store on a timer: jobs by kind and state, webhook
//! deliveries pending and failed, and the database pools' use. Every label
//! comes from a closed set: job kinds outside the known ones count as `other`.

use std::collections::HashMap;

use patchbay_core::job::{JobStatus, kinds};
use patchbay_core::store::Backend;
use tracing::warn;

use crate::state::AppState;

const STATES: [JobStatus; 3] = [JobStatus::Queued, JobStatus::Running, JobStatus::Dead];

/// Reads the counts and pool use and sets the gauges. A store that does not
/// answer leaves the last values (and logs); the pools are read regardless.
pub async fn refresh(state: &AppState) {
    let engine = match state.store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    for pool in state.store.pool_stats() {
        let in_use = pool.size.saturating_sub(pool.idle);
        let labels = |s: &'static str| [("engine", engine), ("pool", pool.pool), ("state", s)];
        metrics::gauge!("patchbay_db_pool_connections", &labels("idle")).set(f64::from(pool.idle));
        metrics::gauge!("patchbay_db_pool_connections", &labels("in_use")).set(f64::from(in_use));
        metrics::gauge!("patchbay_db_pool_max_connections", "engine" => engine, "pool" => pool.pool)
            .set(f64::from(pool.max));
    }
    let counts = match state.store.system_work_counts().await {
        Ok(counts) => counts,
        Err(e) => {
            warn!(error = %e, "could not count jobs and deliveries for metrics");
            return;
        }
    };
    let mut jobs: HashMap<(&'static str, &'static str), u64> = kinds::ALL
        .into_iter()
        .chain(["other"])
        .flat_map(|kind| STATES.map(|s| ((kind, s.as_str()), 0)))
        .collect();
    for (kind, status, n) in &counts.jobs {
        *jobs
            .entry((kinds::label(kind), status.as_str()))
            .or_default() += n;
    }
    for ((kind, status), n) in jobs {
        metrics::gauge!("patchbay_jobs", "kind" => kind, "state" => status).set(n as f64);
    }
    metrics::gauge!("patchbay_webhook_deliveries_stored", "state" => "pending")
        .set(counts.deliveries_pending as f64);
    metrics::gauge!("patchbay_webhook_deliveries_stored", "state" => "failed")
        .set(counts.deliveries_failed as f64);
}

/// Counts a claimed job about to run.
pub fn job_started(kind: &str) {
    metrics::counter!("patchbay_jobs_started_total", "kind" => kinds::label(kind)).increment(1);
}

/// Counts how a job's attempt ended (deliveries count theirs in
/// `patchbay_webhook_deliveries_total`).
pub fn job_finished(kind: &str, outcome: &patchbay_core::job::JobOutcome) {
    use patchbay_core::job::JobOutcome;
    let outcome = match outcome {
        JobOutcome::Done => "done",
        JobOutcome::Reschedule { .. } => "rescheduled",
        JobOutcome::Retry { .. } => "retry",
        JobOutcome::Dead { .. } => "dead",
    };
    metrics::counter!("patchbay_jobs_finished_total", "kind" => kinds::label(kind), "outcome" => outcome)
        .increment(1);
}
