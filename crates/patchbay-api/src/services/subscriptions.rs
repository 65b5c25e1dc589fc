//! Event subscriptions: where the tenant wants events delivered, signed in
//! the Standard Webhooks format with a secret shown once. A subscription
//! that keeps failing is disabled with the reason; the tenant re-enables it.

use std::time::Duration;

use patchbay_core::time::now;
use patchbay_core::webhook::{Subscription, SubscriptionStatus};
use patchbay_core::{ConnectionId, Page, PageRequest, SubscriptionId, TenantId};
use patchbay_vault::standard_webhooks::{generate_secret, secret_hint};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::error::ServiceError;
use super::webhook_endpoints::description;
use super::webhook_secrets;
use crate::auth::AuditContext;
use crate::state::AppState;

/// Longest receiver URL.
pub const MAX_URL_CHARS: usize = 2000;

/// A new subscription.
#[derive(Debug)]
pub struct SubscriptionInput {
    /// The receiver.
    pub url: String,
    /// Event types (required).
    pub events: Option<Vec<String>>,
    /// Only this connection's events.
    pub connection_id: Option<ConnectionId>,
    /// A note.
    pub description: Option<String>,
}

/// Changes to a subscription.
#[derive(Debug, Default)]
pub struct SubscriptionPatch {
    /// New receiver.
    pub url: Option<String>,
    /// New event types.
    pub events: Option<Vec<String>>,
    /// New note (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// Enable (clearing the reason and the failure run) or disable.
    pub enabled: Option<bool>,
}

/// A subscription with its secret, which is shown only now.
#[derive(Debug)]
pub struct WithSecret {
    /// The subscription.
    pub subscription: Subscription,
    /// `whsec_…`
    pub secret: SecretString,
}

fn check_url(state: &AppState, url: &str) -> Result<String, ServiceError> {
    if url.chars().count() > MAX_URL_CHARS {
        return Err(ServiceError::unprocessable(
            "url_not_allowed",
            format!("url must be at most {MAX_URL_CHARS} characters."),
        )
        .with_param("url"));
    }
    state
        .config
        .webhooks
        .policy
        .check_url(url)
        .map_err(|e| ServiceError::unprocessable(e.code(), e.to_string()).with_param("url"))?;
    Ok(url.to_owned())
}

/// Creates a subscription and its secret.
pub async fn create(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    input: SubscriptionInput,
) -> Result<WithSecret, ServiceError> {
    let url = check_url(state, &input.url)?;
    let events = webhook_secrets::event_list(input.events, true)?;
    let description = description(input.description)?;
    if let Some(id) = input.connection_id
        && state.store.get_connection(tenant, id).await?.is_none()
    {
        return Err(
            ServiceError::not_found("connection", &id.to_string()).with_param("connection_id")
        );
    }
    let secret = generate_secret();
    let at = now();
    let subscription = Subscription {
        id: SubscriptionId::new(),
        tenant_id: tenant,
        connection_id: input.connection_id,
        url,
        events,
        description,
        status: SubscriptionStatus::Enabled,
        disabled_reason: None,
        failing_since: None,
        secret_hint: secret_hint(secret.expose_secret()),
        previous_secret_expires_at: None,
        created_at: at,
        updated_at: at,
    };
    let key = webhook_secrets::data_key(state, tenant).await?;
    let record = subscription.id.to_string();
    let sealed = webhook_secrets::seal(state, tenant, &record, &key, &secret)?;
    let audit = ctx.event(
        tenant,
        "event_subscription.created",
        &record,
        json!({
            "url": subscription.url,
            "events": subscription.events,
            "connection_id": subscription.connection_id.map(|c| c.to_string()),
        }),
    );
    state
        .store
        .create_subscription(&subscription, key.id, &sealed, &audit)
        .await?;
    Ok(WithSecret {
        subscription,
        secret,
    })
}

/// One subscription.
pub async fn get(
    state: &AppState,
    tenant: TenantId,
    id: SubscriptionId,
) -> Result<Subscription, ServiceError> {
    state
        .store
        .get_subscription(tenant, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("event subscription", &id.to_string()))
}

/// The tenant's subscriptions.
pub async fn list(
    state: &AppState,
    tenant: TenantId,
    page: &PageRequest<SubscriptionId>,
) -> Result<Page<Subscription>, ServiceError> {
    Ok(state.store.list_subscriptions(tenant, page).await?)
}

/// Changes a subscription; `enabled: true` re-enables a disabled one.
pub async fn update(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    id: SubscriptionId,
    patch: SubscriptionPatch,
) -> Result<Subscription, ServiceError> {
    let mut s = get(state, tenant, id).await?;
    if let Some(url) = patch.url {
        s.url = check_url(state, &url)?;
    }
    if let Some(events) = patch.events {
        s.events = webhook_secrets::event_list(Some(events), true)?;
    }
    if let Some(d) = patch.description {
        s.description = description(d)?;
    }
    match patch.enabled {
        Some(true) => {
            s.status = SubscriptionStatus::Enabled;
            s.disabled_reason = None;
            s.failing_since = None;
        }
        Some(false) if s.status == SubscriptionStatus::Enabled => {
            s.status = SubscriptionStatus::Disabled;
            s.disabled_reason = Some("Disabled by the tenant.".into());
        }
        _ => {}
    }
    s.updated_at = now();
    let audit = ctx.event(
        tenant,
        "event_subscription.updated",
        id,
        json!({"url": s.url, "events": s.events, "status": s.status.as_str()}),
    );
    state
        .store
        .update_subscription(&s, &audit)
        .await?
        .ok_or_else(|| ServiceError::not_found("event subscription", &id.to_string()))
}

/// Replaces the secret; the current one keeps signing (beside the new one)
/// for `grace`.
pub async fn roll_secret(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    id: SubscriptionId,
    grace: Duration,
) -> Result<WithSecret, ServiceError> {
    let found = state
        .store
        .subscription_secrets(tenant, id, now())
        .await?
        .ok_or_else(|| ServiceError::not_found("event subscription", &id.to_string()))?;
    let secret = generate_secret();
    let roll = webhook_secrets::roll(
        state,
        tenant,
        &id.to_string(),
        &found.data_key,
        &found.secret,
        &secret,
        secret_hint(secret.expose_secret()),
        grace,
        now(),
    )
    .await?;
    let audit = ctx.event(
        tenant,
        "event_subscription.secret_rolled",
        id,
        json!({"secret_hint": roll.hint, "previous_valid_seconds": grace.as_secs()}),
    );
    let subscription = state
        .store
        .roll_subscription_secret(tenant, id, &roll, &audit)
        .await?
        .ok_or_else(|| ServiceError::not_found("event subscription", &id.to_string()))?;
    Ok(WithSecret {
        subscription,
        secret,
    })
}

/// Deletes a subscription (and its pending deliveries).
pub async fn delete(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    id: SubscriptionId,
) -> Result<(), ServiceError> {
    let audit = ctx.event(tenant, "event_subscription.deleted", id, json!({}));
    if state.store.delete_subscription(tenant, id, &audit).await? {
        Ok(())
    } else {
        Err(ServiceError::not_found(
            "event subscription",
            &id.to_string(),
        ))
    }
}
