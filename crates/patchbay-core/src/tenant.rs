//! Tenants: the customers of the platform, each owning API keys and connections.

use serde::{Deserialize, Serialize};

use crate::tenant_limits::TenantLimits;
use crate::{Metadata, TenantId, Timestamp, ValidationError};

/// Longest tenant name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Whether a tenant's keys work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Normal operation.
    Active,
    /// Every API key of the tenant is refused until the tenant is re-enabled.
    Disabled,
}

impl TenantStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// A tenant record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// `ten_…`
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Active or disabled.
    pub status: TenantStatus,
    /// Caller-defined pairs.
    pub metadata: Metadata,
    /// Its own request-rate and Stripe-concurrency limits (unset: the server's defaults).
    pub limits: TenantLimits,
    /// When created.
    pub created_at: Timestamp,
    /// When last changed.
    pub updated_at: Timestamp,
}

/// Checks a display name: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters.
pub fn validate_name(name: &str, param: &'static str) -> Result<String, ValidationError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::invalid(
            param,
            format!("{param} cannot be empty."),
        ));
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(ValidationError::invalid(
            param,
            format!("{param} can be at most {MAX_NAME_CHARS} characters."),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ValidationError::invalid(
            param,
            format!("{param} cannot contain control characters."),
        ));
    }
    Ok(trimmed.to_owned())
}
