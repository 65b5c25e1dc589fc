//! `POST /api/v1/connect-sessions`: a short-lived token for one end user's browser.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use patchbay_core::api_key::Scope;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::common::{BodyErrors, StandardErrors, Unprocessable};
use crate::auth::{AuditContext, Principal, Tenant};
use crate::context::RequestId;
use crate::error::ApiError;
use crate::extract::Json;
use crate::security_headers::NoStore;
use crate::services::connect_sessions::{self, Allowed, SessionInput};
use crate::state::AppState;

/// A session to mint.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnectSession {
    /// The end user the browser acts for; its connection gets this external_id.
    #[schema(min_length = 1, max_length = 255, example = "user-42")]
    pub external_id: String,
    /// What the browser may do: `oauth` (start Stripe Connect OAuth) and/or `api_key` (submit a key).
    pub allowed: Vec<Allowed>,
    /// Where the browser returns after OAuth (https; http only for localhost).
    pub return_to: Option<String>,
    /// Lifetime in seconds (60 to 86400; default 1800).
    pub expires_in_seconds: Option<u64>,
}

/// A minted session. The token is shown once: hand it to the end user's browser.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectSessionObject {
    /// `cs_…`
    pub id: String,
    /// Always `connect_session`.
    #[schema(example = "connect_session")]
    pub object: &'static str,
    /// The token (an HS256 JWT) for `Authorization: Bearer`, single use.
    pub token: String,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// The end user.
    pub external_id: String,
    /// What it allows.
    pub allowed: Vec<Allowed>,
    /// Its return URL.
    pub return_to: Option<String>,
}

/// Create a connect session
///
/// Mints a connect session for one end user: a short-lived, single-use token a browser
/// may use only for `GET /api/v1/connections/stripe/auth-url` and `POST
/// /api/v1/connections`, for that end user, creating at most one connection. Allow the
/// browser's origin first with `PUT /api/v1/settings`. Needs `connections:write`.
#[utoipa::path(post, path = "/api/v1/connect-sessions", tag = "oauth", request_body(content = CreateConnectSession, example = super::examples::create_connect_session),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "The session and its token (shown once)", body = ConnectSessionObject, example = super::examples::connect_session),
        StandardErrors, BodyErrors, Unprocessable,
    ))]
pub async fn create_connect_session(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Json(body): Json<CreateConnectSession>,
) -> Result<Response, ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let ctx = AuditContext::new(&Principal::Tenant(tenant.clone()), &request_id);
    let issued = connect_sessions::create(
        &state,
        &ctx,
        tenant.tenant_id,
        SessionInput {
            external_id: body.external_id,
            allowed: body.allowed,
            return_to: body.return_to,
            expires_in_seconds: body.expires_in_seconds,
        },
    )
    .await?;
    let object = ConnectSessionObject {
        id: issued.id,
        object: "connect_session",
        token: issued.token.expose_secret().to_owned(),
        expires_at: issued.expires_at,
        external_id: issued.external_id,
        allowed: issued.allowed,
        return_to: issued.return_to,
    };
    Ok((StatusCode::CREATED, NoStore, axum::Json(object)).into_response())
}
