//! The start-up check: refuse to run with a keyring that does not match the data.

use patchbay_core::store::KeyringStore;
use tracing::info;

use crate::{Keyring, VaultError};

/// Fails, naming the key id, when the database holds data wrapped by a key id the
/// keyring lacks, or when a configured key does not open its stored check value
/// (or a data key wrapped under its id). Stores check values for keys seen the
/// first time. Changes nothing else.
pub async fn verify_keyring_against_store(
    keyring: &Keyring,
    store: &dyn KeyringStore,
) -> Result<(), StartupError> {
    let checks = store.master_key_checks().await?;
    for check in &checks {
        if keyring.has_key(&check.key_id) {
            keyring.verify_check(check)?;
        }
    }
    for (key_id, count) in store.data_key_counts().await? {
        if count > 0 && !keyring.has_key(&key_id) {
            return Err(VaultError::UnknownMasterKey { key_id }.into());
        }
    }
    for key_id in keyring.key_ids() {
        if let Some(record) = store.sample_data_key(key_id).await? {
            keyring.open_data_key(&record).map_err(|e| match e {
                VaultError::Unauthentic => VaultError::WrongMasterKey {
                    key_id: key_id.to_owned(),
                },
                other => other,
            })?;
        }
        if !checks.iter().any(|c| c.key_id == key_id) {
            store
                .insert_master_key_check(&keyring.make_check(key_id)?)
                .await?;
            info!(key_id, "recorded a check value for a new master key");
        }
    }
    Ok(())
}

/// Why the keyring cannot be used with this database.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The keyring does not match the data.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] patchbay_core::StoreError),
}
