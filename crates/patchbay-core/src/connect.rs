//! Stripe Connect: a tenant's platform (its `ca_…` client id and platform key,
//! one per mode), the pending OAuth flows (`state`), connect-session uses, and
//! the sealed secrets a connection keeps in rows of their own.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::sealed::{DataKeyRecord, SealedSecret};
use crate::{TenantId, Timestamp};

/// What a Connect grant lets the platform do on the connected account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantScope {
    /// Read and write (Stripe's default for Standard accounts).
    ReadWrite,
    /// Read only.
    ReadOnly,
}

impl GrantScope {
    /// The stored and wire text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "read_write",
            Self::ReadOnly => "read_only",
        }
    }
    /// Parses the stored and wire text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read_write" => Some(Self::ReadWrite),
            "read_only" => Some(Self::ReadOnly),
            _ => None,
        }
    }
}

/// What a Connect grant connection holds besides the account: the platform
/// that obtained it and what it allows. The tokens are sealed elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantInfo {
    /// The platform's client id (`ca_…`) the grant was issued to.
    pub client_id: String,
    /// The scope granted.
    pub scope: GrantScope,
    /// When the tokens were last refreshed.
    pub refreshed_at: Option<Timestamp>,
}

/// A tenant's Connect platform in one mode (test or live).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripePlatform {
    /// Owner.
    pub tenant_id: TenantId,
    /// The mode of the platform key.
    pub livemode: bool,
    /// `ca_…`
    pub client_id: String,
    /// `sk_test_…abcd` of the platform key.
    pub key_hint: String,
    /// The platform's own account, as the key's test call found it.
    pub platform_account_id: Option<String>,
    /// Redirect URIs registered with Stripe; `auth-url` accepts only these.
    pub redirect_uris: Vec<String>,
    /// The scope asked for when `auth-url` names none.
    pub scope: GrantScope,
    /// When first configured.
    pub created_at: Timestamp,
    /// When last changed.
    pub updated_at: Timestamp,
}

/// A platform with what is needed to open its key.
#[derive(Debug, Clone)]
pub struct StripePlatformSecret {
    /// The platform.
    pub platform: StripePlatform,
    /// The tenant's data key.
    pub data_key: DataKeyRecord,
    /// The platform key, sealed.
    pub secret: SealedSecret,
}

/// What deleting a tenant's platform(s) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformDeletion {
    /// No such platform.
    NotFound,
    /// Refused: this many Connect connections depend on it (and `force` was not given).
    InUse {
        /// Dependent connections.
        connections: u64,
    },
    /// Deleted.
    Deleted {
        /// Platforms removed (one per mode).
        platforms: u64,
        /// Dependent connections removed with them (`force`).
        connections: u64,
    },
}

/// An OAuth flow waiting for Stripe's callback. Only the hash of `state` is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthState {
    /// `sha256$<hex>` of the state value.
    pub state_hash: String,
    /// The tenant the flow is for.
    pub tenant_id: TenantId,
    /// The platform mode used.
    pub livemode: bool,
    /// The end user's reference; the connection gets it.
    pub external_id: Option<String>,
    /// The redirect URI sent to Stripe (the token exchange repeats nothing, but it is audited).
    pub redirect_uri: String,
    /// Where to send the end user's browser afterwards.
    pub return_to: Option<String>,
    /// The scope asked for.
    pub scope: GrantScope,
    /// The connect session that started the flow, if any (single use).
    pub session: Option<SessionUse>,
    /// When issued.
    pub created_at: Timestamp,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

/// A connect session spending its one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionUse {
    /// The session's `jti`.
    pub session_id: Uuid,
    /// When the session token expires (its use record may go after that).
    pub expires_at: Timestamp,
}

/// The role of a sealed secret of a connection; also the field name bound into
/// its associated data, so a sealed value cannot be moved to another role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretRole {
    /// The API key the connection calls with.
    ApiKey,
    /// The key replaced by the last rotation, kept for a while.
    PreviousApiKey,
    /// A Connect grant's access token (legacy use; calls use the platform key).
    AccessToken,
    /// A Connect grant's refresh token.
    RefreshToken,
}

impl SecretRole {
    /// The stored text and the associated-data field name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::PreviousApiKey => "previous_api_key",
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
        }
    }
    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api_key" => Some(Self::ApiKey),
            "previous_api_key" => Some(Self::PreviousApiKey),
            "access_token" => Some(Self::AccessToken),
            "refresh_token" => Some(Self::RefreshToken),
            _ => None,
        }
    }
}

/// One sealed secret of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSecret {
    /// What it is.
    pub role: SecretRole,
    /// The sealed value.
    pub sealed: SealedSecret,
    /// When it is destroyed (a previous key's grace period), if ever.
    pub expires_at: Option<Timestamp>,
}

impl ConnectionSecret {
    /// A secret kept until replaced.
    pub fn new(role: SecretRole, sealed: SealedSecret) -> Self {
        Self {
            role,
            sealed,
            expires_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_enums_round_trip() {
        for s in [GrantScope::ReadWrite, GrantScope::ReadOnly] {
            assert_eq!(GrantScope::parse(s.as_str()), Some(s));
        }
        for r in [
            SecretRole::ApiKey,
            SecretRole::PreviousApiKey,
            SecretRole::AccessToken,
            SecretRole::RefreshToken,
        ] {
            assert_eq!(SecretRole::parse(r.as_str()), Some(r));
        }
        assert_eq!(GrantScope::parse("write"), None);
    }
}
