//! The job worker: one loop per replica that claims due jobs from the `jobs`
//! table under a lease, runs each through the service that owns its kind, and
//! records the outcome with the lease's token. A replica that dies mid-job
//! leaves the job to be claimed again once its lease expires; a worker that
//! finishes after losing its lease changes nothing.
//!
//! Handlers call services and return a [`JobOutcome`]; they never see HTTP.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use patchbay_core::job::{
    ClaimRequest, ClaimedJob, Job, JobOutcome, KindFilter, NewJob, SYSTEM_SUBJECT, kinds,
};
use patchbay_core::time::{add_millis, now};
use patchbay_core::{ConnectionId, TenantId, Timestamp};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use super::connections::{self, Trigger};
use super::error::ErrorKind;
use crate::auth::AuditContext;
use crate::state::AppState;

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// How often the worker looks for due jobs when nothing wakes it.
    pub poll_every: Duration,
    /// How long a claimed job is reserved for this replica.
    pub lease: Duration,
    /// Jobs run at once by this replica.
    pub concurrency: usize,
    /// This replica's name in the `lease_owner` column.
    pub owner: String,
    /// First retry delay; doubles with each attempt.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            poll_every: Duration::from_secs(1),
            lease: Duration::from_secs(300),
            concurrency: 4,
            owner: default_owner(),
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(3600),
        }
    }
}

/// `host:pid`, so that people reading the table can tell replicas apart.
pub fn default_owner() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "patchbay".into());
    format!("{host}:{}", std::process::id())
}

/// Wakes the worker when a job is enqueued for now, instead of waiting for the
/// next poll.
#[derive(Debug, Clone, Default)]
pub struct JobWakeup(Arc<Notify>);

impl JobWakeup {
    /// Asks the worker to look for due jobs now.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// The re-validation job of a connection, due at `run_at`.
pub fn revalidation(tenant: TenantId, connection: ConnectionId, run_at: Timestamp) -> NewJob {
    NewJob::new(kinds::CONNECTION_REVALIDATE, connection.uuid(), run_at).for_tenant(tenant)
}

/// The delay before retry number `attempt` (1-based): exponential from
/// `base`, capped at `max`, with "equal jitter" (half fixed, half random) so
/// that jobs failing together do not retry together.
pub fn backoff(settings: &JobSettings, attempt: u32, random: f64) -> Duration {
    backoff_between(settings.backoff_base, settings.backoff_max, attempt, random)
}

/// [`backoff`] from `base` up to `max`.
pub fn backoff_between(base: Duration, max: Duration, attempt: u32, random: f64) -> Duration {
    let exp = base
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)))
        .min(max);
    exp / 2 + exp.mul_f64(random.clamp(0.0, 1.0) / 2.0)
}

/// A uniform random number in `[0, 1)`, for jitter.
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    // Jitter only: a failed read of the OS source falls back to no jitter.
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Makes sure the deployment-wide recurring jobs exist (idempotent: each has
/// one fixed subject, so every replica may call this at start).
pub async fn ensure_recurring(state: &AppState) {
    let job = NewJob::new(kinds::PURGE_PREVIOUS_KEYS, SYSTEM_SUBJECT, now());
    if let Err(e) = state.store.enqueue_job(&job).await {
        warn!(error = %e, "could not schedule the purge of expired previous keys");
    }
    let job = NewJob::new(kinds::EVENTS_PURGE, SYSTEM_SUBJECT, now());
    if let Err(e) = state.store.enqueue_job(&job).await {
        warn!(error = %e, "could not schedule the purge of events past their retention");
    }
}

/// Which jobs a worker loop runs: webhook deliveries have a loop of their
/// own, with their own concurrency, so a burst of them never delays the
/// other jobs (and the other way round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Every job but deliveries.
    General,
    /// `webhook.deliver` jobs.
    Deliveries,
}

