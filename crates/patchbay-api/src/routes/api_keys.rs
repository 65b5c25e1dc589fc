//! Tenant API keys: managed by the platform admin under
//! `/api/v1/tenants/{id}/api-keys`, and by the tenant itself (with an `admin`
//! scoped key) under `/api/v1/api-keys`. Several keys may be live at once, so a
//! tenant rotates with no downtime: create the new key, switch, revoke the old.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use patchbay_core::api_key::{ApiKey, KeyState, Scope};
use patchbay_core::time::now;
use patchbay_core::{ApiKeyId, ConnectionId, TenantId};
use patchbay_vault::ApiToken;
use serde::{Deserialize, Serialize};

use super::common::{BodyErrors, ListResponse, NotFound, StandardErrors, Unprocessable, page};
use crate::auth::{Admin, AuditContext, Principal, Tenant};
use crate::context::RequestId;
use crate::error::{ApiError, ErrorResponse};
use crate::extract::{Json, Query, parse_id};
use crate::security_headers::NoStore;
use crate::services::api_keys::{self, NewKey};
use crate::state::AppState;

/// An API key. The secret (`key`) appears only in the response that creates it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyObject {
    /// `key_…`
    pub id: ApiKeyId,
    /// Always `api_key`.
    #[schema(example = "api_key")]
    pub object: &'static str,
    /// Owner.
    pub tenant_id: TenantId,
    /// Label.
    pub name: Option<String>,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// `active`, `revoked` or `expired`.
    #[schema(example = "active")]
    pub status: &'static str,
    /// The key's last characters, to recognise it.
    #[schema(example = "pbk_…x9Qa")]
    pub hint: String,
    /// The full key: send it as `x-api-key` or `Authorization: Bearer`. Shown only
    /// once, in the creation response; store it safely.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// When the key stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last successful use (recorded to within a few seconds).
    pub last_used_at: Option<DateTime<Utc>>,
    /// The connection a bound key is limited to (it calls only `/v1/*` and `/v2/*`, the proxy's root paths).
    pub connection_id: Option<ConnectionId>,
    /// When created.
    pub created_at: DateTime<Utc>,
}

impl ApiKeyObject {
    fn new(key: ApiKey, token: Option<&ApiToken>) -> Self {
        let status = match key.state(now()) {
            KeyState::Active => "active",
            KeyState::Revoked => "revoked",
            KeyState::Expired => "expired",
        };
        Self {
            id: key.id,
            object: "api_key",
            tenant_id: key.tenant_id,
            name: key.name,
            scopes: key.scopes.as_slice().to_vec(),
            status,
            hint: key.hint,
            key: token.map(|t| t.expose().to_owned()),
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
            last_used_at: key.last_used_at,
            connection_id: key.connection_id,
            created_at: key.created_at,
        }
    }
}

/// A key to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// Label, 1 to 200 characters.
    #[schema(example = "production backend", min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// One or more of `admin`, `connections:read`, `connections:write`, `proxy`.
    #[schema(example = json!(["connections:write", "proxy"]), min_items = 1)]
    pub scopes: Vec<Scope>,
    /// When the key stops working: RFC 3339, in the future, at most 10 years
    /// ahead. Any offset is accepted; it is returned in UTC (`Z`).
    pub expires_at: Option<DateTime<Utc>>,
    /// Bind the key to one connection: it then works exactly like a Stripe key
    /// for that connection at `/v1/*` and `/v2/*` (for SDKs that fix their base
    /// path), and nowhere else. Scopes must be `["proxy"]`.
    pub connection_id: Option<ConnectionId>,
}

/// The tenant's key limit.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum LimitReached {
    /// The tenant has as many unrevoked API keys as allowed
    /// (`tenant_limit_reached`, `PATCHBAY_MAX_API_KEYS_PER_TENANT`).
    #[response(status = 409)]
    Conflict(ErrorResponse),
}

/// Paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListApiKeys {
    /// 1 to 100, default 10.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// A key id: list the keys created before it.
    #[param(value_type = Option<ApiKeyId>)]
    pub starting_after: Option<String>,
    /// A key id: list the keys created after it.
    #[param(value_type = Option<ApiKeyId>)]
    pub ending_before: Option<String>,
}

