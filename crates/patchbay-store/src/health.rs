//! The `Store` trait's own methods (both engines): which engine, whether it
//! answers, what work waits in it and how its pools are used (for metrics),
//! migrations, closing and its broadcast channel between replicas.

use async_trait::async_trait;
use patchbay_core::StoreError;
use patchbay_core::job::JobStatus;
use patchbay_core::stats::{PoolStats, WorkCounts};
use patchbay_core::store::{Backend, Store, StoreResult};

use crate::engine::for_each_engine;
use crate::error::map;

for_each_engine! {
    #[async_trait]
    impl Store for Engine {
        fn backend(&self) -> Backend {
            Engine::BACKEND
        }

        async fn ping(&self) -> StoreResult<()> {
            sqlx::query("SELECT 1")
                .execute(&mut *self.reader().await?)
                .await
                .map_err(map)?;
            Ok(())
        }

        async fn system_work_counts(&self) -> StoreResult<WorkCounts> {
            let jobs: Vec<(String, String, i64)> =
                sqlx::query_as("SELECT kind, status, COUNT(*) FROM jobs GROUP BY kind, status")
                    .fetch_all(&mut *self.reader().await?)
                    .await
                    .map_err(map)?;
            let deliveries: Vec<(String, i64)> = sqlx::query_as(
                "SELECT status, COUNT(*) FROM event_deliveries \
                 WHERE status IN ('pending', 'failed') GROUP BY status",
            )
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            let count = |status: &str| {
                deliveries
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0))
            };
            Ok(WorkCounts {
                jobs: jobs
                    .into_iter()
                    .filter_map(|(kind, status, n)| {
                        Some((kind, JobStatus::parse(&status)?, u64::try_from(n).ok()?))
                    })
                    .collect(),
                deliveries_pending: count("pending"),
                deliveries_failed: count("failed"),
            })
        }

        fn pool_stats(&self) -> Vec<PoolStats> {
            self.pools()
        }

        async fn migrate(&self) -> StoreResult<()> {
            Engine::MIGRATOR
                .run(self.writer())
                .await
                .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))
        }

        async fn close(&self) {
            self.close_connections().await;
        }

        fn change_feed(&self) -> Option<std::sync::Arc<dyn patchbay_core::change_feed::ChangeFeed>> {
            self.feed()
        }
    }
}