impl Lane {
    fn kinds(self) -> KindFilter {
        match self {
            Self::General => KindFilter::Except(kinds::WEBHOOK_DELIVER),
            Self::Deliveries => KindFilter::Only(kinds::WEBHOOK_DELIVER),
        }
    }

    fn concurrency(self, state: &AppState) -> usize {
        match self {
            Self::General => state.config.jobs.concurrency,
            Self::Deliveries => state.config.webhooks.concurrency,
        }
        .max(1)
    }

    fn wakeup(self, state: &AppState) -> &JobWakeup {
        match self {
            Self::General => &state.job_wakeup,
            Self::Deliveries => &state.delivery_wakeup,
        }
    }
}

/// How often the deployment-wide recurring jobs are re-ensured, so that one
/// buried after a crash loop comes back without a restart.
const ENSURE_RECURRING_EVERY: Duration = Duration::from_secs(600);

/// Runs the worker until `stopped` turns true. It claims only as many jobs as
/// it can start at once (a claimed job's lease runs from the claim), and a job
/// claimed but not started when the stop comes is released, not left to its
/// lease. Each job runs in its own task, so a panic ends that job only.
pub async fn run(state: AppState, mut stopped: watch::Receiver<bool>, lane: Lane) {
    if lane == Lane::General {
        ensure_recurring(&state).await;
    }
    let mut ensured_at = tokio::time::Instant::now();
    let settings = state.config.jobs.clone();
    let limit = lane.concurrency(&state);
    loop {
        if lane == Lane::General && ensured_at.elapsed() >= ENSURE_RECURRING_EVERY {
            ensure_recurring(&state).await;
            ensured_at = tokio::time::Instant::now();
        }
        loop {
            if *stopped.borrow() {
                return;
            }
            let at = now();
            let claim = ClaimRequest {
                owner: settings.owner.clone(),
                now: at,
                lease_until: add_millis(at, settings.lease.as_millis()),
                limit: limit as u32,
                kinds: lane.kinds(),
            };
            let claimed = match state.store.system_claim_jobs(&claim).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    warn!(error = %e, "could not claim jobs; will retry");
                    break;
                }
            };
            let count = claimed.len();
            futures::stream::iter(claimed)
                .for_each_concurrent(limit, |claimed| {
                    let state = state.clone();
                    let stopped = stopped.clone();
                    async move {
                        if *stopped.borrow() {
                            release(&state, &claimed).await;
                            return;
                        }
                        let id = claimed.job.id;
                        if let Err(e) = tokio::spawn(run_one(state, claimed)).await {
                            warn!(job = %id, error = %e, "a job's task failed; the job runs again after its lease");
                        }
                    }
                })
                .await;
            if count < limit {
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.poll_every) => {}
            _ = lane.wakeup(&state).0.notified() => {}
            _ = stopped.changed() => return,
        }
    }
}

async fn release(state: &AppState, claimed: &ClaimedJob) {
    if let Err(e) = state
        .store
        .release_job(claimed.job.id, claimed.lease_token, now())
        .await
    {
        warn!(job = %claimed.job.id, error = %e, "could not release an unstarted job; it runs after its lease");
    }
}

async fn run_one(state: AppState, claimed: ClaimedJob) {
    let ClaimedJob { job, lease_token } = claimed;
    let state = &state;
    debug!(job = %job.id, kind = %job.kind, attempt = job.attempts, "running job");
    super::store_metrics::job_started(&job.kind);
    if job.kind == kinds::WEBHOOK_DELIVER {
        // A delivery records its attempt and its outcome in one transaction.
        super::deliveries::run(state, &job, lease_token).await;
        return;
    }
    let outcome = dispatch(state, &job).await;
    super::store_metrics::job_finished(&job.kind, &outcome);
    if let JobOutcome::Retry { error, .. } | JobOutcome::Dead { error } = &outcome {
        warn!(job = %job.id, kind = %job.kind, attempt = job.attempts, %error, "job attempt failed");
    }
    match state
        .store
        .finish_job(job.id, lease_token, &outcome, now())
        .await
    {
        Ok(true) => {}
        Ok(false) => warn!(
            job = %job.id,
            kind = %job.kind,
            "job finished after its lease was lost; another worker owns it now"
        ),
        Err(e) => {
            warn!(job = %job.id, error = %e, "could not record a job's outcome; it will run again after its lease")
        }
    }
}

