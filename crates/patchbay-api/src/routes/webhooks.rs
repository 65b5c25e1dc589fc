//! Webhook endpoints (`/api/v1/connections/{id}/webhook-endpoints`,
//! `/api/v1/integrations/stripe/webhook-endpoints`, `/api/v1/webhook-endpoints`)
//! and the public intake Stripe posts to (`/api/v1/webhooks/stripe/{id}`).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header::HOST};
use chrono::{DateTime, Utc};
use patchbay_core::ConnectionId;
use patchbay_core::api_key::Scope;
use patchbay_core::webhook::WebhookEndpoint;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::common::{
    BodyErrors, Deleted, ListResponse, NotFound, StandardErrors, Unprocessable, double_option, page,
};
use crate::auth::{AuditContext, Principal, Tenant, TenantPrincipal};
use crate::context::RequestId;
use crate::error::{ApiError, ErrorResponse};
use crate::extract::{Json, Query, parse_id};
use crate::services::platforms::parse_mode;
use crate::services::webhook_endpoints::{self, EndpointInput, EndpointScope};
use crate::services::webhook_intake::{self, Receipt};
use crate::services::webhook_secrets;
use crate::state::AppState;

/// The public path Stripe posts to.
pub const INTAKE_PATH: &str = "/api/v1/webhooks/stripe";

/// A webhook endpoint: paste its `url` and events into Stripe's dashboard.
/// The signing secret is never shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointObject {
    /// `we_…`
    #[schema(example = "we_0gx3m1t4k5v6w7x8y9z0a1b2c3")]
    pub id: String,
    /// Always `webhook_endpoint`.
    #[schema(example = "webhook_endpoint")]
    pub object: &'static str,
    /// `connection` (one account) or `platform` (every connected account of the Connect platform).
    #[schema(example = "connection")]
    pub scope: &'static str,
    /// The connection, for a connection endpoint.
    pub connection_id: Option<String>,
    /// Live or test events.
    pub livemode: bool,
    /// Where Stripe must post: paste it into the Dashboard (Developers → Webhooks → Add endpoint).
    #[schema(
        example = "https://patchbay.example.com/api/v1/webhooks/stripe/we_0gx3m1t4k5v6w7x8y9z0a1b2c3"
    )]
    pub url: String,
    /// Event types stored (`*`: all).
    pub events: Vec<String>,
    /// A note.
    pub description: Option<String>,
    /// Enough of the signing secret to recognise it.
    #[schema(example = "whsec_…a1b2")]
    pub secret_hint: String,
    /// Until when the previous secret is still accepted (while rolling).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.webhooks.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    // `[::1]:3000` → `[::1]`; `[::1]` stays whole; `localhost:3000` → `localhost`.
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    let loopback = matches!(name, "localhost" | "127.0.0.1" | "[::1]");
    format!("{}://{host}", if loopback { "http" } else { "https" })
}

fn render(e: WebhookEndpoint, base: &str) -> EndpointObject {
    EndpointObject {
        url: format!("{base}{INTAKE_PATH}/{}", e.id),
        id: e.id.to_string(),
        object: "webhook_endpoint",
        scope: if e.connection_id.is_some() {
            "connection"
        } else {
            "platform"
        },
        connection_id: e.connection_id.map(|c| c.to_string()),
        livemode: e.livemode,
        events: e.events,
        description: e.description,
        secret_hint: e.secret_hint,
        previous_secret_expires_at: e.previous_secret_expires_at,
        created_at: e.created_at,
        updated_at: e.updated_at,
    }
}

/// A connection's webhook endpoint.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// The endpoint's signing secret from Stripe (`whsec_…`); sealed, never shown again.
    #[schema(value_type = String, format = Password, write_only, example = "whsec_8f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c")]
    pub signing_secret: SecretString,
    /// Event types to store (`["*"]`, the default, for all); others are acknowledged and dropped.
    #[schema(example = json!(["invoice.paid", "customer.subscription.updated"]))]
    pub events: Option<Vec<String>>,
    /// A note (at most 500 characters).
    pub description: Option<String>,
}

