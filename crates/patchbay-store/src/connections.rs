//! Stripe connections and their sealed secrets (both engines). A connection's
//! secrets are rows of `connection_secrets`, one per role, written in the
//! transaction that changes the connection.

use async_trait::async_trait;
use patchbay_core::StoreError;
use patchbay_core::audit::AuditEvent;
use patchbay_core::connect::{ConnectionSecret, SecretRole, SessionUse};
use patchbay_core::connection::{
    AuthMethod, Connection, ConnectionDetails, ConnectionFilter, ConnectionStatus, LastError,
    ValidationRecord,
};
use patchbay_core::job::NewJob;
use patchbay_core::store::{
    ConnectionSecrets, ConnectionStore, GrantUpdate, NewConnection, PermissionObservation,
    RefreshLease, SecretRotation, StoreResult, Updated,
};
use patchbay_core::{ConnectionId, Page, PageRequest, TenantId, Timestamp};
use sqlx::QueryBuilder;
use sqlx::types::Json;
use uuid::Uuid;

use crate::engine::for_each_engine;
use crate::error::map;
use crate::page::push_page;
use crate::rows::{
    CONNECTION_COLUMNS, CONNECTION_SECRETS_SELECT, ConnectionRow, ConnectionSecretsRow, convert,
};
use crate::types::{DbTime, db_time};

const UPSERT_SECRET: &str = "INSERT INTO connection_secrets (connection_id, role, sealed, expires_at, created_at) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (connection_id, role) DO UPDATE SET sealed = excluded.sealed, \
     expires_at = excluded.expires_at, created_at = excluded.created_at";

const INSERT_SESSION_USE: &str = "INSERT INTO connect_session_uses (session_id, tenant_id, connection_id, used_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id) DO NOTHING";

