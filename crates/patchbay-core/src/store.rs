//! The storage port. `patchbay-store` implements it for SQLite and PostgreSQL.
//!
//! Every method that touches a tenant's data takes the [`TenantId`], and a record
//! of another tenant behaves exactly like a missing one. The few methods that
//! cross tenants say so in their name (`system_…`) or are the key-id lookup that
//! authentication needs before it knows the tenant.
//! Every mutation that a user causes takes its [`AuditEvent`] and writes it in the
//! same transaction, so an action and its audit record exist together or not at all.

use async_trait::async_trait;

use crate::api_key::{ApiKey, ApiKeyCredential};
use uuid::Uuid;

use crate::audit::AuditEvent;
use crate::connect::{
    ConnectionSecret, GrantScope, OAuthState, PlatformDeletion, SecretRole, SessionUse,
    StripePlatform, StripePlatformSecret,
};
use crate::connection::{
    AuthMethod, Connection, ConnectionDetails, ConnectionFilter, LastError, ValidationRecord,
};
use crate::job::{ClaimRequest, ClaimedJob, Job, JobOutcome, NewJob};
use crate::sealed::{DataKeyRecord, MasterKeyCheck, Rewrap, SealedSecret};
use crate::stats::{PoolStats, WorkCounts};
use crate::tenant::Tenant;
use crate::webhook::{
    AttemptRecord, AttemptWrite, Delivery, DeliveryAttempt, DeliveryWork, EndpointSecrets, Event,
    EventFilter, EventInsert, NewDelivery, SecretRoll, Subscription, SubscriptionSecrets,
    WebhookEndpoint,
};
use crate::{
    ApiKeyId, AuditEventId, ConnectionId, DataKeyId, DeliveryId, EventId, JobId, Page, PageRequest,
    StoreError, SubscriptionId, TenantId, Timestamp, WebhookEndpointId,
};

/// Result of storage calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Outcome of a compare-and-swap update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated<T> {
    /// Applied; the new record.
    Applied(T),
    /// The record changed since it was read; read it again and retry.
    Stale,
    /// No such record for this tenant.
    NotFound,
}

/// The sealed material that belongs to the master keyring: check values and the
/// tenants' wrapped data keys. Master-key rotation needs only this.
#[async_trait]
pub trait KeyringStore: Send + Sync {
    /// Every stored check value.
    async fn master_key_checks(&self) -> StoreResult<Vec<MasterKeyCheck>>;
    /// Stores a check value unless one exists for that key id.
    async fn insert_master_key_check(&self, check: &MasterKeyCheck) -> StoreResult<()>;
    /// How many data keys each master key id wraps.
    async fn data_key_counts(&self) -> StoreResult<Vec<(String, u64)>>;
    /// One data key wrapped by `master_key_id`, if any (a start-up probe).
    async fn sample_data_key(&self, master_key_id: &str) -> StoreResult<Option<DataKeyRecord>>;
    /// Data keys not wrapped by `primary`, by ascending id after `after`.
    async fn system_data_keys_not_under(
        &self,
        primary: &str,
        after: Option<DataKeyId>,
        limit: u32,
    ) -> StoreResult<Vec<DataKeyRecord>>;
    /// Applies re-wraps in one transaction; each only if the stored wrapping is
    /// still the expected one. Returns how many were applied.
    async fn rewrap_data_keys(&self, rewraps: &[Rewrap]) -> StoreResult<u64>;
}

