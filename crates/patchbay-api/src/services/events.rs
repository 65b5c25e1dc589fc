//! Stored events: routing each to the tenant's subscriptions (one delivery
//! and one job each, stored with the event), Patchbay's own connection
//! events, listing, the attempt log and manual redelivery.

use patchbay_core::connection::Connection;
use patchbay_core::job::{NewJob, kinds};
use patchbay_core::time::now;
use patchbay_core::webhook::{
    Delivery, DeliveryAttempt, Event, EventFilter, EventInsert, EventSource, NewDelivery,
    Subscription, types,
};
use patchbay_core::{
    ConnectionId, DeliveryId, EventId, Page, PageRequest, SubscriptionId, TenantId, Timestamp,
};
use serde_json::json;
use tracing::warn;

use super::error::ServiceError;
use crate::state::AppState;

/// A delivery's job gives up by time (the retry window), not by count.
const DELIVERY_MAX_ATTEMPTS: u32 = 100_000;

/// The deliveries (with their jobs, due now) of an event to `subscriptions`.
pub fn plan(
    tenant: TenantId,
    subscriptions: &[Subscription],
    event_type: &str,
    connection: Option<ConnectionId>,
    at: Timestamp,
) -> Vec<NewDelivery> {
    subscriptions
        .iter()
        .filter(|s| s.takes(event_type, connection))
        .map(|s| new_delivery(tenant, s.id, at))
        .collect()
}

fn new_delivery(tenant: TenantId, subscription: SubscriptionId, at: Timestamp) -> NewDelivery {
    let id = DeliveryId::new();
    NewDelivery {
        id,
        subscription_id: subscription,
        job: NewJob::new(kinds::WEBHOOK_DELIVER, id.uuid(), at)
            .for_tenant(tenant)
            .max_attempts(DELIVERY_MAX_ATTEMPTS),
    }
}

/// Stores an event with its deliveries and wakes the delivery worker.
pub async fn store(state: &AppState, event: &Event) -> Result<EventInsert, ServiceError> {
    store_routed(state, event, event.connection_id).await
}

/// [`store`], routing the event as about `connection` (a deleted
/// connection's last event is stored detached, but still reaches the
/// subscriptions narrowed to it).
async fn store_routed(
    state: &AppState,
    event: &Event,
    connection: Option<ConnectionId>,
) -> Result<EventInsert, ServiceError> {
    let subscriptions = state.store.enabled_subscriptions(event.tenant_id).await?;
    let deliveries = plan(
        event.tenant_id,
        &subscriptions,
        &event.event_type,
        connection,
        event.received_at,
    );
    let inserted = state.store.insert_event(event, &deliveries).await?;
    if matches!(&inserted, EventInsert::Stored { deliveries } if !deliveries.is_empty()) {
        state.delivery_wakeup.wake();
    }
    Ok(inserted)
}

/// A connection as Patchbay's events describe it (no secret, no hint).
pub fn connection_json(c: &Connection) -> serde_json::Value {
    json!({
        "id": c.id.to_string(),
        "object": "connection",
        "auth_method": c.auth_method.as_str(),
        "livemode": c.livemode,
        "status": c.status.as_str(),
        "stripe_account_id": c.account.stripe_account_id,
        "external_id": c.external_id,
        "name": c.name,
        "last_error": c.last_error,
    })
}

