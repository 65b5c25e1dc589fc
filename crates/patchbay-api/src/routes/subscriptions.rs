//! `/api/v1/event-subscriptions`: where the tenant wants events delivered,
//! in the Standard Webhooks format.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use patchbay_core::api_key::Scope;
use patchbay_core::webhook::Subscription;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::common::{
    BodyErrors, Deleted, ListResponse, NotFound, StandardErrors, Unprocessable, double_option, page,
};
use super::webhooks::PageParams;
use crate::auth::{AuditContext, Principal, Tenant, TenantPrincipal};
use crate::context::RequestId;
use crate::error::ApiError;
use crate::extract::{Json, Query, parse_id};
use crate::services::subscriptions::{self, SubscriptionInput, SubscriptionPatch, WithSecret};
use crate::services::webhook_secrets;
use crate::state::AppState;

/// An event subscription.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionObject {
    /// `esub_…`
    #[schema(example = "esub_0gx3m1t4k5v6w7x8y9z0a1b2c3")]
    pub id: String,
    /// Always `event_subscription`.
    #[schema(example = "event_subscription")]
    pub object: &'static str,
    /// The receiver.
    #[schema(example = "https://app.example.com/hooks/patchbay")]
    pub url: String,
    /// Event types delivered (`*`: all).
    pub events: Vec<String>,
    /// Only this connection's events, when set.
    pub connection_id: Option<String>,
    /// A note.
    pub description: Option<String>,
    /// `enabled` or `disabled`.
    #[schema(example = "enabled")]
    pub status: &'static str,
    /// Why it is disabled (by the tenant, or after failing too long).
    pub disabled_reason: Option<String>,
    /// Enough of the secret to recognise it.
    #[schema(example = "whsec_…Zm9v")]
    pub secret_hint: String,
    /// Until when the previous secret still signs (while rolling).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// The signing secret (`whsec_…`): only in the responses that create or roll it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: Option<String>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

fn render(s: Subscription, secret: Option<&SecretString>) -> SubscriptionObject {
    SubscriptionObject {
        id: s.id.to_string(),
        object: "event_subscription",
        url: s.url,
        events: s.events,
        connection_id: s.connection_id.map(|c| c.to_string()),
        description: s.description,
        status: s.status.as_str(),
        disabled_reason: s.disabled_reason,
        secret_hint: s.secret_hint,
        previous_secret_expires_at: s.previous_secret_expires_at,
        secret: secret.map(|s| s.expose_secret().to_owned()),
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}

fn with_secret(w: WithSecret) -> SubscriptionObject {
    render(w.subscription, Some(&w.secret))
}

/// A new subscription.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// The receiver: https (http only for loopback in development); private addresses are refused.
    #[schema(example = "https://app.example.com/hooks/patchbay")]
    pub url: String,
    /// Event types: Stripe's (`invoice.paid`, …), Patchbay's (`connection.created`, `connection.status_changed`, `connection.deleted`), or `*`.
    #[schema(example = json!(["invoice.paid", "connection.status_changed"]))]
    pub events: Option<Vec<String>>,
    /// Only this connection's events.
    pub connection_id: Option<String>,
    /// A note (at most 500 characters).
    pub description: Option<String>,
}

/// Changes to a subscription.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscription {
    /// New receiver.
    pub url: Option<String>,
    /// New event types.
    pub events: Option<Vec<String>>,
    /// New note (`null` clears it).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// `true` re-enables a disabled subscription; `false` disables it.
    pub enabled: Option<bool>,
}

/// A roll of the signing secret.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollSubscriptionSecret {
    /// How long the current secret keeps signing beside the new one (0 to 604800 seconds; default 86400).
    #[schema(minimum = 0, maximum = 604800, example = 86400)]
    pub expire_previous_in_seconds: Option<u64>,
}

fn audit(tenant: &TenantPrincipal, request_id: &RequestId) -> AuditContext {
    AuditContext::new(&Principal::Tenant(tenant.clone()), request_id)
}

/// Create an event subscription
///
/// Subscribes a receiver URL (`https`, not a private address unless allowed) to event
/// types. Deliveries are signed in the Standard Webhooks format and retried with
/// backoff. The `secret` is in this response only: keep it in your receiver's
/// configuration. Needs `connections:write`.
#[utoipa::path(post, path = "/api/v1/event-subscriptions", tag = "webhooks", request_body(content = CreateSubscription, example = super::examples::create_subscription),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, description = "The subscription, with its secret (shown once)", body = SubscriptionObject, example = super::examples::subscription_created),
        StandardErrors, NotFound, BodyErrors, Unprocessable))]
