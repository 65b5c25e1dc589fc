//! Connections: one tenant's credential for one Stripe account, with what the
//! last test call proved about it. The credential itself is sealed elsewhere
//! and never part of these types.

use serde::{Deserialize, Serialize};

use crate::connect::GrantInfo;
use crate::{ConnectionId, Metadata, TenantId, Timestamp, ValidationError};

/// Longest `external_id`, in characters.
pub const MAX_EXTERNAL_ID_CHARS: usize = 255;

/// The service a connection reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Stripe.
    Stripe,
}

impl Provider {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        "stripe"
    }
    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        (s == "stripe").then_some(Self::Stripe)
    }
}

/// How the connection authenticates to Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A secret key (`sk_…`): full access to the account.
    SecretKey,
    /// A restricted key (`rk_…`): the permissions chosen in the Stripe dashboard.
    RestrictedKey,
    /// A Stripe Connect OAuth grant: calls use the tenant's platform key with
    /// `Stripe-Account` set to the connected account.
    Oauth,
}

impl AuthMethod {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretKey => "secret_key",
            Self::RestrictedKey => "restricted_key",
            Self::Oauth => "oauth",
        }
    }
    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "secret_key" => Some(Self::SecretKey),
            "restricted_key" => Some(Self::RestrictedKey),
            "oauth" => Some(Self::Oauth),
            _ => None,
        }
    }
}

/// What the last test call said about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Stored without a test call (`"validate": false`); not yet proven.
    Pending,
    /// The last test call proved the credential works.
    Active,
    /// Stripe rejected the credential (401): revoked, rolled or mistyped.
    Invalid,
    /// Stripe could not be reached or failed; the credential's state is unknown.
    Error,
    /// Being disconnected: Stripe has not yet confirmed the deauthorization;
    /// a job retries it. No calls go through it meanwhile.
    Revoking,
    /// The connected account removed the platform's access (a Connect grant
    /// Stripe no longer honours). Kept, with the reason, until deleted.
    Revoked,
}

impl ConnectionStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Invalid => "invalid",
            Self::Error => "error",
            Self::Revoking => "revoking",
            Self::Revoked => "revoked",
        }
    }
    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "active" => Some(Self::Active),
            "invalid" => Some(Self::Invalid),
            "error" => Some(Self::Error),
            "revoking" => Some(Self::Revoking),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// The Stripe account a credential reaches, as far as the test call could tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDetails {
    /// `acct_…`
    pub stripe_account_id: Option<String>,
    /// Dashboard display name, or the business name, or the email.
    pub account_name: Option<String>,
    /// Two-letter country code.
    pub country: Option<String>,
    /// Three-letter currency code.
    pub default_currency: Option<String>,
}

/// Why the last test call did not prove the credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LastError {
    /// `stripe_key_invalid`, `stripe_unreachable`, `stripe_unavailable`, …
    pub code: String,
    /// What happened, without any secret.
    pub message: String,
    /// Stripe's `Request-Id`, when Stripe answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe_request_id: Option<String>,
}

/// A connection record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `conn_…`
    pub id: ConnectionId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Always Stripe for now.
    pub provider: Provider,
    /// Secret key, restricted key or Connect grant.
    pub auth_method: AuthMethod,
    /// Live or test mode; fixed for the connection's life.
    pub livemode: bool,
    /// Result of the last test call.
    pub status: ConnectionStatus,
    /// The account reached.
    pub account: AccountDetails,
    /// `sk_test_…4242`
    pub key_hint: String,
    /// The tenant's own reference, unique within the tenant.
    pub external_id: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Caller-defined pairs.
    pub metadata: Metadata,
    /// A pinned `Stripe-Version`, sent with every call.
    pub stripe_version: Option<String>,
    /// Restricted-key permissions the test call found missing (`rak_balance_read`).
    pub missing_permissions: Vec<String>,
    /// When the test call last ran.
    pub last_validated_at: Option<Timestamp>,
    /// Why it last failed, when it did.
    pub last_error: Option<LastError>,
    /// Hint of the key replaced by the last rotation, while it is kept.
    pub previous_key_hint: Option<String>,
    /// When the kept previous key is destroyed.
    pub previous_key_expires_at: Option<Timestamp>,
    /// For a Connect grant: the platform's client id, scope and last refresh.
    pub grant: Option<GrantInfo>,
    /// When created.
    pub created_at: Timestamp,
    /// When last changed.
    pub updated_at: Timestamp,
}

/// The caller-editable fields, as a whole: a PATCH computes the new value of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionDetails {
    /// Display name.
    pub name: Option<String>,
    /// Caller-defined pairs.
    pub metadata: Metadata,
    /// The tenant's own reference.
    pub external_id: Option<String>,
    /// Pinned API version.
    pub stripe_version: Option<String>,
}

impl Connection {
    /// The editable fields as they are now.
    pub fn details(&self) -> ConnectionDetails {
        ConnectionDetails {
            name: self.name.clone(),
            metadata: self.metadata.clone(),
            external_id: self.external_id.clone(),
            stripe_version: self.stripe_version.clone(),
        }
    }
}

/// The outcome of a test call, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationRecord {
    /// New status.
    pub status: ConnectionStatus,
    /// Account details; `None` keeps what is stored (the call could not tell).
    pub account: Option<AccountDetails>,
    /// Permissions found missing.
    pub missing_permissions: Vec<String>,
    /// When the call ran.
    pub validated_at: Timestamp,
    /// The failure, if any.
    pub last_error: Option<LastError>,
}

/// Filters for listing connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionFilter {
    /// Only this status.
    pub status: Option<ConnectionStatus>,
    /// Only this external id.
    pub external_id: Option<String>,
    /// Only live (`true`) or test (`false`) mode.
    pub livemode: Option<bool>,
    /// Only connections reaching this Stripe account.
    pub stripe_account_id: Option<String>,
}

/// Checks an external id: 1 to 255 characters, no control characters.
pub fn validate_external_id(value: &str) -> Result<String, ValidationError> {
    if value.is_empty() || value.chars().count() > MAX_EXTERNAL_ID_CHARS {
        return Err(ValidationError::invalid(
            "external_id",
            format!("external_id must be 1 to {MAX_EXTERNAL_ID_CHARS} characters."),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::invalid(
            "external_id",
            "external_id cannot contain control characters.",
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids() {
        assert!(validate_external_id("user-42").is_ok());
        assert!(validate_external_id("").is_err());
        assert!(validate_external_id(&"x".repeat(256)).is_err());
        assert!(validate_external_id("a\nb").is_err());
    }

    #[test]
    fn stored_enums_round_trip() {
        for s in [
            ConnectionStatus::Pending,
            ConnectionStatus::Active,
            ConnectionStatus::Invalid,
            ConnectionStatus::Error,
            ConnectionStatus::Revoking,
            ConnectionStatus::Revoked,
        ] {
            assert_eq!(ConnectionStatus::parse(s.as_str()), Some(s));
        }
        for m in [
            AuthMethod::SecretKey,
            AuthMethod::RestrictedKey,
            AuthMethod::Oauth,
        ] {
            assert_eq!(AuthMethod::parse(m.as_str()), Some(m));
        }
    }
}
