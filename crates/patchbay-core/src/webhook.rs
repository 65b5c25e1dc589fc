//! Webhooks. In: Stripe posts signed events to an endpoint (of a connection,
//! or of the tenant's Connect platform); each event is stored once per
//! endpoint and attributed to a connection. Out: stored events, and
//! Patchbay's own (`connection.created`, …), are delivered to the tenant's
//! subscriptions, one [`Delivery`] per event and subscription, each a job.

use crate::job::NewJob;
use crate::sealed::{DataKeyRecord, SealedSecret};
use crate::{
    ConnectionId, DeliveryId, EventId, SubscriptionId, TenantId, Timestamp, WebhookEndpointId,
};

/// The event list that means every event.
pub const ALL_EVENTS: &str = "*";

/// Patchbay's own event types.
pub mod types {
    /// A connection was created (by key or by Connect OAuth).
    pub const CONNECTION_CREATED: &str = "connection.created";
    /// A connection's status changed (active → invalid, revoked, …).
    pub const CONNECTION_STATUS_CHANGED: &str = "connection.status_changed";
    /// A connection was deleted (or disconnected).
    pub const CONNECTION_DELETED: &str = "connection.deleted";
    /// Stripe's event of a connected account leaving the platform.
    pub const ACCOUNT_DEAUTHORIZED: &str = "account.application.deauthorized";
    /// Every type Patchbay emits itself.
    pub const PATCHBAY: [&str; 3] = [
        CONNECTION_CREATED,
        CONNECTION_STATUS_CHANGED,
        CONNECTION_DELETED,
    ];
}

/// Whether an event list (`["invoice.paid", "*"]`) takes `event_type`.
pub fn list_takes(events: &[String], event_type: &str) -> bool {
    events.iter().any(|e| e == ALL_EVENTS || e == event_type)
}

/// Where Stripe sends events: one connection's account, or every account
/// connected to the tenant's Connect platform.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    /// `we_…`
    pub id: WebhookEndpointId,
    /// Owner.
    pub tenant_id: TenantId,
    /// The connection whose account sends here; `None` for a platform endpoint.
    pub connection_id: Option<ConnectionId>,
    /// Live or test events.
    pub livemode: bool,
    /// The event types stored (`*` for all).
    pub events: Vec<String>,
    /// A note for people.
    pub description: Option<String>,
    /// `whsec_…abcd`
    pub secret_hint: String,
    /// Until when the previous signing secret is still accepted.
    pub previous_secret_expires_at: Option<Timestamp>,
    /// When created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// An endpoint with what verifying its signatures needs.
#[derive(Debug, Clone)]
pub struct EndpointSecrets {
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
    /// The data key that sealed the secrets.
    pub data_key: DataKeyRecord,
    /// The current signing secret.
    pub secret: SealedSecret,
    /// The previous one, while it has not expired.
    pub previous: Option<SealedSecret>,
}

/// A new signing secret replacing the current one.
#[derive(Debug, Clone)]
pub struct SecretRoll {
    /// The data key used.
    pub data_key_id: crate::DataKeyId,
    /// The new secret, sealed.
    pub secret: SealedSecret,
    /// Its hint.
    pub hint: String,
    /// The current secret re-sealed as the previous one, with its expiry;
    /// `None` drops it at once.
    pub previous: Option<(SealedSecret, Timestamp)>,
    /// When.
    pub at: Timestamp,
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// Posted by Stripe to an endpoint.
    Stripe,
    /// Emitted by Patchbay.
    Patchbay,
}

