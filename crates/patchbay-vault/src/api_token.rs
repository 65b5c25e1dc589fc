//! Tenant API key tokens and the platform admin token.
//!
//! A tenant token reads `pbk_<26-character key id>_<43-character secret>`: the
//! public key id finds the record, the secret is checked against an argon2id hash.
//! Tokens carry 256 bits of randomness; argon2id is still used so a stolen
//! database does not hand out working keys cheaply.

use std::fmt;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use patchbay_core::ApiKeyId;
use patchbay_core::id::ENCODED_LEN;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::VaultError;
use crate::error::random_bytes;

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

    /// The part the hash covers.
    pub fn secret_part(&self) -> &str {
        &self.expose()[TOKEN_LEN - SECRET_LEN..]
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

/// argon2id hashing of token secrets.
#[derive(Clone)]
pub struct ApiKeyHasher {
    argon: Argon2<'static>,
}

impl fmt::Debug for ApiKeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.argon.params();
        write!(
            f,
            "ApiKeyHasher(argon2id m={} t={} p={})",
            p.m_cost(),
            p.t_cost(),
            p.p_cost()
        )
    }
}

impl Default for ApiKeyHasher {
    /// OWASP's recommended argon2id parameters: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self::with_params(19 * 1024, 2, 1).expect("OWASP parameters are valid")
    }
}

impl ApiKeyHasher {
    /// Hasher with explicit memory (KiB), passes and lanes.
    pub fn with_params(m_cost: u32, t_cost: u32, p_cost: u32) -> Result<Self, VaultError> {
        let params = Params::new(m_cost, t_cost, p_cost, None)
            .map_err(|e| VaultError::Hash(e.to_string()))?;
        Ok(Self {
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        })
    }

    /// PHC string of a token's secret part. CPU-heavy: call from a blocking thread.
    pub fn hash(&self, token: &ApiToken) -> Result<String, VaultError> {
        let salt = random_bytes::<16>()?;
        let salt = argon2::password_hash::phc::Salt::new(&salt)
            .map_err(|e| VaultError::Hash(e.to_string()))?;
        self.argon
            .hash_password_with_salt(token.secret_part().as_bytes(), salt.as_ref())
            .map(|h| h.to_string())
            .map_err(|e| VaultError::Hash(e.to_string()))
    }

    /// Whether `secret` matches the stored PHC string. CPU-heavy: call from a blocking thread.
    pub fn verify(&self, secret: &str, phc: &str) -> Result<bool, VaultError> {
        let hash = PasswordHash::new(phc).map_err(|e| VaultError::Hash(e.to_string()))?;
        Ok(self.argon.verify_password(secret.as_bytes(), &hash).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> ApiKeyHasher {
        ApiKeyHasher::with_params(1024, 1, 1).unwrap()
    }

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
    fn hash_verifies_only_the_right_secret() {
        let hasher = cheap();
        let token = ApiToken::generate(ApiKeyId::new()).unwrap();
        let phc = hasher.hash(&token).unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains(token.secret_part()));
        assert!(hasher.verify(token.secret_part(), &phc).unwrap());
        let other = ApiToken::generate(ApiKeyId::new()).unwrap();
        assert!(!hasher.verify(other.secret_part(), &phc).unwrap());
        assert!(hasher.verify(token.secret_part(), "not a phc").is_err());
    }

    #[test]
    fn default_parameters_are_owasp() {
        assert_eq!(
            format!("{:?}", ApiKeyHasher::default()),
            "ApiKeyHasher(argon2id m=19456 t=2 p=1)"
        );
    }
}
