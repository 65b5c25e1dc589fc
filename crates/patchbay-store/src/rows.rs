//! Rows as both databases return them, and their conversion to domain types.
//! Column lists live here too, so both backends select the same shape.

use patchbay_core::api_key::{ApiKey, ApiKeyCredential, Scopes};
use patchbay_core::audit::{Actor, AuditEvent};
use patchbay_core::connect::{
    ConnectionSecret, GrantInfo, GrantScope, OAuthState, SecretRole, SessionUse, StripePlatform,
};
use patchbay_core::connection::{
    AccountDetails, AuthMethod, Connection, ConnectionStatus, LastError, Provider,
};
use patchbay_core::job::{Job, JobStatus};
use patchbay_core::sealed::{DataKeyRecord, MasterKeyCheck, SealedSecret};
use patchbay_core::tenant::{Tenant, TenantStatus};
use patchbay_core::tenant_limits::TenantLimits;
use patchbay_core::{Id, Metadata, StoreError};
use sqlx::types::Json;
use uuid::Uuid;

use crate::error::corrupt;
use crate::types::DbTime;

pub(crate) const TENANT_COLUMNS: &str = "id, name, status, metadata, created_at, updated_at, \
     limit_requests_per_second, limit_burst, limit_max_concurrent_upstream";

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    id: Uuid,
    name: String,
    status: String,
    metadata: Json<Metadata>,
    created_at: DbTime,
    updated_at: DbTime,
    limit_requests_per_second: Option<i64>,
    limit_burst: Option<i64>,
    limit_max_concurrent_upstream: Option<i64>,
}

/// A stored limit: positive and within `u32`, or the database is corrupt.
fn stored_limit(value: Option<i64>, what: &str) -> Result<Option<u32>, StoreError> {
    value
        .map(|v| {
            u32::try_from(v)
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| corrupt(what, &v.to_string()))
        })
        .transpose()
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(r: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            id: Id::from_uuid(r.id),
            name: r.name,
            status: TenantStatus::parse(&r.status)
                .ok_or_else(|| corrupt("tenant status", &r.status))?,
            metadata: r.metadata.0,
            limits: TenantLimits {
                requests_per_second: stored_limit(
                    r.limit_requests_per_second,
                    "tenant requests_per_second",
                )?,
                burst: stored_limit(r.limit_burst, "tenant burst")?,
                max_concurrent_upstream: stored_limit(
                    r.limit_max_concurrent_upstream,
                    "tenant max_concurrent_upstream",
                )?,
            },
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        })
    }
}

pub(crate) const DATA_KEY_COLUMNS: &str = "id, tenant_id, master_key_id, wrapped, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct DataKeyRow {
    id: Uuid,
    tenant_id: Uuid,
    master_key_id: String,
    wrapped: Vec<u8>,
    created_at: DbTime,
}