impl EventSource {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Patchbay => "patchbay",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stripe" => Some(Self::Stripe),
            "patchbay" => Some(Self::Patchbay),
            _ => None,
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `ev_…`
    pub id: EventId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Stripe or Patchbay.
    pub source: EventSource,
    /// The endpoint it came through (Stripe events).
    pub endpoint_id: Option<WebhookEndpointId>,
    /// The connection it concerns, when known.
    pub connection_id: Option<ConnectionId>,
    /// Stripe's `evt_…`.
    pub stripe_event_id: Option<String>,
    /// `invoice.paid`, `connection.created`, …
    pub event_type: String,
    /// The connected account (`acct_…`) of a Connect event.
    pub account: Option<String>,
    /// Live or test.
    pub livemode: bool,
    /// The event's own time (Stripe's `created`).
    pub created: Timestamp,
    /// When Patchbay stored it.
    pub received_at: Timestamp,
    /// The event as received (Stripe) or built (Patchbay): JSON text.
    pub payload: String,
}

/// Filters for listing events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Only this connection's.
    pub connection_id: Option<ConnectionId>,
    /// Only this type.
    pub event_type: Option<String>,
    /// Created at or after.
    pub created_gte: Option<Timestamp>,
    /// Created at or before.
    pub created_lte: Option<Timestamp>,
}

/// What storing an event did.
#[derive(Debug, Clone, PartialEq)]
pub enum EventInsert {
    /// Stored, with these deliveries queued.
    Stored {
        /// The deliveries created (subscriptions gone meanwhile are skipped).
        deliveries: Vec<DeliveryId>,
    },
    /// The endpoint already stored this Stripe event: nothing written.
    Duplicate(EventId),
}

/// Whether a subscription receives deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    /// Deliveries are made.
    Enabled,
    /// Turned off (by the tenant, or after failing too long); see the reason.
    Disabled,
}

impl SubscriptionStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enabled" => Some(Self::Enabled),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// Where the tenant wants events delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// `esub_…`
    pub id: SubscriptionId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Only this connection's events, when set.
    pub connection_id: Option<ConnectionId>,
    /// The receiver.
    pub url: String,
    /// The event types delivered (`*` for all).
    pub events: Vec<String>,
    /// A note for people.
    pub description: Option<String>,
    /// Enabled or disabled.
    pub status: SubscriptionStatus,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Start of the current run of failed attempts.
    pub failing_since: Option<Timestamp>,
    /// `whsec_…abcd`
    pub secret_hint: String,
    /// Until when the previous secret still signs.
    pub previous_secret_expires_at: Option<Timestamp>,
    /// When created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl Subscription {
    /// Whether an event of `event_type` about `connection` goes to this subscription.
    pub fn takes(&self, event_type: &str, connection: Option<ConnectionId>) -> bool {
        self.status == SubscriptionStatus::Enabled
            && list_takes(&self.events, event_type)
            && self.connection_id.is_none_or(|c| Some(c) == connection)
    }
}

/// A subscription with what signing needs.
#[derive(Debug, Clone)]
pub struct SubscriptionSecrets {
    /// The subscription.
    pub subscription: Subscription,
    /// The data key that sealed the secrets.
    pub data_key: DataKeyRecord,
    /// The current secret.
    pub secret: SealedSecret,
    /// The previous one, while it has not expired.
    pub previous: Option<SealedSecret>,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not delivered yet; attempts continue.
    Pending,
    /// The receiver answered 2xx.
    Succeeded,
    /// Given up.
    Failed,
}

impl DeliveryStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One event on its way to one subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// `dlv_…`
    pub id: DeliveryId,
    /// Owner.
    pub tenant_id: TenantId,
    /// The event.
    pub event_id: EventId,
    /// The subscription.
    pub subscription_id: SubscriptionId,
    /// Where it is.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The last answer's status.
    pub last_status_code: Option<u16>,
    /// The last failure.
    pub last_error: Option<String>,
    /// The next attempt, while pending.
    pub next_attempt_at: Option<Timestamp>,
    /// When created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// One attempt of a delivery, for the attempt log.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    /// 1, 2, …
    pub attempt: u32,
    /// When it started.
    pub attempted_at: Timestamp,
    /// The receiver's status, if it answered.
    pub status_code: Option<u16>,
    /// How long it took.
    pub duration_ms: u32,
    /// What went wrong (refused address, timeout, connection error).
    pub error: Option<String>,
    /// The start of the receiver's answer.
    pub response_snippet: String,
}

