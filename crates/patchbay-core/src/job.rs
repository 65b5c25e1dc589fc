//! Durable background work: one `jobs` table, one worker loop.
//!
//! A job is enqueued in the same transaction as the change that causes it,
//! claimed under a lease (an owner, a random token and an expiry), and finished
//! only by the holder of that token: a worker whose lease expired and was taken
//! over cannot overwrite the newer holder's outcome. Failed attempts back off
//! and end in the `dead` state after `max_attempts`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{JobId, TenantId, Timestamp};

/// The kinds of job Patchbay runs. The worker dispatches on these; a
/// migration may name them too.
pub mod kinds {
    /// Re-run a connection's test call; recurring. Subject: the connection.
    pub const CONNECTION_REVALIDATE: &str = "connection.revalidate";
    /// Destroy replaced keys whose grace period ended; recurring, one for the
    /// whole deployment. Subject: [`super::SYSTEM_SUBJECT`].
    pub const PURGE_PREVIOUS_KEYS: &str = "keys.purge_previous";
    /// Tell Stripe to disconnect a connected account from the tenant's
    /// platform (`POST /oauth/deauthorize`), then delete the connection;
    /// retried with backoff until Stripe confirms. Subject: the connection
    /// (or, for a grant never stored, a fresh id with the account in the payload).
    pub const CONNECT_DEAUTHORIZE: &str = "connect.deauthorize";
    /// Deliver one event to one subscription (Standard Webhooks), retried
    /// with backoff; run by the delivery worker. Subject: the delivery.
    pub const WEBHOOK_DELIVER: &str = "webhook.deliver";
    /// Delete events older than the retention period; recurring, one for the
    /// whole deployment. Subject: [`super::SYSTEM_SUBJECT`].
    pub const EVENTS_PURGE: &str = "events.purge";

    /// Every kind above: the closed set metrics label jobs with.
    pub const ALL: [&str; 5] = [
        CONNECTION_REVALIDATE,
        PURGE_PREVIOUS_KEYS,
        CONNECT_DEAUTHORIZE,
        WEBHOOK_DELIVER,
        EVENTS_PURGE,
    ];

    /// `kind` when it is one of [`ALL`], otherwise `other` (a row written by
    /// another version): a metric label that no stored text can grow.
    pub fn label(kind: &str) -> &'static str {
        ALL.into_iter().find(|k| *k == kind).unwrap_or("other")
    }
}

/// Which kinds of job a claim takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KindFilter {
    /// Every kind.
    #[default]
    All,
    /// Only this kind.
    Only(&'static str),
    /// Every kind but this one.
    Except(&'static str),
}

impl KindFilter {
    /// The one kind taken, if the filter names one.
    pub fn only(self) -> Option<&'static str> {
        match self {
            Self::Only(kind) => Some(kind),
            _ => None,
        }
    }

    /// The one kind left out, if the filter names one.
    pub fn except(self) -> Option<&'static str> {
        match self {
            Self::Except(kind) => Some(kind),
            _ => None,
        }
    }
}

/// The subject of jobs that concern the whole deployment.
pub const SYSTEM_SUBJECT: Uuid = Uuid::nil();

/// Attempts before a job is dead, unless it says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for `run_at`.
    Queued,
    /// Leased by a worker.
    Running,
    /// Gave up after `max_attempts`, or failed permanently; kept for inspection.
    Dead,
}

impl JobStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Dead => "dead",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(Self::Queued),
            "running" => Some(Self::Running),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// `job_…`
    pub id: JobId,
    /// What to do (`connection.revalidate`); the worker dispatches on it.
    pub kind: String,
    /// The record the job is about (a connection's UUID, …). At most one
    /// queued or running job exists per kind and subject: enqueueing a second
    /// is a no-op.
    pub subject: Uuid,
    /// The tenant it concerns, if any (its jobs go when the tenant goes).
    pub tenant_id: Option<TenantId>,
    /// The job's input; never a secret.
    pub payload: serde_json::Value,
    /// Not before.
    pub run_at: Timestamp,
    /// Attempts before the job is dead.
    pub max_attempts: u32,
}

impl NewJob {
    /// A job of `kind` about `subject`, due at `run_at`, with an empty payload
    /// and [`DEFAULT_MAX_ATTEMPTS`].
    pub fn new(kind: &str, subject: Uuid, run_at: Timestamp) -> Self {
        Self {
            id: JobId::new(),
            kind: kind.to_owned(),
            subject,
            tenant_id: None,
            payload: serde_json::Value::Object(Default::default()),
            run_at,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// Sets the job's input.
    #[must_use]
    pub fn with_payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }

    /// Ties the job to a tenant.
    #[must_use]
    pub fn for_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant_id = Some(tenant);
        self
    }

    /// Attempts before the job is dead.
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// `job_…`
    pub id: JobId,
    /// What to do.
    pub kind: String,
    /// The record it is about.
    pub subject: Uuid,
    /// The tenant concerned.
    pub tenant_id: Option<TenantId>,
    /// Input.
    pub payload: serde_json::Value,
    /// Not before.
    pub run_at: Timestamp,
    /// Attempts started so far (a claim counts as one).
    pub attempts: u32,
    /// Attempts before the job is dead.
    pub max_attempts: u32,
    /// Where it is.
    pub status: JobStatus,
    /// Who holds the lease (a replica's name), while running.
    pub lease_owner: Option<String>,
    /// Until when the lease holds.
    pub lease_expires_at: Option<Timestamp>,
    /// The last failure, for people.
    pub last_error: Option<String>,
    /// When enqueued.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A job claimed by a worker, with the token that proves the lease.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The job as claimed (status `running`, attempts counted).
    pub job: Job,
    /// Only this token may finish the job.
    pub lease_token: Uuid,
}

/// What a worker reports when an attempt ends.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// Finished: the job is removed.
    Done,
    /// Finished, and recurring: queue it again for `run_at` with a fresh attempt count.
    Reschedule {
        /// The next run.
        run_at: Timestamp,
    },
    /// Failed; try again at `run_at`, unless attempts are used up (then dead).
    Retry {
        /// The next attempt.
        run_at: Timestamp,
        /// What went wrong (no secrets).
        error: String,
    },
    /// Failed for good.
    Dead {
        /// Why.
        error: String,
    },
}

/// A claim request.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    /// The claiming replica, for people reading the table.
    pub owner: String,
    /// The time of the claim.
    pub now: Timestamp,
    /// The lease's end.
    pub lease_until: Timestamp,
    /// At most this many jobs.
    pub limit: u32,
    /// Which kinds.
    pub kinds: KindFilter,
}
