//! Stored events (`/api/v1/events`, `/api/v1/connections/{id}/events`),
//! their deliveries with the attempt log, and manual redelivery.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use patchbay_core::api_key::Scope;
use patchbay_core::webhook::{Delivery, DeliveryAttempt, Event, EventFilter};
use patchbay_core::{ConnectionId, PageRequest};
use serde::{Deserialize, Serialize};

use super::common::{BodyErrors, ListResponse, NotFound, StandardErrors, page};
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorResponse};
use crate::extract::{Json, Query, parse_id};
use crate::services::events;
use crate::state::AppState;

/// An event: Stripe's (as received through a webhook endpoint) or Patchbay's own.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventObject {
    /// `ev_…`; also the `webhook-id` of its deliveries.
    #[schema(example = "ev_0gx3m1t4k5v6w7x8y9z0a1b2c3")]
    pub id: String,
    /// Always `event`.
    #[schema(example = "event")]
    pub object: &'static str,
    /// `stripe` or `patchbay`.
    #[schema(example = "stripe")]
    pub source: &'static str,
    /// `invoice.paid`, `connection.status_changed`, …
    #[serde(rename = "type")]
    #[schema(example = "invoice.paid")]
    pub event_type: String,
    /// Stripe's `evt_…`, for Stripe events.
    pub stripe_event_id: Option<String>,
    /// The endpoint it came through.
    pub endpoint_id: Option<String>,
    /// The connection it concerns.
    pub connection_id: Option<String>,
    /// The connected account (`acct_…`) of a Connect event.
    pub account: Option<String>,
    /// Live or test.
    pub livemode: bool,
    /// The event's own creation time (Unix seconds, as Stripe's `created`).
    #[schema(example = 1_763_900_000)]
    pub created: i64,
    /// When Patchbay stored it.
    pub received_at: DateTime<Utc>,
    /// Stripe's event verbatim, or Patchbay's own event.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<Event> for EventObject {
    fn from(e: Event) -> Self {
        Self {
            id: e.id.to_string(),
            object: "event",
            source: e.source.as_str(),
            event_type: e.event_type,
            stripe_event_id: e.stripe_event_id,
            endpoint_id: e.endpoint_id.map(|id| id.to_string()),
            connection_id: e.connection_id.map(|id| id.to_string()),
            account: e.account,
            livemode: e.livemode,
            created: e.created.timestamp(),
            received_at: e.received_at,
            data: serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptObject {
    /// 1, 2, …
    pub attempt: u32,
    /// When it started.
    pub attempted_at: DateTime<Utc>,
    /// The receiver's status, if it answered.
    pub status_code: Option<u16>,
    /// How long it took.
    pub duration_ms: u32,
    /// What went wrong without an answer (refused address, timeout, connection error).
    pub error: Option<String>,
    /// The first 512 bytes of the receiver's answer.
    pub response_snippet: String,
}

impl From<DeliveryAttempt> for AttemptObject {
    fn from(a: DeliveryAttempt) -> Self {
        Self {
            attempt: a.attempt,
            attempted_at: a.attempted_at,
            status_code: a.status_code,
            duration_ms: a.duration_ms,
            error: a.error,
            response_snippet: a.response_snippet,
        }
    }
}

/// One event on its way to one subscription.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryObject {
    /// `dlv_…`
    pub id: String,
    /// Always `event_delivery`.
    #[schema(example = "event_delivery")]
    pub object: &'static str,
    /// The event.
    pub event_id: String,
    /// The subscription.
    pub subscription_id: String,
    /// `pending`, `succeeded` or `failed`.
    #[schema(example = "succeeded")]
    pub status: &'static str,
    /// Attempts made.
    pub attempts: u32,
    /// The last answer's status.
    pub last_status_code: Option<u16>,
    /// The last failure.
    pub last_error: Option<String>,
    /// The next attempt, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
    /// The attempts, oldest first.
    pub attempt_log: Vec<AttemptObject>,
}

impl DeliveryObject {
    fn new(d: Delivery, log: Vec<DeliveryAttempt>) -> Self {
        Self {
            id: d.id.to_string(),
            object: "event_delivery",
            event_id: d.event_id.to_string(),
            subscription_id: d.subscription_id.to_string(),
            status: d.status.as_str(),
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
            updated_at: d.updated_at,
            attempt_log: log.into_iter().map(Into::into).collect(),
        }
    }
}

/// Filters and paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListEvents {
    /// 1 to 100, default 10.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// An event id: list the events stored before it.
    pub starting_after: Option<String>,
    /// An event id: list the events stored after it.
    pub ending_before: Option<String>,
    /// Only this type (`invoice.paid`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Only events created at or after this Unix time.
    pub created_gte: Option<i64>,
    /// Only events created at or before this Unix time.
    pub created_lte: Option<i64>,
    /// Only this connection's events (`/api/v1/events` only).
    pub connection_id: Option<String>,
}

fn unix(value: Option<i64>, param: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|t| {
            DateTime::from_timestamp(t, 0).ok_or_else(|| {
                ApiError::bad_request(
                    "parameter_invalid",
                    format!("{param} must be a Unix time in seconds."),
                )
                .with_param(param.to_owned())
            })
        })
        .transpose()
}

fn filter(query: &ListEvents, connection: Option<ConnectionId>) -> Result<EventFilter, ApiError> {
    Ok(EventFilter {
        connection_id: connection,
        event_type: query.event_type.clone().filter(|t| !t.is_empty()),
        created_gte: unix(query.created_gte, "created_gte")?,
        created_lte: unix(query.created_lte, "created_lte")?,
    })
}

