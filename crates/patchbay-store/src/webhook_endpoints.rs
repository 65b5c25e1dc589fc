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
use crate::signing_secrets::SecretTable;
use crate::types::DbTime;
use crate::webhook_rows::{ENDPOINT_COLUMNS, EndpointRow, SecretsRow};

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
            let row: Option<EndpointRow> = self
                .roll_signing_secret(SecretTable::Endpoints, tenant, id.uuid(), roll, audit)
                .await?;
            row.map(TryInto::try_into).transpose()
        }

        async fn delete_webhook_endpoint(
            &self,
            tenant: TenantId,
            id: WebhookEndpointId,
            audit: &AuditEvent,
        ) -> StoreResult<bool> {
            self.delete_signed(SecretTable::Endpoints, tenant, id.uuid(), audit)
                .await
        }

        async fn system_webhook_endpoint_secrets(
            &self,
            id: WebhookEndpointId,
            now: Timestamp,
        ) -> StoreResult<Option<EndpointSecrets>> {
            let row: Option<SecretsRow<EndpointRow>> = Engine::signing_secrets(
                &mut *self.reader().await?,
                SecretTable::Endpoints,
                None,
                id.uuid(),
                now,
            )
            .await?;
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
