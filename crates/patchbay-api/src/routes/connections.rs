//! `/api/v1/connections`: a tenant's Stripe connections.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use patchbay_core::api_key::Scope;
use patchbay_core::connection::{
    AuthMethod, Connection, ConnectionFilter, ConnectionStatus, LastError, Provider,
};
use patchbay_core::metadata::MetadataPatch;
use patchbay_core::{ConnectionId, Metadata, TenantId};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::common::{
    BodyErrors, Deleted, ListResponse, NotFound, StandardErrors, Unprocessable, double_option, page,
};
use crate::auth::{AuditContext, Caller, Principal, Tenant, TenantPrincipal};
use crate::context::RequestId;
use crate::error::{ApiError, ErrorResponse};
use crate::extract::{Json, Query, parse_id};
use crate::services::connect_sessions::Allowed;
use crate::services::connections::{
    self, ConnectionPatch, NewConnectionInput, RotateOptions, Trigger,
};
use crate::services::error::ServiceError;
use crate::services::oauth::{self, Disconnect};
use crate::state::AppState;
use patchbay_core::connect::GrantScope;

/// A Stripe connection. The key itself is never shown: only `key_hint`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionObject {
    /// `conn_…`
    pub id: ConnectionId,
    /// Always `connection`.
    #[schema(example = "connection")]
    pub object: &'static str,
    /// Owner.
    pub tenant_id: TenantId,
    /// Always `stripe`.
    pub provider: Provider,
    /// `secret_key`, `restricted_key`, or `oauth` (a Stripe Connect grant:
    /// calls use the tenant's platform key with `Stripe-Account`).
    pub auth_method: AuthMethod,
    /// Live or test mode; never changes.
    pub livemode: bool,
    /// `active` (proven by the last test call), `pending` (not yet tested),
    /// `invalid` (Stripe rejected the key), `error` (Stripe could not be
    /// reached), `revoking` (being disconnected; Stripe has not confirmed yet)
    /// or `revoked` (the connected account removed the platform's access).
    pub status: ConnectionStatus,
    /// The Stripe account reached, when the key may read it.
    #[schema(example = "acct_1Nv0FGQ9RKHgCVdK")]
    pub stripe_account_id: Option<String>,
    /// The account's display name.
    pub account_name: Option<String>,
    /// The account's country.
    pub account_country: Option<String>,
    /// The account's default currency.
    pub default_currency: Option<String>,
    /// Enough of the key to recognise it.
    #[schema(example = "sk_test_…4242")]
    pub key_hint: String,
    /// Your reference, unique within your tenant.
    pub external_id: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Your key/value pairs.
    pub metadata: Metadata,
    /// The `Stripe-Version` sent with every call, if pinned.
    pub stripe_version: Option<String>,
    /// Restricted-key permissions the test call found missing.
    #[schema(example = json!(["rak_balance_read"]))]
    pub missing_permissions: Vec<String>,
    /// When the test call last ran.
    pub last_validated_at: Option<DateTime<Utc>>,
    /// Why the last test call failed, if it did.
    pub last_error: Option<LastError>,
    /// Hint of the key replaced by the last rotation, while it is kept.
    pub previous_key_hint: Option<String>,
    /// When that kept key is destroyed.
    pub previous_key_expires_at: Option<DateTime<Utc>>,
    /// For a Connect grant: `read_write` or `read_only`.
    pub scope: Option<GrantScope>,
    /// For a Connect grant: the platform's client id it was granted to.
    #[schema(example = "ca_FkyHCg7X8mlvCUdMDao4mMxagUfhIwXb")]
    pub client_id: Option<String>,
    /// For a Connect grant: when its tokens were last refreshed.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<Connection> for ConnectionObject {
    fn from(c: Connection) -> Self {
        Self {
            id: c.id,
            object: "connection",
            tenant_id: c.tenant_id,
            provider: c.provider,
            auth_method: c.auth_method,
            livemode: c.livemode,
            status: c.status,
            stripe_account_id: c.account.stripe_account_id,
            account_name: c.account.account_name,
            account_country: c.account.country,
            default_currency: c.account.default_currency,
            key_hint: c.key_hint,
            external_id: c.external_id,
            name: c.name,
            metadata: c.metadata,
            stripe_version: c.stripe_version,
            missing_permissions: c.missing_permissions,
            last_validated_at: c.last_validated_at,
            last_error: c.last_error,
            previous_key_hint: c.previous_key_hint,
            previous_key_expires_at: c.previous_key_expires_at,
            scope: c.grant.as_ref().map(|g| g.scope),
            client_id: c.grant.as_ref().map(|g| g.client_id.clone()),
            refreshed_at: c.grant.as_ref().and_then(|g| g.refreshed_at),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A connection to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// Always `stripe`.
    pub provider: Provider,
    /// A secret (`sk_test_…`, `sk_live_…`) or restricted (`rk_test_…`, `rk_live_…`) key.
    /// Publishable keys, webhook secrets and client ids are refused.
    #[schema(value_type = String, format = Password, write_only, example = "sk_test_51HabcDEF0123456789xyzXYZ4242", pattern = "^[sr]k_(test|live)_[A-Za-z0-9]{16,}$", max_length = 255)]
    pub api_key: SecretString,
    /// Your reference (1 to 255 characters), unique within your tenant.
    #[schema(min_length = 1, max_length = 255)]
    pub external_id: Option<String>,
    /// Display name.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Your key/value pairs.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// A `Stripe-Version` to send with every call (`2026-10-28.endive`).
    #[schema(
        pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}([.][a-z]{1,32})?$",
        example = "2026-10-28.endive"
    )]
    pub stripe_version: Option<String>,
    /// Run the test call before storing (default `true`). With `false` the
    /// connection is stored as `pending` and tested by the background validator.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub validate: bool,
}

