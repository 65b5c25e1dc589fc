//! Tenant API keys: their scopes and lifecycle. The secret token itself never
//! reaches this crate; storage keeps only a SHA-256 digest of its secret.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::tenant::TenantStatus;
use crate::{ApiKeyId, TenantId, Timestamp, ValidationError};

/// What an API key may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Scope {
    /// Everything the tenant can do, including managing its API keys.
    #[serde(rename = "admin")]
    Admin,
    /// Read connections.
    #[serde(rename = "connections:read")]
    ConnectionsRead,
    /// Create, change, validate, rotate and delete connections (implies read).
    #[serde(rename = "connections:write")]
    ConnectionsWrite,
    /// Call Stripe through a connection (actions and the raw proxy).
    #[serde(rename = "proxy")]
    Proxy,
}

impl Scope {
    /// Every scope, in display order.
    pub const ALL: [Scope; 4] = [
        Scope::Admin,
        Scope::ConnectionsRead,
        Scope::ConnectionsWrite,
        Scope::Proxy,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::ConnectionsRead => "connections:read",
            Self::ConnectionsWrite => "connections:write",
            Self::Proxy => "proxy",
        }
    }

    /// Whether holding `self` grants `needed`.
    pub fn grants(self, needed: Scope) -> bool {
        self == needed
            || self == Scope::Admin
            || (self == Scope::ConnectionsWrite && needed == Scope::ConnectionsRead)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                ValidationError::invalid(
                    "scopes",
                    format!(
                        "Unknown scope '{s}'. Valid scopes: admin, connections:read, connections:write, proxy."
                    ),
                )
            })
    }
}

/// A non-empty, sorted, duplicate-free set of scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Validates and normalises a scope list.
    pub fn new(mut scopes: Vec<Scope>) -> Result<Self, ValidationError> {
        if scopes.is_empty() {
            return Err(ValidationError::invalid(
                "scopes",
                "scopes cannot be empty: name at least one of admin, connections:read, connections:write, proxy.",
            ));
        }
        scopes.sort();
        scopes.dedup();
        Ok(Self(scopes))
    }

    /// Parses the stored comma-separated form.
    pub fn parse_stored(s: &str) -> Result<Self, ValidationError> {
        let scopes = s
            .split(',')
            .filter(|p| !p.is_empty())
            .map(Scope::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(scopes)
    }

    /// The comma-separated form storage keeps.
    pub fn to_stored(&self) -> String {
        self.0
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether these scopes grant `needed`.
    pub fn allows(&self, needed: Scope) -> bool {
        self.0.iter().any(|s| s.grants(needed))
    }

    /// Whether every scope of `other` is granted by these.
    pub fn covers(&self, other: &Scopes) -> bool {
        other.0.iter().all(|s| self.allows(*s))
    }

    /// The scopes.
    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }
}

/// An API key record, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// `key_…`, also embedded in the token.
    pub id: ApiKeyId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Optional label ("CI deploy key").
    pub name: Option<String>,
    /// What the key may do.
    pub scopes: Scopes,
    /// The token's last characters, for recognising it (`pbk_…x9Qa`).
    pub hint: String,
    /// The one connection a bound key may call through the proxy's root
    /// paths (`/v1/*`, `/v2/*`); a bound key may call nothing else.
    pub connection_id: Option<crate::ConnectionId>,
    /// After this instant the key is refused.
    pub expires_at: Option<Timestamp>,
    /// When revoked; a revoked key is refused.
    pub revoked_at: Option<Timestamp>,
    /// Last successful authentication, recorded to within a few seconds.
    pub last_used_at: Option<Timestamp>,
    /// When created.
    pub created_at: Timestamp,
}

/// Why a key is or is not usable right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Usable.
    Active,
    /// Past `expires_at`.
    Expired,
    /// Revoked.
    Revoked,
}

impl ApiKey {
    /// Usability at `now`.
    pub fn state(&self, now: Timestamp) -> KeyState {
        if self.revoked_at.is_some() {
            KeyState::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }
}

/// What authentication needs: the key, its hash and its tenant's status, in one read.
#[derive(Debug, Clone)]
pub struct ApiKeyCredential {
    /// The key.
    pub key: ApiKey,
    /// The stored hash of the token's secret part: `sha256$<hex>`, or an
    /// argon2id PHC string from before the digest (upgraded on first use).
    pub hash: String,
    /// The owning tenant's status.
    pub tenant_status: TenantStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_grants() {
        assert!(Scope::Admin.grants(Scope::Proxy));
        assert!(Scope::ConnectionsWrite.grants(Scope::ConnectionsRead));
        assert!(!Scope::ConnectionsRead.grants(Scope::ConnectionsWrite));
        assert!(!Scope::Proxy.grants(Scope::Admin));
    }

    #[test]
    fn scopes_normalise_and_round_trip() {
        let s = Scopes::new(vec![Scope::Proxy, Scope::ConnectionsRead, Scope::Proxy]).unwrap();
        assert_eq!(s.to_stored(), "connections:read,proxy");
        assert_eq!(Scopes::parse_stored(&s.to_stored()).unwrap(), s);
        assert!(Scopes::new(vec![]).is_err());
        assert!("root".parse::<Scope>().is_err());
        let admin = Scopes::new(vec![Scope::Admin]).unwrap();
        assert!(admin.covers(&s));
        assert!(!s.covers(&admin));
    }
}
