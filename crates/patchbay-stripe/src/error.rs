//! Errors from calling Stripe. Display text never carries a key: Stripe masks
//! keys in its own messages, and nothing here adds one.

use serde::Deserialize;

/// Stripe's error object (`{"error":{…}}`), the fields Patchbay reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ApiErrorBody {
    /// `invalid_request_error`, `card_error`, `api_error`, `idempotency_error`, …
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Machine code (`resource_missing`, `secret_key_required`, …).
    pub code: Option<String>,
    /// Human message.
    pub message: Option<String>,
    /// Parameter at fault.
    pub param: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: ApiErrorBody,
}

impl ApiErrorBody {
    /// Parses an error body; `None` when it is not Stripe's shape.
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice::<Envelope>(body)
            .ok()
            .map(|e| e.error)
    }
}

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// No answer: connection refused, DNS, TLS or timeout, after the retries allowed.
    #[error("Stripe could not be reached after {attempts} attempt(s): {message}")]
    Unreachable {
        /// What failed last.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Stripe answered with an error status (after the retries allowed).
    #[error("Stripe answered {status}{}{}", .error.as_ref().and_then(|e| e.message.as_deref()).map(|m| format!(": {m}")).unwrap_or_default(), .request_id.as_deref().map(|r| format!(" (request {r})")).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// Stripe's error object, when the body had one.
        error: Option<ApiErrorBody>,
        /// `Request-Id`.
        request_id: Option<String>,
    },
    /// The connection's request queue is longer than the configured wait.
    #[error("too many requests queued for this connection; retry in {retry_after_ms} ms")]
    RateLimited {
        /// When a slot frees up.
        retry_after_ms: u64,
    },
    /// The request cannot be sent as built (bad path, bad header value).
    #[error("{0}")]
    InvalidRequest(String),
    /// Stripe's answer could not be understood.
    #[error("{0}")]
    InvalidResponse(String),
}

impl StripeError {
    /// Stripe's `Request-Id`, if Stripe answered.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }
}
