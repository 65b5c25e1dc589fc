//! Stripe's events in: the signature is checked on the raw bytes before
//! anything is parsed or stored; the event is attributed to a connection
//! (a platform endpoint's events through their `account`), stored once per
//! endpoint and Stripe event id, and routed to the tenant's subscriptions.
//! `account.application.deauthorized` revokes the connection it names.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::DateTime;
use parking_lot::Mutex;
use patchbay_core::connection::{AuthMethod, ConnectionFilter};
use patchbay_core::time::now;
use patchbay_core::webhook::{EndpointSecrets, Event, EventInsert, EventSource, list_takes, types};
use patchbay_core::{ConnectionId, EventId, PageRequest, WebhookEndpointId};
use patchbay_stripe::webhook::verify_signature;
use serde::Deserialize;
use tracing::{info, warn};

use super::error::ServiceError;
use super::webhook_secrets;
use crate::state::AppState;

/// How long an endpoint (with its sealed secrets) read by the intake is
/// reused. Changes through this replica drop it at once; another replica's
/// change (a rolled secret, a deleted endpoint) is seen within this time.
const ENDPOINT_CACHE_TTL: Duration = Duration::from_secs(2);
/// Most endpoints kept; beyond it the cache starts over.
const ENDPOINT_CACHE_MAX: usize = 10_000;

/// Endpoints recently read by the intake: a burst of Stripe's posts to one
/// endpoint costs one database read per [`ENDPOINT_CACHE_TTL`].
#[derive(Debug, Default)]
pub struct EndpointCache(Mutex<HashMap<WebhookEndpointId, (Instant, Arc<EndpointSecrets>)>>);

impl EndpointCache {
    fn get(&self, id: WebhookEndpointId) -> Option<Arc<EndpointSecrets>> {
        let map = self.0.lock();
        map.get(&id)
            .filter(|(at, _)| at.elapsed() < ENDPOINT_CACHE_TTL)
            .map(|(_, e)| e.clone())
    }

    fn put(&self, id: WebhookEndpointId, found: Arc<EndpointSecrets>) {
        let mut map = self.0.lock();
        if map.len() >= ENDPOINT_CACHE_MAX {
            map.clear();
        }
        map.insert(id, (Instant::now(), found));
    }

    /// Forgets an endpoint (changed or deleted here).
    pub fn forget(&self, id: WebhookEndpointId) {
        self.0.lock().remove(&id);
    }
}

async fn endpoint(
    state: &AppState,
    id: WebhookEndpointId,
) -> Result<Option<Arc<EndpointSecrets>>, ServiceError> {
    if let Some(found) = state.endpoint_cache.get(id) {
        // A previous secret past its expiry is dropped, as the store would.
        let expired = found
            .endpoint
            .previous_secret_expires_at
            .is_some_and(|t| t <= now());
        if !expired {
            return Ok(Some(found));
        }
    }
    let Some(found) = state
        .store
        .system_webhook_endpoint_secrets(id, now())
        .await?
    else {
        return Ok(None);
    };
    let found = Arc::new(found);
    state.endpoint_cache.put(id, found.clone());
    Ok(Some(found))
}

/// What the intake answers Stripe.
#[derive(Debug, Clone, PartialEq)]
pub enum Receipt {
    /// Stored (or, with `duplicate`, stored before).
    Stored {
        /// Patchbay's id of the event.
        event_id: EventId,
        /// Whether this Stripe event was already stored.
        duplicate: bool,
    },
    /// Verified, but of a type the endpoint does not keep.
    Ignored,
}

/// The fields Patchbay reads from a Stripe event.
#[derive(Deserialize)]
struct Incoming {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: Option<i64>,
    account: Option<String>,
    livemode: Option<bool>,
}

fn invalid_payload(why: &str) -> ServiceError {
    ServiceError::bad_request(
        "webhook_payload_invalid",
        format!("The signed body is not a Stripe event: {why}."),
    )
}