pub async fn create_subscription(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Json(body): Json<CreateSubscription>,
) -> Result<(StatusCode, axum::Json<SubscriptionObject>), ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let connection_id = body
        .connection_id
        .as_deref()
        .map(|c| parse_id(c, "connection_id"))
        .transpose()?;
    let created = subscriptions::create(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        SubscriptionInput {
            url: body.url,
            events: body.events,
            connection_id,
            description: body.description,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(with_secret(created))))
}

/// List event subscriptions
///
/// A page of the tenant's subscriptions, newest first, without their secrets. Needs
/// `connections:read`.
#[utoipa::path(get, path = "/api/v1/event-subscriptions", tag = "webhooks", params(PageParams),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "A page of subscriptions", body = ListResponse<SubscriptionObject>, example = super::examples::subscription_list), StandardErrors))]
pub async fn list_subscriptions(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Query(query): Query<PageParams>,
) -> Result<axum::Json<ListResponse<SubscriptionObject>>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let request = page(
        query.limit,
        query.starting_after.as_deref(),
        query.ending_before.as_deref(),
    )?;
    let found = subscriptions::list(&state, tenant.tenant_id, &request).await?;
    Ok(axum::Json(ListResponse::new(
        found.data.into_iter().map(|s| render(s, None)).collect(),
        found.has_more,
        "/api/v1/event-subscriptions",
    )))
}

/// Retrieve an event subscription
///
/// One subscription, with its status (`enabled`, or `disabled` with the reason) and a
/// hint of its secret. Needs `connections:read`.
#[utoipa::path(get, path = "/api/v1/event-subscriptions/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Subscription id (esub_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The subscription", body = SubscriptionObject, example = super::examples::subscription), StandardErrors, NotFound))]
pub async fn get_subscription(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<SubscriptionObject>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let id = parse_id(&id, "id")?;
    Ok(axum::Json(render(
        subscriptions::get(&state, tenant.tenant_id, id).await?,
        None,
    )))
}

/// Update an event subscription
///
/// Changes a subscription's URL, event types or description; `{"enabled": true}`
/// re-enables a disabled one. Absent fields stay as they are. Needs
/// `connections:write`.
#[utoipa::path(patch, path = "/api/v1/event-subscriptions/{id}", tag = "webhooks", request_body(content = UpdateSubscription, example = super::examples::update_subscription),
    params(("id" = String, Path, description = "Subscription id (esub_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The subscription", body = SubscriptionObject, example = super::examples::subscription), StandardErrors, NotFound, BodyErrors, Unprocessable))]
pub async fn update_subscription(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    Json(body): Json<UpdateSubscription>,
) -> Result<axum::Json<SubscriptionObject>, ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let id = parse_id(&id, "id")?;
    let updated = subscriptions::update(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        id,
        SubscriptionPatch {
            url: body.url,
            events: body.events,
            description: body.description,
            enabled: body.enabled,
        },
    )
    .await?;
    Ok(axum::Json(render(updated, None)))
}

/// Roll an event subscription's secret
///
/// Replaces the signing secret and shows the new one in this response only; both sign
/// (space-separated `v1,…` signatures in `webhook-signature`) until
/// `expire_previous_in_seconds` have passed, so receivers can switch without a gap.
/// Needs `connections:write`.
#[utoipa::path(post, path = "/api/v1/event-subscriptions/{id}/roll-secret", tag = "webhooks",
    request_body(content = RollSubscriptionSecret, description = "Optional", example = super::examples::roll_subscription_secret),
    params(("id" = String, Path, description = "Subscription id (esub_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The subscription with its new secret (shown once)", body = SubscriptionObject, example = super::examples::subscription_rolled),
        StandardErrors, NotFound, BodyErrors, Unprocessable))]
pub async fn roll_subscription_secret(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    body: Option<Json<RollSubscriptionSecret>>,
) -> Result<axum::Json<SubscriptionObject>, ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let id = parse_id(&id, "id")?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let grace = webhook_secrets::grace(
        body.expire_previous_in_seconds,
        "expire_previous_in_seconds",
    )?;
    let rolled = subscriptions::roll_secret(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        id,
        grace,
    )
    .await?;
    Ok(axum::Json(with_secret(rolled)))
}

/// Delete an event subscription
///
/// Deletes a subscription and its pending deliveries. Needs `connections:write`.
#[utoipa::path(delete, path = "/api/v1/event-subscriptions/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Subscription id (esub_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "Deleted", body = Deleted, example = super::examples::subscription_deleted), StandardErrors, NotFound))]
pub async fn delete_subscription(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<axum::Json<Deleted>, ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let parsed = parse_id(&id, "id")?;
    subscriptions::delete(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        parsed,
    )
    .await?;
    Ok(axum::Json(Deleted {
        id,
        object: "event_subscription",
        deleted: true,
    }))
}