/// A delivery to create, with its job.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// `dlv_…`
    pub id: DeliveryId,
    /// To whom.
    pub subscription_id: SubscriptionId,
    /// The `webhook.deliver` job that makes it.
    pub job: NewJob,
}

/// Everything one delivery attempt needs, read at once.
#[derive(Debug, Clone)]
pub struct DeliveryWork {
    /// The delivery.
    pub delivery: Delivery,
    /// Its event.
    pub event: Event,
    /// Its subscription, secrets sealed.
    pub subscription: SubscriptionSecrets,
}

/// What an attempt does to its subscription's health.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionHealth {
    /// Nothing learned (the attempt was not made).
    Unchanged,
    /// Delivered: the run of failures (if any) ends.
    Delivered,
    /// Failed: a run of failures starts (or goes on); a run that started at or
    /// before `disable_if_failing_since` disables the subscription with `reason`.
    Failed {
        /// The cut-off.
        disable_if_failing_since: Timestamp,
        /// Why, for the tenant.
        reason: String,
    },
}

/// An attempt's outcome, recorded in one transaction with the job's.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Owner.
    pub tenant_id: TenantId,
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// Its subscription.
    pub subscription_id: SubscriptionId,
    /// The attempt.
    pub attempt: DeliveryAttempt,
    /// The delivery's new status.
    pub status: DeliveryStatus,
    /// The next attempt, while pending.
    pub next_attempt_at: Option<Timestamp>,
    /// What it says about the subscription.
    pub health: SubscriptionHealth,
}

/// An attempt to record together with its job's outcome, under the job's lease.
#[derive(Debug, Clone)]
pub struct AttemptWrite {
    /// What the attempt did.
    pub record: AttemptRecord,
    /// The `webhook.deliver` job.
    pub job: crate::JobId,
    /// The job's lease token.
    pub lease_token: uuid::Uuid,
    /// What the job does next.
    pub outcome: crate::job::JobOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::now;

    fn subscription(events: &[&str], connection: Option<ConnectionId>) -> Subscription {
        Subscription {
            id: SubscriptionId::new(),
            tenant_id: TenantId::new(),
            connection_id: connection,
            url: "https://example.com/hook".into(),
            events: events.iter().map(|s| (*s).to_owned()).collect(),
            description: None,
            status: SubscriptionStatus::Enabled,
            disabled_reason: None,
            failing_since: None,
            secret_hint: "whsec_…abcd".into(),
            previous_secret_expires_at: None,
            created_at: now(),
            updated_at: now(),
        }
    }

    #[test]
    fn a_subscription_takes_its_types_and_its_connection() {
        let conn = ConnectionId::new();
        let other = ConnectionId::new();
        let all = subscription(&["*"], None);
        assert!(all.takes("invoice.paid", None));
        assert!(all.takes("connection.created", Some(conn)));
        let some = subscription(&["invoice.paid"], Some(conn));
        assert!(some.takes("invoice.paid", Some(conn)));
        assert!(!some.takes("invoice.paid", Some(other)));
        assert!(!some.takes("invoice.paid", None));
        assert!(!some.takes("invoice.payment_failed", Some(conn)));
        let mut off = subscription(&["*"], None);
        off.status = SubscriptionStatus::Disabled;
        assert!(!off.takes("invoice.paid", None));
    }

    #[test]
    fn stored_texts_round_trip() {
        for s in [EventSource::Stripe, EventSource::Patchbay] {
            assert_eq!(EventSource::parse(s.as_str()), Some(s));
        }
        for s in [SubscriptionStatus::Enabled, SubscriptionStatus::Disabled] {
            assert_eq!(SubscriptionStatus::parse(s.as_str()), Some(s));
        }
        for s in [
            DeliveryStatus::Pending,
            DeliveryStatus::Succeeded,
            DeliveryStatus::Failed,
        ] {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryStatus::parse("nope"), None);
    }
}
