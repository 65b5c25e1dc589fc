//! Shared by the benchmark programs: fresh stores on both databases and seeding.

use std::sync::Arc;

use patchbay_core::Store;
use patchbay_store::PoolSettings;

/// A fresh store of each available kind: SQLite always, PostgreSQL when
/// `TEST_DATABASE_URL` is set (in its own schema, dropped afterwards).
#[derive(Debug)]
pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Backend {
    pub async fn all() -> Vec<Backend> {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let settings = PoolSettings::default();
        let mut out = vec![Backend {
            name: "sqlite",
            store: patchbay_store::open(&url, &settings, true).await.unwrap(),
            _dir: Some(dir),
            pg: None,
        }];
        match std::env::var("TEST_DATABASE_URL") {
            Ok(base) if !base.is_empty() => {
                let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&base).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
                out.push(Backend {
                    name: "postgres",
                    store: patchbay_store::open(&url, &settings, true).await.unwrap(),
                    _dir: None,
                    pg: Some((base, schema)),
                });
            }
            _ => eprintln!("TEST_DATABASE_URL unset: PostgreSQL not measured"),
        }
        out
    }

    /// Refreshes planner statistics, as autovacuum does after a burst of inserts.
    #[allow(dead_code)] // used by the connections benchmark only
    pub async fn analyze(&self) {
        if let Some((base, schema)) = &self.pg {
            let admin = sqlx::PgPool::connect(base).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {schema}.connections")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
    }

    pub async fn finish(self) {
        self.store.close().await;
        if let Some((base, schema)) = self.pg {
            let admin = sqlx::PgPool::connect(&base).await.unwrap();
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }
}

/// Percentile of sorted samples.
#[allow(dead_code)] // used by the connections benchmark only
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Runs `count` async jobs, `concurrency` at a time.
pub async fn run_concurrently<F, Fut>(count: usize, concurrency: usize, job: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures::StreamExt;
    futures::stream::iter(0..count)
        .for_each_concurrent(concurrency, job)
        .await;
}
