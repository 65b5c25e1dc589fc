//! Event subscriptions (both engines): the tenant's receivers, with sealed
//! Standard Webhooks secrets (and the previous one while a secret rolls).

use async_trait::async_trait;
use patchbay_core::audit::AuditEvent;
use patchbay_core::sealed::SealedSecret;
use patchbay_core::store::{StoreResult, SubscriptionStore};
use patchbay_core::webhook::{SecretRoll, Subscription, SubscriptionSecrets};
use patchbay_core::{DataKeyId, Page, PageRequest, SubscriptionId, TenantId, Timestamp};
use sqlx::QueryBuilder;
use sqlx::types::Json;

use crate::engine::for_each_engine;
use crate::error::map;
use crate::page::push_page;
use crate::rows::convert;
use crate::signing_secrets::SecretTable;
use crate::types::{DbTime, db_time};
use crate::webhook_rows::{SUBSCRIPTION_COLUMNS, SecretsRow, SubscriptionRow};

/// A subscription row with its secrets, as the domain type.
pub(crate) fn subscription_secrets(
    row: SecretsRow<SubscriptionRow>,
) -> StoreResult<SubscriptionSecrets> {
    Ok(SubscriptionSecrets {
        subscription: row.record.try_into()?,
        data_key: row.data_key.into(),
        secret: SealedSecret(row.secret),
        previous: row.previous_secret.map(SealedSecret),
    })
}

for_each_engine! {
    #[async_trait]
    impl SubscriptionStore for Engine {
        async fn create_subscription(
            &self,
            s: &Subscription,
            data_key_id: DataKeyId,
            secret: &SealedSecret,
            audit: &AuditEvent,
        ) -> StoreResult<()> {
            let mut tx = self.begin().await?;
            sqlx::query(
                "INSERT INTO event_subscriptions (id, tenant_id, connection_id, url, events, \
                 description, status, disabled_reason, failing_since, data_key_id, secret, \
                 secret_hint, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(s.id.uuid())
            .bind(s.tenant_id.uuid())
            .bind(s.connection_id.map(|c| c.uuid()))
            .bind(&s.url)
            .bind(Json(&s.events))
            .bind(&s.description)
            .bind(s.status.as_str())
            .bind(&s.disabled_reason)
            .bind(db_time(s.failing_since))
            .bind(data_key_id.uuid())
            .bind(&secret.0)
            .bind(&s.secret_hint)
            .bind(DbTime(s.created_at))
            .bind(DbTime(s.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            Ok(())
        }

        async fn get_subscription(
            &self,
            tenant: TenantId,
            id: SubscriptionId,
        ) -> StoreResult<Option<Subscription>> {
            let row: Option<SubscriptionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM event_subscriptions WHERE tenant_id = $1 AND id = $2"
            )))
            .bind(tenant.uuid())
            .bind(id.uuid())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn list_subscriptions(
            &self,
            tenant: TenantId,
            page: &PageRequest<SubscriptionId>,
        ) -> StoreResult<Page<Subscription>> {
            let mut qb = QueryBuilder::<Db>::new(format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM event_subscriptions WHERE tenant_id = "
            ));
            qb.push_bind(tenant.uuid());
            push_page(&mut qb, "id", page);
            let rows: Vec<SubscriptionRow> = qb
                .build_query_as()
                .fetch_all(&mut *self.reader().await?)
                .await
                .map_err(map)?;
            Ok(Page::from_rows(convert(rows)?, page))
        }

        async fn enabled_subscriptions(&self, tenant: TenantId) -> StoreResult<Vec<Subscription>> {
            let rows: Vec<SubscriptionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM event_subscriptions \
                 WHERE tenant_id = $1 AND status = 'enabled' ORDER BY id"
            )))
            .bind(tenant.uuid())
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            convert(rows)
        }

        async fn update_subscription(
            &self,
            s: &Subscription,
            audit: &AuditEvent,
        ) -> StoreResult<Option<Subscription>> {
            let mut tx = self.begin().await?;
            let row: Option<SubscriptionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE event_subscriptions SET url = $1, events = $2, description = $3, status = $4, \
                 disabled_reason = $5, failing_since = $6, updated_at = $7 \
                 WHERE tenant_id = $8 AND id = $9 RETURNING {SUBSCRIPTION_COLUMNS}"
            )))
            .bind(&s.url)
            .bind(Json(&s.events))
            .bind(&s.description)
            .bind(s.status.as_str())
            .bind(&s.disabled_reason)
            .bind(db_time(s.failing_since))
            .bind(DbTime(s.updated_at))
            .bind(s.tenant_id.uuid())
            .bind(s.id.uuid())
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

        async fn roll_subscription_secret(
            &self,
            tenant: TenantId,
            id: SubscriptionId,
            roll: &SecretRoll,
            audit: &AuditEvent,
        ) -> StoreResult<Option<Subscription>> {
            let row: Option<SubscriptionRow> = self
                .roll_signing_secret(SecretTable::Subscriptions, tenant, id.uuid(), roll, audit)
                .await?;
            row.map(TryInto::try_into).transpose()
        }

        async fn delete_subscription(
            &self,
            tenant: TenantId,
            id: SubscriptionId,
            audit: &AuditEvent,
        ) -> StoreResult<bool> {
            self.delete_signed(SecretTable::Subscriptions, tenant, id.uuid(), audit)
                .await
        }

        async fn subscription_secrets(
            &self,
            tenant: TenantId,
            id: SubscriptionId,
            now: Timestamp,
        ) -> StoreResult<Option<SubscriptionSecrets>> {
            let row = Engine::signing_secrets(
                &mut *self.reader().await?,
                SecretTable::Subscriptions,
                Some(tenant),
                id.uuid(),
                now,
            )
            .await?;
            row.map(subscription_secrets).transpose()
        }
    }
}
