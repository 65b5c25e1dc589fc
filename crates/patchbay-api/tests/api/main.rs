//! The HTTP API in-process (`tower::ServiceExt::oneshot`), with wiremock as Stripe.

mod api_keys;
mod connections;
mod errors;
mod isolation;
mod key_hashes;
mod openapi;
mod secrets;
mod support;
mod tenants;