fn yes() -> bool {
    true
}

/// Changes to a connection; absent fields stay, `null` clears.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    /// Display name.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub name: Option<Option<String>>,
    /// Keys to set; a key set to `null` or `""` is removed; `null` clears all.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<BTreeMap<String, Option<String>>>, nullable)]
    pub metadata: Option<Option<MetadataPatch>>,
    /// Your reference.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub external_id: Option<Option<String>>,
    /// Pinned `Stripe-Version`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub stripe_version: Option<Option<String>>,
}

/// A key rotation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateConnection {
    /// The new key: same Stripe account, same mode. When the connection's
    /// account is unknown (a restricted key that cannot read the account, or a
    /// connection stored with `"validate": false`) or the new key cannot read
    /// its account, sameness cannot be proven and the rotation is refused
    /// (422 `account_unknown` / `account_unverifiable`) unless
    /// `allow_account_change` is set.
    #[schema(value_type = String, format = Password, write_only, example = "rk_test_51HabcDEF0123456789xyzXYZ9999", pattern = "^[sr]k_(test|live)_[A-Za-z0-9]{16,}$", max_length = 255)]
    pub api_key: SecretString,
    /// Keep the old key, sealed, for this many seconds (1 to 2592000); without
    /// it the old key is destroyed at once.
    #[schema(minimum = 1, maximum = 2592000)]
    pub keep_previous_for_seconds: Option<u64>,
    /// Accept that the new key may reach another Stripe account than the
    /// connection's, or one that cannot be proven the same (default `false`).
    /// The rotation is then audited as an account change (`account_change` in
    /// the `connection.rotated` event's details).
    #[serde(default)]
    #[schema(default = false)]
    pub allow_account_change: bool,
}

/// Filters and paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListConnections {
    /// 1 to 100, default 10.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// A connection id: list the connections created before it.
    #[param(value_type = Option<ConnectionId>)]
    pub starting_after: Option<String>,
    /// A connection id: list the connections created after it.
    #[param(value_type = Option<ConnectionId>)]
    pub ending_before: Option<String>,
    /// Only this status.
    pub status: Option<ConnectionStatus>,
    /// Only this external id.
    pub external_id: Option<String>,
    /// Only live (`true`) or test (`false`) mode.
    pub livemode: Option<bool>,
    /// Only connections reaching this Stripe account (`acct_…`).
    pub stripe_account_id: Option<String>,
}

