//! Webhook endpoints: a Stripe signing secret in (sealed), a public URL out
//! to paste into Stripe's dashboard. One per connection's account, or one for
//! the tenant's whole Connect platform (events of connected accounts).

use std::time::Duration;

use patchbay_core::time::now;
use patchbay_core::webhook::WebhookEndpoint;
use patchbay_core::{ConnectionId, Page, PageRequest, TenantId, WebhookEndpointId};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::error::ServiceError;
use super::webhook_secrets;
use crate::auth::AuditContext;
use crate::state::AppState;

/// Whose events an endpoint receives.
#[derive(Debug, Clone, Copy)]
pub enum EndpointScope {
    /// One connection's account.
    Connection(ConnectionId),
    /// Every account connected to the tenant's platform in this mode.
    Platform {
        /// Live or test.
        livemode: bool,
    },
}

/// A new endpoint.
#[derive(Debug)]
pub struct EndpointInput {
    /// Stripe's `whsec_…` for this endpoint.
    pub signing_secret: SecretString,
    /// The event types stored (`None`: all).
    pub events: Option<Vec<String>>,
    /// A note.
    pub description: Option<String>,
}

/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// Checks a Stripe webhook signing secret (`whsec_…`).
pub fn signing_secret(secret: &SecretString) -> Result<(), ServiceError> {
    let s = secret.expose_secret();
    let ok = s.strip_prefix("whsec_").is_some_and(|rest| {
        (8..=256).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_graphic())
    });
    if ok {
        Ok(())
    } else {
        Err(ServiceError::unprocessable(
            "invalid_signing_secret",
            "signing_secret must be the endpoint's signing secret from Stripe (whsec_…): Dashboard → Developers → Webhooks → the endpoint → Signing secret.",
        )
        .with_param("signing_secret"))
    }
}

/// Checks a description.
pub fn description(value: Option<String>) -> Result<Option<String>, ServiceError> {
    match value {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_CHARS || d.chars().any(char::is_control) => {
            Err(ServiceError::unprocessable(
                "parameter_invalid",
                format!(
                    "description must be at most {MAX_DESCRIPTION_CHARS} characters, without control characters."
                ),
            )
            .with_param("description"))
        }
        other => Ok(other.filter(|d| !d.is_empty())),
    }
}

/// `whsec_…abcd`
pub fn hint(secret: &SecretString) -> String {
    let s = secret.expose_secret();
    let tail: String = s
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("whsec_…{tail}")
}

/// Creates an endpoint.
pub async fn create(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    scope: EndpointScope,
    input: EndpointInput,
) -> Result<WebhookEndpoint, ServiceError> {
    signing_secret(&input.signing_secret)?;
    let events = webhook_secrets::event_list(input.events, false)?;
    let description = description(input.description)?;
    let (connection_id, livemode) = match scope {
        EndpointScope::Connection(id) => {
            let connection = state
                .store
                .get_connection(tenant, id)
                .await?
                .ok_or_else(|| ServiceError::not_found("connection", &id.to_string()))?;
            (Some(id), connection.livemode)
        }
        EndpointScope::Platform { livemode } => (None, livemode),
    };
    let at = now();
    let endpoint = WebhookEndpoint {
        id: WebhookEndpointId::new(),
        tenant_id: tenant,
        connection_id,
        livemode,
        events,
        description,
        secret_hint: hint(&input.signing_secret),
        previous_secret_expires_at: None,
        created_at: at,
        updated_at: at,
    };
    let key = webhook_secrets::data_key(state, tenant).await?;
    let record = endpoint.id.to_string();
    let sealed = webhook_secrets::seal(state, tenant, &record, &key, &input.signing_secret)?;
    let audit = ctx.event(
        tenant,
        "webhook_endpoint.created",
        &record,
        json!({
            "connection_id": connection_id.map(|c| c.to_string()),
            "livemode": livemode,
            "events": endpoint.events,
            "secret_hint": endpoint.secret_hint,
        }),
    );
    state
        .store
        .create_webhook_endpoint(&endpoint, key.id, &sealed, &audit)
        .await?;
    Ok(endpoint)
}