impl TryFrom<DataKeyRow> for DataKeyRecord {
    type Error = StoreError;
    fn try_from(r: DataKeyRow) -> Result<Self, StoreError> {
        Ok(DataKeyRecord {
            id: Id::from_uuid(r.id),
            tenant_id: Id::from_uuid(r.tenant_id),
            master_key_id: r.master_key_id,
            wrapped: r.wrapped,
            created_at: r.created_at.0,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MasterKeyCheckRow {
    key_id: String,
    check_value: Vec<u8>,
    created_at: DbTime,
}

impl From<MasterKeyCheckRow> for MasterKeyCheck {
    fn from(r: MasterKeyCheckRow) -> Self {
        MasterKeyCheck {
            key_id: r.key_id,
            check_value: r.check_value,
            created_at: r.created_at.0,
        }
    }
}

pub(crate) const API_KEY_COLUMNS: &str = "id, tenant_id, name, scopes, hint, connection_id, \
     expires_at, revoked_at, last_used_at, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    id: Uuid,
    tenant_id: Uuid,
    name: Option<String>,
    scopes: String,
    hint: String,
    connection_id: Option<Uuid>,
    expires_at: Option<DbTime>,
    revoked_at: Option<DbTime>,
    last_used_at: Option<DbTime>,
    created_at: DbTime,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;
    fn try_from(r: ApiKeyRow) -> Result<Self, StoreError> {
        Ok(ApiKey {
            id: Id::from_uuid(r.id),
            tenant_id: Id::from_uuid(r.tenant_id),
            name: r.name,
            scopes: Scopes::parse_stored(&r.scopes).map_err(|_| corrupt("scopes", &r.scopes))?,
            hint: r.hint,
            connection_id: r.connection_id.map(Id::from_uuid),
            expires_at: r.expires_at.map(|t| t.0),
            revoked_at: r.revoked_at.map(|t| t.0),
            last_used_at: r.last_used_at.map(|t| t.0),
            created_at: r.created_at.0,
        })
    }
}

/// The credential lookup joins the tenant for its status.
pub(crate) const API_KEY_CREDENTIAL_SELECT: &str = "SELECT k.id, k.tenant_id, k.name, k.scopes, k.hint, k.connection_id, k.expires_at, k.revoked_at, \
     k.last_used_at, k.created_at, k.hash, t.status AS tenant_status \
     FROM api_keys k JOIN tenants t ON t.id = k.tenant_id";

#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyCredentialRow {
    #[sqlx(flatten)]
    key: ApiKeyRow,
    hash: String,
    tenant_status: String,
}

impl TryFrom<ApiKeyCredentialRow> for ApiKeyCredential {
    type Error = StoreError;
    fn try_from(r: ApiKeyCredentialRow) -> Result<Self, StoreError> {
        Ok(ApiKeyCredential {
            key: r.key.try_into()?,
            hash: r.hash,
            tenant_status: TenantStatus::parse(&r.tenant_status)
                .ok_or_else(|| corrupt("tenant status", &r.tenant_status))?,
        })
    }
}

pub(crate) const CONNECTION_COLUMNS: &str = "id, tenant_id, provider, auth_method, livemode, status, \
     stripe_account_id, account_name, account_country, default_currency, key_hint, external_id, \
     name, metadata, stripe_version, missing_permissions, last_validated_at, last_error, \
     previous_key_hint, previous_key_expires_at, oauth_client_id, grant_scope, grant_refreshed_at, \
     created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct ConnectionRow {
    id: Uuid,
    tenant_id: Uuid,
    provider: String,
    auth_method: String,
    livemode: bool,
    status: String,
    stripe_account_id: Option<String>,
    account_name: Option<String>,
    account_country: Option<String>,
    default_currency: Option<String>,
    key_hint: String,
    external_id: Option<String>,
    name: Option<String>,
    metadata: Json<Metadata>,
    stripe_version: Option<String>,
    missing_permissions: Json<Vec<String>>,
    last_validated_at: Option<DbTime>,
    last_error: Option<Json<LastError>>,
    previous_key_hint: Option<String>,
    previous_key_expires_at: Option<DbTime>,
    oauth_client_id: Option<String>,
    grant_scope: Option<String>,
    grant_refreshed_at: Option<DbTime>,
    created_at: DbTime,
    updated_at: DbTime,
}

impl TryFrom<ConnectionRow> for Connection {
    type Error = StoreError;
    fn try_from(r: ConnectionRow) -> Result<Self, StoreError> {
        Ok(Connection {
            id: Id::from_uuid(r.id),
            tenant_id: Id::from_uuid(r.tenant_id),
            provider: Provider::parse(&r.provider)
                .ok_or_else(|| corrupt("provider", &r.provider))?,
            auth_method: AuthMethod::parse(&r.auth_method)
                .ok_or_else(|| corrupt("auth method", &r.auth_method))?,
            livemode: r.livemode,
            status: ConnectionStatus::parse(&r.status)
                .ok_or_else(|| corrupt("connection status", &r.status))?,
            account: AccountDetails {
                stripe_account_id: r.stripe_account_id,
                account_name: r.account_name,
                country: r.account_country,
                default_currency: r.default_currency,
            },
            key_hint: r.key_hint,
            external_id: r.external_id,
            name: r.name,
            metadata: r.metadata.0,
            stripe_version: r.stripe_version,
            missing_permissions: r.missing_permissions.0,
            last_validated_at: r.last_validated_at.map(|t| t.0),
            last_error: r.last_error.map(|e| e.0),
            previous_key_hint: r.previous_key_hint,
            previous_key_expires_at: r.previous_key_expires_at.map(|t| t.0),
            grant: match (r.oauth_client_id, r.grant_scope) {
                (Some(client_id), Some(scope)) => Some(GrantInfo {
                    client_id,
                    scope: GrantScope::parse(&scope)
                        .ok_or_else(|| corrupt("grant scope", &scope))?,
                    refreshed_at: r.grant_refreshed_at.map(|t| t.0),
                }),
                _ => None,
            },
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        })
    }
}

/// A connection with its data key and its secrets, one row per secret, in one
/// statement (one snapshot: a concurrent rotation is seen whole or not at all).
pub(crate) const CONNECTION_SECRETS_SELECT: &str = "SELECT c.id, c.tenant_id, c.provider, c.auth_method, c.livemode, c.status, \
     c.stripe_account_id, c.account_name, c.account_country, c.default_currency, c.key_hint, \
     c.external_id, c.name, c.metadata, c.stripe_version, c.missing_permissions, \
     c.last_validated_at, c.last_error, c.previous_key_hint, c.previous_key_expires_at, \
     c.oauth_client_id, c.grant_scope, c.grant_refreshed_at, c.created_at, c.updated_at, \
     d.id AS dk_id, d.tenant_id AS dk_tenant_id, d.master_key_id AS dk_master_key_id, \
     d.wrapped AS dk_wrapped, d.created_at AS dk_created_at, \
     s.role AS secret_role, s.sealed AS secret_sealed, s.expires_at AS secret_expires_at \
     FROM connections c JOIN data_keys d ON d.id = c.data_key_id AND d.tenant_id = c.tenant_id \
     LEFT JOIN connection_secrets s ON s.connection_id = c.id";

#[derive(sqlx::FromRow)]
pub(crate) struct ConnectionSecretsRow {
    #[sqlx(flatten)]
    pub(crate) connection: ConnectionRow,
    #[sqlx(flatten)]
    pub(crate) data_key: PrefixedDataKeyRow,
    pub(crate) secret_role: Option<String>,
    pub(crate) secret_sealed: Option<Vec<u8>>,
    pub(crate) secret_expires_at: Option<DbTime>,
}

impl ConnectionSecretsRow {
    /// The secret this row carries, if any (a connection without secrets joins one empty row).
    pub(crate) fn secret(&self) -> Result<Option<ConnectionSecret>, StoreError> {
        match (&self.secret_role, &self.secret_sealed) {
            (Some(role), Some(sealed)) => Ok(Some(ConnectionSecret {
                role: SecretRole::parse(role).ok_or_else(|| corrupt("secret role", role))?,
                sealed: SealedSecret(sealed.clone()),
                expires_at: self.secret_expires_at.map(|t| t.0),
            })),
            _ => Ok(None),
        }
    }
}

/// A data key joined under `dk_` names.
#[derive(sqlx::FromRow)]
pub(crate) struct PrefixedDataKeyRow {
    dk_id: Uuid,
    dk_tenant_id: Uuid,
    dk_master_key_id: String,
    dk_wrapped: Vec<u8>,
    dk_created_at: DbTime,
}

impl From<PrefixedDataKeyRow> for DataKeyRecord {
    fn from(r: PrefixedDataKeyRow) -> Self {
        DataKeyRecord {
            id: Id::from_uuid(r.dk_id),
            tenant_id: Id::from_uuid(r.dk_tenant_id),
            master_key_id: r.dk_master_key_id,
            wrapped: r.dk_wrapped,
            created_at: r.dk_created_at.0,
        }
    }
}

pub(crate) const PLATFORM_COLUMNS: &str = "tenant_id, livemode, client_id, key_hint, \
     platform_account_id, redirect_uris, scope, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct PlatformRow {
    tenant_id: Uuid,
    livemode: bool,
    client_id: String,
    key_hint: String,
    platform_account_id: Option<String>,
    redirect_uris: Json<Vec<String>>,
    scope: String,
    created_at: DbTime,
    updated_at: DbTime,
}