/// Tenants and their data keys.
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Creates a tenant with its data key.
    async fn create_tenant(
        &self,
        tenant: &Tenant,
        data_key: &DataKeyRecord,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// One tenant.
    async fn get_tenant(&self, id: TenantId) -> StoreResult<Option<Tenant>>;
    /// Tenants, newest first.
    async fn list_tenants(&self, page: &PageRequest<TenantId>) -> StoreResult<Page<Tenant>>;
    /// Replaces name, status, metadata and limits if `updated_at` is still `expected_updated_at`.
    async fn update_tenant(
        &self,
        tenant: &Tenant,
        expected_updated_at: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Updated<Tenant>>;
    /// Deletes the tenant and everything it owns, its data key first: whatever
    /// ciphertext survives in backups can no longer be opened. False if absent.
    async fn delete_tenant(&self, id: TenantId, audit: &AuditEvent) -> StoreResult<bool>;
    /// The tenant's current data key.
    async fn tenant_data_key(&self, tenant: TenantId) -> StoreResult<Option<DataKeyRecord>>;
    /// The browser origins (`https://app.example.com`) allowed to call the
    /// connect-session routes for this tenant, sorted.
    async fn allowed_origins(&self, tenant: TenantId) -> StoreResult<Vec<String>>;
    /// Replaces the tenant's allowed origins. False if the tenant is absent.
    async fn set_allowed_origins(
        &self,
        tenant: TenantId,
        origins: &[String],
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Whether any tenant allows `origin` (a CORS preflight carries no
    /// credentials, so it cannot name its tenant yet).
    async fn system_origin_allowed(&self, origin: &str) -> StoreResult<bool>;
}

/// Tenant API keys.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key with the stored hash of its secret (`sha256$<hex>`).
    async fn create_api_key(&self, key: &ApiKey, hash: &str, audit: &AuditEvent)
    -> StoreResult<()>;
    /// One key of the tenant.
    async fn get_api_key(&self, tenant: TenantId, id: ApiKeyId) -> StoreResult<Option<ApiKey>>;
    /// The tenant's keys, newest first.
    async fn list_api_keys(
        &self,
        tenant: TenantId,
        page: &PageRequest<ApiKeyId>,
    ) -> StoreResult<Page<ApiKey>>;
    /// Marks a key revoked (idempotent: the first revocation time stays).
    async fn revoke_api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        at: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Option<ApiKey>>;
    /// What authentication needs, by the key id embedded in a token. The tenant is
    /// not known yet at this point; this is the one lookup by key id alone.
    async fn find_api_key_credential(&self, id: ApiKeyId) -> StoreResult<Option<ApiKeyCredential>>;
    /// Records last use times (batched by the caller; never moves a time backwards).
    async fn touch_api_keys(&self, uses: &[(TenantId, ApiKeyId, Timestamp)]) -> StoreResult<()>;
    /// Replaces a key's stored hash with `new_hash` if it is still `expected_hash`
    /// (upgrading an old hash format after a successful verification). False if
    /// the key is gone or its hash changed meanwhile.
    async fn replace_api_key_hash(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        expected_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool>;
    /// How many of the tenant's keys are not revoked (for per-tenant limits).
    async fn count_api_keys(&self, tenant: TenantId) -> StoreResult<u64>;
}

/// A connection as created: the record, its sealed secrets and the data key that sealed them.
#[derive(Debug, Clone)]
pub struct NewConnection {
    /// The record.
    pub connection: Connection,
    /// The data key used.
    pub data_key_id: DataKeyId,
    /// The sealed secrets (an API key; or a grant's access and refresh tokens).
    pub secrets: Vec<ConnectionSecret>,
    /// Jobs the creation causes (its re-validation), enqueued in the same transaction.
    pub jobs: Vec<NewJob>,
    /// The connect session that created it: recorded as used in the same
    /// transaction; a session already used is a `Conflict` on `session`.
    pub session: Option<SessionUse>,
}

/// A connection with everything needed to open its secrets.
#[derive(Debug, Clone)]
pub struct ConnectionSecrets {
    /// The record.
    pub connection: Connection,
    /// The data key that sealed the secrets.
    pub data_key: DataKeyRecord,
    /// Its sealed secrets, one per role.
    pub secrets: Vec<ConnectionSecret>,
}

impl ConnectionSecrets {
    /// The sealed secret in `role`, if the connection has one.
    pub fn secret(&self, role: SecretRole) -> Option<&SealedSecret> {
        self.secrets
            .iter()
            .find(|s| s.role == role)
            .map(|s| &s.sealed)
    }
}

/// New tokens for a Connect grant: after a refresh, or when the same end user
/// connects the same account again (a re-link).
#[derive(Debug, Clone)]
pub struct GrantUpdate {
    /// The data key used.
    pub data_key_id: DataKeyId,
    /// The access token (and the refresh token, when Stripe sent one; a
    /// missing one keeps the stored refresh token).
    pub secrets: Vec<ConnectionSecret>,
    /// Hint of the access token.
    pub key_hint: String,
    /// The scope granted.
    pub scope: GrantScope,
    /// A test call made with the new grant, if any.
    pub validation: Option<ValidationRecord>,
    /// When the tokens were obtained.
    pub refreshed_at: Timestamp,
    /// When changed.
    pub updated_at: Timestamp,
    /// Only if this refresh lease is still held (then released); `None` for a re-link.
    pub lease_token: Option<Uuid>,
    /// The connect session that re-linked it, recorded as used (see [`NewConnection::session`]).
    pub session: Option<SessionUse>,
}

/// What a call taught about one permission of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionObservation {
    /// `rak_customer_write`
    pub permission: String,
    /// Granted (a call needing it succeeded) or missing (Stripe's 403 named it).
    pub granted: bool,
    /// Stripe's request id of the deciding call.
    pub stripe_request_id: Option<String>,
    /// When.
    pub observed_at: Timestamp,
}

/// Whether a grant refresh lease was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshLease {
    /// Taken: this caller refreshes.
    Acquired,
    /// Another refresh holds it until then.
    Held,
    /// No such Connect connection for this tenant.
    NotFound,
}

/// A key rotation, applied atomically.
#[derive(Debug, Clone)]
pub struct SecretRotation {
    /// Secret or restricted key.
    pub auth_method: AuthMethod,
    /// Hint of the new key.
    pub key_hint: String,
    /// The data key used.
    pub data_key_id: DataKeyId,
    /// The new key, sealed.
    pub secret: SealedSecret,
    /// The old key, re-sealed as the previous one, with its hint and expiry; `None` destroys it.
    pub previous: Option<(SealedSecret, String, Timestamp)>,
    /// The new key's test call.
    pub validation: ValidationRecord,
    /// When changed.
    pub updated_at: Timestamp,
}

/// Stripe connections.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Stores a new connection. A taken `external_id` is a `Conflict`.
    async fn create_connection(&self, new: &NewConnection, audit: &AuditEvent) -> StoreResult<()>;
    /// One connection of the tenant.
    async fn get_connection(
        &self,
        tenant: TenantId,
        id: ConnectionId,
    ) -> StoreResult<Option<Connection>>;
    /// One connection of the tenant by its external id.
    async fn find_connection_by_external_id(
        &self,
        tenant: TenantId,
        external_id: &str,
    ) -> StoreResult<Option<Connection>>;
    /// One connection with its sealed keys and data key.
    async fn get_connection_secrets(
        &self,
        tenant: TenantId,
        id: ConnectionId,
    ) -> StoreResult<Option<ConnectionSecrets>>;
    /// The tenant's connections matching `filter`, newest first.
    async fn list_connections(
        &self,
        tenant: TenantId,
        filter: &ConnectionFilter,
        page: &PageRequest<ConnectionId>,
    ) -> StoreResult<Page<Connection>>;
    /// Replaces the editable fields if `updated_at` is still `expected_updated_at`.
    async fn update_connection_details(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        details: &ConnectionDetails,
        expected_updated_at: Timestamp,
        updated_at: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Updated<Connection>>;
    /// Records a test call's outcome and releases any validation lease.
    async fn record_validation(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        record: &ValidationRecord,
        audit: Option<&AuditEvent>,
    ) -> StoreResult<Option<Connection>>;
    /// Swaps in a new key (and keeps or destroys the old one) in one statement.
    async fn rotate_connection_secret(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        rotation: &SecretRotation,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Connection>>;
    /// How many connections the tenant has (for per-tenant limits).
    async fn count_connections(&self, tenant: TenantId) -> StoreResult<u64>;
    /// Deletes a connection and its sealed keys. False if absent.
    async fn delete_connection(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Destroys previous keys whose grace period ended; returns how many.
    async fn system_purge_expired_previous_keys(&self, now: Timestamp) -> StoreResult<u64>;
    /// Takes the refresh lease of a Connect connection until `until`, unless
    /// another unexpired lease holds it.
    async fn lease_grant_refresh(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        token: Uuid,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<RefreshLease>;
    /// Gives a refresh lease back without changing anything else.
    async fn release_grant_refresh(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        token: Uuid,
    ) -> StoreResult<()>;
    /// Stores new grant tokens (replacing those of the same roles), scope and
    /// validation in one transaction; with a lease token, only while it is
    /// held (and releases it). `None` when the connection is gone, is not a
    /// Connect grant, is being disconnected (`revoking`), or the lease was lost.
    async fn apply_grant(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        update: &GrantUpdate,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Connection>>;
    /// Records what Stripe said about one of the connection's permissions
    /// (`rak_customer_write`): granted or missing. A no-op for another
    /// tenant's connection.
    async fn record_permission(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        observation: &PermissionObservation,
    ) -> StoreResult<()>;
    /// Everything recorded about the connection's permissions.
    async fn connection_permissions(
        &self,
        tenant: TenantId,
        id: ConnectionId,
    ) -> StoreResult<Vec<PermissionObservation>>;
    /// Marks a Connect connection `revoking` with why, and enqueues its
    /// deauthorization job, in one transaction. A refresh in flight loses its
    /// lease: no token is stored for a grant being disconnected.
    async fn mark_connection_revoking(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        error: &LastError,
        job: &NewJob,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Connection>>;
}

/// Stripe Connect: the tenants' platforms, pending OAuth flows and used connect sessions.
#[async_trait]
pub trait ConnectStore: Send + Sync {
    /// Creates or replaces the tenant's platform in `platform.livemode`
    /// (`created_at` of an existing one is kept). Changing the client id while
    /// Connect connections of that mode exist is a `Conflict` on `client_id`.
    async fn put_stripe_platform(
        &self,
        platform: &StripePlatform,
        data_key_id: DataKeyId,
        secret: &SealedSecret,
        audit: &AuditEvent,
    ) -> StoreResult<StripePlatform>;
    /// The tenant's platforms (test first).
    async fn list_stripe_platforms(&self, tenant: TenantId) -> StoreResult<Vec<StripePlatform>>;
    /// One platform with its sealed key.
    async fn get_stripe_platform_secret(
        &self,
        tenant: TenantId,
        livemode: bool,
    ) -> StoreResult<Option<StripePlatformSecret>>;
    /// Deletes the platform of one mode (or both with `None`). Refused while
    /// Connect connections of that mode exist, unless `force`, which deletes
    /// them too, in the same transaction.
    async fn delete_stripe_platforms(
        &self,
        tenant: TenantId,
        livemode: Option<bool>,
        force: bool,
        audit: &AuditEvent,
    ) -> StoreResult<PlatformDeletion>;
    /// Stores a pending OAuth flow.
    async fn create_oauth_state(&self, state: &OAuthState) -> StoreResult<()>;
    /// Consumes a pending flow by the hash of its state: it is deleted whatever
    /// happens next (single use). `None` if unknown, used or expired at `now`.
    /// The one lookup by a secret rather than a tenant: the state is the
    /// public callback's only credential.
    async fn take_oauth_state(
        &self,
        state_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<OAuthState>>;
    /// Whether a connect session of the tenant has already created its connection.
    async fn connect_session_used(&self, tenant: TenantId, session_id: Uuid) -> StoreResult<bool>;
    /// Deletes expired OAuth states and session-use records; returns how many.
    async fn system_purge_expired_connect_records(&self, now: Timestamp) -> StoreResult<u64>;
}

/// Durable background work (see [`crate::job`]). Jobs belong to the system:
/// no tenant's request reaches them, so these methods take no tenant id and
/// act across tenants (a job's own `tenant_id` scopes the work it does).
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Enqueues a job on its own. False when a job of the same kind and
    /// subject is already queued or running (nothing is written then).
    async fn enqueue_job(&self, job: &NewJob) -> StoreResult<bool>;
    /// Leases up to `claim.limit` jobs, across all tenants, that are queued and
    /// due, or running under an expired lease with attempts left (their worker
    /// died); each claim counts an attempt. Jobs whose lease expired on their
    /// last attempt become dead. Replicas claiming at once get disjoint jobs.
    async fn system_claim_jobs(&self, claim: &ClaimRequest) -> StoreResult<Vec<ClaimedJob>>;
    /// Ends the current attempt with `outcome`, only if `lease_token` is the
    /// job's current lease (a worker whose lease expired and was taken over
    /// changes nothing). True if applied.
    async fn finish_job(
        &self,
        id: JobId,
        lease_token: Uuid,
        outcome: &JobOutcome,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Gives back a claimed job that was never started (its worker is
    /// stopping): queued again at once, the claim's attempt not counted. Only
    /// with the current lease token. True if applied.
    async fn release_job(&self, id: JobId, lease_token: Uuid, now: Timestamp) -> StoreResult<bool>;
    /// The jobs of `kind` about `subject`, oldest first (operators and tests).
    async fn system_jobs_for_subject(&self, kind: &str, subject: Uuid) -> StoreResult<Vec<Job>>;
}

/// Filters for the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this action (`connection.rotated`).
    pub action: Option<String>,
    /// Only events about this record id.
    pub target_id: Option<String>,
}

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an event on its own (for events that change nothing else).
    async fn insert_audit_event(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Appends many events in one transaction: all of them or none. An event
    /// whose id is already stored is skipped, so a batch retried after a lost
    /// commit acknowledgement stores each event once. An empty slice is a no-op.
    async fn insert_audit_events(&self, events: &[AuditEvent]) -> StoreResult<()>;
    /// The tenant's events, newest first; with `None`, every event (the platform admin's view).
    async fn list_audit_events(
        &self,
        tenant: Option<TenantId>,
        filter: &AuditFilter,
        page: &PageRequest<AuditEventId>,
    ) -> StoreResult<Page<AuditEvent>>;
}

/// Webhook endpoints: where Stripe posts a tenant's events.
#[async_trait]
pub trait WebhookEndpointStore: Send + Sync {
    /// Stores a new endpoint with its sealed signing secret.
    async fn create_webhook_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
        data_key_id: DataKeyId,
        secret: &SealedSecret,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// One endpoint of the tenant.
    async fn get_webhook_endpoint(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> StoreResult<Option<WebhookEndpoint>>;
    /// The tenant's endpoints (of one connection, if given), newest first.
    async fn list_webhook_endpoints(
        &self,
        tenant: TenantId,
        connection: Option<ConnectionId>,
        page: &PageRequest<WebhookEndpointId>,
    ) -> StoreResult<Page<WebhookEndpoint>>;
    /// Replaces the event list and description (`updated_at` set to the given record's).
    async fn update_webhook_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
        audit: &AuditEvent,
    ) -> StoreResult<Option<WebhookEndpoint>>;
    /// Replaces the signing secret, keeping (or dropping) the current one as
    /// the previous.
    async fn roll_webhook_endpoint_secret(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
        roll: &SecretRoll,
        audit: &AuditEvent,
    ) -> StoreResult<Option<WebhookEndpoint>>;
    /// Deletes an endpoint (its events stay, detached). False if absent.
    async fn delete_webhook_endpoint(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// An endpoint with its secrets, by id alone: the public route's lookup,
    /// before the signature (its only credential) is checked. A previous
    /// secret is returned only while unexpired at `now`.
    async fn system_webhook_endpoint_secrets(
        &self,
        id: WebhookEndpointId,
        now: Timestamp,
    ) -> StoreResult<Option<EndpointSecrets>>;
}

/// Events, their deliveries and the attempt log.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores an event and its deliveries (with their jobs) in one
    /// transaction. A Stripe event the endpoint already stored writes nothing.
    /// Deliveries to subscriptions deleted or disabled meanwhile are skipped.
    async fn insert_event(
        &self,
        event: &Event,
        deliveries: &[NewDelivery],
    ) -> StoreResult<EventInsert>;
    /// One event of the tenant.
    async fn get_event(&self, tenant: TenantId, id: EventId) -> StoreResult<Option<Event>>;
    /// The tenant's events, newest first.
    async fn list_events(
        &self,
        tenant: TenantId,
        filter: &EventFilter,
        page: &PageRequest<EventId>,
    ) -> StoreResult<Page<Event>>;
    /// Deletes up to `limit` events received before `before` (their
    /// deliveries with them), across tenants; returns how many.
    async fn system_purge_events(&self, before: Timestamp, limit: u32) -> StoreResult<u64>;
    /// Queues new deliveries of a stored event (a redelivery). Skips
    /// subscriptions gone or disabled. Returns the deliveries created.
    async fn create_deliveries(
        &self,
        tenant: TenantId,
        event: EventId,
        deliveries: &[NewDelivery],
    ) -> StoreResult<Vec<Delivery>>;
    /// An event's deliveries with their attempts, oldest first.
    async fn list_deliveries(
        &self,
        tenant: TenantId,
        event: EventId,
    ) -> StoreResult<Vec<(Delivery, Vec<DeliveryAttempt>)>>;
    /// What an attempt needs: the delivery, its event, its subscription with
    /// secrets (a previous secret only while unexpired at `now`).
    async fn delivery_work(
        &self,
        tenant: TenantId,
        id: DeliveryId,
        now: Timestamp,
    ) -> StoreResult<Option<DeliveryWork>>;
    /// Records an attempt (log row, delivery status, subscription health)
    /// and ends the job's attempt with `outcome`, in one transaction, only
    /// while `lease_token` is the job's lease. False (nothing written) if the
    /// lease was lost.
    async fn record_delivery_attempt(
        &self,
        record: &AttemptRecord,
        job: JobId,
        lease_token: Uuid,
        outcome: &JobOutcome,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let write = AttemptWrite {
            record: record.clone(),
            job,
            lease_token,
            outcome: outcome.clone(),
        };
        Ok(self
            .record_delivery_attempts(std::slice::from_ref(&write), now)
            .await?
            .first()
            .copied()
            .unwrap_or(false))
    }
    /// Records many attempts in one transaction (group commit): each as
    /// [`Self::record_delivery_attempt`] does, skipping those whose lease
    /// was lost. One flag per write, in order.
    async fn record_delivery_attempts(
        &self,
        writes: &[AttemptWrite],
        now: Timestamp,
    ) -> StoreResult<Vec<bool>>;
}

/// Event subscriptions: where the tenant wants events delivered.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Stores a new subscription with its sealed secret.
    async fn create_subscription(
        &self,
        subscription: &Subscription,
        data_key_id: DataKeyId,
        secret: &SealedSecret,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// One subscription of the tenant.
    async fn get_subscription(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
    ) -> StoreResult<Option<Subscription>>;
    /// The tenant's subscriptions, newest first.
    async fn list_subscriptions(
        &self,
        tenant: TenantId,
        page: &PageRequest<SubscriptionId>,
    ) -> StoreResult<Page<Subscription>>;
    /// Every enabled subscription of the tenant (to route an event).
    async fn enabled_subscriptions(&self, tenant: TenantId) -> StoreResult<Vec<Subscription>>;
    /// Replaces url, events, description, status, reason and failure run.
    async fn update_subscription(
        &self,
        subscription: &Subscription,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Subscription>>;
    /// Replaces the secret, keeping (or dropping) the current one as the previous.
    async fn roll_subscription_secret(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
        roll: &SecretRoll,
        audit: &AuditEvent,
    ) -> StoreResult<Option<Subscription>>;
    /// Deletes a subscription and its deliveries. False if absent.
    async fn delete_subscription(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// The subscription with its sealed secrets (for tests and tools).
    async fn subscription_secrets(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
        now: Timestamp,
    ) -> StoreResult<Option<SubscriptionSecrets>>;
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Everything Patchbay stores.
#[async_trait]
pub trait Store:
    KeyringStore
    + TenantStore
    + ApiKeyStore
    + ConnectionStore
    + ConnectStore
    + AuditStore
    + JobStore
    + WebhookEndpointStore
    + EventStore
    + SubscriptionStore
    + std::fmt::Debug
{
    /// The database in use.
    fn backend(&self) -> Backend;
    /// Whether the database answers (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;
    /// Jobs by kind and status and webhook deliveries pending and failed,
    /// across tenants (for metrics).
    async fn system_work_counts(&self) -> StoreResult<WorkCounts>;
    /// The connection pools' sizes and idle connections (for metrics).
    fn pool_stats(&self) -> Vec<PoolStats>;
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// Closes the pool, waiting for connections to return.
    async fn close(&self);
    /// The database's own broadcast channel between replicas, where it has
    /// one (PostgreSQL's `LISTEN/NOTIFY`); `None` for an embedded database.
    fn change_feed(&self) -> Option<std::sync::Arc<dyn crate::change_feed::ChangeFeed>> {
        None
    }
}