/// One endpoint.
pub async fn get(
    state: &AppState,
    tenant: TenantId,
    id: WebhookEndpointId,
) -> Result<WebhookEndpoint, ServiceError> {
    state
        .store
        .get_webhook_endpoint(tenant, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("webhook endpoint", &id.to_string()))
}

/// The tenant's endpoints (of one connection, if given).
pub async fn list(
    state: &AppState,
    tenant: TenantId,
    connection: Option<ConnectionId>,
    page: &PageRequest<WebhookEndpointId>,
) -> Result<Page<WebhookEndpoint>, ServiceError> {
    if let Some(id) = connection
        && state.store.get_connection(tenant, id).await?.is_none()
    {
        return Err(ServiceError::not_found("connection", &id.to_string()));
    }
    Ok(state
        .store
        .list_webhook_endpoints(tenant, connection, page)
        .await?)
}

/// Changes an endpoint's event list and description.
pub async fn update(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    id: WebhookEndpointId,
    events: Option<Vec<String>>,
    new_description: Option<Option<String>>,
) -> Result<WebhookEndpoint, ServiceError> {
    let mut endpoint = get(state, tenant, id).await?;
    if let Some(events) = events {
        endpoint.events = webhook_secrets::event_list(Some(events), true)?;
    }
    if let Some(d) = new_description {
        endpoint.description = description(d)?;
    }
    endpoint.updated_at = now();
    let audit = ctx.event(
        tenant,
        "webhook_endpoint.updated",
        id,
        json!({"events": endpoint.events}),
    );
    let updated = state
        .store
        .update_webhook_endpoint(&endpoint, &audit)
        .await?
        .ok_or_else(|| ServiceError::not_found("webhook endpoint", &id.to_string()));
    state.endpoint_cache.forget(id);
    updated
}

/// Replaces the signing secret; the current one stays valid for `grace`
/// (Stripe signs with both while a secret rolls).
pub async fn roll_secret(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    id: WebhookEndpointId,
    new: SecretString,
    grace: Duration,
) -> Result<WebhookEndpoint, ServiceError> {
    signing_secret(&new)?;
    let found = state
        .store
        .system_webhook_endpoint_secrets(id, now())
        .await?
        .filter(|f| f.endpoint.tenant_id == tenant)
        .ok_or_else(|| ServiceError::not_found("webhook endpoint", &id.to_string()))?;
    let at = now();
    let roll = webhook_secrets::roll(
        state,
        tenant,
        &id.to_string(),
        &found.data_key,
        &found.secret,
        &new,
        hint(&new),
        grace,
        at,
    )
    .await?;
    let audit = ctx.event(
        tenant,
        "webhook_endpoint.secret_rolled",
        id,
        json!({"secret_hint": roll.hint, "previous_valid_seconds": grace.as_secs()}),
    );
    let rolled = state
        .store
        .roll_webhook_endpoint_secret(tenant, id, &roll, &audit)
        .await?
        .ok_or_else(|| ServiceError::not_found("webhook endpoint", &id.to_string()));
    state.endpoint_cache.forget(id);
    rolled
}

/// Deletes an endpoint; Stripe's posts to it are refused from now on.
pub async fn delete(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    id: WebhookEndpointId,
) -> Result<(), ServiceError> {
    let audit = ctx.event(tenant, "webhook_endpoint.deleted", id, json!({}));
    state.endpoint_cache.forget(id);
    if state
        .store
        .delete_webhook_endpoint(tenant, id, &audit)
        .await?
    {
        Ok(())
    } else {
        Err(ServiceError::not_found("webhook endpoint", &id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_secrets_must_be_stripe_whsec() {
        assert!(signing_secret(&SecretString::from("whsec_0123456789abcdef")).is_ok());
        for bad in [
            "sk_test_123456789",
            "whsec_",
            "whsec_short",
            "whsec_has space inside",
        ] {
            let e = signing_secret(&SecretString::from(bad)).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("signing_secret"));
            // ("whsec_" alone is part of the advice itself.)
            assert!(
                bad == "whsec_" || !e.message.contains(bad),
                "the secret is never echoed"
            );
        }
        assert_eq!(
            hint(&SecretString::from("whsec_0123456789abcdef")),
            "whsec_…cdef"
        );
    }
}