fn audit(tenant: &TenantPrincipal, request_id: &RequestId) -> AuditContext {
    AuditContext::new(&Principal::Tenant(tenant.clone()), request_id)
}

/// The Stripe-side failures a test call can end in.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum StripeFailures {
    /// Too many requests: Stripe calls queued for this connection (`Retry-After`
    /// says how long to wait).
    #[response(status = 429)]
    TooMany(ErrorResponse),
    /// Stripe could not be reached or failed; nothing was stored.
    #[response(status = 502)]
    BadGateway(ErrorResponse),
    /// Stripe gave no answer within the interactive deadline
    /// (`stripe_timeout`); nothing was stored or changed.
    #[response(status = 504)]
    GatewayTimeout(ErrorResponse),
}

/// Create a connection
///
/// Stores a Stripe secret (`sk_…`) or restricted (`rk_…`) key as a connection after
/// proving it with a test call (201 `active`, or 422 with Stripe's reason). Publishable
/// keys, webhook secrets and client ids are refused with a reason. `"validate": false`
/// stores it as `pending` for the background validator. Needs `connections:write`, or a
/// connect session that allows `api_key` (from a browser, CORS for the tenant's
/// origins).
#[utoipa::path(post, path = "/api/v1/connections", tag = "connections", request_body(content = CreateConnection, example = super::examples::create_connection),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Created and validated (or `pending` with `\"validate\": false`)", body = ConnectionObject, example = super::examples::connection),
        StandardErrors,
        BodyErrors,
        (status = 409, description = "The external_id is taken, or the tenant has as many connections as allowed (`tenant_limit_reached`)", body = ErrorResponse),
        Unprocessable,
        StripeFailures,
    ))]
pub async fn create_connection(
    caller: Caller,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Json(body): Json<CreateConnection>,
) -> Result<(StatusCode, axum::Json<ConnectionObject>), ApiError> {
    let (tenant_id, external_id, session) = match &caller {
        Caller::Tenant(tenant) => {
            tenant.require(Scope::ConnectionsWrite)?;
            (tenant.tenant_id, body.external_id, None)
        }
        Caller::Session(session) => {
            session.require(Allowed::ApiKey)?;
            if body
                .external_id
                .as_ref()
                .is_some_and(|e| *e != session.external_id)
            {
                return Err(ServiceError::forbidden(
                    "session_scope_mismatch",
                    "This connect session is for another external_id.",
                )
                .into());
            }
            (
                session.tenant_id,
                Some(session.external_id.clone()),
                Some(session.spend()),
            )
        }
        Caller::Admin => {
            return Err(ServiceError::forbidden(
                "tenant_key_required",
                "This endpoint acts for one tenant: call it with that tenant's API key.",
            )
            .into());
        }
    };
    let input = NewConnectionInput {
        provider: body.provider,
        api_key: body.api_key,
        external_id,
        name: body.name,
        metadata: body.metadata,
        stripe_version: body.stripe_version,
        validate: body.validate,
        session,
    };
    let created = connections::create(
        &state,
        &AuditContext::for_actor(caller.actor(), &request_id),
        tenant_id,
        input,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(created.into())))
}

/// List connections
///
/// A page of the tenant's connections, newest first; filter by `external_id` or
/// `status`. Keys are never shown, only hints. Needs `connections:read`.
#[utoipa::path(get, path = "/api/v1/connections", tag = "connections", params(ListConnections),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "A page of connections", body = ListResponse<ConnectionObject>, example = super::examples::connection_list), StandardErrors))]
pub async fn list_connections(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Query(query): Query<ListConnections>,
) -> Result<axum::Json<ListResponse<ConnectionObject>>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let request = page(
        query.limit,
        query.starting_after.as_deref(),
        query.ending_before.as_deref(),
    )?;
    let filter = ConnectionFilter {
        status: query.status,
        external_id: query.external_id,
        livemode: query.livemode,
        stripe_account_id: query.stripe_account_id,
    };
    let page = connections::list(&state, tenant.tenant_id, &filter, &request).await?;
    Ok(axum::Json(ListResponse::new(
        page.data.into_iter().map(Into::into).collect(),
        page.has_more,
        "/api/v1/connections",
    )))
}

