//! Everything Patchbay knows about Stripe's wire protocol: key formats, form
//! encoding, the HTTP client with its retries and per-connection rate limits,
//! the test call that proves a key works, and the redaction every text from
//! Stripe passes through. Nothing outside this crate builds a Stripe request.

mod account;
pub mod actions;
mod client;
mod error;
pub mod form;
mod keys;
mod metrics;
pub mod oauth;
pub mod proxy;
mod rate_limit;
pub mod rate_limit_redis;
mod redact;
pub mod redis_link;
mod request;
mod response;
mod retry;
pub mod streaming;
mod test_call;
mod version;
pub mod webhook;

pub use account::{
    AccountChange, AccountRefusal, MAX_ACCOUNT_ID_TAIL, MAX_ACCOUNT_NAME_CHARS, check_rotation,
    is_account_id,
};
pub use client::{ClientConfig, RateKey, StripeClient};
pub use error::{ApiErrorBody, StripeError};
pub use keys::{KeyError, KeyKind, StripeKey, hint};
pub use rate_limit::{Limiter, Limits, RateClass, RateLimiter};
pub use redact::{Redacted, redact};
pub use request::{Body, StripeRequest};
pub use response::StripeResponse;
pub use retry::RetryPolicy;
pub use test_call::{KeyCheck, KeyOutcome, is_account_access_revoked, missing_permission};
pub use version::validate_stripe_version;
