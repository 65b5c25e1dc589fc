//! Who is calling: the platform admin (its token) or a tenant (an API key),
//! read from `x-api-key` or `Authorization: Bearer` (or Basic with the key as
//! user name, as Stripe accepts). Extractors for routes that need one or the other.

mod key_verifier;
mod legacy_hash;
mod usage;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use patchbay_core::api_key::{Scope, Scopes};
use patchbay_core::audit::{Actor, AuditEvent};
use patchbay_core::{ApiKeyId, TenantId};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};

pub use key_verifier::{AuthFailure, KeyVerifier};
pub use usage::UsageRecorder;

use crate::context::RequestId;
use crate::error::ApiError;
use crate::state::AppState;

/// A verified tenant key.
#[derive(Debug, Clone)]
pub struct TenantPrincipal {
    /// The tenant acting.
    pub tenant_id: TenantId,
    /// The key used.
    pub key_id: ApiKeyId,
    /// What it may do.
    pub scopes: Scopes,
}

impl TenantPrincipal {
    /// Fails with 403 naming the scope when the key lacks it.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "insufficient_scope",
                format!("This API key lacks the '{scope}' scope needed here."),
            ))
        }
    }
}

/// Either caller.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The platform admin.
    Admin,
    /// A tenant.
    Tenant(TenantPrincipal),
}

impl Principal {
    /// The actor recorded in audit events.
    pub fn actor(&self) -> Actor {
        match self {
            Self::Admin => Actor::Admin,
            Self::Tenant(t) => Actor::ApiKey(t.key_id),
        }
    }
}

/// Reads the presented credential; copies of it are secrets from here on.
fn presented(parts: &Parts) -> Result<SecretString, ApiError> {
    if let Some(value) = parts.headers.get("x-api-key") {
        let key = value.to_str().map_err(|_| malformed())?.trim();
        if !key.is_empty() {
            return Ok(SecretString::from(key));
        }
    }
    if let Some(value) = parts.headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| malformed())?.trim();
        if let Some(token) = strip_scheme(value, "bearer") {
            return Ok(SecretString::from(token.trim()));
        }
        if let Some(encoded) = strip_scheme(value, "basic") {
            let decoded = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| malformed())?,
            );
            let decoded = std::str::from_utf8(&decoded).map_err(|_| malformed())?;
            let user = decoded.split_once(':').map_or(decoded, |(u, _)| u);
            return Ok(SecretString::from(user));
        }
        return Err(malformed());
    }
    Err(ApiError::unauthenticated(
        "api_key_missing",
        "No API key provided. Send it as 'x-api-key: <key>' or 'Authorization: Bearer <key>'.",
    ))
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (head, rest) = value.split_at_checked(scheme.len())?;
    (head.eq_ignore_ascii_case(scheme) && rest.starts_with(' ')).then(|| &rest[1..])
}

fn malformed() -> ApiError {
    ApiError::unauthenticated(
        "api_key_malformed",
        "The Authorization header is malformed. Use 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
    )
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = presented(parts)?;
        if state.is_admin_token(token.expose_secret()) {
            return Ok(Principal::Admin);
        }
        state
            .keys
            .verify(token.expose_secret())
            .await
            .map(Principal::Tenant)
            .map_err(ApiError::from)
    }
}

/// The platform admin; tenants get 403.
#[derive(Debug, Clone)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Principal::from_request_parts(parts, state).await? {
            Principal::Admin => Ok(Admin),
            Principal::Tenant(_) => Err(ApiError::forbidden(
                "admin_required",
                "This endpoint is for the platform admin token (PATCHBAY_ADMIN_TOKEN), not a tenant API key.",
            )),
        }
    }
}

/// A tenant key; the admin token gets 403 (it belongs to no tenant).
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantPrincipal);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Principal::from_request_parts(parts, state).await? {
            Principal::Tenant(t) => Ok(Tenant(t)),
            Principal::Admin => Err(ApiError::forbidden(
                "tenant_key_required",
                "This endpoint acts for one tenant: call it with that tenant's API key. The admin manages tenants' keys under /api/v1/tenants/{id}/api-keys.",
            )),
        }
    }
}

/// Who did it and in which request: what audit records need.
#[derive(Debug, Clone)]
pub struct AuditContext {
    /// The actor.
    pub actor: Actor,
    /// The server's request id.
    pub request_id: Option<String>,
    /// The well-formed `x-request-id` the client sent, kept apart.
    pub client_request_id: Option<String>,
}

impl AuditContext {
    /// For a principal in a request.
    pub fn new(principal: &Principal, request_id: &RequestId) -> Self {
        Self {
            actor: principal.actor(),
            request_id: Some(request_id.as_str().to_owned()),
            client_request_id: request_id.client().map(str::to_owned),
        }
    }

    /// An audit event by this actor about `target` of `tenant`, happening now.
    pub fn event(
        &self,
        tenant: TenantId,
        action: &str,
        target: impl std::fmt::Display,
        details: serde_json::Value,
    ) -> AuditEvent {
        AuditEvent::new(
            Some(tenant),
            self.actor,
            action,
            Some(target.to_string()),
            details,
            self.request_id.clone(),
        )
        .with_client_request_id(self.client_request_id.clone())
    }

    /// For Patchbay's own background work.
    pub fn system() -> Self {
        Self {
            actor: Actor::System,
            request_id: None,
            client_request_id: None,
        }
    }
}
