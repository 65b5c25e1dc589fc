//! Stripe Connect OAuth: `GET /api/v1/connections/stripe/auth-url` (a tenant
//! key or a connect session) and the public callback Stripe redirects the end
//! user's browser to, `GET /api/v1/oauth/stripe/callback`.

use axum::Extension;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use patchbay_core::api_key::Scope;
use serde::Serialize;
use url::Url;

use super::connections::ConnectionObject;
use crate::auth::Caller;
use crate::context::RequestId;
use crate::error::{ApiError, ErrorResponse};
use crate::services::connect_sessions::Allowed;
use crate::services::error::ServiceError;
use crate::services::oauth::{self, AuthUrlInput, CallbackInput, SessionBinding};
use crate::state::AppState;

/// Query of `auth-url`. `stripe_user[…]` fields prefill Stripe's form
/// (`stripe_user[email]`, `stripe_user[country]`, `stripe_user[business_name]`, …).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AuthUrlQuery {
    /// One of the platform's registered redirect URIs (default: its first).
    redirect_uri: Option<String>,
    /// The end user's reference; the connection gets it (a connect session fixes it).
    external_id: Option<String>,
    /// `read_write` or `read_only` (default: the platform's).
    scope: Option<String>,
    /// `test` or `live`; needed only when both platforms are configured.
    mode: Option<String>,
    /// `login` or `register`.
    stripe_landing: Option<String>,
    /// `true` to always show Stripe's account chooser.
    always_prompt: Option<bool>,
    /// Where the browser goes after the callback (a connect session fixes it).
    return_to: Option<String>,
}

/// Stripe's authorize URL for the end user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthUrlObject {
    /// Always `oauth_authorize_url`.
    #[schema(example = "oauth_authorize_url")]
    pub object: &'static str,
    /// Send the end user's browser here.
    #[schema(
        example = "https://connect.stripe.com/oauth/authorize?response_type=code&client_id=ca_…&scope=read_write&state=…&redirect_uri=…"
    )]
    pub url: String,
    /// The single-use state in the URL (256 random bits; only its hash is stored).
    pub state: String,
    /// When the state stops being accepted.
    pub expires_at: DateTime<Utc>,
}

fn parse_auth_url_query(query: Option<&str>) -> Result<AuthUrlInput, ApiError> {
    let mut input = AuthUrlInput::default();
    let mut seen = std::collections::HashSet::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !seen.insert(name.to_string()) {
            return Err(ApiError::bad_request(
                "parameter_duplicated",
                format!("The query parameter {name} appears more than once."),
            )
            .with_param(name.to_string()));
        }
        let value = value.into_owned();
        match name.as_ref() {
            "redirect_uri" => input.redirect_uri = Some(value),
            "external_id" => input.external_id = Some(value),
            "scope" => input.scope = Some(value),
            "mode" => input.mode = Some(value),
            "stripe_landing" => input.stripe_landing = Some(value),
            "return_to" => input.return_to = Some(value),
            "always_prompt" => {
                input.always_prompt = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::bad_request(
                            "parameter_invalid",
                            "always_prompt must be true or false.",
                        )
                        .with_param("always_prompt"));
                    }
                }
            }
            other => match other
                .strip_prefix("stripe_user[")
                .and_then(|f| f.strip_suffix(']'))
            {
                Some(field) if !field.is_empty() => {
                    input.stripe_user.push((field.to_owned(), value))
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "parameter_unknown",
                        format!(
                            "Received unknown query parameter: {}.",
                            other.chars().take(100).collect::<String>()
                        ),
                    )
                    .with_param(other.chars().take(100).collect::<String>()));
                }
            },
        }
    }
    Ok(input)
}

/// Start a Connect OAuth flow
///
/// Stripe's authorize URL with a single-use `state` bound to the tenant and
/// `external_id`, valid for `PATCHBAY_OAUTH_STATE_TTL` (10 minutes). Send the end
/// user's browser to `url`. Callable with a tenant key (`connections:write`) or, from a
/// browser, a connect session that allows `oauth`.
#[utoipa::path(get, path = "/api/v1/connections/stripe/auth-url", tag = "oauth", params(AuthUrlQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The authorize URL", body = AuthUrlObject, example = super::examples::auth_url),
        (status = 400, description = "An unknown or repeated query parameter", body = ErrorResponse),
        (status = 401, description = "No valid API key or connect session", body = ErrorResponse),
        (status = 403, description = "The key lacks `connections:write`, or the session does not allow this (`session_forbidden`, `session_used`, `session_scope_mismatch`, `origin_not_allowed`)", body = ErrorResponse),
        (status = 409, description = "No Connect platform is configured (`integration_missing`)", body = ErrorResponse),
        (status = 422, description = "A parameter breaks a rule (an unregistered redirect_uri, a bad scope, …); `param` names it", body = ErrorResponse),
    ))]
