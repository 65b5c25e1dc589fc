//! Master-key check values and the tenants' wrapped data keys (SQLite).

use async_trait::async_trait;
use patchbay_core::DataKeyId;
use patchbay_core::sealed::{DataKeyRecord, MasterKeyCheck, Rewrap};
use patchbay_core::store::{KeyringStore, StoreResult};

use super::SqliteStore;
use crate::error::map;
use crate::rows::{DATA_KEY_COLUMNS, DataKeyRow, MasterKeyCheckRow, convert};
use crate::types::DbTime;

#[async_trait]
impl KeyringStore for SqliteStore {
    async fn master_key_checks(&self) -> StoreResult<Vec<MasterKeyCheck>> {
        let rows: Vec<MasterKeyCheckRow> =
            sqlx::query_as("SELECT key_id, check_value, created_at FROM master_key_checks")
                .fetch_all(&mut *self.read.get().await?)
                .await
                .map_err(map)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn insert_master_key_check(&self, check: &MasterKeyCheck) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO master_key_checks (key_id, check_value, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&check.key_id)
        .bind(&check.check_value)
        .bind(DbTime(check.created_at))
        .execute(&self.write)
        .await
        .map_err(map)?;
        Ok(())
    }

    async fn data_key_counts(&self) -> StoreResult<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT master_key_id, COUNT(*) FROM data_keys GROUP BY master_key_id ORDER BY master_key_id",
        )
        .fetch_all(&mut *self.read.get().await?)
        .await
        .map_err(map)?;
        Ok(rows.into_iter().map(|(k, n)| (k, n as u64)).collect())
    }

    async fn sample_data_key(&self, master_key_id: &str) -> StoreResult<Option<DataKeyRecord>> {
        let row: Option<DataKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DATA_KEY_COLUMNS} FROM data_keys WHERE master_key_id = ? LIMIT 1"
        )))
        .bind(master_key_id)
        .fetch_optional(&mut *self.read.get().await?)
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
             WHERE master_key_id <> ? AND (? IS NULL OR id > ?) ORDER BY id LIMIT ?"
        )))
        .bind(primary)
        .bind(after.map(|a| a.uuid()))
        .bind(after.map(|a| a.uuid()))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.read.get().await?)
        .await
        .map_err(map)?;
        convert(rows)
    }

    async fn rewrap_data_keys(&self, rewraps: &[Rewrap]) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let mut applied = 0;
        for rw in rewraps {
            applied += sqlx::query(
                "UPDATE data_keys SET master_key_id = ?, wrapped = ? \
                 WHERE id = ? AND tenant_id = ? AND wrapped = ?",
            )
            .bind(&rw.new_master_key_id)
            .bind(&rw.new_wrapped)
            .bind(rw.id.uuid())
            .bind(rw.tenant_id.uuid())
            .bind(&rw.old_wrapped)
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
        }
        tx.commit().await.map_err(map)?;
        Ok(applied)
    }
}
