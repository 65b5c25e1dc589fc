//! A response from Stripe, kept verbatim (status, headers, body) with the
//! `Request-Id` pulled out, so the proxy can pass it on unchanged and typed
//! callers can parse it.

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

use crate::StripeError;
use crate::error::ApiErrorBody;

/// What Stripe answered.
#[derive(Debug, Clone)]
pub struct StripeResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
    /// Stripe's `Request-Id` (`req_…`), when sent.
    pub request_id: Option<String>,
    /// How many attempts it took (1 = no retry).
    pub attempts: u32,
}

impl StripeResponse {
    /// The body as `T` when the status is 2xx; otherwise Stripe's error.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, StripeError> {
        if !self.status.is_success() {
            return Err(self.to_error());
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            StripeError::InvalidResponse(format!(
                "Stripe returned a body that is not the expected JSON ({e}); request id {}",
                self.request_id.as_deref().unwrap_or("unknown")
            ))
        })
    }

    /// This response as an error (whatever its status).
    pub fn to_error(&self) -> StripeError {
        StripeError::Api {
            status: self.status.as_u16(),
            error: ApiErrorBody::parse(&self.body),
            request_id: self.request_id.clone(),
        }
    }
}
