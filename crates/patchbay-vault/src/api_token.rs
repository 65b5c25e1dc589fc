//! Tenant API key tokens and the platform admin token.
//!
//! A tenant token reads `pbk_<26-character key id>_<43-character secret>`: the
//! public key id finds the record, the secret is checked against its stored
//! SHA-256 digest (see [`crate::key_hash`]). Tokens carry 256 bits of
//! randomness, so a stolen digest cannot be turned back into a working key.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use patchbay_core::ApiKeyId;
use patchbay_core::id::ENCODED_LEN;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::VaultError;
use crate::error::random_bytes;
use crate::key_hash::secret_digest;

/// Prefix of tenant API keys.
pub const TENANT_PREFIX: &str = "pbk_";
/// Prefix of generated admin tokens.
pub const ADMIN_PREFIX: &str = "pba_";
const SECRET_LEN: usize = 43;
const TOKEN_LEN: usize = TENANT_PREFIX.len() + ENCODED_LEN + 1 + SECRET_LEN;

/// A full token as shown once to its owner.
pub struct ApiToken(SecretString);

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken([REDACTED])")
    }
}

impl ApiToken {
    /// A fresh token for key `id`.
    pub fn generate(id: ApiKeyId) -> Result<Self, VaultError> {
        let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
        Ok(Self(SecretString::from(format!(
            "{TENANT_PREFIX}{}_{secret}",
            id.encoded()
        ))))
    }

    /// The token text, for the one response that shows it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Enough to recognise the token, not to use it: `pbk_…x9Qa` (its last four characters).
    pub fn hint(&self) -> String {
        format!("{TENANT_PREFIX}…{}", &self.expose()[TOKEN_LEN - 4..])
    }

    /// The part the stored digest covers.
    pub fn secret_part(&self) -> &str {
        &self.expose()[TOKEN_LEN - SECRET_LEN..]
    }

    /// What the store keeps for this token: `sha256$<hex>` of its secret part.
    pub fn stored_hash(&self) -> String {
        secret_digest(self.secret_part())
    }
}

/// Splits a presented tenant token into key id and secret part, if it has the shape.
pub fn parse_tenant_token(token: &str) -> Option<(ApiKeyId, &str)> {
    if token.len() != TOKEN_LEN || !token.is_ascii() {
        return None;
    }
    let rest = token.strip_prefix(TENANT_PREFIX)?;
    let (id, secret) = rest.split_at(ENCODED_LEN);
    let secret = secret.strip_prefix('_')?;
    let id = ApiKeyId::from_encoded(id).ok()?;
    secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        .then_some((id, secret))
}

/// A fresh admin token (`pba_…`) for the development default.
pub fn generate_admin_token() -> Result<SecretString, VaultError> {
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
    Ok(SecretString::from(format!("{ADMIN_PREFIX}{secret}")))
}

/// SHA-256 of a presented token: what the verified-key cache compares, so the
/// cache never holds a token itself.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_hash::StoredKeyHash;

    #[test]
    fn tokens_parse_back_to_their_key_id() {
        let id = ApiKeyId::new();
        let token = ApiToken::generate(id).unwrap();
        let (parsed, secret) = parse_tenant_token(token.expose()).unwrap();
        assert_eq!(parsed, id);
        assert_eq!(secret, token.secret_part());
        assert!(token.hint().starts_with("pbk_…"));
        assert!(token.expose().ends_with(&token.hint()["pbk_…".len()..]));
        assert!(!token.hint().contains(token.secret_part()));
        assert_eq!(format!("{token:?}"), "ApiToken([REDACTED])");
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let token = ApiToken::generate(ApiKeyId::new()).unwrap();
        let t = token.expose();
        assert!(parse_tenant_token(&t[1..]).is_none());
        assert!(parse_tenant_token(&format!("{t}x")).is_none());
        assert!(parse_tenant_token(&t.replacen("pbk_", "pbx_", 1)).is_none());
        assert!(parse_tenant_token(&format!("{}é", &t[..t.len() - 2])).is_none());
        assert!(parse_tenant_token("").is_none());
    }

    #[test]
    fn the_stored_hash_matches_only_the_tokens_secret() {
        let token = ApiToken::generate(ApiKeyId::new()).unwrap();
        let stored = token.stored_hash();
        assert!(stored.starts_with("sha256$"));
        assert!(!stored.contains(token.secret_part()));
        let parsed = StoredKeyHash::parse(&stored).unwrap();
        assert!(parsed.matches_digest(token.secret_part()));
        let other = ApiToken::generate(ApiKeyId::new()).unwrap();
        assert!(!parsed.matches_digest(other.secret_part()));
        assert_ne!(stored, other.stored_hash());
    }
}
