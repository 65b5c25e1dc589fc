//! Per-tenant limits on what a tenant may accumulate (connections, live API
//! keys), checked before any work is done, Stripe calls included.
//!
//! The check counts, then the caller inserts: two concurrent requests at the
//! limit can both pass, so a tenant may end up a few records over it (at most
//! one per request in flight). The limits exist to stop runaway growth, which
//! that slack does not change.

use patchbay_core::TenantId;

use super::error::ServiceError;
use crate::state::AppState;

/// Refuses when the tenant already has as many connections as allowed.
pub(crate) async fn check_connections(
    state: &AppState,
    tenant: TenantId,
) -> Result<(), ServiceError> {
    let limit = state.config.max_connections_per_tenant;
    let count = state.store.count_connections(tenant).await?;
    check(
        count,
        limit,
        "connections",
        "PATCHBAY_MAX_CONNECTIONS_PER_TENANT",
        "Delete connections that are no longer used",
    )
}

/// Refuses when the tenant already has as many unrevoked API keys as allowed.
pub(crate) async fn check_api_keys(state: &AppState, tenant: TenantId) -> Result<(), ServiceError> {
    let limit = state.config.max_api_keys_per_tenant;
    let count = state.store.count_api_keys(tenant).await?;
    check(
        count,
        limit,
        "API keys that are not revoked",
        "PATCHBAY_MAX_API_KEYS_PER_TENANT",
        "Revoke keys that are no longer used (expired keys count until revoked)",
    )
}

fn check(
    count: u64,
    limit: u64,
    what: &str,
    variable: &str,
    remedy: &str,
) -> Result<(), ServiceError> {
    if count < limit {
        return Ok(());
    }
    Err(ServiceError::conflict(
        "tenant_limit_reached",
        format!(
            "This tenant has {count} {what}; the limit is {limit} ({variable}). {remedy}, or ask the operator to raise the limit."
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_the_most_allowed() {
        assert!(check(1, 2, "x", "V", "R").is_ok());
        let e = check(2, 2, "connections", "PATCHBAY_X", "Delete some").unwrap_err();
        assert_eq!(e.kind, super::super::error::ErrorKind::Conflict);
        assert_eq!(e.code, "tenant_limit_reached");
        assert!(e.message.contains("PATCHBAY_X") && e.message.contains("limit is 2"));
    }
}
