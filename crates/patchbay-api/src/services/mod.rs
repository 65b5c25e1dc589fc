//! The application's use cases, between the HTTP handlers and the store, vault
//! and Stripe client. Handlers parse and render; services decide, and say why
//! they refuse with their own [`error::ServiceError`], free of HTTP types.

pub mod actions;
pub mod api_keys;
pub mod audit_log;
pub mod background;
pub mod connect_sessions;
pub mod connections;
pub mod credential_cache;
pub mod credentials;
pub mod deliveries;
pub mod delivery_recorder;
pub mod error;
pub mod events;
pub mod invalidation;
pub mod jobs;
pub mod oauth;
pub mod permission_memo;
pub mod platforms;
pub mod proxy;
mod quotas;
pub mod redis_feed;
pub mod settings;
pub mod store_metrics;
pub mod subscriptions;
pub mod tenants;
mod test_call;
pub mod webhook_endpoints;
pub mod webhook_intake;
pub mod webhook_secrets;
pub mod webhook_sender;

use patchbay_core::Timestamp;
use patchbay_core::time::now;

/// A new `updated_at` strictly after `previous`, so compare-and-swap updates
/// never mistake two versions for one.
pub(crate) fn next_updated_at(previous: Timestamp) -> Timestamp {
    now().max(previous + chrono::TimeDelta::microseconds(1))
}

/// How many times a compare-and-swap update is retried under contention.
pub(crate) const CAS_ATTEMPTS: usize = 5;
