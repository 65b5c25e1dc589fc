//! The vault: every credential Patchbay stores is sealed here with AES-256-GCM
//! envelope encryption, and tenant API keys are digested here (SHA-256; argon2id
//! only to verify hashes stored before the digest, see [`key_hash`]).
//!
//! Layout: a [`Keyring`] of master keys (from configuration, never the database)
//! wraps one data key per tenant; a [`DataKey`] seals that tenant's secrets with
//! associated data naming tenant, record and field. Per-tenant data keys make
//! master-key rotation cheap (one re-wrap per tenant, see [`rotation`]) and tenant
//! deletion a crypto-shred (delete the data key and every copy of every secret of
//! that tenant, backups included, becomes noise).

pub mod api_token;
mod data_key;
mod error;
mod format;
pub mod key_hash;
mod keyring;
mod metrics;
pub mod rotation;
pub mod session_token;
pub mod standard_webhooks;
mod startup;

pub use api_token::ApiToken;
pub use data_key::{DataKey, SecretContext};
pub use error::VaultError;
pub use keyring::{Keyring, MasterKeyId, generate_master_key};
pub use session_token::{SessionClaims, SessionSigner, SessionTokenError};
pub use startup::{StartupError, verify_keyring_against_store};