/// Emits one of Patchbay's own events about a connection. It is stored with
/// its deliveries in one transaction; a failure to store it is logged, not
/// returned: the change it reports has already happened.
pub async fn emit_connection(
    state: &AppState,
    event_type: &'static str,
    connection: &Connection,
    extra: serde_json::Value,
) {
    let at = now();
    let id = EventId::new();
    let mut data = json!({ "object": connection_json(connection) });
    if let (Some(map), serde_json::Value::Object(extra)) = (data.as_object_mut(), extra) {
        map.extend(extra);
    }
    let payload = json!({
        "id": id.to_string(),
        "object": "event",
        "type": event_type,
        "created": at.timestamp(),
        "livemode": connection.livemode,
        "data": data,
    });
    let event = Event {
        id,
        tenant_id: connection.tenant_id,
        source: EventSource::Patchbay,
        endpoint_id: None,
        // The row of a deleted connection is gone: its last event is detached.
        connection_id: (event_type != types::CONNECTION_DELETED).then_some(connection.id),
        stripe_event_id: None,
        event_type: event_type.to_owned(),
        account: connection.account.stripe_account_id.clone(),
        livemode: connection.livemode,
        created: at,
        received_at: at,
        payload: payload.to_string(),
    };
    if let Err(e) = store_routed(state, &event, Some(connection.id)).await {
        warn!(connection = %connection.id, event_type, error = %e.message, "could not store a connection event");
    }
}

/// `connection.status_changed`, when the status did change.
pub async fn emit_status_change(state: &AppState, before: &Connection, after: &Connection) {
    if before.status == after.status {
        return;
    }
    let reason = after.last_error.as_ref().map(|e| e.code.clone());
    emit_connection(
        state,
        types::CONNECTION_STATUS_CHANGED,
        after,
        json!({
            "previous_status": before.status.as_str(),
            "status": after.status.as_str(),
            "reason": reason,
        }),
    )
    .await;
}

/// One event.
pub async fn get(state: &AppState, tenant: TenantId, id: EventId) -> Result<Event, ServiceError> {
    state
        .store
        .get_event(tenant, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("event", &id.to_string()))
}

/// The tenant's events (of one connection, when the filter names one).
pub async fn list(
    state: &AppState,
    tenant: TenantId,
    filter: &EventFilter,
    page: &PageRequest<EventId>,
) -> Result<Page<Event>, ServiceError> {
    if let Some(id) = filter.connection_id
        && state.store.get_connection(tenant, id).await?.is_none()
    {
        return Err(ServiceError::not_found("connection", &id.to_string()));
    }
    Ok(state.store.list_events(tenant, filter, page).await?)
}

/// An event's deliveries with their attempt logs.
pub async fn deliveries(
    state: &AppState,
    tenant: TenantId,
    id: EventId,
) -> Result<Vec<(Delivery, Vec<DeliveryAttempt>)>, ServiceError> {
    get(state, tenant, id).await?;
    Ok(state.store.list_deliveries(tenant, id).await?)
}

/// Delivers an event again: to one subscription, or to every enabled one
/// whose filters take it. Each gets a new delivery (same `webhook-id`).
pub async fn redeliver(
    state: &AppState,
    tenant: TenantId,
    id: EventId,
    subscription: Option<SubscriptionId>,
) -> Result<Vec<Delivery>, ServiceError> {
    let event = get(state, tenant, id).await?;
    let at = now();
    let deliveries = match subscription {
        Some(sid) => {
            let sub = state
                .store
                .get_subscription(tenant, sid)
                .await?
                .ok_or_else(|| ServiceError::not_found("event subscription", &sid.to_string()))?;
            if sub.status != patchbay_core::webhook::SubscriptionStatus::Enabled {
                return Err(ServiceError::conflict(
                    "subscription_disabled",
                    format!(
                        "Subscription {sid} is disabled; enable it first (PATCH /api/v1/event-subscriptions/{sid} with {{\"enabled\": true}})."
                    ),
                )
                .with_param("subscription_id"));
            }
            vec![new_delivery(tenant, sid, at)]
        }
        None => {
            let subs = state.store.enabled_subscriptions(tenant).await?;
            plan(tenant, &subs, &event.event_type, event.connection_id, at)
        }
    };
    let created = state
        .store
        .create_deliveries(tenant, id, &deliveries)
        .await?;
    if !created.is_empty() {
        state.delivery_wakeup.wake();
    }
    Ok(created)
}