/// The Connect platform's webhook endpoint (events of connected accounts).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlatformEndpoint {
    /// The endpoint's signing secret from Stripe (`whsec_…`); sealed, never shown again.
    #[schema(value_type = String, format = Password, write_only, example = "whsec_8f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c")]
    pub signing_secret: SecretString,
    /// Event types to store (`["*"]`, the default, for all).
    #[schema(example = json!(["account.application.deauthorized", "invoice.paid"]))]
    pub events: Option<Vec<String>>,
    /// `test` (default) or `live`.
    #[schema(example = "test")]
    pub mode: Option<String>,
    /// A note (at most 500 characters).
    pub description: Option<String>,
}

/// Changes to an endpoint.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    /// New event types.
    pub events: Option<Vec<String>>,
    /// New note (`null` clears it).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

/// A new signing secret.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollEndpointSecret {
    /// The new signing secret from Stripe (`whsec_…`).
    #[schema(value_type = String, format = Password, write_only, example = "whsec_0a1b2c3d4e5f60718293a4b5c6d7e8f9")]
    pub signing_secret: SecretString,
    /// How long the current secret stays valid (0 to 604800 seconds; default 86400), as Stripe keeps signing with it while rolling.
    #[schema(minimum = 0, maximum = 604800, example = 86400)]
    pub expire_previous_in_seconds: Option<u64>,
}

/// Paging, and an optional connection.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListEndpoints {
    /// 1 to 100, default 10.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// An endpoint id: list those created before it.
    pub starting_after: Option<String>,
    /// An endpoint id: list those created after it.
    pub ending_before: Option<String>,
    /// Only this connection's endpoints.
    pub connection_id: Option<String>,
}

/// Paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 100, default 10.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// An id: list the objects created before it.
    pub starting_after: Option<String>,
    /// An id: list the objects created after it.
    pub ending_before: Option<String>,
}

fn audit(tenant: &TenantPrincipal, request_id: &RequestId) -> AuditContext {
    AuditContext::new(&Principal::Tenant(tenant.clone()), request_id)
}

/// Create a connection's webhook endpoint
///
/// Creates an endpoint that receives Stripe's webhooks for the connection's account.
/// Give Stripe its `url`, then store Stripe's signing secret here (or roll it in
/// later). Events are verified, stored once, and fanned out to your subscriptions.
/// Needs `connections:write`.
#[utoipa::path(post, path = "/api/v1/connections/{id}/webhook-endpoints", tag = "webhooks",
    request_body(content = CreateEndpoint, example = super::examples::create_endpoint),
    params(("id" = ConnectionId, Path, description = "Connection id (conn_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, description = "The endpoint; register its `url` in Stripe", body = EndpointObject, example = super::examples::endpoint),
        StandardErrors, NotFound, BodyErrors, Unprocessable))]
pub async fn create_connection_endpoint(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<CreateEndpoint>,
) -> Result<(StatusCode, axum::Json<EndpointObject>), ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let id = parse_id(&id, "id")?;
    let endpoint = webhook_endpoints::create(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        EndpointScope::Connection(id),
        EndpointInput {
            signing_secret: body.signing_secret,
            events: body.events,
            description: body.description,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(render(endpoint, &base_url(&state, &headers))),
    ))
}

/// Create a Connect platform webhook endpoint
///
/// Creates one webhook endpoint for every account connected to the tenant's Connect
/// platform: each event is attributed to the tenant's OAuth connection through its
/// `account`. Needs `connections:write`.
#[utoipa::path(post, path = "/api/v1/integrations/stripe/webhook-endpoints", tag = "webhooks",
    request_body(content = CreatePlatformEndpoint, example = super::examples::create_platform_endpoint),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, description = "The endpoint; register its `url` in Stripe as a Connect endpoint", body = EndpointObject, example = super::examples::platform_endpoint),
        StandardErrors, BodyErrors, Unprocessable))]
