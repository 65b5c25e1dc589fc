//! Stripe connections and their sealed keys (PostgreSQL).

use async_trait::async_trait;
use patchbay_core::audit::AuditEvent;
use patchbay_core::connection::{
    Connection, ConnectionDetails, ConnectionFilter, ValidationRecord,
};
use patchbay_core::store::{
    ConnectionSecrets, ConnectionStore, NewConnection, SecretRotation, StoreResult, Updated,
};
use patchbay_core::{ConnectionId, Page, PageRequest, TenantId, Timestamp};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::{PostgresStore, insert_audit};
use crate::error::map;
use crate::page::push_page;
use crate::rows::{
    CONNECTION_COLUMNS, CONNECTION_SECRETS_SELECT, ConnectionRow, ConnectionSecretsRow, convert,
};
use crate::types::{DbTime, db_time};

#[async_trait]
impl ConnectionStore for PostgresStore {
    async fn create_connection(&self, new: &NewConnection, audit: &AuditEvent) -> StoreResult<()> {
        let c = &new.connection;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO connections (id, tenant_id, provider, auth_method, livemode, status, \
             stripe_account_id, account_name, account_country, default_currency, key_hint, \
             external_id, name, metadata, stripe_version, missing_permissions, last_validated_at, \
             last_error, data_key_id, secret, next_validation_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)",
        )
        .bind(c.id.uuid())
        .bind(c.tenant_id.uuid())
        .bind(c.provider.as_str())
        .bind(c.auth_method.as_str())
        .bind(c.livemode)
        .bind(c.status.as_str())
        .bind(&c.account.stripe_account_id)
        .bind(&c.account.account_name)
        .bind(&c.account.country)
        .bind(&c.account.default_currency)
        .bind(&c.key_hint)
        .bind(&c.external_id)
        .bind(&c.name)
        .bind(Json(&c.metadata))
        .bind(&c.stripe_version)
        .bind(Json(&c.missing_permissions))
        .bind(db_time(c.last_validated_at))
        .bind(c.last_error.as_ref().map(Json))
        .bind(new.data_key_id.uuid())
        .bind(&new.secret.0)
        .bind(DbTime(new.next_validation_at))
        .bind(DbTime(c.created_at))
        .bind(DbTime(c.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(map)
    }

    async fn get_connection(
        &self,
        tenant: TenantId,
        id: ConnectionId,
    ) -> StoreResult<Option<Connection>> {
        let row: Option<ConnectionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant.uuid())
        .bind(id.uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn find_connection_by_external_id(
        &self,
        tenant: TenantId,
        external_id: &str,
    ) -> StoreResult<Option<Connection>> {
        let row: Option<ConnectionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE tenant_id = $1 AND external_id = $2"
        )))
        .bind(tenant.uuid())
        .bind(external_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn get_connection_secrets(
        &self,
        tenant: TenantId,
        id: ConnectionId,
    ) -> StoreResult<Option<ConnectionSecrets>> {
        let row: Option<ConnectionSecretsRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{CONNECTION_SECRETS_SELECT} WHERE c.tenant_id = $1 AND c.id = $2"
        )))
        .bind(tenant.uuid())
        .bind(id.uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn list_connections(
        &self,
        tenant: TenantId,
        filter: &ConnectionFilter,
        page: &PageRequest<ConnectionId>,
    ) -> StoreResult<Page<Connection>> {
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE tenant_id = "
        ));
        qb.push_bind(tenant.uuid());
        if let Some(status) = filter.status {
            qb.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(external_id) = &filter.external_id {
            qb.push(" AND external_id = ")
                .push_bind(external_id.clone());
        }
        if let Some(livemode) = filter.livemode {
            qb.push(" AND livemode = ").push_bind(livemode);
        }
        push_page(&mut qb, "id", page);
        let rows: Vec<ConnectionRow> = qb
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(map)?;
        Ok(Page::from_rows(convert(rows)?, page))
    }

    async fn update_connection_details(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        details: &ConnectionDetails,
        expected_updated_at: Timestamp,
        updated_at: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Updated<Connection>> {
        let mut tx = self.begin().await?;
        let row: Option<ConnectionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE connections SET name = $1, metadata = $2, external_id = $3, stripe_version = $4, updated_at = $5 \
             WHERE tenant_id = $6 AND id = $7 AND updated_at = $8 RETURNING {CONNECTION_COLUMNS}"
        )))
        .bind(&details.name)
        .bind(Json(&details.metadata))
        .bind(&details.external_id)
        .bind(&details.stripe_version)
        .bind(DbTime(updated_at))
        .bind(tenant.uuid())
        .bind(id.uuid())
        .bind(DbTime(expected_updated_at))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
        let Some(row) = row else {
            let exists: Option<(i64,)> =
                sqlx::query_as("SELECT 1::int8 FROM connections WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.uuid())
                    .bind(id.uuid())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map)?;
            return Ok(if exists.is_some() {
                Updated::Stale
            } else {
                Updated::NotFound
            });
        };
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(map)?;
        Ok(Updated::Applied(row.try_into()?))
    }

    async fn record_validation(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        record: &ValidationRecord,
        audit: Option<&AuditEvent>,
    ) -> StoreResult<Option<Connection>> {
        let account = record.account.clone().unwrap_or_default();
        let mut tx = self.begin().await?;
        let row: Option<ConnectionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE connections SET status = $1, missing_permissions = $2, last_validated_at = $3, \
             last_error = $4, next_validation_at = $5, lease_until = NULL, \
             stripe_account_id = CASE WHEN $6 THEN $7 ELSE stripe_account_id END, \
             account_name = CASE WHEN $8 THEN $9 ELSE account_name END, \
             account_country = CASE WHEN $10 THEN $11 ELSE account_country END, \
             default_currency = CASE WHEN $12 THEN $13 ELSE default_currency END \
             WHERE tenant_id = $14 AND id = $15 RETURNING {CONNECTION_COLUMNS}"
        )))
        .bind(record.status.as_str())
        .bind(Json(&record.missing_permissions))
        .bind(DbTime(record.validated_at))
        .bind(record.last_error.as_ref().map(Json))
        .bind(DbTime(record.next_validation_at))
        .bind(record.account.is_some())
        .bind(&account.stripe_account_id)
        .bind(record.account.is_some())
        .bind(&account.account_name)
        .bind(record.account.is_some())
        .bind(&account.country)
        .bind(record.account.is_some())
        .bind(&account.default_currency)
        .bind(tenant.uuid())
        .bind(id.uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
        let Some(row) = row else {
            return Ok(None);
        };
        if let Some(audit) = audit {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await.map_err(map)?;
        Ok(Some(row.try_into()?))
    }

    async fn rotate_connection_secret(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        rotation: &SecretRotation,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Connection>> {
        let v = &rotation.validation;
        let account = v.account.clone().unwrap_or_default();
        let (previous, previous_hint, previous_expiry) = match &rotation.previous {
            Some((sealed, hint, expires)) => {
                (Some(&sealed.0), Some(hint.as_str()), Some(DbTime(*expires)))
            }
            None => (None, None, None),
        };
        let mut tx = self.begin().await?;
        let row: Option<ConnectionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE connections SET auth_method = $1, key_hint = $2, data_key_id = $3, secret = $4, \
             previous_secret = $5, previous_key_hint = $6, previous_key_expires_at = $7, \
             status = $8, missing_permissions = $9, last_validated_at = $10, last_error = $11, \
             next_validation_at = $12, lease_until = NULL, updated_at = $13, \
             stripe_account_id = CASE WHEN $14 THEN $15 ELSE stripe_account_id END, \
             account_name = CASE WHEN $16 THEN $17 ELSE account_name END, \
             account_country = CASE WHEN $18 THEN $19 ELSE account_country END, \
             default_currency = CASE WHEN $20 THEN $21 ELSE default_currency END \
             WHERE tenant_id = $22 AND id = $23 RETURNING {CONNECTION_COLUMNS}"
        )))
        .bind(rotation.auth_method.as_str())
        .bind(&rotation.key_hint)
        .bind(rotation.data_key_id.uuid())
        .bind(&rotation.secret.0)
        .bind(previous)
        .bind(previous_hint)
        .bind(previous_expiry)
        .bind(v.status.as_str())
        .bind(Json(&v.missing_permissions))
        .bind(DbTime(v.validated_at))
        .bind(v.last_error.as_ref().map(Json))
        .bind(DbTime(v.next_validation_at))
        .bind(DbTime(rotation.updated_at))
        .bind(v.account.is_some())
        .bind(&account.stripe_account_id)
        .bind(v.account.is_some())
        .bind(&account.account_name)
        .bind(v.account.is_some())
        .bind(&account.country)
        .bind(v.account.is_some())
        .bind(&account.default_currency)
        .bind(tenant.uuid())
        .bind(id.uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
        let Some(row) = row else {
            return Ok(None);
        };
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(map)?;
        Ok(Some(row.try_into()?))
    }

    async fn count_connections(&self, tenant: TenantId) -> StoreResult<u64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM connections WHERE tenant_id = $1")
            .bind(tenant.uuid())
            .fetch_one(&self.pool)
            .await
            .map_err(map)?;
        Ok(n as u64)
    }

    async fn delete_connection(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM connections WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.uuid())
            .bind(id.uuid())
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    async fn system_claim_due_validations(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(TenantId, ConnectionId)>> {
        // SKIP LOCKED: replicas claiming at the same moment take disjoint rows.
        let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "WITH due AS ( \
               SELECT id FROM connections WHERE next_validation_at <= $2 \
               AND (lease_until IS NULL OR lease_until <= $3) \
               ORDER BY next_validation_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE connections c SET lease_until = $1 FROM due WHERE c.id = due.id \
             RETURNING c.tenant_id, c.id",
        )
        .bind(DbTime(lease_until))
        .bind(DbTime(now))
        .bind(DbTime(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        Ok(rows
            .into_iter()
            .map(|(t, c)| (TenantId::from_uuid(t), ConnectionId::from_uuid(c)))
            .collect())
    }

    async fn system_purge_expired_previous_keys(&self, now: Timestamp) -> StoreResult<u64> {
        let purged = sqlx::query(
            "UPDATE connections SET previous_secret = NULL, previous_key_hint = NULL, \
             previous_key_expires_at = NULL \
             WHERE previous_key_expires_at IS NOT NULL AND previous_key_expires_at <= $1",
        )
        .bind(DbTime(now))
        .execute(&self.pool)
        .await
        .map_err(map)?
        .rows_affected();
        Ok(purged)
    }
}