pub async fn auth_url(
    caller: Caller,
    State(state): State<AppState>,
    parts: Parts,
) -> Result<axum::Json<AuthUrlObject>, ApiError> {
    let input = parse_auth_url_query(parts.uri.query())?;
    let (tenant, binding) = match &caller {
        Caller::Tenant(t) => {
            t.require(Scope::ConnectionsWrite)?;
            (t.tenant_id, None)
        }
        Caller::Session(s) => {
            s.require(Allowed::Oauth)?;
            (
                s.tenant_id,
                Some(SessionBinding {
                    session: s.spend(),
                    external_id: s.external_id.clone(),
                    return_to: s.return_to.clone(),
                }),
            )
        }
        Caller::Admin => {
            return Err(ServiceError::forbidden(
                "tenant_key_required",
                "Start OAuth with the tenant's API key or a connect session.",
            )
            .into());
        }
    };
    let url = oauth::auth_url(&state, tenant, input, binding).await?;
    Ok(axum::Json(AuthUrlObject {
        object: "oauth_authorize_url",
        url: url.url,
        state: url.state,
        expires_at: url.expires_at,
    }))
}

/// Query of the callback, as Stripe sends it.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code (`ac_…`).
    code: Option<String>,
    /// The state `auth-url` issued.
    state: Option<String>,
    /// The scope granted.
    #[allow(dead_code)]
    scope: Option<String>,
    /// `access_denied`, … when the end user or Stripe refused.
    error: Option<String>,
    /// Stripe's words for the refusal.
    error_description: Option<String>,
}

/// Adds query pairs to a return URL.
fn with_query(base: &str, pairs: &[(&str, &str)]) -> Option<HeaderValue> {
    let mut url = Url::parse(base).ok()?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    HeaderValue::from_str(url.as_str()).ok()
}

fn see_other(location: HeaderValue) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
}

/// Connect OAuth callback
///
/// Where Stripe sends the end user after consent (public: the state authenticates).
/// Exchanges the code for a grant with the tenant's platform key and stores it as a
/// connection (201), or re-links the same end user's same account (200). With a
/// `return_to`, the browser is sent there (303) with `connection_id` and `status`, or
/// with `error` and `error_description`; without one, the answer is JSON. An unknown,
/// used or expired state is a 400 and creates nothing.
#[utoipa::path(get, path = "/api/v1/oauth/stripe/callback", tag = "oauth", params(CallbackQuery),
    security(()),
    responses(
        (status = 201, description = "The new connection (no return_to)", body = ConnectionObject, example = super::examples::connection_oauth),
        (status = 200, description = "The re-linked connection (no return_to)", body = ConnectionObject, example = super::examples::connection_oauth),
        (status = 303, description = "Back to the flow's return_to, with `connection_id` and `status`, or `error` and `error_description`"),
        (status = 400, description = "An unknown, used or expired state (`oauth_state_invalid`); the end user declined (`access_denied`); Stripe refused the code (`invalid_grant`, `oauth_refused`)", body = ErrorResponse),
        (status = 409, description = "The external_id names another account's connection, or a limit was reached", body = ErrorResponse),
        (status = 502, description = "Stripe's Connect service could not be reached", body = ErrorResponse),
    ))]
pub async fn callback(
    State(state): State<AppState>,
    Extension(_request_id): Extension<RequestId>,
    crate::extract::Query(query): crate::extract::Query<CallbackQuery>,
) -> Result<Response, ApiError> {
    let outcome = oauth::callback(
        &state,
        CallbackInput {
            code: query.code,
            state: query.state,
            error: query.error,
            error_description: query.error_description,
        },
    )
    .await?;
    match (outcome.result, outcome.return_to) {
        (Ok(done), Some(return_to)) => {
            let id = done.connection.id.to_string();
            let mut pairs = vec![
                ("connection_id", id.as_str()),
                ("status", done.connection.status.as_str()),
            ];
            if let Some(ext) = done.connection.external_id.as_deref() {
                pairs.push(("external_id", ext));
            }
            let location = with_query(&return_to, &pairs).ok_or_else(|| {
                ApiError::from(ServiceError::internal(
                    &"a stored return_to no longer parses",
                ))
            })?;
            Ok(see_other(location))
        }
        (Ok(done), None) => {
            let status = if done.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, axum::Json(ConnectionObject::from(done.connection))).into_response())
        }
        (Err(e), Some(return_to)) => {
            let location = with_query(
                &return_to,
                &[("error", &e.code), ("error_description", &e.message)],
            )
            .ok_or_else(|| {
                ApiError::from(ServiceError::internal(
                    &"a stored return_to no longer parses",
                ))
            })?;
            Ok(see_other(location))
        }
        (Err(e), None) => Err(e.into()),
    }
}
