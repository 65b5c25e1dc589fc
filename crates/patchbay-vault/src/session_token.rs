//! Connect-session tokens: short-lived HS256 JWTs that a tenant's backend mints
//! for one end user, so that a browser can start OAuth or submit a key for that
//! end user and nothing else. The signature and expiry are checked here; single
//! use is enforced by the store (the token's `jti` names a stored session).

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Who issues and who accepts the tokens: a token minted for something else
/// with the same key is refused.
const ISSUER: &str = "patchbay";
const AUDIENCE: &str = "patchbay:connect-session";
/// Shortest signing key accepted, in bytes.
pub const MIN_SIGNING_KEY_BYTES: usize = 32;

/// What a session token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The session's id (`cs_…`), which the store marks used.
    pub jti: String,
    /// The tenant (`ten_…`).
    pub tid: String,
    /// The end user: the tenant's `external_id`.
    pub sub: String,
    /// What the browser may do: `oauth`, `api_key`.
    pub allowed: Vec<String>,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Always [`ISSUER`].
    pub iss: String,
    /// Always [`AUDIENCE`].
    pub aud: String,
    /// Where the browser returns after OAuth, fixed by the tenant's backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto: Option<String>,
}

impl SessionClaims {
    /// Claims for a new session.
    pub fn new(
        session_id: &str,
        tenant: &str,
        external_id: &str,
        allowed: Vec<String>,
        issued_at: i64,
        expires_at: i64,
    ) -> Self {
        Self {
            jti: session_id.to_owned(),
            tid: tenant.to_owned(),
            sub: external_id.to_owned(),
            allowed,
            iat: issued_at,
            exp: expires_at,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            rto: None,
        }
    }

    /// Fixes the return URL.
    #[must_use]
    pub fn with_return_to(mut self, return_to: Option<String>) -> Self {
        self.rto = return_to;
        self
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionTokenError {
    /// Past its expiry.
    #[error("the connect-session token has expired")]
    Expired,
    /// Not one of ours: bad signature, wrong algorithm, issuer or audience, or malformed.
    #[error("the connect-session token is not valid")]
    Invalid,
    /// The signing key is unusable (too short).
    #[error("the session signing key must be at least {MIN_SIGNING_KEY_BYTES} bytes")]
    WeakKey,
}

/// Signs and verifies session tokens with one HS256 key.
pub struct SessionSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for SessionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSigner([redacted])")
    }
}

impl SessionSigner {
    /// A signer for `key` (at least [`MIN_SIGNING_KEY_BYTES`] bytes).
    pub fn new(key: &SecretString) -> Result<Self, SessionTokenError> {
        let bytes = key.expose_secret().as_bytes();
        if bytes.len() < MIN_SIGNING_KEY_BYTES {
            return Err(SessionTokenError::WeakKey);
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
        })
    }

    /// The signed token.
    pub fn sign(&self, claims: &SessionClaims) -> Result<SecretString, SessionTokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map(SecretString::from)
            .map_err(|_| SessionTokenError::Invalid)
    }

    /// The claims of a token signed by this key, unexpired at `now` (Unix
    /// seconds; no leeway: the session is short and the clock is ours).
    pub fn verify(&self, token: &str, now: i64) -> Result<SessionClaims, SessionTokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked below against the caller's clock, so tests can
        // move time without sleeping.
        validation.validate_exp = false;
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<SessionClaims>(token, &self.decoding, &validation)
            .map_err(|_| SessionTokenError::Invalid)?
            .claims;
        if claims.exp <= now {
            return Err(SessionTokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(key: &str) -> SessionSigner {
        SessionSigner::new(&SecretString::from(key.to_owned())).unwrap()
    }

    fn claims(exp: i64) -> SessionClaims {
        SessionClaims::new("cs_1", "ten_1", "user-42", vec!["oauth".into()], 1000, exp)
    }

    const KEY: &str = "a-session-signing-key-of-32-bytes-or-more";

    #[test]
    fn a_signed_token_verifies_with_the_same_key() {
        // Also proves a crypto backend is compiled in: jsonwebtoken panics at
        // the first sign or verify when none (or two) is enabled.
        let s = signer(KEY);
        let token = s.sign(&claims(2000)).unwrap();
        assert_eq!(token.expose_secret().split('.').count(), 3);
        assert_eq!(s.verify(token.expose_secret(), 1500).unwrap(), claims(2000));
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let s = signer(KEY);
        let token = s.sign(&claims(2000)).unwrap();
        let token = token.expose_secret();
        assert_eq!(s.verify(token, 2000), Err(SessionTokenError::Expired));
        // Flip one byte of the payload.
        let mut bytes = token.as_bytes().to_vec();
        let dot = token.find('.').unwrap();
        bytes[dot + 5] = if bytes[dot + 5] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(s.verify(&tampered, 1500), Err(SessionTokenError::Invalid));
        // Signed with another key.
        let other = signer("another-signing-key-that-is-long-enough");
        assert_eq!(other.verify(token, 1500), Err(SessionTokenError::Invalid));
        // Another audience.
        let mut foreign = claims(2000);
        foreign.aud = "someone-else".into();
        let foreign = s.sign(&foreign).unwrap();
        assert_eq!(
            s.verify(foreign.expose_secret(), 1500),
            Err(SessionTokenError::Invalid)
        );
        assert_eq!(
            s.verify("not.a.token", 1500),
            Err(SessionTokenError::Invalid)
        );
    }

    #[test]
    fn the_none_algorithm_is_refused() {
        let s = signer(KEY);
        let token = s.sign(&claims(2000)).unwrap();
        let payload = token.expose_secret().split('.').nth(1).unwrap().to_owned();
        // {"alg":"none","typ":"JWT"}
        let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert_eq!(s.verify(&unsigned, 1500), Err(SessionTokenError::Invalid));
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(
            SessionSigner::new(&SecretString::from("short".to_owned())).unwrap_err(),
            SessionTokenError::WeakKey
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        assert_eq!(format!("{:?}", signer(KEY)), "SessionSigner([redacted])");
    }
}
