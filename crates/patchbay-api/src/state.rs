//! What every handler shares: the store, the keyring, the Stripe client, the
//! API-key verifier and the settings.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use patchbay_core::change_feed::ChangeFeed;
use patchbay_core::store::AuditStore;
use patchbay_core::{ConnectionId, Store, TenantId};
use patchbay_stripe::StripeClient;
use patchbay_vault::api_token::token_digest;
use patchbay_vault::{Keyring, SessionSigner};
use secrecy::{ExposeSecret, SecretString};

use crate::auth::KeyVerifier;
use crate::clock::{Clock, SystemClock};
use crate::metrics::HttpMetrics;
use crate::services::audit_log::{AuditLog, AuditLogSettings};
use crate::services::credential_cache::CredentialCache;
use crate::services::invalidation::{Invalidation, InvalidationBus, channel_name};
use crate::services::jobs::{JobSettings, JobWakeup};
use crate::services::permission_memo::PermissionMemo;
use crate::services::webhook_sender::{OutboundPolicy, WebhookSender};
use crate::tenant_limits::{TenantLimitSettings, TenantLimiter};

/// Webhooks in (Stripe's signed events) and out (deliveries to tenants).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// How far a Stripe signature's timestamp may be from now.
    pub tolerance: Duration,
    /// Largest event body accepted from Stripe.
    pub max_body_bytes: usize,
    /// How long stored events are kept.
    pub retention: Duration,
    /// First retry delay of a failed delivery; doubles with each attempt.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How long a delivery is retried before it fails for good.
    pub retry_window: Duration,
    /// How long a subscription may fail every delivery before it is disabled.
    pub disable_after: Duration,
    /// Longest a delivery request may take.
    pub timeout: Duration,
    /// Deliveries made at once by this replica.
    pub concurrency: usize,
    /// Which receiver URLs and addresses are allowed.
    pub policy: OutboundPolicy,
    /// The public base URL endpoints' `url` uses (`https://patchbay.example.com`);
    /// the request's own host when unset.
    pub public_url: Option<String>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            tolerance: Duration::from_secs(300),
            max_body_bytes: 1024 * 1024,
            retention: Duration::from_secs(30 * 24 * 3600),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(6 * 3600),
            retry_window: Duration::from_secs(72 * 3600),
            disable_after: Duration::from_secs(72 * 3600),
            timeout: Duration::from_secs(10),
            concurrency: 32,
            policy: OutboundPolicy {
                allow_insecure_loopback: false,
                allowed_networks: Vec::new(),
            },
            public_url: None,
        }
    }
}

/// API settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Longest a request may run.
    pub request_timeout: Duration,
    /// How long a verified API key is trusted without looking at the database
    /// again (zero disables the cache: a database read on every request).
    pub key_cache_ttl: Duration,
    /// How long an opened connection (record and credential) is reused by
    /// the proxy and actions on this replica (zero: opened on every call).
    pub connection_cache_ttl: Duration,
    /// How often each connection is re-validated in the background.
    pub revalidate_every: Duration,
    /// The job worker.
    pub jobs: JobSettings,
    /// Most connections one tenant may have.
    pub max_connections_per_tenant: u64,
    /// Most unrevoked API keys one tenant may have.
    pub max_api_keys_per_tenant: u64,
    /// How long an OAuth `state` from `auth-url` is accepted.
    pub oauth_state_ttl: Duration,
    /// Default lifetime of a connect-session token.
    pub session_ttl: Duration,
    /// Largest request body the raw proxy forwards (file uploads included).
    pub proxy_max_body_bytes: u64,
    /// Caller headers the proxy forwards besides Stripe's own
    /// (`Stripe-Account`, `Stripe-Context`, `Stripe-Version`, `Idempotency-Key`), lower case.
    pub proxy_forward_headers: Vec<String>,
    /// Signs and verifies connect-session tokens (a random key unless set).
    pub session_signer: Arc<SessionSigner>,
    /// The time API-key verification reads (key expiry, cache lifetimes);
    /// tests move it forward instead of sleeping.
    pub clock: Arc<dyn Clock>,
    /// The batched audit log of high-volume calls.
    pub audit_log: AuditLogSettings,
    /// Webhooks in and out.
    pub webhooks: WebhookSettings,
    /// The channel between replicas that carries cache invalidations
    /// (PostgreSQL or Redis); `None`: this process alone.
    pub change_feed: Option<Arc<dyn ChangeFeed>>,
    /// Prefix of the invalidation channel's name, so deployments (or tests)
    /// sharing one PostgreSQL or Redis do not hear each other.
    pub channel_prefix: String,
    /// Per-tenant request rate and concurrent Stripe calls (the defaults;
    /// the admin may set a tenant's own).
    pub tenant_limits: TenantLimitSettings,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(120),
            key_cache_ttl: Duration::from_secs(10),
            connection_cache_ttl: Duration::from_secs(2),
            revalidate_every: Duration::from_secs(24 * 3600),
            jobs: JobSettings::default(),
            max_connections_per_tenant: 1000,
            max_api_keys_per_tenant: 100,
            oauth_state_ttl: Duration::from_secs(600),
            session_ttl: Duration::from_secs(1800),
            proxy_max_body_bytes: 32 * 1024 * 1024,
            proxy_forward_headers: Vec::new(),
            session_signer: Arc::new(random_session_signer()),
            clock: Arc::new(SystemClock),
            audit_log: AuditLogSettings::default(),
            webhooks: WebhookSettings::default(),
            change_feed: None,
            channel_prefix: "patchbay".into(),
            tenant_limits: TenantLimitSettings::default(),
        }
    }
}

