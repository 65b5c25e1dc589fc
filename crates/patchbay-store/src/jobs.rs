//! The jobs table (both engines): enqueue, claim under a lease, finish with the
//! lease token. Only the claim's row selection is a dialect difference
//! (`Engine::claim_due_jobs`, in each engine's module).

use async_trait::async_trait;
use patchbay_core::JobId;
use patchbay_core::Timestamp;
use patchbay_core::job::{ClaimRequest, ClaimedJob, Job, JobOutcome, NewJob};
use patchbay_core::store::{JobStore, StoreResult};
use sqlx::types::Json;
use uuid::Uuid;

use crate::engine::for_each_engine;
use crate::error::map;
use crate::rows::{JOB_COLUMNS, JobRow, convert};
use crate::types::DbTime;

/// Inserts a job unless one of the same kind and subject is pending; both the
/// standalone enqueue and the transactions that cause work use it.
pub(crate) const INSERT_JOB: &str = "INSERT INTO jobs (id, kind, tenant_id, subject_id, payload, run_at, attempts, \
     max_attempts, status, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, 0, $7, 'queued', $8, $8) \
     ON CONFLICT (kind, subject_id) WHERE status <> 'dead' DO NOTHING";

/// Marks dead the jobs whose lease expired with no attempt left (a job that
/// keeps killing its worker must not be claimed forever).
const BURY_EXHAUSTED: &str = "UPDATE jobs SET status = 'dead', lease_owner = NULL, lease_token = NULL, \
     lease_expires_at = NULL, updated_at = $1, \
     last_error = 'the lease expired on the last attempt (the worker stopped or crashed)' \
     WHERE status = 'running' AND lease_expires_at <= $1 AND attempts >= max_attempts";

for_each_engine! {
    impl Engine {
        /// Enqueues `job` on `conn` (inside the caller's transaction, if any).
        /// False when a job of that kind and subject is already pending.
        pub(crate) async fn insert_job(
            conn: &mut <Db as sqlx::Database>::Connection,
            job: &NewJob,
            now: Timestamp,
        ) -> StoreResult<bool> {
            let inserted = sqlx::query(INSERT_JOB)
                .bind(job.id.uuid())
                .bind(&job.kind)
                .bind(job.tenant_id.map(|t| t.uuid()))
                .bind(job.subject)
                .bind(Json(&job.payload))
                .bind(DbTime(job.run_at))
                .bind(i32::try_from(job.max_attempts).unwrap_or(i32::MAX))
                .bind(DbTime(now))
                .execute(conn)
                .await
                .map_err(map)?
                .rows_affected();
            Ok(inserted == 1)
        }

        /// Ends a job's attempt on `conn` (inside the caller's transaction,
        /// if any), only while `lease_token` is its lease. True if applied.
        pub(crate) async fn finish_job_on(
            conn: &mut <Db as sqlx::Database>::Connection,
            id: JobId,
            lease_token: Uuid,
            outcome: &JobOutcome,
            now: Timestamp,
        ) -> StoreResult<bool> {
            let sql = match outcome {
                JobOutcome::Done => {
                    "DELETE FROM jobs WHERE id = $1 AND lease_token = $2 AND status = 'running'"
                }
                JobOutcome::Reschedule { .. } => {
                    "UPDATE jobs SET status = 'queued', run_at = $4, attempts = 0, last_error = NULL, \
                     lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = $3 \
                     WHERE id = $1 AND lease_token = $2 AND status = 'running'"
                }
                JobOutcome::Retry { .. } => {
                    "UPDATE jobs SET status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
                     run_at = $4, last_error = $5, \
                     lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = $3 \
                     WHERE id = $1 AND lease_token = $2 AND status = 'running'"
                }
                JobOutcome::Dead { .. } => {
                    "UPDATE jobs SET status = 'dead', last_error = $4, \
                     lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = $3 \
                     WHERE id = $1 AND lease_token = $2 AND status = 'running'"
                }
            };
            let mut query = sqlx::query(sql).bind(id.uuid()).bind(lease_token);
            match outcome {
                JobOutcome::Done => {}
                JobOutcome::Reschedule { run_at } => {
                    query = query.bind(DbTime(now)).bind(DbTime(*run_at));
                }
                JobOutcome::Retry { run_at, error } => {
                    query = query.bind(DbTime(now)).bind(DbTime(*run_at)).bind(error.as_str());
                }
                JobOutcome::Dead { error } => {
                    query = query.bind(DbTime(now)).bind(error.as_str());
                }
            }
            let finished = query
                .execute(conn)
                .await
                .map_err(map)?
                .rows_affected();
            Ok(finished == 1)
        }
    }

    #[async_trait]
    impl JobStore for Engine {
        async fn enqueue_job(&self, job: &NewJob) -> StoreResult<bool> {
            let mut conn = self.writer().acquire().await.map_err(map)?;
            Engine::insert_job(&mut conn, job, patchbay_core::time::now()).await
        }

        async fn system_claim_jobs(&self, claim: &ClaimRequest) -> StoreResult<Vec<ClaimedJob>> {
            sqlx::query(BURY_EXHAUSTED)
                .bind(DbTime(claim.now))
                .execute(self.writer())
                .await
                .map_err(map)?;
            let token = Uuid::new_v4();
            let rows = self.claim_due_jobs(claim, token).await?;
            Ok(convert::<JobRow, Job>(rows)?
                .into_iter()
                .map(|job| ClaimedJob { job, lease_token: token })
                .collect())
        }

        async fn finish_job(
            &self,
            id: JobId,
            lease_token: Uuid,
            outcome: &JobOutcome,
            now: Timestamp,
        ) -> StoreResult<bool> {
            let mut conn = self.writer().acquire().await.map_err(map)?;
            Engine::finish_job_on(&mut conn, id, lease_token, outcome, now).await
        }

        async fn release_job(
            &self,
            id: JobId,
            lease_token: Uuid,
            now: Timestamp,
        ) -> StoreResult<bool> {
            let released = sqlx::query(
                "UPDATE jobs SET status = 'queued', \
                 attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
                 lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = $3 \
                 WHERE id = $1 AND lease_token = $2 AND status = 'running'",
            )
            .bind(id.uuid())
            .bind(lease_token)
            .bind(DbTime(now))
            .execute(self.writer())
            .await
            .map_err(map)?
            .rows_affected();
            Ok(released == 1)
        }

        async fn system_jobs_for_subject(&self, kind: &str, subject: Uuid) -> StoreResult<Vec<Job>> {
            let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE kind = $1 AND subject_id = $2 ORDER BY id"
            )))
            .bind(kind)
            .bind(subject)
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            convert(rows)
        }
    }
}
