//! Patchbay's domain: prefixed ids, tenants, API keys, connections, audit events,
//! validation rules and the [`Store`] port that the storage crate implements.
//! Nothing here performs IO, so every other crate can depend on it.

pub mod api_key;
pub mod audit;
pub mod change_feed;
pub mod connect;
pub mod connection;
pub mod error;
pub mod id;
pub mod job;
pub mod metadata;
pub mod page;
pub mod sealed;
pub mod stats;
pub mod store;
pub mod tenant;
pub mod tenant_limits;
pub mod time;
pub mod webhook;

pub use error::{StoreError, ValidationError};
pub use id::{
    ApiKeyId, AuditEventId, ConnectionId, DataKeyId, DeliveryId, EventId, Id, JobId,
    SubscriptionId, TenantId, WebhookEndpointId,
};
pub use metadata::Metadata;
pub use page::{Page, PageRequest};
pub use store::Store;
pub use time::Timestamp;
