//! Webhook endpoints (both engines): where Stripe posts a tenant's events,
//! with sealed signing secrets (and the previous one while a secret rolls).

use async_trait::async_trait;
use patchbay_core::audit::AuditEvent;
use patchbay_core::sealed::SealedSecret;
use patchbay_core::store::{StoreResult, WebhookEndpointStore};
use patchbay_core::webhook::{EndpointSecrets, SecretRoll, WebhookEndpoint};
use patchbay_core::{
    ConnectionId, DataKeyId, Page, PageRequest, TenantId, Timestamp, WebhookEndpointId,
};
use sqlx::QueryBuilder;
use sqlx::types::Json;

use crate::engine::for_each_engine;
use crate::error::map;
use crate::page::push_page;
use crate::rows::convert;
use crate::types::{DbTime, db_time};
use crate::webhook_rows::{DATA_KEY_JOIN, ENDPOINT_COLUMNS, EndpointRow, SecretsRow};

for_each_engine! {
    #[async_trait]
    impl WebhookEndpointStore for Engine {
        async fn create_webhook_endpoint(
            &self,
            e: &WebhookEndpoint,
            data_key_id: DataKeyId,
            secret: &SealedSecret,
            audit: &AuditEvent,
        ) -> StoreResult<()> {
            let mut tx = self.begin().await?;
            sqlx::query(
                "INSERT INTO webhook_endpoints (id, tenant_id, connection_id, livemode, events, \
                 description, data_key_id, secret, secret_hint, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(e.id.uuid())
            .bind(e.tenant_id.uuid())
            .bind(e.connection_id.map(|c| c.uuid()))
            .bind(e.livemode)
            .bind(Json(&e.events))
            .bind(&e.description)
            .bind(data_key_id.uuid())
            .bind(&secret.0)
            .bind(&e.secret_hint)
            .bind(DbTime(e.created_at))
            .bind(DbTime(e.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            Ok(())
        }

        async fn get_webhook_endpoint(
            &self,
            tenant: TenantId,
            id: WebhookEndpointId,
        ) -> StoreResult<Option<WebhookEndpoint>> {
            let row: Option<EndpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"
            )))
            .bind(tenant.uuid())
            .bind(id.uuid())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn list_webhook_endpoints(
            &self,
            tenant: TenantId,
            connection: Option<ConnectionId>,
            page: &PageRequest<WebhookEndpointId>,
        ) -> StoreResult<Page<WebhookEndpoint>> {
            let mut qb = QueryBuilder::<Db>::new(format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = "
            ));
            qb.push_bind(tenant.uuid());
            if let Some(c) = connection {
                qb.push(" AND connection_id = ").push_bind(c.uuid());
            }
            push_page(&mut qb, "id", page);
            let rows: Vec<EndpointRow> = qb
                .build_query_as()
                .fetch_all(&mut *self.reader().await?)
                .await
                .map_err(map)?;
            Ok(Page::from_rows(convert(rows)?, page))
        }

        async fn update_webhook_endpoint(
            &self,
            e: &WebhookEndpoint,
            audit: &AuditEvent,
        ) -> StoreResult<Option<WebhookEndpoint>> {
            let mut tx = self.begin().await?;
            let row: Option<EndpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE webhook_endpoints SET events = $1, description = $2, updated_at = $3 \
                 WHERE tenant_id = $4 AND id = $5 RETURNING {ENDPOINT_COLUMNS}"
            )))
            .bind(Json(&e.events))
            .bind(&e.description)
            .bind(DbTime(e.updated_at))
            .bind(e.tenant_id.uuid())
            .bind(e.id.uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?;
            if row.is_none() {
                return Ok(None);
            }
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn roll_webhook_endpoint_secret(
            &self,
            tenant: TenantId,
            id: WebhookEndpointId,
            roll: &SecretRoll,
            audit: &AuditEvent,
        ) -> StoreResult<Option<WebhookEndpoint>> {
            let mut tx = self.begin().await?;
            let (previous, expires) = match &roll.previous {
                Some((sealed, at)) => (Some(&sealed.0), Some(*at)),
                None => (None, None),
            };
            let row: Option<EndpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE webhook_endpoints SET data_key_id = $1, secret = $2, secret_hint = $3, \
                 previous_secret = $4, previous_expires_at = $5, updated_at = $6 \
                 WHERE tenant_id = $7 AND id = $8 RETURNING {ENDPOINT_COLUMNS}"
            )))
            .bind(roll.data_key_id.uuid())
            .bind(&roll.secret.0)
            .bind(&roll.hint)
            .bind(previous)
            .bind(db_time(expires))
            .bind(DbTime(roll.at))
            .bind(tenant.uuid())
            .bind(id.uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?;
            if row.is_none() {
                return Ok(None);
            }
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn delete_webhook_endpoint(
            &self,
            tenant: TenantId,
            id: WebhookEndpointId,
            audit: &AuditEvent,
        ) -> StoreResult<bool> {
            let mut tx = self.begin().await?;
            let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.uuid())
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

        async fn system_webhook_endpoint_secrets(
            &self,
            id: WebhookEndpointId,
            now: Timestamp,
        ) -> StoreResult<Option<EndpointSecrets>> {
            let columns = ENDPOINT_COLUMNS
                .split(", ")
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            let row: Option<SecretsRow<EndpointRow>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {columns}, t.secret, \
                 CASE WHEN t.previous_expires_at > $2 THEN t.previous_secret END AS previous_secret, \
                 {DATA_KEY_JOIN} FROM webhook_endpoints t \
                 JOIN data_keys d ON d.id = t.data_key_id AND d.tenant_id = t.tenant_id \
                 WHERE t.id = $1"
            )))
            .bind(id.uuid())
            .bind(DbTime(now))
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some(EndpointSecrets {
                endpoint: row.record.try_into()?,
                data_key: row.data_key.into(),
                secret: SealedSecret(row.secret),
                previous: row.previous_secret.map(SealedSecret),
            }))
        }
    }
}
