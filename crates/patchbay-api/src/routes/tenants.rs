//! `/api/v1/tenants`: the platform admin manages tenants.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use patchbay_core::metadata::MetadataPatch;
use patchbay_core::tenant::{Tenant, TenantStatus};
use patchbay_core::tenant_limits::{
    MAX_CONCURRENT_UPSTREAM, MAX_REQUESTS, TenantLimits, validate_limit,
};
use patchbay_core::{Metadata, TenantId};
use serde::{Deserialize, Serialize};

use super::common::{
    BodyErrors, Deleted, ListResponse, NotFound, StandardErrors, Unprocessable, double_option, page,
};
use crate::auth::{Admin, AuditContext, Principal};
use crate::context::RequestId;
use crate::error::ApiError;
use crate::extract::{Json, Query, parse_id};
use crate::services::tenants::{self, LimitsPatch, TenantPatch};
use crate::state::AppState;

/// A tenant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantObject {
    /// `ten_…`
    pub id: TenantId,
    /// Always `tenant`.
    #[schema(example = "tenant")]
    pub object: &'static str,
    /// Display name.
    #[schema(example = "Acme Corp")]
    pub name: String,
    /// `active`, or `disabled` (its API keys are refused).
    pub status: TenantStatus,
    /// Your key/value pairs.
    pub metadata: Metadata,
    /// The tenant's own limits; `null` values are the server's defaults.
    pub limits: LimitsObject,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

/// A tenant's own limits; each `null` is the server's default
/// (`PATCHBAY_TENANT_RATE_LIMIT`, `PATCHBAY_TENANT_RATE_BURST`,
/// `PATCHBAY_TENANT_MAX_CONCURRENT_UPSTREAM`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LimitsObject {
    /// Requests per second the tenant may send to this API on average (per replica).
    #[schema(example = 50)]
    pub requests_per_second: Option<u32>,
    /// Requests it may send at once above that rate.
    #[schema(example = 100)]
    pub burst: Option<u32>,
    /// Stripe calls its requests may make at once (actions, the proxy, test calls).
    #[schema(example = 8)]
    pub max_concurrent_upstream: Option<u32>,
}

impl From<TenantLimits> for LimitsObject {
    fn from(l: TenantLimits) -> Self {
        Self {
            requests_per_second: l.requests_per_second,
            burst: l.burst,
            max_concurrent_upstream: l.max_concurrent_upstream,
        }
    }
}

impl From<Tenant> for TenantObject {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id,
            object: "tenant",
            name: t.name,
            status: t.status,
            metadata: t.metadata,
            limits: t.limits.into(),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A tenant to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Display name, 1 to 200 characters.
    #[schema(example = "Acme Corp", min_length = 1, max_length = 200)]
    pub name: String,
    /// Up to 50 keys; keys up to 40 characters, values up to 500.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Changes to a tenant; absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// New display name.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub name: Option<Option<String>>,
    /// `disabled` refuses every API key of the tenant until set back to `active`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<TenantStatus>)]
    pub status: Option<Option<TenantStatus>>,
    /// Keys to set; a key set to `null` or `""` is removed; `null` instead of an object clears all.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<BTreeMap<String, Option<String>>>, nullable)]
    pub metadata: Option<Option<MetadataPatch>>,
    /// The tenant's own limits: absent fields stay, `null` fields go back to
    /// the server's default; `null` instead of an object resets them all.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<UpdateLimits>, nullable)]
    pub limits: Option<Option<UpdateLimits>>,
}

/// Changes to a tenant's own limits.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLimits {
    /// Requests per second, 1 to 1000000; `null`: the server's default.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, nullable, minimum = 1, maximum = 1_000_000)]
    pub requests_per_second: Option<Option<i64>>,
    /// Requests at once above the rate, 1 to 1000000; `null`: the server's default.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, nullable, minimum = 1, maximum = 1_000_000)]
    pub burst: Option<Option<i64>>,
    /// Concurrent Stripe calls, 1 to 100000; `null`: the server's default.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, nullable, minimum = 1, maximum = 100_000)]
    pub max_concurrent_upstream: Option<Option<i64>>,
}

impl UpdateLimits {
    /// Checks every value given; 422 names the field at fault.
    fn validated(self) -> Result<LimitsPatch, ApiError> {
        let check = |value: Option<Option<i64>>, max, param| {
            value
                .map(|v| validate_limit(v, max, param))
                .transpose()
                .map_err(ApiError::from)
        };
        Ok(LimitsPatch {
            requests_per_second: check(
                self.requests_per_second,
                MAX_REQUESTS,
                "limits.requests_per_second",
            )?,
            burst: check(self.burst, MAX_REQUESTS, "limits.burst")?,
            max_concurrent_upstream: check(
                self.max_concurrent_upstream,
                MAX_CONCURRENT_UPSTREAM,
                "limits.max_concurrent_upstream",
            )?,
        })
    }
}

/// Paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListTenants {
    /// 1 to 100, default 10.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// A tenant id: list the tenants created before it.
    #[param(value_type = Option<TenantId>)]
    pub starting_after: Option<String>,
    /// A tenant id: list the tenants created after it.
    #[param(value_type = Option<TenantId>)]
    pub ending_before: Option<String>,
}

fn ctx(request_id: &RequestId) -> AuditContext {
    AuditContext::new(&Principal::Admin, request_id)
}

/// Create a tenant
///
/// Creates a tenant and its data key, which seals the tenant's secrets (wrapped by the
/// primary master key). Platform admin token only. Give the tenant an API key next with
/// `POST /api/v1/tenants/{id}/api-keys`.
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body(content = CreateTenant, example = super::examples::create_tenant),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, description = "Created", body = TenantObject, example = super::examples::tenant), StandardErrors, BodyErrors, Unprocessable))]
pub async fn create_tenant(
    _: Admin,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Json(body): Json<CreateTenant>,
) -> Result<(StatusCode, axum::Json<TenantObject>), ApiError> {
    let tenant = tenants::create(&state, &ctx(&request_id), &body.name, body.metadata).await?;
    Ok((StatusCode::CREATED, axum::Json(tenant.into())))
}

/// List tenants
///
/// A page of tenants, newest first (`limit`, `starting_after`, `ending_before`).
/// Platform admin token only.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", params(ListTenants),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "A page of tenants", body = ListResponse<TenantObject>, example = super::examples::tenant_list), StandardErrors))]
pub async fn list_tenants(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<ListTenants>,
) -> Result<axum::Json<ListResponse<TenantObject>>, ApiError> {
    let request = page(
        query.limit,
        query.starting_after.as_deref(),
        query.ending_before.as_deref(),
    )?;
    let page = tenants::list(&state, &request).await?;
    Ok(axum::Json(ListResponse::new(
        page.data.into_iter().map(Into::into).collect(),
        page.has_more,
        "/api/v1/tenants",
    )))
}

/// Retrieve a tenant
///
/// One tenant by id. Platform admin token only.
#[utoipa::path(get, path = "/api/v1/tenants/{id}", tag = "tenants",
    params(("id" = TenantId, Path, description = "Tenant id (ten_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The tenant", body = TenantObject, example = super::examples::tenant), StandardErrors, NotFound))]
pub async fn get_tenant(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<TenantObject>, ApiError> {
    let id = parse_id(&id, "id")?;
    Ok(axum::Json(tenants::get(&state, id).await?.into()))
}

/// Update a tenant
///
/// Renames, disables or re-enables a tenant, or changes its metadata or its own
/// limits (request rate, burst, concurrent Stripe calls; `null` restores the
/// server's default); absent fields stay as they are. A disabled tenant's API
/// keys are refused (403) until it is set back to `active`. Platform admin
/// token only.
#[utoipa::path(patch, path = "/api/v1/tenants/{id}", tag = "tenants", request_body(content = UpdateTenant, example = super::examples::update_tenant),
    params(("id" = TenantId, Path, description = "Tenant id (ten_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The updated tenant", body = TenantObject, example = super::examples::tenant), StandardErrors, BodyErrors, NotFound, Unprocessable))]
pub async fn update_tenant(
    _: Admin,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    Json(body): Json<UpdateTenant>,
) -> Result<axum::Json<TenantObject>, ApiError> {
    let id = parse_id(&id, "id")?;
    let patch = TenantPatch {
        name: not_null(body.name, "name")?,
        status: not_null(body.status, "status")?,
        metadata: body.metadata,
        limits: match body.limits {
            Some(Some(limits)) => Some(Some(limits.validated()?)),
            Some(None) => Some(None),
            None => None,
        },
    };
    Ok(axum::Json(
        tenants::update(&state, &ctx(&request_id), id, patch)
            .await?
            .into(),
    ))
}

/// Delete a tenant
///
/// Deletes a tenant with its keys, connections, endpoints, subscriptions and events.
/// Its data key is destroyed first, so its sealed secrets cannot be recovered, even
/// from backups (crypto-shredding). Platform admin token only.
#[utoipa::path(delete, path = "/api/v1/tenants/{id}", tag = "tenants",
    params(("id" = TenantId, Path, description = "Tenant id (ten_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "Deleted", body = Deleted, example = super::examples::tenant_deleted), StandardErrors, NotFound))]
pub async fn delete_tenant(
    _: Admin,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<axum::Json<Deleted>, ApiError> {
    let id: TenantId = parse_id(&id, "id")?;
    tenants::delete(&state, &ctx(&request_id), id).await?;
    Ok(axum::Json(Deleted {
        id: id.to_string(),
        object: "tenant",
        deleted: true,
    }))
}

/// A field that may be left out but not set to null.
fn not_null<T>(value: Option<Option<T>>, param: &'static str) -> Result<Option<T>, ApiError> {
    match value {
        Some(None) => Err(ApiError::from(patchbay_core::ValidationError::invalid(
            param,
            format!("{param} cannot be null; leave it out to keep it."),
        ))),
        Some(Some(v)) => Ok(Some(v)),
        None => Ok(None),
    }
}
