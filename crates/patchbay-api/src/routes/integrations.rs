//! `/api/v1/integrations/stripe`: the tenant's Stripe Connect platform.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use patchbay_core::api_key::Scope;
use patchbay_core::connect::{GrantScope, StripePlatform};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::common::{BodyErrors, StandardErrors, Unprocessable};
use crate::auth::{AuditContext, Principal, Tenant};
use crate::context::RequestId;
use crate::error::{ApiError, ErrorResponse};
use crate::extract::{Json, Query};
use crate::services::platforms::{self, PlatformInput, parse_mode};
use crate::state::AppState;

/// The tenant's Connect platform in one mode. The platform key is never shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlatformObject {
    /// The mode of the platform key.
    pub livemode: bool,
    /// `ca_…`
    #[schema(example = "ca_FkyHCg7X8mlvCUdMDao4mMxagUfhIwXb")]
    pub client_id: String,
    /// Enough of the platform key to recognise it.
    #[schema(example = "sk_test_…4242")]
    pub key_hint: String,
    /// The platform's own account, when the key could read it.
    pub platform_account_id: Option<String>,
    /// Redirect URIs `auth-url` accepts.
    pub redirect_uris: Vec<String>,
    /// The scope asked for when `auth-url` names none.
    pub scope: GrantScope,
    /// When first configured.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<StripePlatform> for PlatformObject {
    fn from(p: StripePlatform) -> Self {
        Self {
            livemode: p.livemode,
            client_id: p.client_id,
            key_hint: p.key_hint,
            platform_account_id: p.platform_account_id,
            redirect_uris: p.redirect_uris,
            scope: p.scope,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// The tenant's Stripe Connect integration: a platform per mode.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IntegrationObject {
    /// Always `stripe_integration`.
    #[schema(example = "stripe_integration")]
    pub object: &'static str,
    /// The test-mode platform, if configured.
    pub test: Option<PlatformObject>,
    /// The live-mode platform, if configured.
    pub live: Option<PlatformObject>,
}

impl IntegrationObject {
    fn new(platforms: Vec<StripePlatform>) -> Self {
        let mut out = Self {
            object: "stripe_integration",
            test: None,
            live: None,
        };
        for p in platforms {
            if p.livemode {
                out.live = Some(p.into());
            } else {
                out.test = Some(p.into());
            }
        }
        out
    }
}

/// A platform to configure; the key's mode picks which one.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutIntegration {
    /// The platform's Connect client id (`ca_…`), from the Dashboard's Connect settings.
    #[schema(example = "ca_FkyHCg7X8mlvCUdMDao4mMxagUfhIwXb", max_length = 255)]
    pub client_id: String,
    /// The platform's secret key (`sk_test_…` or `sk_live_…`); proven with a test call, then sealed.
    #[schema(value_type = String, format = Password, write_only, example = "sk_test_51HabcDEF0123456789xyzXYZ4242", max_length = 255)]
    pub secret_key: SecretString,
    /// Redirect URIs registered in the Stripe Dashboard (usually this server's `/api/v1/oauth/stripe/callback`).
    #[schema(min_items = 1, max_items = 20)]
    pub redirect_uris: Vec<String>,
    /// Default scope: `read_write` (default) or `read_only`.
    pub scope: Option<String>,
}

/// Which platform to delete.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteIntegration {
    /// `test` or `live`; both when absent.
    mode: Option<String>,
    /// Delete even while Connect connections depend on it (they are deleted too, without telling Stripe).
    #[serde(default)]
    force: bool,
}

fn audit(principal: &crate::auth::TenantPrincipal, request_id: &RequestId) -> AuditContext {
    AuditContext::new(&Principal::Tenant(principal.clone()), request_id)
}

/// Configure the Connect platform
///
/// Configures the tenant's Stripe Connect platform for the mode of its secret key:
/// `client_id`, the platform secret key (tested, sealed, never shown again), the
/// allowed `redirect_uris` and the default `scope`. Needs the `admin` scope.
#[utoipa::path(put, path = "/api/v1/integrations/stripe", tag = "oauth", request_body(content = PutIntegration, example = super::examples::put_integration),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The integration", body = IntegrationObject, example = super::examples::integration),
        StandardErrors, BodyErrors, Unprocessable,
        (status = 409, description = "A new client id while Connect connections depend on the old one (`integration_in_use`)", body = ErrorResponse),
        (status = 502, description = "Stripe could not be reached for the key's test call", body = ErrorResponse),
        (status = 504, description = "Stripe gave no answer within the interactive deadline", body = ErrorResponse),
    ))]
pub async fn put_integration(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Json(body): Json<PutIntegration>,
) -> Result<axum::Json<IntegrationObject>, ApiError> {
    tenant.require(Scope::Admin)?;
    let platforms = platforms::put(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        PlatformInput {
            client_id: body.client_id,
            secret_key: body.secret_key,
            redirect_uris: body.redirect_uris,
            scope: body.scope,
        },
    )
    .await?;
    Ok(axum::Json(IntegrationObject::new(platforms)))
}

/// Retrieve the Connect platforms
///
/// The tenant's Connect platforms per mode (`test`, `live`), with key hints but without
/// their keys. Needs `connections:read`.
#[utoipa::path(get, path = "/api/v1/integrations/stripe", tag = "oauth",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The integration; `test` and `live` are null when not configured", body = IntegrationObject, example = super::examples::integration), StandardErrors))]
pub async fn get_integration(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<axum::Json<IntegrationObject>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let platforms = platforms::list(&state, tenant.tenant_id).await?;
    Ok(axum::Json(IntegrationObject::new(platforms)))
}

/// Delete a Connect platform
///
/// Deletes the Connect platform of one mode (`?mode=test|live`) or both. Refused with
/// 409 while Connect connections depend on it, unless `force=true`. Needs the `admin`
/// scope.
#[utoipa::path(delete, path = "/api/v1/integrations/stripe", tag = "oauth", params(DeleteIntegration),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        StandardErrors,
        (status = 404, description = "No such platform", body = ErrorResponse),
        (status = 409, description = "Connect connections depend on it (`integration_in_use`)", body = ErrorResponse),
        (status = 422, description = "A bad mode", body = ErrorResponse),
    ))]
pub async fn delete_integration(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Query(query): Query<DeleteIntegration>,
) -> Result<StatusCode, ApiError> {
    tenant.require(Scope::Admin)?;
    let livemode = query.mode.as_deref().map(parse_mode).transpose()?;
    platforms::delete(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        livemode,
        query.force,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
