//! What webhook endpoints and event subscriptions share in storage (both
//! engines): a sealed signing secret, the previous one while a secret rolls
//! (masked once expired), and deletion with its audit record.

use patchbay_core::audit::AuditEvent;
use patchbay_core::store::StoreResult;
use patchbay_core::webhook::SecretRoll;
use patchbay_core::{TenantId, Timestamp};
use uuid::Uuid;

use crate::engine::for_each_engine;
use crate::error::map;
use crate::types::{DbTime, db_time};
use crate::webhook_rows::{DATA_KEY_JOIN, ENDPOINT_COLUMNS, SUBSCRIPTION_COLUMNS, SecretsRow};

/// A table whose rows carry a sealed signing secret.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SecretTable {
    /// `webhook_endpoints` (Stripe's `whsec_`).
    Endpoints,
    /// `event_subscriptions` (Standard Webhooks secrets).
    Subscriptions,
}

impl SecretTable {
    fn name(self) -> &'static str {
        match self {
            Self::Endpoints => "webhook_endpoints",
            Self::Subscriptions => "event_subscriptions",
        }
    }

    fn columns(self) -> &'static str {
        match self {
            Self::Endpoints => ENDPOINT_COLUMNS,
            Self::Subscriptions => SUBSCRIPTION_COLUMNS,
        }
    }
}

for_each_engine! {
    impl Engine {
        /// Replaces a row's secret, keeping (or dropping) the current one as
        /// the previous, with its audit record; the row as it now is.
        pub(crate) async fn roll_signing_secret<R>(
            &self,
            table: SecretTable,
            tenant: TenantId,
            id: Uuid,
            roll: &SecretRoll,
            audit: &AuditEvent,
        ) -> StoreResult<Option<R>>
        where
            R: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
        {
            let mut tx = self.begin().await?;
            let (previous, expires) = match &roll.previous {
                Some((sealed, at)) => (Some(&sealed.0), Some(*at)),
                None => (None, None),
            };
            let row: Option<R> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE {} SET data_key_id = $1, secret = $2, secret_hint = $3, \
                 previous_secret = $4, previous_expires_at = $5, updated_at = $6 \
                 WHERE tenant_id = $7 AND id = $8 RETURNING {}",
                table.name(),
                table.columns()
            )))
            .bind(roll.data_key_id.uuid())
            .bind(&roll.secret.0)
            .bind(&roll.hint)
            .bind(previous)
            .bind(db_time(expires))
            .bind(DbTime(roll.at))
            .bind(tenant.uuid())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?;
            if row.is_none() {
                return Ok(None);
            }
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            Ok(row)
        }

        /// Deletes a row of the tenant with its audit record. False if absent.
        pub(crate) async fn delete_signed(
            &self,
            table: SecretTable,
            tenant: TenantId,
            id: Uuid,
            audit: &AuditEvent,
        ) -> StoreResult<bool> {
            let mut tx = self.begin().await?;
            let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {} WHERE tenant_id = $1 AND id = $2",
                table.name()
            )))
            .bind(tenant.uuid())
            .bind(id)
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

        /// A row with its sealed secrets and data key; the previous secret
        /// only while unexpired at `now`. With `tenant`, only that tenant's
        /// row (`None`: the public intake's lookup by id alone).
        pub(crate) async fn signing_secrets<R>(
            conn: &mut <Db as sqlx::Database>::Connection,
            table: SecretTable,
            tenant: Option<TenantId>,
            id: Uuid,
            now: Timestamp,
        ) -> StoreResult<Option<SecretsRow<R>>>
        where
            SecretsRow<R>: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
        {
            let columns = table
                .columns()
                .split(", ")
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {columns}, t.secret, \
                 CASE WHEN t.previous_expires_at > $3 THEN t.previous_secret END AS previous_secret, \
                 {DATA_KEY_JOIN} FROM {} t \
                 JOIN data_keys d ON d.id = t.data_key_id AND d.tenant_id = t.tenant_id \
                 WHERE t.id = $1 AND ($2 IS NULL OR t.tenant_id = $2)",
                table.name()
            )))
            .bind(id)
            .bind(tenant.map(|t| t.uuid()))
            .bind(DbTime(now))
            .fetch_optional(conn)
            .await
            .map_err(map)
        }
    }
}
