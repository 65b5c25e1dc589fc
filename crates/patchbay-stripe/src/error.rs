//! Errors from calling Stripe. Every text they carry is [`Redacted`]: Stripe
//! masks keys in its own messages, but a proxy or a fake in between may not,
//! so nothing from the wire reaches an error unmasked.

use secrecy::SecretString;
use serde::Deserialize;

use crate::redact::{Redacted, redact};

/// Stripe's error object (`{"error":{…}}`), the fields Patchbay reads, masked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiErrorBody {
    /// `invalid_request_error`, `card_error`, `api_error`, `idempotency_error`, …
    pub kind: Option<Redacted>,
    /// Machine code (`resource_missing`, `secret_key_required`, …).
    pub code: Option<Redacted>,
    /// Human message.
    pub message: Option<Redacted>,
    /// Parameter at fault.
    pub param: Option<Redacted>,
}

#[derive(Deserialize)]
struct RawBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
    param: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: RawBody,
}

impl ApiErrorBody {
    /// Parses an error body, masking credentials and `own_key` (the key the
    /// call was made with); `None` when it is not Stripe's shape.
    pub fn parse(body: &[u8], own_key: Option<&SecretString>) -> Option<Self> {
        let raw = serde_json::from_slice::<Envelope>(body).ok()?.error;
        let mask = |t: Option<String>| t.map(|t| redact(&t, own_key));
        Some(Self {
            kind: mask(raw.kind),
            code: mask(raw.code),
            message: mask(raw.message),
            param: mask(raw.param),
        })
    }
}

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// No answer: connection refused, DNS, TLS or timeout, after the retries allowed.
    #[error("Stripe could not be reached after {attempts} attempt(s): {message}")]
    Unreachable {
        /// What failed last.
        message: Redacted,
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
        /// `Request-Id` (only when it looks like one).
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
    InvalidRequest(Redacted),
    /// Stripe's answer could not be understood.
    #[error("{0}")]
    InvalidResponse(Redacted),
    /// The caller's overall deadline passed before Stripe gave an answer,
    /// whatever attempt was under way.
    #[error("Stripe gave no answer within {} ms (attempts and waits between them included)", .deadline.as_millis())]
    DeadlineExceeded {
        /// The budget that ran out.
        deadline: std::time::Duration,
    },
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
