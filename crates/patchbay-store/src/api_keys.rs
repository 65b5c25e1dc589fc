//! Tenant API keys (both engines).

use async_trait::async_trait;
use patchbay_core::api_key::{ApiKey, ApiKeyCredential};
use patchbay_core::audit::AuditEvent;
use patchbay_core::store::{ApiKeyStore, StoreResult};
use patchbay_core::{ApiKeyId, Page, PageRequest, TenantId, Timestamp};
use sqlx::QueryBuilder;

use crate::engine::for_each_engine;
use crate::error::map;
use crate::page::push_page;
use crate::rows::{
    API_KEY_COLUMNS, API_KEY_CREDENTIAL_SELECT, ApiKeyCredentialRow, ApiKeyRow, convert,
};
use crate::types::{DbTime, db_time};

for_each_engine! {
    #[async_trait]
    impl ApiKeyStore for Engine {
        async fn create_api_key(
            &self,
            key: &ApiKey,
            hash: &str,
            audit: &AuditEvent,
        ) -> StoreResult<()> {
            let mut tx = self.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, name, scopes, hint, hash, expires_at, revoked_at, last_used_at, created_at, connection_id) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
                 WHERE $11 IS NULL OR EXISTS (SELECT 1 FROM connections WHERE tenant_id = $2 AND id = $11)",
            )
            .bind(key.id.uuid())
            .bind(key.tenant_id.uuid())
            .bind(&key.name)
            .bind(key.scopes.to_stored())
            .bind(&key.hint)
            .bind(hash)
            .bind(db_time(key.expires_at))
            .bind(db_time(key.revoked_at))
            .bind(db_time(key.last_used_at))
            .bind(DbTime(key.created_at))
            .bind(key.connection_id.map(|c| c.uuid()))
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
            if inserted == 0 {
                // Bound to a connection this tenant does not have.
                return Err(patchbay_core::StoreError::Conflict { field: "connection_id" });
            }
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)
        }

        async fn get_api_key(&self, tenant: TenantId, id: ApiKeyId) -> StoreResult<Option<ApiKey>> {
            let row: Option<ApiKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"
            )))
            .bind(tenant.uuid())
            .bind(id.uuid())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn list_api_keys(
            &self,
            tenant: TenantId,
            page: &PageRequest<ApiKeyId>,
        ) -> StoreResult<Page<ApiKey>> {
            let mut qb = QueryBuilder::<Db>::new(format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = "
            ));
            qb.push_bind(tenant.uuid());
            push_page(&mut qb, "id", page);
            let rows: Vec<ApiKeyRow> = qb
                .build_query_as()
                .fetch_all(&mut *self.reader().await?)
                .await
                .map_err(map)?;
            Ok(Page::from_rows(convert(rows)?, page))
        }

        async fn revoke_api_key(
            &self,
            tenant: TenantId,
            id: ApiKeyId,
            at: Timestamp,
            audit: &AuditEvent,
        ) -> StoreResult<Option<ApiKey>> {
            let mut tx = self.begin().await?;
            let row: Option<ApiKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) \
                 WHERE tenant_id = $2 AND id = $3 RETURNING {API_KEY_COLUMNS}"
            )))
            .bind(DbTime(at))
            .bind(tenant.uuid())
            .bind(id.uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?;
            let Some(row) = row else {
                return Ok(None);
            };
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            Ok(Some(row.try_into()?))
        }

        async fn find_api_key_credential(&self, id: ApiKeyId) -> StoreResult<Option<ApiKeyCredential>> {
            let row: Option<ApiKeyCredentialRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{API_KEY_CREDENTIAL_SELECT} WHERE k.id = $1"
            )))
            .bind(id.uuid())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn touch_api_keys(&self, uses: &[(TenantId, ApiKeyId, Timestamp)]) -> StoreResult<()> {
            if uses.is_empty() {
                return Ok(());
            }
            let mut tx = self.begin().await?;
            for (tenant, id, at) in uses {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $1 WHERE tenant_id = $2 AND id = $3 \
                     AND (last_used_at IS NULL OR last_used_at < $4)",
                )
                .bind(DbTime(*at))
                .bind(tenant.uuid())
                .bind(id.uuid())
                .bind(DbTime(*at))
                .execute(&mut *tx)
                .await
                .map_err(map)?;
            }
            tx.commit().await.map_err(map)
        }

        async fn replace_api_key_hash(
            &self,
            tenant: TenantId,
            id: ApiKeyId,
            expected_hash: &str,
            new_hash: &str,
        ) -> StoreResult<bool> {
            let updated = sqlx::query(
                "UPDATE api_keys SET hash = $1 WHERE tenant_id = $2 AND id = $3 AND hash = $4",
            )
            .bind(new_hash)
            .bind(tenant.uuid())
            .bind(id.uuid())
            .bind(expected_hash)
            .execute(self.writer())
            .await
            .map_err(map)?
            .rows_affected();
            Ok(updated == 1)
        }

        async fn count_api_keys(&self, tenant: TenantId) -> StoreResult<u64> {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL",
            )
            .bind(tenant.uuid())
            .fetch_one(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            Ok(n as u64)
        }
    }
}
