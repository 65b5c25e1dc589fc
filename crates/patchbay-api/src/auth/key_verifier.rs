//! Verifies tenant API keys. argon2id runs only on a cache miss, in a blocking
//! thread, a few at a time; a verified key is then trusted for a short TTL by
//! comparing the SHA-256 of the presented token. Revoking a key or disabling a
//! tenant evicts it from this replica's cache at once; other replicas notice
//! within the TTL. Repeated wrong secrets for one key id lock that id for a
//! while (see [`super::failed_attempts`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use parking_lot::RwLock;
use patchbay_core::api_key::KeyState;
use patchbay_core::tenant::TenantStatus;
use patchbay_core::time::now;
use patchbay_core::{ApiKeyId, Store, StoreError, TenantId, Timestamp};
use patchbay_vault::ApiKeyHasher;
use patchbay_vault::api_token::{parse_tenant_token, token_digest};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::TenantPrincipal;
use super::failed_attempts::FailedAttempts;
use super::usage::UsageRecorder;
use crate::error::{ApiError, ErrorType};

/// Why a key was refused.
#[derive(Debug)]
pub enum AuthFailure {
    /// Not a key of ours, or the secret does not match.
    Invalid,
    /// Revoked.
    Revoked,
    /// Past its expiry.
    Expired,
    /// The tenant is disabled.
    TenantDisabled,
    /// Too many wrong secrets for this key id lately; retry after this long.
    Locked(Duration),
    /// The database failed.
    Store(StoreError),
    /// Hashing failed (a corrupt stored hash).
    Internal(String),
}

impl From<AuthFailure> for ApiError {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Invalid => ApiError::unauthenticated(
                "api_key_invalid",
                "The API key is not valid. Check that it was copied whole; keys are shown only once, at creation.",
            ),
            AuthFailure::Revoked => {
                ApiError::unauthenticated("api_key_revoked", "This API key was revoked.")
            }
            AuthFailure::Expired => {
                ApiError::unauthenticated("api_key_expired", "This API key has expired.")
            }
            AuthFailure::TenantDisabled => ApiError::forbidden(
                "tenant_disabled",
                "This tenant is disabled; its API keys are refused until the platform admin enables it.",
            ),
            AuthFailure::Locked(wait) => {
                let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorType::RateLimitError,
                    "api_key_locked",
                    format!(
                        "Too many requests with a wrong secret for this API key id; it is refused on this server for {seconds} more seconds. Check that the key was copied whole."
                    ),
                )
                .with_retry_after(seconds)
            }
            AuthFailure::Store(e) => e.into(),
            AuthFailure::Internal(detail) => ApiError::internal(&detail),
        }
    }
}

/// What the cache knows about a presented token.
enum Cached {
    /// Verified within the TTL: trust it.
    Fresh(TenantPrincipal),
    /// Verified before against `hash`; re-read the key's state.
    Stale { hash: String },
    /// Never verified (or another token with the same key id).
    Miss,
}

struct Entry {
    /// SHA-256 of the token that passed argon2id.
    digest: [u8; 32],
    /// The PHC hash it passed against.
    hash: String,
    principal: TenantPrincipal,
    expires_at: Option<Timestamp>,
    trusted_until: Instant,
}

/// See the module documentation.
pub struct KeyVerifier {
    store: Arc<dyn Store>,
    hasher: ApiKeyHasher,
    ttl: Duration,
    cache: RwLock<HashMap<ApiKeyId, Entry>>,
    hashing: Semaphore,
    failures: FailedAttempts,
    usage: UsageRecorder,
}

impl std::fmt::Debug for KeyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVerifier")
            .field("ttl", &self.ttl)
            .field("cached", &self.cache.read().len())
            .finish_non_exhaustive()
    }
}

/// Entries beyond this are dropped wholesale; a cold cache costs one argon2 per key.
const MAX_ENTRIES: usize = 100_000;