/// A signer with a fresh random key: tokens it signs die with the process.
pub fn random_session_signer() -> SessionSigner {
    use base64::Engine;
    let mut bytes = [0u8; 48];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let key = SecretString::from(base64::engine::general_purpose::STANDARD.encode(bytes));
    SessionSigner::new(&key).expect("48 random bytes are a strong key")
}

/// Most opened connections one replica keeps at once.
const CREDENTIAL_CACHE_CAPACITY: usize = 20_000;

/// Shared state; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// The shared parts.
pub struct Inner {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Master keys.
    pub keyring: Arc<Keyring>,
    /// Stripe.
    pub stripe: StripeClient,
    /// Tenant API-key verification with its cache.
    pub keys: Arc<KeyVerifier>,
    /// Tells every replica's caches what changed.
    pub invalidation: Arc<InvalidationBus>,
    /// Per-tenant rate limits and Stripe concurrency.
    pub tenant_limiter: Arc<TenantLimiter>,
    /// SHA-256 of the platform admin token, if one is configured.
    admin_digest: Option<[u8; 32]>,
    /// Settings.
    pub config: ApiConfig,
    /// Renders `/metrics`, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// HTTP metric handles.
    pub http_metrics: HttpMetrics,
    /// Wakes the job worker when work is enqueued for now.
    pub job_wakeup: JobWakeup,
    /// Wakes the delivery worker when deliveries are queued.
    pub delivery_wakeup: JobWakeup,
    /// Sends deliveries to tenants' receivers (SSRF-safe).
    pub webhook_sender: WebhookSender,
    /// Records delivery attempts in batches (group commit).
    pub delivery_recorder: crate::services::delivery_recorder::DeliveryRecorder,
    /// Connections recently opened by the proxy and actions.
    pub credential_cache: Arc<CredentialCache>,
    /// Restricted-key permissions recently recorded by actions.
    pub permission_memo: PermissionMemo,
    /// Webhook endpoints recently read by the intake.
    pub endpoint_cache: crate::services::webhook_intake::EndpointCache,
    /// Audit records of high-volume calls, written in batches off the
    /// request path; closed (flushed) on graceful shutdown.
    pub audit_log: AuditLog,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("keyring", &self.keyring)
            .field("keys", &self.keys)
            .field("admin_token", &self.admin_digest.map(|_| "[set]"))
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Assembles the state and starts the audit log's writer and the
    /// invalidation listener (so it must run inside a tokio runtime).
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        stripe: StripeClient,
        admin_token: Option<&SecretString>,
        config: ApiConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        let credential_cache = Arc::new(CredentialCache::new(
            config.connection_cache_ttl,
            CREDENTIAL_CACHE_CAPACITY,
        ));
        let keys = Arc::new(KeyVerifier::new(
            store.clone(),
            config.clock.clone(),
            config.key_cache_ttl,
        ));
        let invalidation = InvalidationBus::new(
            config.change_feed.clone(),
            channel_name(&config.channel_prefix),
        );
        invalidation.register(keys.clone());
        invalidation.register(credential_cache.clone());
        invalidation.start();
        // A tenant's limits are trusted as long as a verified key.
        let tenant_limiter = Arc::new(TenantLimiter::new(
            store.clone(),
            config.clock.clone(),
            config.tenant_limits.clone(),
            config.key_cache_ttl,
        ));
        invalidation.register(tenant_limiter.clone());
        let audit_store: Arc<dyn AuditStore> = store.clone();
        let audit_log = AuditLog::spawn(audit_store, config.audit_log.clone());
        let delivery_recorder =
            crate::services::delivery_recorder::DeliveryRecorder::spawn(store.clone());
        let webhook_sender =
            WebhookSender::new(config.webhooks.policy.clone(), config.webhooks.timeout);
        Self(Arc::new(Inner {
            admin_digest: admin_token.map(|t| token_digest(t.expose_secret())),
            keys,
            invalidation,
            tenant_limiter,
            store,
            keyring,
            stripe,
            config,
            metrics,
            http_metrics: HttpMetrics::default(),
            job_wakeup: JobWakeup::default(),
            delivery_wakeup: JobWakeup::default(),
            webhook_sender,
            endpoint_cache: Default::default(),
            credential_cache,
            permission_memo: PermissionMemo::default(),
            delivery_recorder,
            audit_log,
        }))
    }

    /// A connection changed (credential, status, record, deletion): calls on
    /// every replica stop using what was opened before (on this one at once).
    pub async fn connection_changed(&self, tenant: TenantId, id: ConnectionId) {
        self.permission_memo.forget(id);
        self.invalidation
            .publish(Invalidation::Connection {
                tenant_id: tenant,
                connection_id: id,
            })
            .await;
    }

    /// Something every connection of a tenant depends on changed (its
    /// Connect platform, the tenant's status, the tenant itself): every
    /// replica forgets the tenant's opened connections and verified keys.
    pub async fn tenant_changed(&self, tenant: TenantId) {
        self.invalidation
            .publish(Invalidation::Tenant { tenant_id: tenant })
            .await;
    }

    /// Whether `token` is the admin token (constant time).
    pub fn is_admin_token(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.admin_digest
            .is_some_and(|d| bool::from(d.ct_eq(&token_digest(token))))
    }
}
