//! Audit events: who did what to which record, when, with which request id.
//! Details never carry secrets: only ids, hints and outcomes.

use std::fmt;

use crate::{ApiKeyId, AuditEventId, TenantId, Timestamp};

/// Who performed an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The platform admin token.
    Admin,
    /// A tenant API key.
    ApiKey(ApiKeyId),
    /// Patchbay itself (background validation, expiry).
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Admin => f.write_str("admin"),
            Self::ApiKey(id) => write!(f, "{id}"),
            Self::System => f.write_str("system"),
        }
    }
}

impl Actor {
    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "system" => Some(Self::System),
            other => other.parse().ok().map(Self::ApiKey),
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// `aud_…`
    pub id: AuditEventId,
    /// The tenant concerned; `None` for platform-wide events.
    pub tenant_id: Option<TenantId>,
    /// Who did it.
    pub actor: Actor,
    /// What was done: `connection.created`, `api_key.revoked`, …
    pub action: String,
    /// The id of the record acted on.
    pub target_id: Option<String>,
    /// Outcome and context; never a secret.
    pub details: serde_json::Value,
    /// Patchbay's `x-request-id` of the request that caused it.
    pub request_id: Option<String>,
    /// When.
    pub created_at: Timestamp,
}

impl AuditEvent {
    /// A new event happening now.
    pub fn new(
        tenant_id: Option<TenantId>,
        actor: Actor,
        action: &str,
        target_id: Option<String>,
        details: serde_json::Value,
        request_id: Option<String>,
    ) -> Self {
        Self {
            id: AuditEventId::new(),
            tenant_id,
            actor,
            action: action.to_owned(),
            target_id,
            details,
            request_id,
            created_at: crate::time::now(),
        }
    }
}