impl KeyVerifier {
    /// A verifier trusting verified keys for `ttl` (zero: never cache).
    pub fn new(store: Arc<dyn Store>, hasher: ApiKeyHasher, ttl: Duration) -> Self {
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            usage: UsageRecorder::new(store.clone()),
            store,
            hasher,
            ttl,
            cache: RwLock::new(HashMap::new()),
            hashing: Semaphore::new(parallel.max(2)),
            failures: FailedAttempts::default(),
        }
    }

    /// Last-use bookkeeping, flushed in the background.
    pub fn usage(&self) -> &UsageRecorder {
        &self.usage
    }

    /// Verifies a presented token.
    pub async fn verify(&self, token: &str) -> Result<TenantPrincipal, AuthFailure> {
        let (key_id, secret) = parse_tenant_token(token).ok_or(AuthFailure::Invalid)?;
        let digest = token_digest(token);
        let at = now();
        let proven_hash = match self.lookup(key_id, &digest, at) {
            Cached::Fresh(principal) => {
                self.usage.record(principal.tenant_id, key_id, at);
                return Ok(principal);
            }
            Cached::Stale { hash } => Some(hash),
            Cached::Miss => {
                self.failures
                    .check(key_id, Instant::now())
                    .map_err(AuthFailure::Locked)?;
                None
            }
        };
        let result = self
            .verify_against_store(key_id, secret, digest, proven_hash, at)
            .await;
        match &result {
            Ok(principal) => self.usage.record(principal.tenant_id, key_id, at),
            // The token matched but the key may no longer be used. A token that
            // does not match leaves the rightful owner's entry alone.
            Err(AuthFailure::Revoked | AuthFailure::Expired | AuthFailure::TenantDisabled) => {
                self.invalidate_key(key_id);
            }
            Err(_) => {}
        }
        result
    }

    /// Reads the key and checks it. argon2id runs unless this very token already
    /// passed it against this very hash (a stale cache entry with the same
    /// digest): a refresh then costs one read, not a hash, so the whole herd of
    /// requests arriving when an entry expires does not queue behind argon2.
    async fn verify_against_store(
        &self,
        key_id: ApiKeyId,
        secret: &str,
        digest: [u8; 32],
        proven_hash: Option<String>,
        at: Timestamp,
    ) -> Result<TenantPrincipal, AuthFailure> {
        let credential = self
            .store
            .find_api_key_credential(key_id)
            .await
            .map_err(AuthFailure::Store)?
            .ok_or(AuthFailure::Invalid)?;
        // The secret is checked before anything about the key is revealed.
        if proven_hash.as_deref() != Some(credential.hash.as_str()) {
            let permit = self
                .hashing
                .acquire()
                .await
                .map_err(|e| AuthFailure::Internal(e.to_string()))?;
            let hasher = self.hasher.clone();
            let secret = SecretString::from(secret);
            let hash = credential.hash.clone();
            let matches =
                tokio::task::spawn_blocking(move || hasher.verify(secret.expose_secret(), &hash))
                    .await
                    .map_err(|e| AuthFailure::Internal(e.to_string()))?
                    .map_err(|e| AuthFailure::Internal(e.to_string()))?;
            drop(permit);
            if !matches {
                if self.failures.record(key_id, Instant::now()) {
                    tracing::warn!(
                        %key_id,
                        "API key id locked for a minute after repeated wrong secrets"
                    );
                }
                return Err(AuthFailure::Invalid);
            }
            self.failures.clear(key_id);
        }
        match credential.key.state(at) {
            KeyState::Revoked => return Err(AuthFailure::Revoked),
            KeyState::Expired => return Err(AuthFailure::Expired),
            KeyState::Active => {}
        }
        if credential.tenant_status != TenantStatus::Active {
            return Err(AuthFailure::TenantDisabled);
        }
        let principal = TenantPrincipal {
            tenant_id: credential.key.tenant_id,
            key_id,
            scopes: credential.key.scopes.clone(),
        };
        if !self.ttl.is_zero() {
            let mut cache = self.cache.write();
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
            cache.insert(
                key_id,
                Entry {
                    digest,
                    hash: credential.hash,
                    principal: principal.clone(),
                    expires_at: credential.key.expires_at,
                    trusted_until: Instant::now() + self.ttl,
                },
            );
        }
        Ok(principal)
    }

    fn lookup(&self, key_id: ApiKeyId, digest: &[u8; 32], at: Timestamp) -> Cached {
        let cache = self.cache.read();
        let Some(entry) = cache.get(&key_id) else {
            return Cached::Miss;
        };
        if !bool::from(entry.digest.ct_eq(digest)) {
            return Cached::Miss;
        }
        if entry.trusted_until > Instant::now() && entry.expires_at.is_none_or(|e| e > at) {
            Cached::Fresh(entry.principal.clone())
        } else {
            Cached::Stale {
                hash: entry.hash.clone(),
            }
        }
    }

    /// Forgets one key (after revocation).
    pub fn invalidate_key(&self, key_id: ApiKeyId) {
        self.cache.write().remove(&key_id);
    }

    /// Forgets every key of a tenant (disabled or deleted).
    pub fn invalidate_tenant(&self, tenant_id: TenantId) {
        self.cache
            .write()
            .retain(|_, e| e.principal.tenant_id != tenant_id);
    }
}