for_each_engine! {
    impl Engine {
        /// Writes (or replaces) secrets of a connection inside `conn`'s transaction.
        pub(crate) async fn put_secrets(
            conn: &mut <Db as sqlx::Database>::Connection,
            connection: ConnectionId,
            secrets: &[ConnectionSecret],
            now: Timestamp,
        ) -> StoreResult<()> {
            for secret in secrets {
                sqlx::query(UPSERT_SECRET)
                    .bind(connection.uuid())
                    .bind(secret.role.as_str())
                    .bind(&secret.sealed.0)
                    .bind(db_time(secret.expires_at))
                    .bind(DbTime(now))
                    .execute(&mut *conn)
                    .await
                    .map_err(map)?;
            }
            Ok(())
        }

        /// Records a connect session as used; a session used before is a conflict.
        pub(crate) async fn use_session(
            conn: &mut <Db as sqlx::Database>::Connection,
            tenant: TenantId,
            connection: ConnectionId,
            session: &SessionUse,
            now: Timestamp,
        ) -> StoreResult<()> {
            let inserted = sqlx::query(INSERT_SESSION_USE)
                .bind(session.session_id)
                .bind(tenant.uuid())
                .bind(connection.uuid())
                .bind(DbTime(now))
                .bind(DbTime(session.expires_at))
                .execute(&mut *conn)
                .await
                .map_err(map)?
                .rows_affected();
            if inserted == 0 {
                return Err(StoreError::Conflict { field: "session" });
            }
            Ok(())
        }
    }

    #[async_trait]
    impl ConnectionStore for Engine {
        async fn create_connection(&self, new: &NewConnection, audit: &AuditEvent) -> StoreResult<()> {
            let c = &new.connection;
            let mut tx = self.begin().await?;
            sqlx::query(
                "INSERT INTO connections (id, tenant_id, provider, auth_method, livemode, status, \
                 stripe_account_id, account_name, account_country, default_currency, key_hint, \
                 external_id, name, metadata, stripe_version, missing_permissions, last_validated_at, \
                 last_error, data_key_id, oauth_client_id, grant_scope, grant_refreshed_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
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
            .bind(c.grant.as_ref().map(|g| g.client_id.as_str()))
            .bind(c.grant.as_ref().map(|g| g.scope.as_str()))
            .bind(db_time(c.grant.as_ref().and_then(|g| g.refreshed_at)))
            .bind(DbTime(c.created_at))
            .bind(DbTime(c.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            Engine::put_secrets(&mut tx, c.id, &new.secrets, c.created_at).await?;
            if let Some(session) = &new.session {
                Engine::use_session(&mut tx, c.tenant_id, c.id, session, c.created_at).await?;
            }
            for job in &new.jobs {
                Engine::insert_job(&mut tx, job, c.created_at).await?;
            }
            Engine::insert_audit(&mut tx, audit).await?;
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
            .fetch_optional(&mut *self.reader().await?)
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
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn get_connection_secrets(
            &self,
            tenant: TenantId,
            id: ConnectionId,
        ) -> StoreResult<Option<ConnectionSecrets>> {
            let rows: Vec<ConnectionSecretsRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{CONNECTION_SECRETS_SELECT} WHERE c.tenant_id = $1 AND c.id = $2"
            )))
            .bind(tenant.uuid())
            .bind(id.uuid())
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            let secrets = rows
                .iter()
                .filter_map(|r| r.secret().transpose())
                .collect::<Result<Vec<_>, _>>()?;
            let Some(first) = rows.into_iter().next() else {
                return Ok(None);
            };
            Ok(Some(ConnectionSecrets {
                connection: first.connection.try_into()?,
                data_key: first.data_key.into(),
                secrets,
            }))
        }

        async fn list_connections(
            &self,
            tenant: TenantId,
            filter: &ConnectionFilter,
            page: &PageRequest<ConnectionId>,
        ) -> StoreResult<Page<Connection>> {
            let mut qb = QueryBuilder::<Db>::new(format!(
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
            if let Some(account) = &filter.stripe_account_id {
                qb.push(" AND stripe_account_id = ").push_bind(account.clone());
            }
            push_page(&mut qb, "id", page);
            let rows: Vec<ConnectionRow> = qb
                .build_query_as()
                .fetch_all(&mut *self.reader().await?)
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
                    sqlx::query_as("SELECT CAST(1 AS BIGINT) FROM connections WHERE tenant_id = $1 AND id = $2")
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
            Engine::insert_audit(&mut tx, audit).await?;
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
                 last_error = $4, \
                 stripe_account_id = CASE WHEN $5 THEN $6 ELSE stripe_account_id END, \
                 account_name = CASE WHEN $7 THEN $8 ELSE account_name END, \
                 account_country = CASE WHEN $9 THEN $10 ELSE account_country END, \
                 default_currency = CASE WHEN $11 THEN $12 ELSE default_currency END \
                 WHERE tenant_id = $13 AND id = $14 RETURNING {CONNECTION_COLUMNS}"
            )))
            .bind(record.status.as_str())
            .bind(Json(&record.missing_permissions))
            .bind(DbTime(record.validated_at))
            .bind(record.last_error.as_ref().map(Json))
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
                Engine::insert_audit(&mut tx, audit).await?;
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
                "UPDATE connections SET auth_method = $1, key_hint = $2, data_key_id = $3, \
                 previous_key_hint = $4, previous_key_expires_at = $5, \
                 status = $6, missing_permissions = $7, last_validated_at = $8, last_error = $9, \
                 updated_at = $10, \
                 stripe_account_id = CASE WHEN $11 THEN $12 ELSE stripe_account_id END, \
                 account_name = CASE WHEN $13 THEN $14 ELSE account_name END, \
                 account_country = CASE WHEN $15 THEN $16 ELSE account_country END, \
                 default_currency = CASE WHEN $17 THEN $18 ELSE default_currency END \
                 WHERE tenant_id = $19 AND id = $20 AND auth_method <> 'oauth' RETURNING {CONNECTION_COLUMNS}"
            )))
            .bind(rotation.auth_method.as_str())
            .bind(&rotation.key_hint)
            .bind(rotation.data_key_id.uuid())
            .bind(previous_hint)
            .bind(previous_expiry)
            .bind(v.status.as_str())
            .bind(Json(&v.missing_permissions))
            .bind(DbTime(v.validated_at))
            .bind(v.last_error.as_ref().map(Json))
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
            let at = rotation.updated_at;
            let mut secrets = vec![ConnectionSecret::new(SecretRole::ApiKey, rotation.secret.clone())];
            match previous {
                Some(sealed) => secrets.push(ConnectionSecret {
                    role: SecretRole::PreviousApiKey,
                    sealed: patchbay_core::sealed::SealedSecret(sealed.clone()),
                    expires_at: previous_expiry.map(|t| t.0),
                }),
                None => {
                    sqlx::query("DELETE FROM connection_secrets WHERE connection_id = $1 AND role = $2")
                        .bind(id.uuid())
                        .bind(SecretRole::PreviousApiKey.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(map)?;
                }
            }
            Engine::put_secrets(&mut tx, id, &secrets, at).await?;
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            Ok(Some(row.try_into()?))
        }

        async fn count_connections(&self, tenant: TenantId) -> StoreResult<u64> {
            let (n,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM connections WHERE tenant_id = $1")
                    .bind(tenant.uuid())
                    .fetch_one(&mut *self.reader().await?)
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
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            Ok(true)
        }

        async fn system_purge_expired_previous_keys(&self, now: Timestamp) -> StoreResult<u64> {
            let mut tx = self.begin().await?;
            let purged = sqlx::query(
                "DELETE FROM connection_secrets WHERE expires_at IS NOT NULL AND expires_at <= $1",
            )
            .bind(DbTime(now))
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
            sqlx::query(
                "UPDATE connections SET previous_key_hint = NULL, previous_key_expires_at = NULL \
                 WHERE previous_key_expires_at IS NOT NULL AND previous_key_expires_at <= $1",
            )
            .bind(DbTime(now))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            tx.commit().await.map_err(map)?;
            Ok(purged)
        }

        async fn lease_grant_refresh(
            &self,
            tenant: TenantId,
            id: ConnectionId,
            token: Uuid,
            until: Timestamp,
            now: Timestamp,
        ) -> StoreResult<RefreshLease> {
            let taken = sqlx::query(
                "UPDATE connections SET refresh_lease_token = $1, refresh_lease_until = $2 \
                 WHERE tenant_id = $3 AND id = $4 AND auth_method = $5 \
                 AND (refresh_lease_until IS NULL OR refresh_lease_until <= $6)",
            )
            .bind(token)
            .bind(DbTime(until))
            .bind(tenant.uuid())
            .bind(id.uuid())
            .bind(AuthMethod::Oauth.as_str())
            .bind(DbTime(now))
            .execute(self.writer())
            .await
            .map_err(map)?
            .rows_affected();
            if taken == 1 {
                return Ok(RefreshLease::Acquired);
            }
            let exists: Option<(i64,)> = sqlx::query_as(
                "SELECT CAST(1 AS BIGINT) FROM connections WHERE tenant_id = $1 AND id = $2 AND auth_method = $3",
            )
            .bind(tenant.uuid())
            .bind(id.uuid())
            .bind(AuthMethod::Oauth.as_str())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            Ok(if exists.is_some() {
                RefreshLease::Held
            } else {
                RefreshLease::NotFound
            })
        }

        async fn release_grant_refresh(
            &self,
            tenant: TenantId,
            id: ConnectionId,
            token: Uuid,
        ) -> StoreResult<()> {
            sqlx::query(
                "UPDATE connections SET refresh_lease_token = NULL, refresh_lease_until = NULL \
                 WHERE tenant_id = $1 AND id = $2 AND refresh_lease_token = $3",
            )
            .bind(tenant.uuid())
            .bind(id.uuid())
            .bind(token)
            .execute(self.writer())
            .await
            .map_err(map)?;
            Ok(())
        }

        async fn apply_grant(
            &self,
            tenant: TenantId,
            id: ConnectionId,
            update: &GrantUpdate,
            audit: &AuditEvent,
        ) -> StoreResult<Option<Connection>> {
            let v = update.validation.as_ref();
            let account = v.and_then(|v| v.account.clone());
            let has_account = account.is_some();
            let account = account.unwrap_or_default();
            let mut tx = self.begin().await?;
            let row: Option<ConnectionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE connections SET key_hint = $1, data_key_id = $2, grant_scope = $3, \
                 grant_refreshed_at = $4, updated_at = $5, \
                 refresh_lease_token = NULL, refresh_lease_until = NULL, \
                 status = CASE WHEN $6 THEN $7 ELSE status END, \
                 missing_permissions = CASE WHEN $6 THEN $8 ELSE missing_permissions END, \
                 last_validated_at = CASE WHEN $6 THEN $9 ELSE last_validated_at END, \
                 last_error = CASE WHEN $6 THEN $10 ELSE last_error END, \
                 account_name = CASE WHEN $11 THEN $12 ELSE account_name END, \
                 account_country = CASE WHEN $11 THEN $13 ELSE account_country END, \
                 default_currency = CASE WHEN $11 THEN $14 ELSE default_currency END \
                 WHERE tenant_id = $15 AND id = $16 AND auth_method = $17 AND status <> 'revoking' \
                 AND ($18 OR refresh_lease_token = $19) RETURNING {CONNECTION_COLUMNS}"
            )))
            .bind(&update.key_hint)
            .bind(update.data_key_id.uuid())
            .bind(update.scope.as_str())
            .bind(DbTime(update.refreshed_at))
            .bind(DbTime(update.updated_at))
            .bind(v.is_some())
            .bind(v.map_or(ConnectionStatus::Active, |v| v.status).as_str())
            .bind(Json(v.map(|v| v.missing_permissions.clone()).unwrap_or_default()))
            .bind(db_time(v.map(|v| v.validated_at)))
            .bind(v.and_then(|v| v.last_error.as_ref()).map(Json))
            .bind(has_account)
            .bind(&account.account_name)
            .bind(&account.country)
            .bind(&account.default_currency)
            .bind(tenant.uuid())
            .bind(id.uuid())
            .bind(AuthMethod::Oauth.as_str())
            .bind(update.lease_token.is_none())
            .bind(update.lease_token)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?;
            let Some(row) = row else {
                return Ok(None);
            };
            Engine::put_secrets(&mut tx, id, &update.secrets, update.updated_at).await?;
            if let Some(session) = &update.session {
                Engine::use_session(&mut tx, tenant, id, session, update.updated_at).await?;
            }
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            Ok(Some(row.try_into()?))
        }

        async fn record_permission(
            &self,
            tenant: TenantId,
            id: ConnectionId,
            observation: &PermissionObservation,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO connection_permissions (connection_id, permission, granted, stripe_request_id, observed_at) \
                 SELECT id, $1, $2, $3, $4 FROM connections WHERE tenant_id = $5 AND id = $6 \
                 ON CONFLICT (connection_id, permission) DO UPDATE SET granted = excluded.granted, \
                 stripe_request_id = excluded.stripe_request_id, observed_at = excluded.observed_at \
                 WHERE connection_permissions.observed_at <= excluded.observed_at",
            )
            .bind(&observation.permission)
            .bind(observation.granted)
            .bind(&observation.stripe_request_id)
            .bind(DbTime(observation.observed_at))
            .bind(tenant.uuid())
            .bind(id.uuid())
            .execute(self.writer())
            .await
            .map_err(map)?;
            Ok(())
        }

        async fn connection_permissions(
            &self,
            tenant: TenantId,
            id: ConnectionId,
        ) -> StoreResult<Vec<PermissionObservation>> {
            let rows: Vec<(String, bool, Option<String>, DbTime)> = sqlx::query_as(
                "SELECT p.permission, p.granted, p.stripe_request_id, p.observed_at \
                 FROM connection_permissions p JOIN connections c ON c.id = p.connection_id \
                 WHERE c.tenant_id = $1 AND c.id = $2 ORDER BY p.permission",
            )
            .bind(tenant.uuid())
            .bind(id.uuid())
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            Ok(rows
                .into_iter()
                .map(|(permission, granted, stripe_request_id, at)| PermissionObservation {
                    permission,
                    granted,
                    stripe_request_id,
                    observed_at: at.0,
                })
                .collect())
        }

        async fn mark_connection_revoking(
            &self,
            tenant: TenantId,
            id: ConnectionId,
            error: &LastError,
            job: &NewJob,
            audit: &AuditEvent,
        ) -> StoreResult<Option<Connection>> {
            let mut tx = self.begin().await?;
            let row: Option<ConnectionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE connections SET status = $1, last_error = $2, \
                 refresh_lease_token = NULL, refresh_lease_until = NULL \
                 WHERE tenant_id = $3 AND id = $4 AND auth_method = $5 RETURNING {CONNECTION_COLUMNS}"
            )))
            .bind(ConnectionStatus::Revoking.as_str())
            .bind(Json(error))
            .bind(tenant.uuid())
            .bind(id.uuid())
            .bind(AuthMethod::Oauth.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?;
            let Some(row) = row else {
                return Ok(None);
            };
            Engine::insert_job(&mut tx, job, audit.created_at).await?;
            Engine::insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(map)?;
            Ok(Some(row.try_into()?))
        }
    }
}
