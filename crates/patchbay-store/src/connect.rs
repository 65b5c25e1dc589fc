//! Stripe Connect (both engines): the tenants' platforms with their sealed
//! keys, pending OAuth flows (only the state's hash), and connect sessions
//! that have spent their one connection.

use async_trait::async_trait;
use patchbay_core::audit::AuditEvent;
use patchbay_core::connect::{OAuthState, PlatformDeletion, StripePlatform, StripePlatformSecret};
use patchbay_core::connection::AuthMethod;
use patchbay_core::sealed::SealedSecret;
use patchbay_core::store::{ConnectStore, StoreResult};
use patchbay_core::{DataKeyId, StoreError, TenantId, Timestamp};
use sqlx::types::Json;
use uuid::Uuid;

use crate::engine::for_each_engine;
use crate::error::map;
use crate::rows::{
    OAUTH_STATE_COLUMNS, OAuthStateRow, PLATFORM_COLUMNS, PlatformRow, PlatformSecretRow, convert,
};
use crate::types::{DbTime, db_time};

/// Connect connections of a tenant in one mode (`$3` NULL: either mode).
const DEPENDENTS: &str = "FROM connections WHERE tenant_id = $1 AND auth_method = $2 \
     AND ($3 IS NULL OR livemode = $3)";