/// Retrieve a connection
///
/// One connection by id, with its status, account details and key hint. Needs
/// `connections:read`.
#[utoipa::path(get, path = "/api/v1/connections/{id}", tag = "connections",
    params(("id" = ConnectionId, Path, description = "Connection id (conn_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The connection", body = ConnectionObject, example = super::examples::connection), StandardErrors, NotFound))]
pub async fn get_connection(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<ConnectionObject>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let id = parse_id(&id, "id")?;
    Ok(axum::Json(
        connections::get(&state, tenant.tenant_id, id).await?.into(),
    ))
}

/// Update a connection
///
/// Renames a connection, or changes its metadata, external id or pinned Stripe version;
/// absent fields stay as they are. The key changes only through rotate. Needs
/// `connections:write`.
#[utoipa::path(patch, path = "/api/v1/connections/{id}", tag = "connections", request_body(content = UpdateConnection, example = super::examples::update_connection),
    params(("id" = ConnectionId, Path, description = "Connection id (conn_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The updated connection", body = ConnectionObject, example = super::examples::connection),
        StandardErrors, BodyErrors, NotFound,
        (status = 409, description = "The external_id is taken", body = ErrorResponse),
        Unprocessable,
    ))]
pub async fn update_connection(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    Json(body): Json<UpdateConnection>,
) -> Result<axum::Json<ConnectionObject>, ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let id = parse_id(&id, "id")?;
    let patch = ConnectionPatch {
        name: body.name,
        metadata: body.metadata,
        external_id: body.external_id,
        stripe_version: body.stripe_version,
    };
    let updated = connections::update(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        id,
        patch,
    )
    .await?;
    Ok(axum::Json(updated.into()))
}

/// What a delete answers: done, or (a Connect grant Stripe has not yet
/// released) accepted and retried in the background.
/// (Documented on `delete_connection`, with an example of each.)
#[derive(Debug)]
// Built once per request and turned into a response at once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum DeleteResponse {
    /// Deleted (and, for a Connect grant, deauthorized at Stripe).
    Deleted(Deleted),
    /// A Connect grant Stripe could not deauthorize now: the connection is
    /// `revoking` and a job retries until Stripe confirms, then deletes it.
    Revoking(ConnectionObject),
}

impl axum::response::IntoResponse for DeleteResponse {
    fn into_response(self) -> axum::response::Response {
        match self {
            Self::Deleted(d) => (StatusCode::OK, axum::Json(d)).into_response(),
            Self::Revoking(c) => (StatusCode::ACCEPTED, axum::Json(c)).into_response(),
        }
    }
}

/// Delete a connection
///
/// Deletes a connection and destroys its secrets. A Connect grant is deauthorized at
/// Stripe first (`POST /oauth/deauthorize`): 200 when Stripe confirmed, 202 with
/// `status: revoking` when Stripe could not be reached (a job retries until it
/// confirms). Needs `connections:write`.
#[utoipa::path(delete, path = "/api/v1/connections/{id}", tag = "connections",
    params(("id" = ConnectionId, Path, description = "Connection id (conn_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Deleted (and, for a Connect grant, deauthorized at Stripe)", body = Deleted, example = super::examples::connection_deleted),
        (status = 202, description = "A Connect grant Stripe could not deauthorize now: the connection is `revoking` and a job retries until Stripe confirms, then deletes it", body = ConnectionObject, example = super::examples::connection_revoking),
        StandardErrors, NotFound,
        (status = 409, description = "A Connect grant whose platform is no longer configured (`integration_missing`)", body = ErrorResponse)))]
