//! Master-key check values and the tenants' wrapped data keys (both engines).

use async_trait::async_trait;
use patchbay_core::DataKeyId;
use patchbay_core::sealed::{DataKeyRecord, MasterKeyCheck, Rewrap};
use patchbay_core::store::{KeyringStore, StoreResult};

use crate::engine::for_each_engine;
use crate::error::map;
use crate::rows::{DATA_KEY_COLUMNS, DataKeyRow, MasterKeyCheckRow, convert};
use crate::types::DbTime;

for_each_engine! {
    #[async_trait]
    impl KeyringStore for Engine {
        async fn master_key_checks(&self) -> StoreResult<Vec<MasterKeyCheck>> {
            let rows: Vec<MasterKeyCheckRow> =
                sqlx::query_as("SELECT key_id, check_value, created_at FROM master_key_checks")
                    .fetch_all(&mut *self.reader().await?)
                    .await
                    .map_err(map)?;
            Ok(rows.into_iter().map(Into::into).collect())
        }

        async fn insert_master_key_check(&self, check: &MasterKeyCheck) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO master_key_checks (key_id, check_value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_id) DO NOTHING",
            )
            .bind(&check.key_id)
            .bind(&check.check_value)
            .bind(DbTime(check.created_at))
            .execute(self.writer())
            .await
            .map_err(map)?;
            Ok(())
        }

        async fn data_key_counts(&self) -> StoreResult<Vec<(String, u64)>> {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT master_key_id, COUNT(*) FROM data_keys GROUP BY master_key_id ORDER BY master_key_id",
            )
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            Ok(rows.into_iter().map(|(k, n)| (k, n as u64)).collect())
        }

        async fn sample_data_key(&self, master_key_id: &str) -> StoreResult<Option<DataKeyRecord>> {
            let row: Option<DataKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DATA_KEY_COLUMNS} FROM data_keys WHERE master_key_id = $1 LIMIT 1"
            )))
            .bind(master_key_id)
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn system_data_keys_not_under(
            &self,
            primary: &str,
            after: Option<DataKeyId>,
            limit: u32,
        ) -> StoreResult<Vec<DataKeyRecord>> {
            let rows: Vec<DataKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DATA_KEY_COLUMNS} FROM data_keys \
                 WHERE master_key_id <> $1 AND ($2 IS NULL OR id > $3) ORDER BY id LIMIT $4"
            )))
            .bind(primary)
            .bind(after.map(|a| a.uuid()))
            .bind(after.map(|a| a.uuid()))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            convert(rows)
        }

        async fn rewrap_data_keys(&self, rewraps: &[Rewrap]) -> StoreResult<u64> {
            // Dialect: SQLite loops in a transaction, PostgreSQL sends arrays.
            self.rewrap(rewraps).await
        }
    }
}
