//! Verifies tenant API keys. The key id in the token finds the record; the
//! SHA-256 of the secret is compared in constant time with the stored digest:
//! microseconds, so a wrong secret costs no more than a right one and nothing
//! needs throttling. A verified key is then trusted for a short TTL by comparing
//! the SHA-256 of the whole presented token, which saves the database read.
//! Revoking a key or disabling a tenant evicts it from this replica's cache at
//! once, and from the other replicas' through the invalidation bus
//! ([`crate::services::invalidation`]), the TTL bounding it when the bus
//! cannot deliver. Keys stored before the digest
//! are checked with argon2id once and upgraded (see [`super::legacy_hash`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use patchbay_core::api_key::KeyState;
use patchbay_core::tenant::TenantStatus;
use patchbay_core::{ApiKeyId, Store, StoreError, TenantId, Timestamp};
use patchbay_vault::api_token::{parse_tenant_token, token_digest};
use patchbay_vault::key_hash::StoredKeyHash;
use subtle::ConstantTimeEq;

use super::TenantPrincipal;
use super::legacy_hash::LegacyHashes;
use super::usage::UsageRecorder;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::services::invalidation::{Invalidation, InvalidationHandler};

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
    /// The database failed.
    Store(StoreError),
    /// A stored hash in no known format, or a failed legacy verification.
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
            AuthFailure::Store(e) => e.into(),
            AuthFailure::Internal(detail) => ApiError::internal(&detail),
        }
    }
}

struct Entry {
    /// SHA-256 of the token that was verified.
    digest: [u8; 32],
    principal: TenantPrincipal,
    expires_at: Option<Timestamp>,
    trusted_until: Instant,
}

/// See the module documentation.
pub struct KeyVerifier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    cache: RwLock<HashMap<ApiKeyId, Entry>>,
    legacy: LegacyHashes,
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

/// Entries beyond this are dropped wholesale; a cold cache costs one database read per key.
const MAX_ENTRIES: usize = 100_000;

impl KeyVerifier {
    /// A verifier trusting verified keys for `ttl` (zero: never cache), reading `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            usage: UsageRecorder::new(store.clone()),
            store,
            clock,
            ttl,
            cache: RwLock::new(HashMap::new()),
            legacy: LegacyHashes::new(),
        }
    }

    /// Last-use bookkeeping, flushed in the background.
    pub fn usage(&self) -> &UsageRecorder {
        &self.usage
    }

    /// How many argon2id verifications this verifier has started: only keys
    /// still stored with a legacy argon2id hash ever cause one.
    pub fn legacy_verifications(&self) -> u64 {
        self.legacy.runs()
    }

    /// Verifies a presented token.
    pub async fn verify(&self, token: &str) -> Result<TenantPrincipal, AuthFailure> {
        let (key_id, secret) = parse_tenant_token(token).ok_or(AuthFailure::Invalid)?;
        let digest = token_digest(token);
        let at = self.clock.now();
        if let Some(principal) = self.cached(key_id, &digest, at) {
            self.usage.record(principal.tenant_id, key_id, at);
            return Ok(principal);
        }
        let result = self.verify_against_store(key_id, secret, digest, at).await;
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

    /// Reads the key and checks the secret, then the key's state.
    async fn verify_against_store(
        &self,
        key_id: ApiKeyId,
        secret: &str,
        digest: [u8; 32],
        at: Timestamp,
    ) -> Result<TenantPrincipal, AuthFailure> {
        let credential = self
            .store
            .find_api_key_credential(key_id)
            .await
            .map_err(AuthFailure::Store)?
            .ok_or(AuthFailure::Invalid)?;
        // The secret is checked before anything about the key is revealed.
        let matches = match StoredKeyHash::parse(&credential.hash) {
            Ok(stored @ StoredKeyHash::Sha256(_)) => stored.matches_digest(secret),
            Ok(StoredKeyHash::LegacyArgon2id(_)) => {
                self.legacy
                    .verify_and_upgrade(self.store.as_ref(), &credential, secret)
                    .await?
            }
            Err(e) => return Err(AuthFailure::Internal(format!("API key {key_id}: {e}"))),
        };
        if !matches {
            return Err(AuthFailure::Invalid);
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
            connection_id: credential.key.connection_id,
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
                    principal: principal.clone(),
                    expires_at: credential.key.expires_at,
                    trusted_until: self.clock.instant() + self.ttl,
                },
            );
        }
        Ok(principal)
    }

    /// The principal of a token verified within the TTL, if this is one.
    fn cached(
        &self,
        key_id: ApiKeyId,
        digest: &[u8; 32],
        at: Timestamp,
    ) -> Option<TenantPrincipal> {
        let cache = self.cache.read();
        let entry = cache.get(&key_id)?;
        let fresh = bool::from(entry.digest.ct_eq(digest))
            && entry.trusted_until > self.clock.instant()
            && entry.expires_at.is_none_or(|e| e > at);
        fresh.then(|| entry.principal.clone())
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

    /// How many verified keys are cached.
    pub fn cached_keys(&self) -> usize {
        self.cache.read().len()
    }
}

impl InvalidationHandler for KeyVerifier {
    fn invalidate(&self, what: &Invalidation) {
        match *what {
            Invalidation::ApiKey { key_id, .. } => self.invalidate_key(key_id),
            Invalidation::Tenant { tenant_id } => self.invalidate_tenant(tenant_id),
            Invalidation::Connection { .. } => {}
        }
    }

    fn invalidate_all(&self) {
        self.cache.write().clear();
    }
}