pub async fn delete_connection(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<DeleteResponse, ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let id: ConnectionId = parse_id(&id, "id")?;
    match connections::delete(&state, &audit(&tenant, &request_id), tenant.tenant_id, id).await? {
        Disconnect::Deleted => Ok(DeleteResponse::Deleted(Deleted {
            id: id.to_string(),
            object: "connection",
            deleted: true,
        })),
        Disconnect::Pending(c) => Ok(DeleteResponse::Revoking((*c).into())),
    }
}

/// Refresh a Connect grant
///
/// Exchanges a Connect grant's refresh token (`grant_type=refresh_token`) for new
/// tokens. Concurrent refreshes of one grant are serialized: each answers with the
/// refreshed connection, and no token is lost. Only for `oauth` connections. Needs
/// `connections:write`.
#[utoipa::path(post, path = "/api/v1/connections/{id}/refresh", tag = "connections",
    params(("id" = ConnectionId, Path, description = "Connection id (conn_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The connection with its refreshed grant", body = ConnectionObject, example = super::examples::connection_oauth),
        StandardErrors, NotFound, Unprocessable,
        (status = 400, description = "Stripe refused the refresh (`invalid_grant`, `oauth_refused`)", body = ErrorResponse),
        (status = 409, description = "Another refresh is still running (`refresh_in_progress`), or the connection is being disconnected", body = ErrorResponse),
        (status = 502, description = "Stripe's Connect service could not be reached", body = ErrorResponse),
    ))]
pub async fn refresh_connection(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<axum::Json<ConnectionObject>, ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let id = parse_id(&id, "id")?;
    let refreshed =
        oauth::refresh(&state, &audit(&tenant, &request_id), tenant.tenant_id, id).await?;
    Ok(axum::Json(refreshed.into()))
}

/// Validate a connection
///
/// Re-runs the test call now and records the result (`active`, `invalid` or `error`)
/// with `last_validated_at` and `last_error`. Needs `connections:write`.
#[utoipa::path(post, path = "/api/v1/connections/{id}/validate", tag = "connections",
    params(("id" = ConnectionId, Path, description = "Connection id (conn_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The connection with the new status; a failed test call is recorded, not an error", body = ConnectionObject, example = super::examples::connection),
        StandardErrors, NotFound,
        (status = 429, description = "Too many requests: Stripe calls queued for this connection (`Retry-After` says how long to wait)", body = ErrorResponse),
        (status = 504, description = "Stripe gave no answer within the interactive deadline (`stripe_timeout`); nothing was recorded", body = ErrorResponse),
    ))]
pub async fn validate_connection(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<axum::Json<ConnectionObject>, ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let id = parse_id(&id, "id")?;
    let validated = connections::validate(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        id,
        Trigger::Request,
    )
    .await?;
    Ok(axum::Json(validated.into()))
}

/// Rotate a connection's key
///
/// Replaces the connection's Stripe key. The new key is tested first and must reach the
/// same account in the same mode (422 `account_mismatch`, `account_unknown`,
/// `account_unverifiable` otherwise, unless `allow_account_change`); the swap is
/// atomic, so calls in flight use the old key or the new. `keep_previous_for_seconds`
/// keeps the old key sealed for a grace period. Needs `connections:write`.
#[utoipa::path(post, path = "/api/v1/connections/{id}/rotate", tag = "connections", request_body(content = RotateConnection, example = super::examples::rotate_connection),
    params(("id" = ConnectionId, Path, description = "Connection id (conn_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The connection, now using the new key", body = ConnectionObject, example = super::examples::connection_rotated),
        StandardErrors, BodyErrors, NotFound, Unprocessable, StripeFailures,
    ))]
pub async fn rotate_connection(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    Json(body): Json<RotateConnection>,
) -> Result<axum::Json<ConnectionObject>, ApiError> {
    tenant.require(Scope::ConnectionsWrite)?;
    let id = parse_id(&id, "id")?;
    let rotated = connections::rotate(
        &state,
        &audit(&tenant, &request_id),
        tenant.tenant_id,
        id,
        body.api_key,
        RotateOptions {
            keep_previous_for_seconds: body.keep_previous_for_seconds,
            allow_account_change: body.allow_account_change,
        },
    )
    .await?;
    Ok(axum::Json(rotated.into()))
}
