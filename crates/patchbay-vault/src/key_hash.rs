//! How a tenant API key's secret is stored and checked.
//!
//! Today: `sha256$<64 hex digits>`, the SHA-256 of the token's 256-bit secret
//! part, compared in constant time. A password hash (argon2id) protects secrets
//! that can be guessed; a 256-bit random secret cannot be, so a slow hash would
//! only cost CPU on every uncached request (README, "Security notes").
//!
//! Before: argon2id PHC strings (`$argon2id$…`). They are still accepted: the
//! verifier checks one once, in a blocking thread, and replaces it with the
//! digest. Nothing else in Patchbay uses argon2id.

use argon2::password_hash::PasswordVerifier;
use argon2::{Argon2, PasswordHash};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::VaultError;

/// Prefix of the stored digest format.
pub const SHA256_PREFIX: &str = "sha256$";

/// A stored key hash, by format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredKeyHash<'a> {
    /// `sha256$<hex>`: check with [`StoredKeyHash::matches_digest`].
    Sha256([u8; 32]),
    /// An argon2id PHC string from before the digest: check with
    /// [`verify_legacy_argon2id`] off the async threads, then store [`secret_digest`].
    LegacyArgon2id(&'a str),
}

impl<'a> StoredKeyHash<'a> {
    /// Recognises the format of a stored hash.
    pub fn parse(stored: &'a str) -> Result<Self, VaultError> {
        if let Some(hex_digest) = stored.strip_prefix(SHA256_PREFIX) {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hex_digest, &mut digest)
                .map_err(|_| VaultError::Hash("malformed sha256 key digest".into()))?;
            return Ok(Self::Sha256(digest));
        }
        if stored.starts_with("$argon2id$") {
            return Ok(Self::LegacyArgon2id(stored));
        }
        Err(VaultError::Hash("unknown API key hash format".into()))
    }

    /// Whether `secret` has this digest, in constant time. False for a legacy hash.
    pub fn matches_digest(&self, secret: &str) -> bool {
        match self {
            Self::Sha256(expected) => bool::from(sha256(secret).ct_eq(expected)),
            Self::LegacyArgon2id(_) => false,
        }
    }
}

/// The stored form of a key's secret part: `sha256$<hex>`.
pub fn secret_digest(secret: &str) -> String {
    format!("{SHA256_PREFIX}{}", hex::encode(sha256(secret)))
}

fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `secret` matches a legacy argon2id PHC string, with the parameters
/// the string names. CPU-heavy (tens of milliseconds): call from a blocking thread.
pub fn verify_legacy_argon2id(secret: &str, phc: &str) -> Result<bool, VaultError> {
    let hash = PasswordHash::new(phc).map_err(|e| VaultError::Hash(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(secret.as_bytes(), &hash)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::PasswordHasher;
    use argon2::{Algorithm, Params, Version};

    use super::*;

    const SECRET: &str = "bW9ja19zZWNyZXRfb2ZfZm9ydHktdGhyZWVfY2hhcnM";

    #[test]
    fn digests_are_sha256_hex_and_match_only_their_secret() {
        let stored = secret_digest(SECRET);
        assert_eq!(stored.len(), SHA256_PREFIX.len() + 64);
        assert!(stored.starts_with("sha256$"));
        assert!(!stored.contains(SECRET));
        // The published SHA-256 of "abc".
        assert_eq!(
            secret_digest("abc"),
            "sha256$ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let parsed = StoredKeyHash::parse(&stored).unwrap();
        assert!(parsed.matches_digest(SECRET));
        assert!(!parsed.matches_digest(&SECRET[1..]));
        assert!(!parsed.matches_digest(""));
    }

    #[test]
    fn formats_are_recognised_and_junk_refused() {
        assert!(matches!(
            StoredKeyHash::parse("$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA"),
            Ok(StoredKeyHash::LegacyArgon2id(_))
        ));
        for junk in [
            "",
            "sha256$",
            "sha256$zz",
            "md5$00",
            "$argon2i$v=19",
            "plain",
        ] {
            assert!(StoredKeyHash::parse(junk).is_err(), "{junk:?}");
        }
        let short = format!("{SHA256_PREFIX}{}", "ab".repeat(31));
        assert!(StoredKeyHash::parse(&short).is_err());
    }

    #[test]
    fn legacy_argon2id_hashes_still_verify() {
        let argon = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let salt = argon2::password_hash::phc::Salt::new(b"sixteen byte salt").unwrap();
        let phc = argon
            .hash_password_with_salt(SECRET.as_bytes(), salt.as_ref())
            .unwrap()
            .to_string();
        let parsed = StoredKeyHash::parse(&phc).unwrap();
        assert_eq!(parsed, StoredKeyHash::LegacyArgon2id(&phc));
        assert!(!parsed.matches_digest(SECRET), "never by digest");
        assert!(verify_legacy_argon2id(SECRET, &phc).unwrap());
        assert!(!verify_legacy_argon2id("another secret", &phc).unwrap());
        assert!(verify_legacy_argon2id(SECRET, "not a phc").is_err());
    }
}