impl TryFrom<PlatformRow> for StripePlatform {
    type Error = StoreError;
    fn try_from(r: PlatformRow) -> Result<Self, StoreError> {
        Ok(StripePlatform {
            tenant_id: Id::from_uuid(r.tenant_id),
            livemode: r.livemode,
            client_id: r.client_id,
            key_hint: r.key_hint,
            platform_account_id: r.platform_account_id,
            redirect_uris: r.redirect_uris.0,
            scope: GrantScope::parse(&r.scope)
                .ok_or_else(|| corrupt("platform scope", &r.scope))?,
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PlatformSecretRow {
    #[sqlx(flatten)]
    pub(crate) platform: PlatformRow,
    pub(crate) secret: Vec<u8>,
    #[sqlx(flatten)]
    pub(crate) data_key: PrefixedDataKeyRow,
}

pub(crate) const OAUTH_STATE_COLUMNS: &str = "state_hash, tenant_id, livemode, external_id, \
     redirect_uri, return_to, scope, session_id, session_expires_at, created_at, expires_at";

#[derive(sqlx::FromRow)]
pub(crate) struct OAuthStateRow {
    state_hash: String,
    tenant_id: Uuid,
    livemode: bool,
    external_id: Option<String>,
    redirect_uri: String,
    return_to: Option<String>,
    scope: String,
    session_id: Option<Uuid>,
    session_expires_at: Option<DbTime>,
    created_at: DbTime,
    expires_at: DbTime,
}

impl TryFrom<OAuthStateRow> for OAuthState {
    type Error = StoreError;
    fn try_from(r: OAuthStateRow) -> Result<Self, StoreError> {
        Ok(OAuthState {
            state_hash: r.state_hash,
            tenant_id: Id::from_uuid(r.tenant_id),
            livemode: r.livemode,
            external_id: r.external_id,
            redirect_uri: r.redirect_uri,
            return_to: r.return_to,
            scope: GrantScope::parse(&r.scope).ok_or_else(|| corrupt("state scope", &r.scope))?,
            session: match (r.session_id, r.session_expires_at) {
                (Some(session_id), Some(expires_at)) => Some(SessionUse {
                    session_id,
                    expires_at: expires_at.0,
                }),
                _ => None,
            },
            created_at: r.created_at.0,
            expires_at: r.expires_at.0,
        })
    }
}

pub(crate) const AUDIT_COLUMNS: &str =
    "id, tenant_id, actor, action, target_id, details, request_id, client_request_id, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: Uuid,
    tenant_id: Option<Uuid>,
    actor: String,
    action: String,
    target_id: Option<String>,
    details: Json<serde_json::Value>,
    request_id: Option<String>,
    client_request_id: Option<String>,
    created_at: DbTime,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;
    fn try_from(r: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditEvent {
            id: Id::from_uuid(r.id),
            tenant_id: r.tenant_id.map(Id::from_uuid),
            actor: Actor::parse(&r.actor).ok_or_else(|| corrupt("actor", &r.actor))?,
            action: r.action,
            target_id: r.target_id,
            details: r.details.0,
            request_id: r.request_id,
            client_request_id: r.client_request_id,
            created_at: r.created_at.0,
        })
    }
}

/// Converts rows, failing on the first corrupt one.
pub(crate) fn convert<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

pub(crate) const JOB_COLUMNS: &str = "id, kind, tenant_id, subject_id, payload, run_at, attempts, \
     max_attempts, status, lease_owner, lease_expires_at, last_error, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    id: Uuid,
    kind: String,
    tenant_id: Option<Uuid>,
    subject_id: Uuid,
    payload: Json<serde_json::Value>,
    run_at: DbTime,
    attempts: i32,
    max_attempts: i32,
    status: String,
    lease_owner: Option<String>,
    lease_expires_at: Option<DbTime>,
    last_error: Option<String>,
    created_at: DbTime,
    updated_at: DbTime,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;
    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        Ok(Job {
            id: Id::from_uuid(r.id),
            kind: r.kind,
            subject: r.subject_id,
            tenant_id: r.tenant_id.map(Id::from_uuid),
            payload: r.payload.0,
            run_at: r.run_at.0,
            attempts: u32::try_from(r.attempts)
                .map_err(|_| corrupt("job attempts", &r.attempts.to_string()))?,
            max_attempts: u32::try_from(r.max_attempts)
                .map_err(|_| corrupt("job max attempts", &r.max_attempts.to_string()))?,
            status: JobStatus::parse(&r.status).ok_or_else(|| corrupt("job status", &r.status))?,
            lease_owner: r.lease_owner,
            lease_expires_at: r.lease_expires_at.map(|t| t.0),
            last_error: r.last_error,
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        })
    }
}
