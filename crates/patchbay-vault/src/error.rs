//! Vault errors. None of them carries key material or plaintext.

/// What can go wrong sealing, opening or configuring keys.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The master key configuration cannot be used.
    #[error("invalid master key configuration: {0}")]
    Config(String),
    /// Data is sealed under a master key id the keyring does not have.
    #[error(
        "data is sealed under master key '{key_id}', which is not configured: add it to PATCHBAY_MASTER_KEYS \
         (after the primary key) until `patchbay keys rotate` has moved everything off it"
    )]
    UnknownMasterKey {
        /// The missing id.
        key_id: String,
    },
    /// A configured key has a known id but is not the key that sealed the data.
    #[error(
        "master key '{key_id}' does not open the data sealed under that id: the configured key material is wrong. \
         Restore the original value of '{key_id}' in PATCHBAY_MASTER_KEYS; nothing was changed"
    )]
    WrongMasterKey {
        /// The id whose key material is wrong.
        key_id: String,
    },
    /// The bytes are not a sealed value this version understands.
    #[error("sealed value is malformed ({0})")]
    Malformed(&'static str),
    /// Authentication failed: tampered, moved to another record, or wrong key.
    #[error(
        "sealed value failed authentication: it was altered, moved from another record, or the key is wrong"
    )]
    Unauthentic,
    /// A secret sealed by another data key than the one offered.
    #[error("secret was sealed by another data key")]
    WrongDataKey,
    /// The opened secret is not UTF-8 text.
    #[error("opened secret is not text")]
    NotText,
    /// Hashing failed (bad parameters or a malformed stored hash).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The operating system's random source failed.
    #[error("random source unavailable: {0}")]
    Random(String),
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| VaultError::Random(e.to_string()))?;
    Ok(out)
}
