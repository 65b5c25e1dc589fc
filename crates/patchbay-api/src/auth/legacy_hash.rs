//! Keys stored before the SHA-256 digest carry an argon2id hash. The first
//! request with the right secret verifies it (in a blocking thread, at most one
//! per core at a time, so a flood of wrong secrets for such a key id cannot
//! pile up 19 MiB argon2 buffers) and replaces it with the digest; from then on
//! the key never reaches argon2id again. A key still holding an argon2id hash
//! is one that has not been used since the upgrade.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use patchbay_core::Store;
use patchbay_core::api_key::ApiKeyCredential;
use patchbay_vault::key_hash::{secret_digest, verify_legacy_argon2id};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use super::AuthFailure;

/// Verifies legacy argon2id hashes and upgrades them.
#[derive(Debug)]
pub(super) struct LegacyHashes {
    permits: Arc<Semaphore>,
    runs: AtomicU64,
}

impl LegacyHashes {
    pub(super) fn new() -> Self {
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            permits: Arc::new(Semaphore::new(parallel)),
            runs: AtomicU64::new(0),
        }
    }

    /// argon2id verifications started so far.
    pub(super) fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Whether `secret` matches the credential's argon2id hash; when it does,
    /// the stored hash becomes the digest (if nobody changed it meanwhile).
    pub(super) async fn verify_and_upgrade(
        &self,
        store: &dyn Store,
        credential: &ApiKeyCredential,
        secret: &str,
    ) -> Result<bool, AuthFailure> {
        let digest = secret_digest(secret);
        // The permit moves into the blocking task: a caller that gives up (a
        // dropped connection, a timeout) does not free its place while the
        // argon2id run it started goes on.
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| AuthFailure::Internal(e.to_string()))?;
        self.runs.fetch_add(1, Ordering::Relaxed);
        let secret = SecretString::from(secret);
        let phc = credential.hash.clone();
        let matches = tokio::task::spawn_blocking(move || {
            let matches = verify_legacy_argon2id(secret.expose_secret(), &phc);
            drop(permit);
            matches
        })
        .await
        .map_err(|e| AuthFailure::Internal(e.to_string()))?
        .map_err(|e| AuthFailure::Internal(e.to_string()))?;
        if matches {
            let key = &credential.key;
            match store
                .replace_api_key_hash(key.tenant_id, key.id, &credential.hash, &digest)
                .await
            {
                Ok(true) => {
                    tracing::info!(key_id = %key.id, "API key hash upgraded from argon2id to sha256");
                }
                // Another replica upgraded it first, or the key is gone.
                Ok(false) => {}
                Err(error) => tracing::warn!(
                    key_id = %key.id,
                    %error,
                    "could not store the upgraded API key hash; a later request will try again"
                ),
            }
        }
        Ok(matches)
    }
}
