//! Everything Patchbay knows about Stripe's wire protocol: key formats, form
//! encoding, the HTTP client with its retries and per-connection rate limits,
//! and the test call that proves a key works. Nothing outside this crate builds
//! a Stripe request.

mod client;
mod error;
pub mod form;
mod keys;
mod rate_limit;
mod request;
mod response;
mod retry;
mod test_call;

pub use client::{ClientConfig, RateKey, StripeClient};
pub use error::{ApiErrorBody, StripeError};
pub use keys::{KeyError, KeyKind, StripeKey, hint};
pub use rate_limit::{Limits, RateClass};
pub use request::{Body, StripeRequest};
pub use response::StripeResponse;
pub use retry::RetryPolicy;
pub use test_call::{KeyCheck, KeyOutcome};
