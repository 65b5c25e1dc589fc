//! Work that runs beside the HTTP server: flushing API-key last-use times,
//! metrics upkeep (with the gauges read from the store), and the job worker
//! ([`super::jobs`]), which re-validates connections and destroys replaced
//! keys whose grace period ended.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::state::AppState;

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
        tokio::spawn(super::jobs::run(
            state.clone(),
            stopped.clone(),
            super::jobs::Lane::General,
        )),
        tokio::spawn(super::jobs::run(
            state.clone(),
            stopped,
            super::jobs::Lane::Deliveries,
        )),
    ];
    Background { stop, tasks, state }
}

impl Background {
    /// Stops the tasks, letting jobs in progress finish, and writes
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

/// Folds recorded samples into the exporter's histograms (without it they
/// pile up between scrapes) and refreshes the gauges read from the store
/// (jobs, deliveries, pools), at once and then every few seconds.
async fn metrics_upkeep(state: AppState, mut stopped: watch::Receiver<bool>) {
    let Some(handle) = state.metrics.clone() else {
        return;
    };
    loop {
        tokio::select! {
            () = super::store_metrics::refresh(&state) => {}
            _ = stopped.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(METRICS_UPKEEP_EVERY) => handle.run_upkeep(),
            _ = stopped.changed() => return,
        }
    }
}
