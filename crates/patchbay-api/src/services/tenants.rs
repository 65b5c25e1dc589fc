//! Tenants: creation with their data key, updates, and deletion that
//! crypto-shreds every secret of the tenant.

use std::collections::BTreeMap;

use patchbay_core::metadata::MetadataPatch;
use patchbay_core::store::Updated;
use patchbay_core::tenant::{Tenant, TenantStatus, validate_name};
use patchbay_core::tenant_limits::TenantLimits;
use patchbay_core::time::now;
use patchbay_core::{Metadata, Page, PageRequest, TenantId};
use serde_json::json;

use super::error::ServiceError;
use super::{CAS_ATTEMPTS, next_updated_at};
use crate::auth::AuditContext;
use crate::state::AppState;

/// Creates a tenant and its data key.
pub async fn create(
    state: &AppState,
    ctx: &AuditContext,
    name: &str,
    metadata: BTreeMap<String, String>,
) -> Result<Tenant, ServiceError> {
    let name = validate_name(name, "name")?;
    let metadata = Metadata::new(metadata, "metadata")?;
    let at = now();
    let tenant = Tenant {
        id: TenantId::new(),
        name,
        status: TenantStatus::Active,
        metadata,
        limits: Default::default(),
        created_at: at,
        updated_at: at,
    };
    let (data_key, _) = state.keyring.new_data_key(tenant.id)?;
    let event = ctx.event(
        tenant.id,
        "tenant.created",
        tenant.id,
        json!({"name": tenant.name}),
    );
    state
        .store
        .create_tenant(&tenant, &data_key, &event)
        .await?;
    Ok(tenant)
}

/// One tenant.
pub async fn get(state: &AppState, id: TenantId) -> Result<Tenant, ServiceError> {
    state
        .store
        .get_tenant(id)
        .await?
        .ok_or_else(|| ServiceError::not_found("tenant", &id.to_string()))
}

/// Tenants, newest first.
pub async fn list(
    state: &AppState,
    page: &PageRequest<TenantId>,
) -> Result<Page<Tenant>, ServiceError> {
    Ok(state.store.list_tenants(page).await?)
}

/// What a PATCH may change.
#[derive(Debug, Default)]
pub struct TenantPatch {
    /// New name.
    pub name: Option<String>,
    /// Enable or disable.
    pub status: Option<TenantStatus>,
    /// Metadata merge patch; `Some(None)` clears all.
    pub metadata: Option<Option<MetadataPatch>>,
    /// Changes to the tenant's own limits (already validated); `Some(None)`
    /// puts every one back to the server's default.
    pub limits: Option<Option<LimitsPatch>>,
}

/// Changes to a tenant's limits: `None` keeps a value, `Some(None)` puts it
/// back to the server's default.
#[derive(Debug, Default, Clone, Copy)]
pub struct LimitsPatch {
    /// Requests per second.
    pub requests_per_second: Option<Option<u32>>,
    /// Burst.
    pub burst: Option<Option<u32>>,
    /// Concurrent Stripe calls.
    pub max_concurrent_upstream: Option<Option<u32>>,
}

impl LimitsPatch {
    fn applied(self, mut limits: TenantLimits) -> TenantLimits {
        if let Some(v) = self.requests_per_second {
            limits.requests_per_second = v;
        }
        if let Some(v) = self.burst {
            limits.burst = v;
        }
        if let Some(v) = self.max_concurrent_upstream {
            limits.max_concurrent_upstream = v;
        }
        limits
    }
}

/// Applies a patch (retrying if another writer got there first).
pub async fn update(
    state: &AppState,
    ctx: &AuditContext,
    id: TenantId,
    patch: TenantPatch,
) -> Result<Tenant, ServiceError> {
    let name = patch
        .name
        .as_deref()
        .map(|n| validate_name(n, "name"))
        .transpose()?;
    for _ in 0..CAS_ATTEMPTS {
        let current = get(state, id).await?;
        let mut next = current.clone();
        if let Some(name) = &name {
            next.name = name.clone();
        }
        if let Some(status) = patch.status {
            next.status = status;
        }
        match &patch.metadata {
            Some(Some(p)) => next.metadata = current.metadata.patched(p.clone(), "metadata")?,
            Some(None) => next.metadata = Metadata::default(),
            None => {}
        }
        match patch.limits {
            Some(Some(p)) => next.limits = p.applied(current.limits),
            Some(None) => next.limits = TenantLimits::default(),
            None => {}
        }
        if next == current {
            // Nothing to change: no write, no audit event, no new updated_at.
            return Ok(current);
        }
        next.updated_at = next_updated_at(current.updated_at);
        let event = ctx.event(
            id,
            "tenant.updated",
            id,
            json!({
                "name": (next.name != current.name).then_some(&next.name),
                "status": (next.status != current.status).then_some(next.status),
                "metadata_changed": next.metadata != current.metadata,
                "limits": (next.limits != current.limits).then_some(next.limits),
            }),
        );
        match state
            .store
            .update_tenant(&next, current.updated_at, &event)
            .await?
        {
            Updated::Applied(tenant) => {
                // Every replica re-reads the tenant: its keys stop working
                // when it is disabled, its own limits apply when changed.
                if tenant.status != TenantStatus::Active || tenant.limits != current.limits {
                    state.tenant_changed(id).await;
                }
                return Ok(tenant);
            }
            Updated::NotFound => return Err(ServiceError::not_found("tenant", &id.to_string())),
            Updated::Stale => continue,
        }
    }
    Err(ServiceError::conflict(
        "concurrent_update",
        "The tenant kept changing while this update was applied; retry it.",
    ))
}

/// Deletes a tenant: its data key first (crypto-shred), then its keys and connections.
pub async fn delete(
    state: &AppState,
    ctx: &AuditContext,
    id: TenantId,
) -> Result<(), ServiceError> {
    let event = ctx.event(id, "tenant.deleted", id, json!({"crypto_shredded": true}));
    if !state.store.delete_tenant(id, &event).await? {
        return Err(ServiceError::not_found("tenant", &id.to_string()));
    }
    state.tenant_changed(id).await;
    Ok(())
}