/// Receives one post from Stripe to endpoint `endpoint_id`.
pub async fn receive(
    state: &AppState,
    endpoint_id: &str,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Receipt, ServiceError> {
    let not_found = || ServiceError::not_found("webhook endpoint", endpoint_id);
    let id: WebhookEndpointId = endpoint_id.parse().map_err(|_| not_found())?;
    let at = now();
    let found = endpoint(state, id).await?.ok_or_else(not_found)?;
    let endpoint = &found.endpoint;
    let tenant = endpoint.tenant_id;
    let (current, previous) = webhook_secrets::open(
        state,
        tenant,
        &id.to_string(),
        &found.data_key,
        &found.secret,
        found.previous.as_ref(),
    )?;
    let mut secrets = vec![&current];
    secrets.extend(previous.as_ref());
    if let Err(e) = verify_signature(
        signature,
        body,
        &secrets,
        at.timestamp(),
        state.config.webhooks.tolerance,
    ) {
        metrics::counter!("patchbay_webhook_events_received_total", "outcome" => "signature_invalid").increment(1);
        return Err(ServiceError::bad_request(e.code(), e.to_string()));
    }
    let text = std::str::from_utf8(body).map_err(|_| invalid_payload("it is not UTF-8"))?;
    let incoming: Incoming = serde_json::from_str(text)
        .map_err(|_| invalid_payload("expected a JSON object with id and type"))?;
    if incoming.id.is_empty() || incoming.id.len() > 255 || incoming.event_type.is_empty() {
        return Err(invalid_payload("id and type must be non-empty"));
    }
    if incoming.event_type.len() > 255 {
        return Err(invalid_payload("type is too long"));
    }
    if !list_takes(&endpoint.events, &incoming.event_type) {
        metrics::counter!("patchbay_webhook_events_received_total", "outcome" => "ignored")
            .increment(1);
        return Ok(Receipt::Ignored);
    }
    let connection_id = match endpoint.connection_id {
        Some(c) => Some(c),
        None => match &incoming.account {
            Some(account) => {
                attribute(
                    state,
                    tenant,
                    account,
                    incoming.livemode.unwrap_or(endpoint.livemode),
                )
                .await?
            }
            None => None,
        },
    };
    let created = incoming
        .created
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .unwrap_or(at);
    let event = Event {
        id: EventId::new(),
        tenant_id: tenant,
        source: EventSource::Stripe,
        endpoint_id: Some(id),
        connection_id,
        stripe_event_id: Some(incoming.id),
        event_type: incoming.event_type,
        account: incoming.account,
        livemode: incoming.livemode.unwrap_or(endpoint.livemode),
        created,
        received_at: at,
        payload: text.to_owned(),
    };
    let stored = match super::events::store(state, &event).await {
        Ok(stored) => stored,
        Err(e) => {
            // A cached endpoint (or its connection) deleted through another
            // replica fails the insert's foreign keys: answer as for an
            // unknown endpoint, not as an internal error.
            state.endpoint_cache.forget(id);
            if state
                .store
                .system_webhook_endpoint_secrets(id, now())
                .await?
                .is_none()
            {
                return Err(not_found());
            }
            return Err(e);
        }
    };
    match stored {
        EventInsert::Duplicate(first) => {
            metrics::counter!("patchbay_webhook_events_received_total", "outcome" => "duplicate")
                .increment(1);
            Ok(Receipt::Stored {
                event_id: first,
                duplicate: true,
            })
        }
        EventInsert::Stored { .. } => {
            metrics::counter!("patchbay_webhook_events_received_total", "outcome" => "stored")
                .increment(1);
            if event.event_type == types::ACCOUNT_DEAUTHORIZED
                && let Some(connection) = connection_id
            {
                revoke(state, &event, connection).await;
            }
            Ok(Receipt::Stored {
                event_id: event.id,
                duplicate: false,
            })
        }
    }
}

/// The tenant's Connect connection to `account` in `livemode` (the newest,
/// when several end users connected the same account).
async fn attribute(
    state: &AppState,
    tenant: patchbay_core::TenantId,
    account: &str,
    livemode: bool,
) -> Result<Option<ConnectionId>, ServiceError> {
    let filter = ConnectionFilter {
        livemode: Some(livemode),
        stripe_account_id: Some(account.to_owned()),
        ..ConnectionFilter::default()
    };
    let page = state
        .store
        .list_connections(tenant, &filter, &PageRequest::first(10))
        .await?;
    Ok(page
        .data
        .iter()
        .find(|c| c.auth_method == AuthMethod::Oauth)
        .or(page.data.first())
        .map(|c| c.id))
}

/// Stripe says the account left the platform: the grant is gone.
async fn revoke(state: &AppState, event: &Event, connection: ConnectionId) {
    match super::connections::mark_revoked(
        state,
        event.tenant_id,
        connection,
        "stripe_access_revoked",
        "Stripe reported account.application.deauthorized: the connected account disconnected from the platform.",
    )
    .await
    {
        Ok(true) => info!(%connection, "connection revoked by Stripe's deauthorization event"),
        Ok(false) => {}
        Err(e) => {
            warn!(%connection, error = %e.message, "could not mark a deauthorized connection revoked")
        }
    }
}