async fn create(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    body: CreateApiKey,
) -> Result<(StatusCode, NoStore, axum::Json<ApiKeyObject>), ApiError> {
    let input = NewKey {
        name: body.name,
        scopes: body.scopes,
        expires_at: body.expires_at,
        connection_id: body.connection_id,
    };
    let (key, token) = api_keys::create(state, ctx, tenant, input).await?;
    Ok((
        StatusCode::CREATED,
        NoStore,
        axum::Json(ApiKeyObject::new(key, Some(&token))),
    ))
}

async fn list(
    state: &AppState,
    tenant: TenantId,
    query: ListApiKeys,
    url: String,
) -> Result<axum::Json<ListResponse<ApiKeyObject>>, ApiError> {
    let request = page(
        query.limit,
        query.starting_after.as_deref(),
        query.ending_before.as_deref(),
    )?;
    let page = api_keys::list(state, tenant, &request).await?;
    Ok(axum::Json(ListResponse::new(
        page.data
            .into_iter()
            .map(|k| ApiKeyObject::new(k, None))
            .collect(),
        page.has_more,
        url,
    )))
}

fn admin_ctx(request_id: &RequestId) -> AuditContext {
    AuditContext::new(&Principal::Admin, request_id)
}

/// Create a tenant's API key
///
/// Creates an API key for a tenant with the given scopes (`admin`, `connections:write`,
/// `connections:read`, `proxy`), optionally expiring or bound to one connection. The
/// response carries the full key (`pbk_…`) this once, with `Cache-Control: no-store`;
/// only its SHA-256 digest is stored. Platform admin token only.
#[utoipa::path(post, path = "/api/v1/tenants/{id}/api-keys", tag = "api-keys", request_body(content = CreateApiKey, example = super::examples::create_api_key),
    params(("id" = TenantId, Path, description = "Tenant id (ten_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, description = "Created; `key` holds the secret", body = ApiKeyObject, example = super::examples::api_key_created), StandardErrors, BodyErrors, NotFound, LimitReached, Unprocessable))]
pub async fn admin_create_key(
    _: Admin,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    Json(body): Json<CreateApiKey>,
) -> Result<(StatusCode, NoStore, axum::Json<ApiKeyObject>), ApiError> {
    let tenant = parse_id(&id, "id")?;
    create(&state, &admin_ctx(&request_id), tenant, body).await
}

/// List a tenant's API keys
///
/// A page of a tenant's API keys, newest first, revoked and expired ones included;
/// never their secrets. Platform admin token only.
#[utoipa::path(get, path = "/api/v1/tenants/{id}/api-keys", tag = "api-keys", params(("id" = TenantId, Path, description = "Tenant id (ten_…)"), ListApiKeys),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "A page of keys", body = ListResponse<ApiKeyObject>, example = super::examples::admin_api_key_list), StandardErrors, NotFound))]
pub async fn admin_list_keys(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ListApiKeys>,
) -> Result<axum::Json<ListResponse<ApiKeyObject>>, ApiError> {
    let tenant: TenantId = parse_id(&id, "id")?;
    crate::services::tenants::get(&state, tenant).await?;
    list(
        &state,
        tenant,
        query,
        format!("/api/v1/tenants/{tenant}/api-keys"),
    )
    .await
}

/// Retrieve a tenant's API key
///
/// One of a tenant's API keys, without its secret. Platform admin token only.
#[utoipa::path(get, path = "/api/v1/tenants/{id}/api-keys/{key_id}", tag = "api-keys",
    params(("id" = TenantId, Path, description = "Tenant id (ten_…)"), ("key_id" = ApiKeyId, Path, description = "Key id (key_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The key", body = ApiKeyObject, example = super::examples::api_key), StandardErrors, NotFound))]
