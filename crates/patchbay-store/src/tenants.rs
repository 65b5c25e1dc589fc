//! Tenants and their data keys (both engines).

use async_trait::async_trait;
use patchbay_core::audit::AuditEvent;
use patchbay_core::sealed::DataKeyRecord;
use patchbay_core::store::{StoreResult, TenantStore, Updated};
use patchbay_core::tenant::Tenant;
use patchbay_core::{Page, PageRequest, TenantId, Timestamp};
use sqlx::QueryBuilder;
use sqlx::types::Json;

use crate::engine::for_each_engine;
use crate::error::map;
use crate::page::push_page;
use crate::rows::{DATA_KEY_COLUMNS, DataKeyRow, TENANT_COLUMNS, TenantRow, convert};
use crate::types::DbTime;

for_each_engine! {
    #[async_trait]
    impl TenantStore for Engine {
        async fn create_tenant(
            &self,
            tenant: &Tenant,
            data_key: &DataKeyRecord,
            audit: &AuditEvent,
        ) -> StoreResult<()> {
            let mut tx = self.begin().await?;
            sqlx::query(
                "INSERT INTO tenants (id, name, status, metadata, created_at, updated_at, \
                 limit_requests_per_second, limit_burst, limit_max_concurrent_upstream) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(tenant.id.uuid())
            .bind(&tenant.name)
            .bind(tenant.status.as_str())
            .bind(Json(&tenant.metadata))
            .bind(DbTime(tenant.created_at))
            .bind(DbTime(tenant.updated_at))
            .bind(tenant.limits.requests_per_second.map(i64::from))
            .bind(tenant.limits.burst.map(i64::from))
            .bind(tenant.limits.max_concurrent_upstream.map(i64::from))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            sqlx::query(
                "INSERT INTO data_keys (id, tenant_id, master_key_id, wrapped, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(data_key.id.uuid())
            .bind(data_key.tenant_id.uuid())
            .bind(&data_key.master_key_id)
            .bind(&data_key.wrapped)
            .bind(DbTime(data_key.created_at))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)
        }

        async fn get_tenant(&self, id: TenantId) -> StoreResult<Option<Tenant>> {
            let row: Option<TenantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
            )))
            .bind(id.uuid())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn list_tenants(&self, page: &PageRequest<TenantId>) -> StoreResult<Page<Tenant>> {
            let mut qb = QueryBuilder::<Db>::new(format!(
                "SELECT {TENANT_COLUMNS} FROM tenants WHERE 1 = 1"
            ));
            push_page(&mut qb, "id", page);
            let rows: Vec<TenantRow> = qb
                .build_query_as()
                .fetch_all(&mut *self.reader().await?)
                .await
                .map_err(map)?;
            Ok(Page::from_rows(convert(rows)?, page))
        }

        async fn update_tenant(
            &self,
            tenant: &Tenant,
            expected_updated_at: Timestamp,
            audit: &AuditEvent,
        ) -> StoreResult<Updated<Tenant>> {
            let mut tx = self.begin().await?;
            let row: Option<TenantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE tenants SET name = $1, status = $2, metadata = $3, updated_at = $4, \
                 limit_requests_per_second = $7, limit_burst = $8, limit_max_concurrent_upstream = $9 \
                 WHERE id = $5 AND updated_at = $6 RETURNING {TENANT_COLUMNS}"
            )))
            .bind(&tenant.name)
            .bind(tenant.status.as_str())
            .bind(Json(&tenant.metadata))
            .bind(DbTime(tenant.updated_at))
            .bind(tenant.id.uuid())
            .bind(DbTime(expected_updated_at))
            .bind(tenant.limits.requests_per_second.map(i64::from))
            .bind(tenant.limits.burst.map(i64::from))
            .bind(tenant.limits.max_concurrent_upstream.map(i64::from))
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?;
            let Some(row) = row else {
                let exists: Option<(i64,)> = sqlx::query_as("SELECT CAST(1 AS BIGINT) FROM tenants WHERE id = $1")
                    .bind(tenant.id.uuid())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map)?;
                return Ok(if exists.is_some() {
                    Updated::Stale
                } else {
                    Updated::NotFound
                });
            };
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            Ok(Updated::Applied(row.try_into()?))
        }

        async fn delete_tenant(&self, id: TenantId, audit: &AuditEvent) -> StoreResult<bool> {
            let mut tx = self.begin().await?;
            // The data key goes first (crypto-shred), then what it protected.
            for sql in [
                "DELETE FROM data_keys WHERE tenant_id = $1",
                "DELETE FROM connections WHERE tenant_id = $1",
                "DELETE FROM api_keys WHERE tenant_id = $1",
            ] {
                sqlx::query(sql)
                    .bind(id.uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
            }
            let deleted = sqlx::query("DELETE FROM tenants WHERE id = $1")
                .bind(id.uuid())
                .execute(&mut *tx)
                .await
                .map_err(map)?
                .rows_affected();
            if deleted == 0 {
                return Ok(false);
            }
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            Ok(true)
        }

        async fn tenant_data_key(&self, tenant: TenantId) -> StoreResult<Option<DataKeyRecord>> {
            let row: Option<DataKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DATA_KEY_COLUMNS} FROM data_keys WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1"
            )))
            .bind(tenant.uuid())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn allowed_origins(&self, tenant: TenantId) -> StoreResult<Vec<String>> {
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT origin FROM tenant_origins WHERE tenant_id = $1 ORDER BY origin",
            )
            .bind(tenant.uuid())
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            // Sorted here: the engines' collations order text differently.
            let mut origins: Vec<String> = rows.into_iter().map(|(o,)| o).collect();
            origins.sort();
            Ok(origins)
        }

        async fn set_allowed_origins(
            &self,
            tenant: TenantId,
            origins: &[String],
            audit: &AuditEvent,
        ) -> StoreResult<bool> {
            let mut tx = self.begin().await?;
            let exists: Option<(i64,)> =
                sqlx::query_as("SELECT CAST(1 AS BIGINT) FROM tenants WHERE id = $1")
                    .bind(tenant.uuid())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map)?;
            if exists.is_none() {
                return Ok(false);
            }
            sqlx::query("DELETE FROM tenant_origins WHERE tenant_id = $1")
                .bind(tenant.uuid())
                .execute(&mut *tx)
                .await
                .map_err(map)?;
            for origin in origins {
                sqlx::query(
                    "INSERT INTO tenant_origins (tenant_id, origin) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(tenant.uuid())
                .bind(origin)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
            }
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            Ok(true)
        }

        async fn system_origin_allowed(&self, origin: &str) -> StoreResult<bool> {
            let row: Option<(i64,)> = sqlx::query_as(
                "SELECT CAST(1 AS BIGINT) FROM tenant_origins WHERE origin = $1 LIMIT 1",
            )
            .bind(origin)
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            Ok(row.is_some())
        }
    }
}