for_each_engine! {
    #[async_trait]
    impl ConnectStore for Engine {
        async fn put_stripe_platform(
            &self,
            platform: &StripePlatform,
            data_key_id: DataKeyId,
            secret: &SealedSecret,
            audit: &AuditEvent,
        ) -> StoreResult<StripePlatform> {
            let p = platform;
            let mut tx = self.begin().await?;
            let current: Option<(String,)> = sqlx::query_as(
                "SELECT client_id FROM stripe_platforms WHERE tenant_id = $1 AND livemode = $2",
            )
            .bind(p.tenant_id.uuid())
            .bind(p.livemode)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?;
            if let Some((client_id,)) = current
                && client_id != p.client_id
            {
                let (dependents,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) {DEPENDENTS}"
                )))
                .bind(p.tenant_id.uuid())
                .bind(AuthMethod::Oauth.as_str())
                .bind(Some(p.livemode))
                .fetch_one(&mut *tx)
                .await
                .map_err(map)?;
                if dependents > 0 {
                    return Err(StoreError::Conflict { field: "client_id" });
                }
            }
            let row: PlatformRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO stripe_platforms (tenant_id, livemode, client_id, key_hint, \
                 platform_account_id, redirect_uris, scope, data_key_id, secret, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (tenant_id, livemode) DO UPDATE SET client_id = excluded.client_id, \
                 key_hint = excluded.key_hint, platform_account_id = excluded.platform_account_id, \
                 redirect_uris = excluded.redirect_uris, scope = excluded.scope, \
                 data_key_id = excluded.data_key_id, secret = excluded.secret, \
                 updated_at = excluded.updated_at \
                 RETURNING {PLATFORM_COLUMNS}"
            )))
            .bind(p.tenant_id.uuid())
            .bind(p.livemode)
            .bind(&p.client_id)
            .bind(&p.key_hint)
            .bind(&p.platform_account_id)
            .bind(Json(&p.redirect_uris))
            .bind(p.scope.as_str())
            .bind(data_key_id.uuid())
            .bind(&secret.0)
            .bind(DbTime(p.created_at))
            .bind(DbTime(p.updated_at))
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            row.try_into()
        }

        async fn list_stripe_platforms(&self, tenant: TenantId) -> StoreResult<Vec<StripePlatform>> {
            let rows: Vec<PlatformRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {PLATFORM_COLUMNS} FROM stripe_platforms WHERE tenant_id = $1 ORDER BY livemode"
            )))
            .bind(tenant.uuid())
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            convert(rows)
        }

        async fn get_stripe_platform_secret(
            &self,
            tenant: TenantId,
            livemode: bool,
        ) -> StoreResult<Option<StripePlatformSecret>> {
            let row: Option<PlatformSecretRow> = sqlx::query_as(
                "SELECT p.tenant_id, p.livemode, p.client_id, p.key_hint, p.platform_account_id, \
                 p.redirect_uris, p.scope, p.created_at, p.updated_at, p.secret, \
                 d.id AS dk_id, d.tenant_id AS dk_tenant_id, d.master_key_id AS dk_master_key_id, \
                 d.wrapped AS dk_wrapped, d.created_at AS dk_created_at \
                 FROM stripe_platforms p JOIN data_keys d ON d.id = p.data_key_id AND d.tenant_id = p.tenant_id \
                 WHERE p.tenant_id = $1 AND p.livemode = $2",
            )
            .bind(tenant.uuid())
            .bind(livemode)
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            row.map(|r| {
                Ok(StripePlatformSecret {
                    platform: r.platform.try_into()?,
                    data_key: r.data_key.into(),
                    secret: SealedSecret(r.secret),
                })
            })
            .transpose()
        }

        async fn delete_stripe_platforms(
            &self,
            tenant: TenantId,
            livemode: Option<bool>,
            force: bool,
            audit: &AuditEvent,
        ) -> StoreResult<PlatformDeletion> {
            let mut tx = self.begin().await?;
            let (platforms,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM stripe_platforms WHERE tenant_id = $1 AND ($2 IS NULL OR livemode = $2)",
            )
            .bind(tenant.uuid())
            .bind(livemode)
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
            if platforms == 0 {
                return Ok(PlatformDeletion::NotFound);
            }
            let (dependents,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) {DEPENDENTS}"
            )))
            .bind(tenant.uuid())
            .bind(AuthMethod::Oauth.as_str())
            .bind(livemode)
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
            if dependents > 0 && !force {
                return Ok(PlatformDeletion::InUse {
                    connections: dependents as u64,
                });
            }
            let connections = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE {DEPENDENTS}")))
                .bind(tenant.uuid())
                .bind(AuthMethod::Oauth.as_str())
                .bind(livemode)
                .execute(&mut *tx)
                .await
                .map_err(map)?
                .rows_affected();
            let platforms = sqlx::query(
                "DELETE FROM stripe_platforms WHERE tenant_id = $1 AND ($2 IS NULL OR livemode = $2)",
            )
            .bind(tenant.uuid())
            .bind(livemode)
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            Ok(PlatformDeletion::Deleted {
                platforms,
                connections,
            })
        }

        async fn create_oauth_state(&self, state: &OAuthState) -> StoreResult<()> {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO oauth_states ({OAUTH_STATE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            )))
            .bind(&state.state_hash)
            .bind(state.tenant_id.uuid())
            .bind(state.livemode)
            .bind(&state.external_id)
            .bind(&state.redirect_uri)
            .bind(&state.return_to)
            .bind(state.scope.as_str())
            .bind(state.session.map(|s| s.session_id))
            .bind(db_time(state.session.map(|s| s.expires_at)))
            .bind(DbTime(state.created_at))
            .bind(DbTime(state.expires_at))
            .execute(self.writer())
            .await
            .map_err(map)?;
            Ok(())
        }

        async fn take_oauth_state(
            &self,
            state_hash: &str,
            now: Timestamp,
        ) -> StoreResult<Option<OAuthState>> {
            let row: Option<OAuthStateRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "DELETE FROM oauth_states WHERE state_hash = $1 RETURNING {OAUTH_STATE_COLUMNS}"
            )))
            .bind(state_hash)
            .fetch_optional(self.writer())
            .await
            .map_err(map)?;
            let Some(row) = row else {
                return Ok(None);
            };
            let state: OAuthState = row.try_into()?;
            Ok((state.expires_at > now).then_some(state))
        }

        async fn connect_session_used(&self, tenant: TenantId, session_id: Uuid) -> StoreResult<bool> {
            let row: Option<(i64,)> = sqlx::query_as(
                "SELECT CAST(1 AS BIGINT) FROM connect_session_uses WHERE tenant_id = $1 AND session_id = $2",
            )
            .bind(tenant.uuid())
            .bind(session_id)
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            Ok(row.is_some())
        }

        async fn system_purge_expired_connect_records(&self, now: Timestamp) -> StoreResult<u64> {
            let mut tx = self.begin().await?;
            let states = sqlx::query("DELETE FROM oauth_states WHERE expires_at <= $1")
                .bind(DbTime(now))
                .execute(&mut *tx)
                .await
                .map_err(map)?
                .rows_affected();
            let uses = sqlx::query("DELETE FROM connect_session_uses WHERE expires_at <= $1")
                .bind(DbTime(now))
                .execute(&mut *tx)
                .await
                .map_err(map)?
                .rows_affected();
            tx.commit().await.map_err(map)?;
            Ok(states + uses)
        }
    }
}
