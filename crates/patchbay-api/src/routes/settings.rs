//! `/api/v1/settings`: the tenant's own settings — the browser origins allowed
//! on the connect-session routes (CORS).

use axum::Extension;
use axum::extract::State;
use patchbay_core::api_key::Scope;
use serde::{Deserialize, Serialize};

use super::common::{BodyErrors, StandardErrors, Unprocessable};
use crate::auth::{AuditContext, Principal, Tenant};
use crate::context::RequestId;
use crate::error::ApiError;
use crate::extract::Json;
use crate::services::settings;
use crate::state::AppState;

/// The tenant's settings.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SettingsObject {
    /// Always `tenant_settings`.
    #[schema(example = "tenant_settings")]
    pub object: &'static str,
    /// Browser origins (`https://app.example.com`) that may call the two
    /// connect-session routes; no other route answers CORS.
    pub allowed_origins: Vec<String>,
}

/// New settings.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSettings {
    /// Up to 20 origins: scheme, host and port, https (http only for localhost).
    #[schema(max_items = 20, example = json!(["https://app.example.com"]))]
    pub allowed_origins: Vec<String>,
}

/// Retrieve settings
///
/// The tenant's settings: the browser origins allowed to use connect sessions. Needs
/// `connections:read`.
#[utoipa::path(get, path = "/api/v1/settings", tag = "tenants",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The settings", body = SettingsObject, example = super::examples::settings), StandardErrors))]
pub async fn get_settings(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<axum::Json<SettingsObject>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let allowed_origins = settings::allowed_origins(&state, tenant.tenant_id).await?;
    Ok(axum::Json(SettingsObject {
        object: "tenant_settings",
        allowed_origins,
    }))
}

/// Replace settings
///
/// Replaces the tenant's settings. `allowed_origins` are the exact origins
/// (`https://app.example.com`) whose browsers may call the connect-session routes with
/// CORS. Needs the `admin` scope.
#[utoipa::path(put, path = "/api/v1/settings", tag = "tenants", request_body(content = PutSettings, example = super::examples::put_settings),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The settings", body = SettingsObject, example = super::examples::settings), StandardErrors, BodyErrors, Unprocessable))]
pub async fn put_settings(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Json(body): Json<PutSettings>,
) -> Result<axum::Json<SettingsObject>, ApiError> {
    tenant.require(Scope::Admin)?;
    let ctx = AuditContext::new(&Principal::Tenant(tenant.clone()), &request_id);
    let allowed_origins =
        settings::set_allowed_origins(&state, &ctx, tenant.tenant_id, &body.allowed_origins)
            .await?;
    Ok(axum::Json(SettingsObject {
        object: "tenant_settings",
        allowed_origins,
    }))
}
