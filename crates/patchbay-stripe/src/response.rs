//! A response from Stripe, kept verbatim (status, headers, body) with the
//! `Request-Id` pulled out, so the proxy can pass it on unchanged and typed
//! callers can parse it. Turned into an error, its text is masked, the key
//! the call was made with included.

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::SecretString;
use serde::de::DeserializeOwned;

use crate::StripeError;
use crate::error::ApiErrorBody;
use crate::redact::redact;

/// What Stripe answered.
#[derive(Debug, Clone)]
pub struct StripeResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
    /// Stripe's `Request-Id` (`req_…`), when sent and plausible.
    pub request_id: Option<String>,
    /// How many attempts it took (1 = no retry).
    pub attempts: u32,
    /// The key the call was made with, to mask it in any error made from this response.
    pub(crate) own_key: Option<SecretString>,
}

impl StripeResponse {
    /// The body as `T` when the status is 2xx; otherwise Stripe's error.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, StripeError> {
        if !self.status.is_success() {
            return Err(self.to_error());
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            // serde's message may quote the body, which comes from the wire.
            StripeError::InvalidResponse(redact(
                &format!(
                    "Stripe returned a body that is not the expected JSON ({e}); request id {}",
                    self.request_id.as_deref().unwrap_or("unknown")
                ),
                self.own_key.as_ref(),
            ))
        })
    }

    /// Stripe's error object in this response, masked.
    pub fn error_body(&self) -> Option<ApiErrorBody> {
        ApiErrorBody::parse(&self.body, self.own_key.as_ref())
    }

    /// This response as an error (whatever its status).
    pub fn to_error(&self) -> StripeError {
        StripeError::Api {
            status: self.status.as_u16(),
            error: self.error_body(),
            request_id: self.request_id.clone(),
        }
    }
}