/// Runs one attempt of `job` and says what should happen next. Recurring
/// jobs never end dead: when their attempts run out they are rescheduled for
/// their next regular run instead.
pub async fn dispatch(state: &AppState, job: &Job) -> JobOutcome {
    let outcome = attempt(state, job).await;
    let interval = match job.kind.as_str() {
        kinds::CONNECTION_REVALIDATE => Some(state.config.revalidate_every),
        kinds::PURGE_PREVIOUS_KEYS => Some(PURGE_EVERY),
        kinds::EVENTS_PURGE => Some(EVENTS_PURGE_EVERY),
        _ => None,
    };
    settle(outcome, job, interval, now())
}

/// A recurring job's last failed attempt becomes its next regular run.
fn settle(outcome: JobOutcome, job: &Job, interval: Option<Duration>, at: Timestamp) -> JobOutcome {
    match (outcome, interval) {
        (JobOutcome::Retry { error, .. }, Some(every)) if job.attempts >= job.max_attempts => {
            warn!(job = %job.id, kind = %job.kind, %error, "a recurring job failed every attempt; trying again at its next run");
            JobOutcome::Reschedule {
                run_at: add_millis(at, every.as_millis()),
            }
        }
        (outcome, _) => outcome,
    }
}

/// How often events past their retention are looked for.
const EVENTS_PURGE_EVERY: Duration = Duration::from_secs(600);
/// Events deleted per statement, so a large purge never holds the writer long.
const EVENTS_PURGE_BATCH: u32 = 1_000;

/// Deletes events received before the retention period, in batches.
async fn purge_events(state: &AppState) -> Result<u64, patchbay_core::StoreError> {
    let retention = chrono::TimeDelta::from_std(state.config.webhooks.retention)
        .unwrap_or(chrono::TimeDelta::MAX);
    let Some(before) = now().checked_sub_signed(retention) else {
        return Ok(0);
    };
    let mut total = 0;
    loop {
        let n = state
            .store
            .system_purge_events(before, EVENTS_PURGE_BATCH)
            .await?;
        total += n;
        if n < u64::from(EVENTS_PURGE_BATCH) {
            return Ok(total);
        }
    }
}

/// How often replaced keys past their grace period are looked for.
const PURGE_EVERY: Duration = Duration::from_secs(60);

async fn attempt(state: &AppState, job: &Job) -> JobOutcome {
    let retry = |error: String| JobOutcome::Retry {
        run_at: add_millis(
            now(),
            backoff(&state.config.jobs, job.attempts, random_unit()).as_millis(),
        ),
        error,
    };
    match job.kind.as_str() {
        kinds::CONNECTION_REVALIDATE => revalidate(state, job).await.unwrap_or_else(retry),
        kinds::CONNECT_DEAUTHORIZE => {
            let Some(tenant) = job.tenant_id else {
                return JobOutcome::Dead {
                    error: "a deauthorization job without a tenant".into(),
                };
            };
            match super::oauth::run_deauthorize_job(state, tenant, job.subject).await {
                Ok(()) => JobOutcome::Done,
                Err(error) => {
                    warn!(job = %job.id, attempt = job.attempts, %error, "deauthorization not confirmed yet");
                    retry(error)
                }
            }
        }
        kinds::PURGE_PREVIOUS_KEYS => {
            let purged = match state.store.system_purge_expired_previous_keys(now()).await {
                Ok(n) => state
                    .store
                    .system_purge_expired_connect_records(now())
                    .await
                    .map(|_| n),
                Err(e) => Err(e),
            };
            match purged {
                Ok(n) => {
                    if n > 0 {
                        info!(
                            count = n,
                            "destroyed replaced keys whose grace period ended"
                        );
                    }
                    JobOutcome::Reschedule {
                        run_at: add_millis(now(), PURGE_EVERY.as_millis()),
                    }
                }
                Err(e) => retry(e.to_string()),
            }
        }
        kinds::EVENTS_PURGE => match purge_events(state).await {
            Ok(n) => {
                if n > 0 {
                    info!(count = n, "deleted events past their retention");
                }
                JobOutcome::Reschedule {
                    run_at: add_millis(now(), EVENTS_PURGE_EVERY.as_millis()),
                }
            }
            Err(e) => retry(e.to_string()),
        },
        other => JobOutcome::Dead {
            error: format!("unknown job kind '{other}' (written by a newer version?)"),
        },
    }
}

