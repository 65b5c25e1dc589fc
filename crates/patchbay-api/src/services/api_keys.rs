//! Tenant API keys: minted with a secret shown once, stored as the SHA-256 digest
//! of that secret, revoked at once on this replica.

use patchbay_core::api_key::{ApiKey, Scope, Scopes};
use patchbay_core::tenant::validate_name;
use patchbay_core::time::{check_future, now};
use patchbay_core::{ApiKeyId, Page, PageRequest, TenantId, Timestamp};
use patchbay_vault::ApiToken;
use serde_json::json;

use super::error::ServiceError;
use super::invalidation::Invalidation;
use crate::auth::AuditContext;
use crate::state::AppState;

/// A key to mint.
#[derive(Debug)]
pub struct NewKey {
    /// Label.
    pub name: Option<String>,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
    /// Bind the key to one connection (proxy root paths only; scopes must be `proxy`).
    pub connection_id: Option<patchbay_core::ConnectionId>,
}

/// Mints a key for an existing tenant; returns the record and the token (shown once).
pub async fn create(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    input: NewKey,
) -> Result<(ApiKey, ApiToken), ServiceError> {
    let name = input
        .name
        .as_deref()
        .map(|n| validate_name(n, "name"))
        .transpose()?;
    let bound = input.connection_id.is_some();
    if bound && input.scopes.iter().any(|s| *s != Scope::Proxy) {
        return Err(ServiceError::unprocessable(
            "parameter_invalid",
            "A key bound to a connection calls only the proxy: its scopes must be [\"proxy\"].",
        )
        .with_param("scopes"));
    }
    let scopes = Scopes::new(input.scopes)?;
    let at = now();
    let expires_at = input
        .expires_at
        .map(|t| check_future(t, "expires_at", at))
        .transpose()?;
    if state.store.get_tenant(tenant).await?.is_none() {
        return Err(ServiceError::not_found("tenant", &tenant.to_string()));
    }
    super::quotas::check_api_keys(state, tenant).await?;
    let id = ApiKeyId::new();
    let token = ApiToken::generate(id)?;
    let hash = token.stored_hash();
    let key = ApiKey {
        id,
        tenant_id: tenant,
        name,
        scopes,
        hint: token.hint(),
        connection_id: input.connection_id,
        expires_at,
        revoked_at: None,
        last_used_at: None,
        created_at: at,
    };
    let event = ctx.event(
        tenant,
        "api_key.created",
        id,
        json!({"scopes": key.scopes.as_slice(), "expires_at": key.expires_at, "name": key.name, "connection_id": key.connection_id}),
    );
    state
        .store
        .create_api_key(&key, &hash, &event)
        .await
        .map_err(|e| match (e, key.connection_id) {
            (
                patchbay_core::StoreError::Conflict {
                    field: "connection_id",
                },
                Some(c),
            ) => ServiceError::not_found("connection", &c.to_string()).with_param("connection_id"),
            (e, _) => e.into(),
        })?;
    Ok((key, token))
}

/// One key of the tenant.
pub async fn get(state: &AppState, tenant: TenantId, id: ApiKeyId) -> Result<ApiKey, ServiceError> {
    state
        .store
        .get_api_key(tenant, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("API key", &id.to_string()))
}

/// The tenant's keys, newest first. An unknown tenant is a 404 for the admin.
pub async fn list(
    state: &AppState,
    tenant: TenantId,
    page: &PageRequest<ApiKeyId>,
) -> Result<Page<ApiKey>, ServiceError> {
    Ok(state.store.list_api_keys(tenant, page).await?)
}

/// Revokes a key; it stops working on this replica immediately and on the
/// others as soon as the invalidation bus reaches them.
pub async fn revoke(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    id: ApiKeyId,
) -> Result<ApiKey, ServiceError> {
    let event = ctx.event(tenant, "api_key.revoked", id, json!({}));
    let key = state
        .store
        .revoke_api_key(tenant, id, now(), &event)
        .await?
        .ok_or_else(|| ServiceError::not_found("API key", &id.to_string()))?;
    state
        .invalidation
        .publish(Invalidation::ApiKey {
            tenant_id: tenant,
            key_id: id,
        })
        .await;
    Ok(key)
}
