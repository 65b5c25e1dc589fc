//! Who is calling: the platform admin (its token), a tenant (an API key), or a
//! browser holding a connect session (a short-lived JWT), read from
//! `x-api-key` or `Authorization: Bearer` (or Basic with the key as user name,
//! as Stripe accepts). The [`resolve_caller`] layer resolves the caller once
//! per request and places it in the request's extensions; the extractors read
//! it from there and refuse callers a route does not take.

mod key_verifier;
mod legacy_hash;
mod usage;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
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
use crate::services::connect_sessions::{self, SessionPrincipal};
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
    /// The one connection a bound key may call through the proxy's root paths.
    pub connection_id: Option<patchbay_core::ConnectionId>,
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

/// Whoever is calling, as the [`resolve_caller`] layer found them.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The platform admin.
    Admin,
    /// A tenant key.
    Tenant(TenantPrincipal),
    /// A browser with a connect session (only on the browser routes).
    Session(SessionPrincipal),
}

impl Caller {
    /// The tenant the caller acts for, when it is one (rate limits, metrics).
    pub fn tenant(&self) -> Option<TenantId> {
        match self {
            Self::Admin => None,
            Self::Tenant(t) => Some(t.tenant_id),
            Self::Session(s) => Some(s.tenant_id),
        }
    }

    /// The actor recorded in audit events.
    pub fn actor(&self) -> Actor {
        match self {
            Self::Admin => Actor::Admin,
            Self::Tenant(t) => Actor::ApiKey(t.key_id),
            Self::Session(s) => Actor::ConnectSession(s.session_id),
        }
    }
}

/// Which credentials a surface takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The management API: the admin token and tenant keys.
    Management,
    /// The browser routes: tenant keys and connect sessions.
    Browser,
    /// The raw proxy: tenant keys, including keys bound to one connection.
    Proxy,
}

/// Whether a presented bearer is a connect-session token (a JWT) rather than
/// a key: three dot-separated parts, the first a JSON header in base64url.
fn is_session_token(token: &str) -> bool {
    token.starts_with("eyJ") && token.split('.').count() == 3
}

/// The layer: resolves the caller once and places it in the request. A
/// CORS preflight carries no credentials and passes through unresolved.
pub async fn resolve_caller(
    State((state, surface)): State<(AppState, Surface)>,
    mut request: Request,
    next: Next,
) -> Response {
    // A CORS preflight carries no credentials: the browser routes' CORS layer answers it.
    if request.method() == Method::OPTIONS && surface == Surface::Browser {
        return next.run(request).await;
    }
    // No credential at all: the route decides (a handler that needs a caller
    // answers 401; an unsupported method still answers 405).
    if !request.headers().contains_key("x-api-key")
        && !request.headers().contains_key(AUTHORIZATION)
    {
        request.extensions_mut().insert(Anonymous);
        return next.run(request).await;
    }
    match caller(&state, surface, request.headers()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => {
            let mut response = e.into_response();
            // A browser must be able to read why its session was refused.
            if surface == Surface::Browser
                && let Some(origin) = request.headers().get(ORIGIN).cloned()
                && let Ok(text) = origin.to_str()
                && state
                    .store
                    .system_origin_allowed(text)
                    .await
                    .unwrap_or(false)
            {
                let headers = response.headers_mut();
                headers.insert(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                headers.insert(
                    axum::http::header::VARY,
                    axum::http::HeaderValue::from_static("origin"),
                );
            }
            response
        }
    }
}

async fn caller(
    state: &AppState,
    surface: Surface,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let token = presented(headers)?;
    let token = token.expose_secret();
    if is_session_token(token) {
        if surface != Surface::Browser {
            return Err(ApiError::forbidden(
                "session_forbidden",
                "A connect-session token may only call GET /api/v1/connections/stripe/auth-url and POST /api/v1/connections; everything else needs a tenant API key, which belongs on the tenant's backend, never in a browser.",
            ));
        }
        let session = connect_sessions::verify(state, token).await?;
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            let allowed = state
                .store
                .allowed_origins(session.tenant_id)
                .await
                .map_err(crate::services::error::ServiceError::from)?;
            if !allowed.iter().any(|o| o == origin) {
                return Err(ApiError::forbidden(
                    "origin_not_allowed",
                    "This page's origin is not among the tenant's allowed origins (PUT /api/v1/settings).",
                ));
            }
        }
        return Ok(Caller::Session(session));
    }
    if state.is_admin_token(token) {
        return match surface {
            Surface::Management => Ok(Caller::Admin),
            Surface::Browser | Surface::Proxy => Err(tenant_key_required()),
        };
    }
    let tenant = state.keys.verify(token).await.map_err(ApiError::from)?;
    if let Some(bound) = tenant.connection_id
        && surface != Surface::Proxy
    {
        return Err(ApiError::forbidden(
            "api_key_bound",
            format!(
                "This key is bound to connection {bound}: it may call only Stripe's paths at the server's root (/v1/…, /v2/…), like a Stripe key."
            ),
        ));
    }
    Ok(Caller::Tenant(tenant))
}

fn tenant_key_required() -> ApiError {
    ApiError::forbidden(
        "tenant_key_required",
        "This endpoint acts for one tenant: call it with that tenant's API key. The admin manages tenants' keys under /api/v1/tenants/{id}/api-keys.",
    )
}

/// Marks a request the layer saw without any credential.
#[derive(Debug, Clone, Copy)]
struct Anonymous;

/// The caller the layer resolved; a route outside the layers has none (a bug).
fn resolved(parts: &Parts) -> Result<Caller, ApiError> {
    if let Some(caller) = parts.extensions.get::<Caller>() {
        return Ok(caller.clone());
    }
    if parts.extensions.get::<Anonymous>().is_some() {
        return Err(ApiError::unauthenticated(
            "api_key_missing",
            "No API key provided. Send it as 'x-api-key: <key>' or 'Authorization: Bearer <key>'.",
        ));
    }
    Err(ApiError::from(
        crate::services::error::ServiceError::internal(
            &"a route that needs a caller is outside the caller layer",
        ),
    ))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        resolved(parts)
    }
}

/// The admin or a tenant key (a connect session gets 403).
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
fn presented(headers: &HeaderMap) -> Result<SecretString, ApiError> {
    if let Some(value) = headers.get("x-api-key") {
        let key = value.to_str().map_err(|_| malformed())?.trim();
        if !key.is_empty() {
            return Ok(SecretString::from(key));
        }
    }
    if let Some(value) = headers.get(AUTHORIZATION) {
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

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        match resolved(parts)? {
            Caller::Admin => Ok(Principal::Admin),
            Caller::Tenant(t) => Ok(Principal::Tenant(t)),
            Caller::Session(_) => Err(ApiError::forbidden(
                "session_forbidden",
                "A connect session may not call this endpoint.",
            )),
        }
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
            Principal::Admin => Err(tenant_key_required()),
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
        Self::for_actor(principal.actor(), request_id)
    }

    /// For any actor in a request.
    pub fn for_actor(actor: Actor, request_id: &RequestId) -> Self {
        Self {
            actor,
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