/// Re-runs a connection's test call and schedules the next one. A connection
/// that no longer exists ends its job.
async fn revalidate(state: &AppState, job: &Job) -> Result<JobOutcome, String> {
    let Some(tenant) = job.tenant_id else {
        return Ok(JobOutcome::Dead {
            error: "a re-validation job without a tenant".into(),
        });
    };
    let id = ConnectionId::from_uuid(job.subject);
    let ctx = AuditContext::system();
    match connections::validate(state, &ctx, tenant, id, Trigger::Schedule).await {
        Ok(c) => {
            info!(connection = %id, status = c.status.as_str(), "re-validated");
            Ok(JobOutcome::Reschedule {
                run_at: add_millis(now(), state.config.revalidate_every.as_millis()),
            })
        }
        Err(e) if e.kind == ErrorKind::NotFound => Ok(JobOutcome::Done),
        // Being disconnected: its deauthorization job deletes it; nothing to test meanwhile.
        Err(e) if e.code == "connection_revoking" => Ok(JobOutcome::Reschedule {
            run_at: add_millis(now(), state.config.revalidate_every.as_millis()),
        }),
        Err(e) => Err(format!("{}: {}", e.code, e.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recurring_job_out_of_attempts_is_rescheduled_not_buried() {
        let at = now();
        let mut job = Job {
            id: patchbay_core::JobId::new(),
            kind: kinds::CONNECTION_REVALIDATE.into(),
            subject: uuid::Uuid::nil(),
            tenant_id: None,
            payload: serde_json::json!({}),
            run_at: at,
            attempts: 3,
            max_attempts: 10,
            status: patchbay_core::job::JobStatus::Running,
            lease_owner: None,
            lease_expires_at: None,
            last_error: None,
            created_at: at,
            updated_at: at,
        };
        let retry = JobOutcome::Retry {
            run_at: at,
            error: "db down".into(),
        };
        let day = Some(Duration::from_secs(86_400));
        // Attempts left: retried as usual.
        assert_eq!(settle(retry.clone(), &job, day, at), retry);
        // Last attempt of a recurring job: its next regular run.
        job.attempts = 10;
        assert_eq!(
            settle(retry.clone(), &job, day, at),
            JobOutcome::Reschedule {
                run_at: add_millis(at, 86_400_000)
            }
        );
        // A one-off job keeps the store's rule (dead after the last attempt).
        assert_eq!(settle(retry.clone(), &job, None, at), retry);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stays_capped() {
        let s = JobSettings {
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(3600),
            ..JobSettings::default()
        };
        assert_eq!(backoff(&s, 1, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(&s, 1, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(&s, 3, 0.0), Duration::from_secs(20));
        assert_eq!(backoff(&s, 3, 1.0), Duration::from_secs(40));
        assert_eq!(backoff(&s, 40, 1.0), Duration::from_secs(3600));
        assert_eq!(backoff(&s, 40, 0.0), Duration::from_secs(1800));
        let r = random_unit();
        assert!((0.0..1.0).contains(&r));
    }
}