async fn list(
    state: &AppState,
    tenant: patchbay_core::TenantId,
    query: &ListEvents,
    connection: Option<ConnectionId>,
    url: String,
) -> Result<axum::Json<ListResponse<EventObject>>, ApiError> {
    let request: PageRequest<_> = page(
        query.limit,
        query.starting_after.as_deref(),
        query.ending_before.as_deref(),
    )?;
    let found = events::list(state, tenant, &filter(query, connection)?, &request).await?;
    Ok(axum::Json(ListResponse::new(
        found.data.into_iter().map(Into::into).collect(),
        found.has_more,
        url,
    )))
}

/// List a connection's events
///
/// A page of a connection's events, newest first: Stripe's, attributed to it, and
/// Patchbay's own about it (`connection.status_changed`, …). Needs `connections:read`.
#[utoipa::path(get, path = "/api/v1/connections/{id}/events", tag = "webhooks",
    params(("id" = ConnectionId, Path, description = "Connection id (conn_…)"), ListEvents),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "A page of events", body = ListResponse<EventObject>, example = super::examples::connection_event_list), StandardErrors, NotFound))]
pub async fn list_connection_events(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ListEvents>,
) -> Result<axum::Json<ListResponse<EventObject>>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let id: ConnectionId = parse_id(&id, "id")?;
    if query.connection_id.is_some() {
        return Err(ApiError::bad_request(
            "parameter_unknown",
            "connection_id is already given by the path.",
        )
        .with_param("connection_id".to_owned()));
    }
    list(
        &state,
        tenant.tenant_id,
        &query,
        Some(id),
        format!("/api/v1/connections/{id}/events"),
    )
    .await
}

/// List events
///
/// A page of the tenant's events, newest first; filter by `type`. Events are kept for
/// `PATCHBAY_EVENT_RETENTION`. Needs `connections:read`.
#[utoipa::path(get, path = "/api/v1/events", tag = "webhooks", params(ListEvents),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "A page of events", body = ListResponse<EventObject>, example = super::examples::event_list), StandardErrors, NotFound))]
pub async fn list_events(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Query(query): Query<ListEvents>,
) -> Result<axum::Json<ListResponse<EventObject>>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let connection = query
        .connection_id
        .as_deref()
        .map(|c| parse_id(c, "connection_id"))
        .transpose()?;
    list(
        &state,
        tenant.tenant_id,
        &query,
        connection,
        "/api/v1/events".into(),
    )
    .await
}

/// Retrieve an event
///
/// One event with its payload: Stripe's event verbatim, or Patchbay's own. Needs
/// `connections:read`.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Event id (ev_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The event", body = EventObject, example = super::examples::event), StandardErrors, NotFound))]
pub async fn get_event(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<EventObject>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let id = parse_id(&id, "id")?;
    Ok(axum::Json(
        events::get(&state, tenant.tenant_id, id).await?.into(),
    ))
}

/// List an event's deliveries
///
/// An event's deliveries to your subscriptions, each with its status and attempt log
/// (status code, duration, error, a snippet of the answer). Needs `connections:read`.
#[utoipa::path(get, path = "/api/v1/events/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "Event id (ev_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The deliveries, oldest first", body = ListResponse<DeliveryObject>, example = super::examples::delivery_list), StandardErrors, NotFound))]
pub async fn list_deliveries(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<ListResponse<DeliveryObject>>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let parsed = parse_id(&id, "id")?;
    let found = events::deliveries(&state, tenant.tenant_id, parsed).await?;
    Ok(axum::Json(ListResponse::new(
        found
            .into_iter()
            .map(|(d, log)| DeliveryObject::new(d, log))
            .collect(),
        false,
        format!("/api/v1/events/{id}/deliveries"),
    )))
}

/// Which subscription to redeliver to.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redeliver {
    /// Only this subscription (it must be enabled); every enabled subscription that takes the event when absent.
    pub subscription_id: Option<String>,
}

/// Redeliver an event
///
/// Delivers an event again with the same `webhook-id`, so receivers can drop what they
/// already processed: to one subscription, or without `subscription_id` to every
/// enabled subscription that wants it. Needs `connections:write`.
#[utoipa::path(post, path = "/api/v1/events/{id}/redeliver", tag = "webhooks",
    request_body(content = Redeliver, description = "Optional", example = super::examples::redeliver),
    params(("id" = String, Path, description = "Event id (ev_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 202, description = "The new deliveries (possibly none)", body = ListResponse<DeliveryObject>, example = super::examples::redelivered),
        StandardErrors, NotFound, BodyErrors,
        (status = 409, description = "The named subscription is disabled (`subscription_disabled`)", body = ErrorResponse)))]
pub async fn redeliver(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Option<Json<Redeliver>>,
) -> Result<(StatusCode, axum::Json<ListResponse<DeliveryObject>>), ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let parsed = parse_id(&id, "id")?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let subscription = body
        .subscription_id
        .as_deref()
        .map(|s| parse_id(s, "subscription_id"))
        .transpose()?;
    let created = events::redeliver(&state, tenant.tenant_id, parsed, subscription).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(ListResponse::new(
            created
                .into_iter()
                .map(|d| DeliveryObject::new(d, Vec::new()))
                .collect(),
            false,
            format!("/api/v1/events/{id}/redeliver"),
        )),
    ))
}
