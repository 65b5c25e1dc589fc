//! Rows of the webhook tables (endpoints, events, subscriptions, deliveries
//! and their attempts) and their conversion to domain types.

use patchbay_core::webhook::{
    Delivery, DeliveryAttempt, DeliveryStatus, Event, EventSource, Subscription,
    SubscriptionStatus, WebhookEndpoint,
};
use patchbay_core::{Id, StoreError};
use sqlx::types::Json;
use uuid::Uuid;

use crate::error::corrupt;
use crate::rows::PrefixedDataKeyRow;
use crate::types::DbTime;

pub(crate) const ENDPOINT_COLUMNS: &str = "id, tenant_id, connection_id, livemode, events, \
     description, secret_hint, previous_expires_at, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct EndpointRow {
    id: Uuid,
    tenant_id: Uuid,
    connection_id: Option<Uuid>,
    livemode: bool,
    events: Json<Vec<String>>,
    description: Option<String>,
    secret_hint: String,
    previous_expires_at: Option<DbTime>,
    created_at: DbTime,
    updated_at: DbTime,
}

impl TryFrom<EndpointRow> for WebhookEndpoint {
    type Error = StoreError;
    fn try_from(r: EndpointRow) -> Result<Self, StoreError> {
        Ok(WebhookEndpoint {
            id: Id::from_uuid(r.id),
            tenant_id: Id::from_uuid(r.tenant_id),
            connection_id: r.connection_id.map(Id::from_uuid),
            livemode: r.livemode,
            events: r.events.0,
            description: r.description,
            secret_hint: r.secret_hint,
            previous_secret_expires_at: r.previous_expires_at.map(|t| t.0),
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        })
    }
}

/// An endpoint or subscription with its sealed secrets and data key.
#[derive(sqlx::FromRow)]
pub(crate) struct SecretsRow<T> {
    #[sqlx(flatten)]
    pub(crate) record: T,
    pub(crate) secret: Vec<u8>,
    /// NULL once expired (the query masks it).
    pub(crate) previous_secret: Option<Vec<u8>>,
    #[sqlx(flatten)]
    pub(crate) data_key: PrefixedDataKeyRow,
}

/// The join that brings a data key under `dk_` names (`t` is the record's alias).
pub(crate) const DATA_KEY_JOIN: &str = "d.id AS dk_id, d.tenant_id AS dk_tenant_id, \
     d.master_key_id AS dk_master_key_id, d.wrapped AS dk_wrapped, d.created_at AS dk_created_at";

pub(crate) const EVENT_COLUMNS: &str = "id, tenant_id, source, endpoint_id, connection_id, \
     stripe_event_id, type, account, livemode, created, received_at, payload";

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: Uuid,
    tenant_id: Uuid,
    source: String,
    endpoint_id: Option<Uuid>,
    connection_id: Option<Uuid>,
    stripe_event_id: Option<String>,
    #[sqlx(rename = "type")]
    event_type: String,
    account: Option<String>,
    livemode: bool,
    created: DbTime,
    received_at: DbTime,
    payload: String,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        Ok(Event {
            id: Id::from_uuid(r.id),
            tenant_id: Id::from_uuid(r.tenant_id),
            source: EventSource::parse(&r.source)
                .ok_or_else(|| corrupt("event source", &r.source))?,
            endpoint_id: r.endpoint_id.map(Id::from_uuid),
            connection_id: r.connection_id.map(Id::from_uuid),
            stripe_event_id: r.stripe_event_id,
            event_type: r.event_type,
            account: r.account,
            livemode: r.livemode,
            created: r.created.0,
            received_at: r.received_at.0,
            payload: r.payload,
        })
    }
}

pub(crate) const SUBSCRIPTION_COLUMNS: &str = "id, tenant_id, connection_id, url, events, \
     description, status, disabled_reason, failing_since, secret_hint, previous_expires_at, \
     created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct SubscriptionRow {
    id: Uuid,
    tenant_id: Uuid,
    connection_id: Option<Uuid>,
    url: String,
    events: Json<Vec<String>>,
    description: Option<String>,
    status: String,
    disabled_reason: Option<String>,
    failing_since: Option<DbTime>,
    secret_hint: String,
    previous_expires_at: Option<DbTime>,
    created_at: DbTime,
    updated_at: DbTime,
}

impl TryFrom<SubscriptionRow> for Subscription {
    type Error = StoreError;
    fn try_from(r: SubscriptionRow) -> Result<Self, StoreError> {
        Ok(Subscription {
            id: Id::from_uuid(r.id),
            tenant_id: Id::from_uuid(r.tenant_id),
            connection_id: r.connection_id.map(Id::from_uuid),
            url: r.url,
            events: r.events.0,
            description: r.description,
            status: SubscriptionStatus::parse(&r.status)
                .ok_or_else(|| corrupt("subscription status", &r.status))?,
            disabled_reason: r.disabled_reason,
            failing_since: r.failing_since.map(|t| t.0),
            secret_hint: r.secret_hint,
            previous_secret_expires_at: r.previous_expires_at.map(|t| t.0),
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        })
    }
}

pub(crate) const DELIVERY_COLUMNS: &str = "id, tenant_id, event_id, subscription_id, status, \
     attempts, last_status_code, last_error, next_attempt_at, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    id: Uuid,
    tenant_id: Uuid,
    event_id: Uuid,
    subscription_id: Uuid,
    status: String,
    attempts: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    next_attempt_at: Option<DbTime>,
    created_at: DbTime,
    updated_at: DbTime,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = StoreError;
    fn try_from(r: DeliveryRow) -> Result<Self, StoreError> {
        Ok(Delivery {
            id: Id::from_uuid(r.id),
            tenant_id: Id::from_uuid(r.tenant_id),
            event_id: Id::from_uuid(r.event_id),
            subscription_id: Id::from_uuid(r.subscription_id),
            status: DeliveryStatus::parse(&r.status)
                .ok_or_else(|| corrupt("delivery status", &r.status))?,
            attempts: u32::try_from(r.attempts)
                .map_err(|_| corrupt("delivery attempts", &r.attempts.to_string()))?,
            last_status_code: r.last_status_code.and_then(|c| u16::try_from(c).ok()),
            last_error: r.last_error,
            next_attempt_at: r.next_attempt_at.map(|t| t.0),
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        })
    }
}

pub(crate) const ATTEMPT_COLUMNS: &str =
    "delivery_id, attempt, attempted_at, status_code, duration_ms, error, response_snippet";

#[derive(sqlx::FromRow)]
pub(crate) struct AttemptRow {
    pub(crate) delivery_id: Uuid,
    attempt: i32,
    attempted_at: DbTime,
    status_code: Option<i32>,
    duration_ms: i32,
    error: Option<String>,
    response_snippet: String,
}

impl TryFrom<AttemptRow> for DeliveryAttempt {
    type Error = StoreError;
    fn try_from(r: AttemptRow) -> Result<Self, StoreError> {
        Ok(DeliveryAttempt {
            attempt: u32::try_from(r.attempt)
                .map_err(|_| corrupt("attempt number", &r.attempt.to_string()))?,
            attempted_at: r.attempted_at.0,
            status_code: r.status_code.and_then(|c| u16::try_from(c).ok()),
            duration_ms: u32::try_from(r.duration_ms).unwrap_or(0),
            error: r.error,
            response_snippet: r.response_snippet,
        })
    }
}