pub async fn create_platform_endpoint(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    Json(body): Json<CreatePlatformEndpoint>,
) -> Result<(StatusCode, axum::Json<EndpointObject>), ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let livemode = body
        .mode
        .as_deref()
        .map(parse_mode)
        .transpose()?
        .unwrap_or(false);
    let endpoint = webhook_endpoints::create(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        EndpointScope::Platform { livemode },
        EndpointInput {
            signing_secret: body.signing_secret,
            events: body.events,
            description: body.description,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(render(endpoint, &base_url(&state, &headers))),
    ))
}

/// List a connection's webhook endpoints
///
/// A page of the connection's webhook endpoints, newest first, with secret hints only.
/// Needs `connections:read`.
#[utoipa::path(get, path = "/api/v1/connections/{id}/webhook-endpoints", tag = "webhooks",
    params(("id" = ConnectionId, Path, description = "Connection id (conn_…)"), PageParams),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "A page of endpoints", body = ListResponse<EndpointObject>, example = super::examples::connection_endpoint_list), StandardErrors, NotFound))]
pub async fn list_connection_endpoints(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<PageParams>,
) -> Result<axum::Json<ListResponse<EndpointObject>>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let id = parse_id(&id, "id")?;
    let request = page(
        query.limit,
        query.starting_after.as_deref(),
        query.ending_before.as_deref(),
    )?;
    let found = webhook_endpoints::list(&state, tenant.tenant_id, Some(id), &request).await?;
    let base = base_url(&state, &headers);
    Ok(axum::Json(ListResponse::new(
        found.data.into_iter().map(|e| render(e, &base)).collect(),
        found.has_more,
        format!("/api/v1/connections/{id}/webhook-endpoints"),
    )))
}

/// List webhook endpoints
///
/// A page of all the tenant's webhook endpoints (connection and platform), newest
/// first. Needs `connections:read`.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints", tag = "webhooks", params(ListEndpoints),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "A page of endpoints", body = ListResponse<EndpointObject>, example = super::examples::endpoint_list), StandardErrors, NotFound))]
pub async fn list_endpoints(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ListEndpoints>,
) -> Result<axum::Json<ListResponse<EndpointObject>>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let request = page(
        query.limit,
        query.starting_after.as_deref(),
        query.ending_before.as_deref(),
    )?;
    let connection = query
        .connection_id
        .as_deref()
        .map(|c| parse_id(c, "connection_id"))
        .transpose()?;
    let found = webhook_endpoints::list(&state, tenant.tenant_id, connection, &request).await?;
    let base = base_url(&state, &headers);
    Ok(axum::Json(ListResponse::new(
        found.data.into_iter().map(|e| render(e, &base)).collect(),
        found.has_more,
        "/api/v1/webhook-endpoints",
    )))
}

/// Retrieve a webhook endpoint
///
/// One webhook endpoint, with its `url` for Stripe and a hint of its signing secret.
/// Needs `connections:read`.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id (we_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The endpoint", body = EndpointObject, example = super::examples::endpoint), StandardErrors, NotFound))]
pub async fn get_endpoint(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<EndpointObject>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let id = parse_id(&id, "id")?;
    let endpoint = webhook_endpoints::get(&state, tenant.tenant_id, id).await?;
    Ok(axum::Json(render(endpoint, &base_url(&state, &headers))))
}

/// Update a webhook endpoint
///
/// Changes an endpoint's event types or description; absent fields stay as they are.
/// Needs `connections:write`.
#[utoipa::path(patch, path = "/api/v1/webhook-endpoints/{id}", tag = "webhooks", request_body(content = UpdateEndpoint, example = super::examples::update_endpoint),
    params(("id" = String, Path, description = "Webhook endpoint id (we_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The endpoint", body = EndpointObject, example = super::examples::endpoint), StandardErrors, NotFound, BodyErrors, Unprocessable))]
pub async fn update_endpoint(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<UpdateEndpoint>,
) -> Result<axum::Json<EndpointObject>, ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let id = parse_id(&id, "id")?;
    let endpoint = webhook_endpoints::update(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        id,
        body.events,
        body.description,
    )
    .await?;
    Ok(axum::Json(render(endpoint, &base_url(&state, &headers))))
}

