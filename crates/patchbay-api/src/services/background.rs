//! Work that runs beside the HTTP server: flushing API-key last-use times,
//! metrics upkeep,
//! re-validating connections on schedule (a bounded number at a time, with a
//! lease so replicas never check the same connection at once), and destroying
//! replaced keys whose grace period ended.

use std::time::Duration;

use futures::StreamExt;
use patchbay_core::time::{add_seconds, now};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::connections::{self, Trigger};
use crate::auth::AuditContext;
use crate::state::AppState;

/// How long a claimed connection is reserved for this replica.
const LEASE: Duration = Duration::from_secs(300);
const USAGE_FLUSH_EVERY: Duration = Duration::from_secs(5);
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The running background tasks.
#[derive(Debug)]
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    state: AppState,
}

/// Starts the background tasks.
pub fn spawn(state: AppState) -> Background {
    let (stop, stopped) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(flush_usage(state.clone(), stopped.clone())),
        tokio::spawn(metrics_upkeep(state.clone(), stopped.clone())),
        tokio::spawn(revalidate(state.clone(), stopped)),
    ];
    Background { stop, tasks, state }
}

impl Background {
    /// Stops the tasks, letting a validation in progress finish, and writes
    /// pending last-use times.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Err(e) = self.state.keys.usage().flush().await {
            warn!(error = %e, "could not record API-key last use at shutdown");
        }
    }
}

async fn flush_usage(state: AppState, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(USAGE_FLUSH_EVERY) => {}
            _ = stopped.changed() => return,
        }
        if let Err(e) = state.keys.usage().flush().await {
            warn!(error = %e, "could not record API-key last use; will retry");
        }
    }
}

/// Folds recorded samples into the exporter's histograms; without it they pile
/// up between scrapes.
async fn metrics_upkeep(state: AppState, mut stopped: watch::Receiver<bool>) {
    let Some(handle) = state.metrics.clone() else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(METRICS_UPKEEP_EVERY) => handle.run_upkeep(),
            _ = stopped.changed() => return,
        }
    }
}

/// How often the validator looks for due work: often enough for short test
/// intervals, at most once a minute.
fn tick(every: Duration) -> Duration {
    (every / 20).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

async fn revalidate(state: AppState, mut stopped: watch::Receiver<bool>) {
    let every = state.config.revalidate_every;
    let concurrency = state.config.revalidate_concurrency.max(1);
    let batch = (concurrency * 4) as u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick(every)) => {}
            _ = stopped.changed() => return,
        }
        let at = now();
        match state.store.system_purge_expired_previous_keys(at).await {
            Ok(0) => {}
            Ok(n) => info!(
                count = n,
                "destroyed replaced keys whose grace period ended"
            ),
            Err(e) => warn!(error = %e, "could not purge expired previous keys"),
        }
        loop {
            if *stopped.borrow() {
                return;
            }
            let at = now();
            let lease_until = add_seconds(at, LEASE.as_secs() as i64);
            let due = match state
                .store
                .system_claim_due_validations(at, lease_until, batch)
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    warn!(error = %e, "could not claim connections to re-validate");
                    break;
                }
            };
            let claimed = due.len();
            futures::stream::iter(due)
                .for_each_concurrent(concurrency, |(tenant, id)| {
                    let state = state.clone();
                    async move {
                        let ctx = AuditContext::system();
                        match connections::validate(&state, &ctx, tenant, id, Trigger::Schedule)
                            .await
                        {
                            Ok(c) => {
                                info!(connection = %id, status = c.status.as_str(), "re-validated")
                            }
                            Err(e) => {
                                warn!(connection = %id, code = %e.code, "re-validation failed")
                            }
                        }
                    }
                })
                .await;
            if claimed < batch as usize {
                break;
            }
        }
    }
}
