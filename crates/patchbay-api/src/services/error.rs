//! The services' own error: what went wrong in the terms of the use case (a
//! missing record, a broken rule, Stripe failing), with a stable code, a
//! message for people and the field at fault. No HTTP type appears here: the
//! HTTP layer maps [`ErrorKind`] to a status and the envelope
//! (`crate::error`), and the job worker decides retries from the kind.

use std::borrow::Cow;

use patchbay_core::{StoreError, ValidationError};
use tracing::error;

/// What kind of failure, independent of how it is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request does not have the expected shape.
    InvalidRequest,
    /// The request parsed, but a value breaks a rule.
    Unprocessable,
    /// No such record for this caller.
    NotFound,
    /// A uniqueness rule or a limit.
    Conflict,
    /// No usable credential.
    Unauthenticated,
    /// The credential may not do this.
    Forbidden,
    /// The caller must slow down.
    RateLimited,
    /// Stripe kept rate-limiting after the retries allowed.
    UpstreamRateLimited,
    /// Stripe failed or answered something unexpected.
    UpstreamFailed,
    /// Stripe did not answer within the deadline.
    UpstreamTimeout,
    /// The database is not answering; retrying shortly may work.
    Unavailable,
    /// Patchbay failed; details are in the log.
    Internal,
}

impl ErrorKind {
    /// Whether the same call may succeed later without any change.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::UpstreamRateLimited
                | Self::UpstreamFailed
                | Self::UpstreamTimeout
                | Self::Unavailable
        )
    }
}

/// A failed use case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Stable code to branch on (`external_id_taken`).
    pub code: Cow<'static, str>,
    /// What happened and what to do.
    pub message: String,
    /// The request field at fault.
    pub param: Option<String>,
    /// Seconds to wait before retrying.
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ServiceError {}

impl ServiceError {
    /// An error with every field given.
    pub fn new(
        kind: ErrorKind,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// Names the field at fault.
    #[must_use]
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Asks the caller to wait.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// The request does not have the expected shape.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, code, message)
    }

    /// A value breaks a rule.
    pub fn unprocessable(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unprocessable, code, message)
    }

    /// A record that does not exist for this caller.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            "resource_missing",
            format!("No such {what}: '{id}'"),
        )
        .with_param("id")
    }

    /// A uniqueness rule or a limit.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    /// No usable credential.
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, code, message)
    }

    /// The credential may not do this.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, code, message)
    }

    /// Patchbay failed. The cause is logged; the caller sees none of it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        error!(error = %cause, "internal error");
        Self::new(
            ErrorKind::Internal,
            "internal_error",
            "Patchbay hit an internal error. Quote the request id when reporting it.",
        )
    }
}

impl From<ValidationError> for ServiceError {
    fn from(e: ValidationError) -> Self {
        Self::unprocessable(e.code, e.message).with_param(e.param)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { field } => Self::conflict(
                "resource_conflict",
                format!("{field} is already in use by another record."),
            )
            .with_param(field),
            StoreError::Unavailable(detail) => {
                error!(error = %detail, "database unavailable");
                Self::new(
                    ErrorKind::Unavailable,
                    "database_unavailable",
                    "The database is not answering; retry shortly.",
                )
                .with_retry_after(2)
            }
            StoreError::Internal(detail) => Self::internal(&detail),
        }
    }
}

impl From<patchbay_vault::VaultError> for ServiceError {
    fn from(e: patchbay_vault::VaultError) -> Self {
        use patchbay_vault::VaultError;
        match e {
            // A replica whose PATCHBAY_MASTER_KEYS lacks (or has the wrong value
            // of) a key the data was sealed with: an operator's configuration,
            // typically a rotation done out of order. Retrying may reach a
            // replica that has the key; the log names the key to configure.
            VaultError::UnknownMasterKey { .. } | VaultError::WrongMasterKey { .. } => {
                error!(error = %e, "this replica cannot open a sealed secret: fix PATCHBAY_MASTER_KEYS");
                Self::new(
                    ErrorKind::Unavailable,
                    "master_key_unavailable",
                    "This server is not configured with the master key that sealed the data (a key rotation out of order, or a misconfigured replica). Retry shortly; if it persists, tell the operator, quoting the request id.",
                )
                .with_retry_after(5)
            }
            other => Self::internal(&other),
        }
    }
}

/// A Stripe call (an action or the proxy) that got no usable answer: queued
/// past the connection's rate limit, unreachable, or answered unexpectedly.
/// Requests Stripe's client refused before sending are the caller's to map.
pub(crate) fn stripe_call_failed(e: patchbay_stripe::StripeError) -> ServiceError {
    use patchbay_stripe::StripeError;
    match e {
        StripeError::RateLimited { retry_after_ms } => ServiceError::new(
            ErrorKind::RateLimited,
            "connection_rate_limited",
            "Too many Stripe calls are queued for this connection; retry shortly.",
        )
        .with_retry_after(retry_after_ms.div_ceil(1000)),
        StripeError::Unreachable { message, .. } => ServiceError::new(
            ErrorKind::UpstreamFailed,
            "stripe_unreachable",
            format!("Stripe could not be reached ({message})."),
        ),
        other => ServiceError::new(
            ErrorKind::UpstreamFailed,
            "stripe_unexpected_response",
            other.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_vault::VaultError;

    #[test]
    fn a_missing_master_key_is_unavailable_and_names_no_key() {
        for e in [
            VaultError::UnknownMasterKey {
                key_id: "k2".into(),
            },
            VaultError::WrongMasterKey {
                key_id: "k2".into(),
            },
        ] {
            let mapped = ServiceError::from(e);
            assert_eq!(mapped.kind, ErrorKind::Unavailable);
            assert_eq!(mapped.code, "master_key_unavailable");
            assert_eq!(mapped.retry_after, Some(5));
            assert!(!mapped.message.contains("k2"), "{}", mapped.message);
        }
        // Anything else the vault says stays an internal error.
        let other = ServiceError::from(VaultError::Unauthentic);
        assert_eq!(other.code, "internal_error");
    }
}
