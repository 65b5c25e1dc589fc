//! The HTTP API in-process (`tower::ServiceExt::oneshot`), with wiremock as Stripe.

mod account_fields;
mod action_catalog;
mod actions;
mod api_keys;
mod audit_log;
mod connections;
mod errors;
mod headers;
mod isolation;
mod key_hashes;
mod oauth;
mod openapi;
mod postgres;
mod proxy;
mod quotas;
mod readiness;
mod redaction;
mod rotation_account;
mod secrets;
mod sessions;
mod stripe_deadline;
mod support;
mod tenant_limits;
mod tenants;
mod timestamps;
mod webhooks;