/// Roll a webhook endpoint's secret
///
/// Replaces the signing secret after you rolled it in Stripe; the current one stays
/// valid for `expire_previous_in_seconds`, so no event is refused in between. Needs
/// `connections:write`.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/roll-secret", tag = "webhooks", request_body(content = RollEndpointSecret, example = super::examples::roll_endpoint_secret),
    params(("id" = String, Path, description = "Webhook endpoint id (we_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The endpoint", body = EndpointObject, example = super::examples::endpoint_rolled), StandardErrors, NotFound, BodyErrors, Unprocessable))]
pub async fn roll_endpoint_secret(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<RollEndpointSecret>,
) -> Result<axum::Json<EndpointObject>, ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let id = parse_id(&id, "id")?;
    let grace = webhook_secrets::grace(
        body.expire_previous_in_seconds,
        "expire_previous_in_seconds",
    )?;
    let endpoint = webhook_endpoints::roll_secret(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        id,
        body.signing_secret,
        grace,
    )
    .await?;
    Ok(axum::Json(render(endpoint, &base_url(&state, &headers))))
}

/// Delete a webhook endpoint
///
/// Deletes a webhook endpoint; Stripe's posts to it are refused from now on (its stored
/// events stay until retention purges them). Needs `connections:write`.
#[utoipa::path(delete, path = "/api/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id (we_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "Deleted", body = Deleted, example = super::examples::endpoint_deleted), StandardErrors, NotFound))]
pub async fn delete_endpoint(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<axum::Json<Deleted>, ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let parsed = parse_id(&id, "id")?;
    webhook_endpoints::delete(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        parsed,
    )
    .await?;
    Ok(axum::Json(Deleted {
        id,
        object: "webhook_endpoint",
        deleted: true,
    }))
}

/// What the intake answers Stripe.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReceiptObject {
    /// Always true.
    pub received: bool,
    /// Patchbay's id of the stored event (absent when ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// This Stripe event was already stored: nothing stored or delivered again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    /// Verified, but of a type the endpoint does not keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<bool>,
}

/// Receive a Stripe webhook
///
/// Stripe posts events here. The `Stripe-Signature` header authenticates the post:
/// verified on the raw body (HMAC-SHA256 with the endpoint's signing secret,
/// `PATCHBAY_WEBHOOK_TOLERANCE`) before anything is stored. Each Stripe event is stored
/// once per endpoint; repeats are acknowledged with `duplicate: true`, unsubscribed
/// types with `ignored: true`.
#[utoipa::path(post, path = "/api/v1/webhooks/stripe/{endpoint_id}", tag = "webhooks",
    security(()),
    params(("endpoint_id" = String, Path, description = "Webhook endpoint id (we_…)"),
        ("Stripe-Signature" = String, Header, description = "`t=<unix>,v1=<hex>`, as Stripe signs")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "Stripe's event, verbatim", example = super::examples::stripe_event),
    responses(
        (status = 200, description = "Stored, already stored (`duplicate`), or not kept (`ignored`)", body = ReceiptObject, example = super::examples::receipt),
        (status = 400, description = "Missing, malformed or wrong signature, a timestamp outside the tolerance (`webhook_signature_invalid`), or a signed body that is not an event (`webhook_payload_invalid`)", body = ErrorResponse),
        (status = 404, description = "No such endpoint", body = ErrorResponse),
        (status = 413, description = "Larger than `PATCHBAY_WEBHOOK_MAX_BODY_BYTES`", body = ErrorResponse),
        (status = 503, description = "The database is not answering (Stripe retries)", body = ErrorResponse),
    ))]
pub async fn receive_stripe(
    State(state): State<AppState>,
    Path(endpoint_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<ReceiptObject>, ApiError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let receipt = webhook_intake::receive(&state, &endpoint_id, signature, &body).await?;
    Ok(axum::Json(match receipt {
        Receipt::Stored {
            event_id,
            duplicate,
        } => ReceiptObject {
            received: true,
            event_id: Some(event_id.to_string()),
            duplicate: Some(duplicate),
            ignored: None,
        },
        Receipt::Ignored => ReceiptObject {
            received: true,
            event_id: None,
            duplicate: None,
            ignored: Some(true),
        },
    }))
}