pub async fn admin_get_key(
    _: Admin,
    State(state): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<axum::Json<ApiKeyObject>, ApiError> {
    let tenant = parse_id(&id, "id")?;
    let key_id = parse_id(&key_id, "key_id")?;
    Ok(axum::Json(ApiKeyObject::new(
        api_keys::get(&state, tenant, key_id).await?,
        None,
    )))
}

/// Revoke a tenant's API key
///
/// Revokes one of a tenant's API keys. It is refused at once on this replica and within
/// `PATCHBAY_KEY_CACHE_TTL` on the others. Platform admin token only.
#[utoipa::path(delete, path = "/api/v1/tenants/{id}/api-keys/{key_id}", tag = "api-keys",
    params(("id" = TenantId, Path, description = "Tenant id (ten_…)"), ("key_id" = ApiKeyId, Path, description = "Key id (key_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The revoked key", body = ApiKeyObject, example = super::examples::api_key_revoked), StandardErrors, NotFound))]
pub async fn admin_revoke_key(
    _: Admin,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<axum::Json<ApiKeyObject>, ApiError> {
    let tenant = parse_id(&id, "id")?;
    let key_id = parse_id(&key_id, "key_id")?;
    let key = api_keys::revoke(&state, &admin_ctx(&request_id), tenant, key_id).await?;
    Ok(axum::Json(ApiKeyObject::new(key, None)))
}

/// Create an API key
///
/// Creates an API key for the calling tenant (the caller needs the `admin` scope). For
/// zero-downtime rotation: create a second key, deploy it, then revoke the old one. The
/// full key is in this response only.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", request_body(content = CreateApiKey, example = super::examples::create_api_key),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, description = "Created; `key` holds the secret", body = ApiKeyObject, example = super::examples::api_key_created), StandardErrors, BodyErrors, LimitReached, Unprocessable))]
pub async fn create_key(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Json(body): Json<CreateApiKey>,
) -> Result<(StatusCode, NoStore, axum::Json<ApiKeyObject>), ApiError> {
    tenant.require(Scope::Admin)?;
    let ctx = AuditContext::new(&Principal::Tenant(tenant.clone()), &request_id);
    create(&state, &ctx, tenant.tenant_id, body).await
}

/// List API keys
///
/// A page of the calling tenant's API keys, newest first, without their secrets (needs
/// the `admin` scope).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", params(ListApiKeys),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "A page of keys", body = ListResponse<ApiKeyObject>, example = super::examples::api_key_list), StandardErrors))]
pub async fn list_keys(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Query(query): Query<ListApiKeys>,
) -> Result<axum::Json<ListResponse<ApiKeyObject>>, ApiError> {
    tenant.require(Scope::Admin)?;
    list(
        &state,
        tenant.tenant_id,
        query,
        "/api/v1/api-keys".to_owned(),
    )
    .await
}

/// Retrieve an API key
///
/// One of the calling tenant's API keys, without its secret (needs the `admin` scope).
#[utoipa::path(get, path = "/api/v1/api-keys/{key_id}", tag = "api-keys",
    params(("key_id" = ApiKeyId, Path, description = "Key id (key_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The key", body = ApiKeyObject, example = super::examples::api_key), StandardErrors, NotFound))]
pub async fn get_key(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(key_id): Path<String>,
) -> Result<axum::Json<ApiKeyObject>, ApiError> {
    tenant.require(Scope::Admin)?;
    let key_id = parse_id(&key_id, "key_id")?;
    Ok(axum::Json(ApiKeyObject::new(
        api_keys::get(&state, tenant.tenant_id, key_id).await?,
        None,
    )))
}

/// Revoke an API key
///
/// Revokes one of the calling tenant's API keys (needs the `admin` scope); it stops
/// working at once on this replica and within `PATCHBAY_KEY_CACHE_TTL` on the others.
#[utoipa::path(delete, path = "/api/v1/api-keys/{key_id}", tag = "api-keys",
    params(("key_id" = ApiKeyId, Path, description = "Key id (key_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The revoked key", body = ApiKeyObject, example = super::examples::api_key_revoked), StandardErrors, NotFound))]
pub async fn revoke_key(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(key_id): Path<String>,
) -> Result<axum::Json<ApiKeyObject>, ApiError> {
    tenant.require(Scope::Admin)?;
    let key_id = parse_id(&key_id, "key_id")?;
    let ctx = AuditContext::new(&Principal::Tenant(tenant.clone()), &request_id);
    let key = api_keys::revoke(&state, &ctx, tenant.tenant_id, key_id).await?;
    Ok(axum::Json(ApiKeyObject::new(key, None)))
}
