//! The `Store` trait's own methods (both engines): which engine, whether it
//! answers, migrations, closing and its broadcast channel between replicas.

use async_trait::async_trait;
use patchbay_core::StoreError;
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
