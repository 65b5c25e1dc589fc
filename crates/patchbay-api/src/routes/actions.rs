//! Typed actions: the catalogue (`GET /api/v1/actions`, `GET /api/v1/actions/{name}`),
//! calling one through a connection (`POST /api/v1/connections/{id}/actions`),
//! and what a connection can run (`GET /api/v1/connections/{id}/capabilities`).

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use patchbay_core::api_key::Scope;
use patchbay_stripe::actions::{ActionDef, Catalog, Kind, schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{BodyErrors, NotFound, StandardErrors};
use super::proxy::Passthrough;
use crate::auth::{AuditContext, Principal, Tenant};
use crate::context::{ExtraHeaders, RequestId};
use crate::error::{ApiError, ErrorResponse, RelayedError};
use crate::extract::{Json, parse_id};
use crate::services::actions::{self, ActionFailure, ActionOutput, Capability};
use crate::services::error::ServiceError;
use crate::state::AppState;

/// One action of the catalogue.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActionObject {
    /// Always `action`.
    #[schema(example = "action")]
    pub object: &'static str,
    /// `stripe.createCustomer`
    pub name: String,
    /// What it does.
    pub description: String,
    /// The Stripe operation's method.
    #[schema(example = "POST")]
    pub method: &'static str,
    /// The Stripe operation's path template.
    #[schema(example = "/v1/customers")]
    pub path: String,
    /// `object`, `list`, `search` or `delete`.
    pub kind: &'static str,
    /// The restricted-key permission it needs.
    #[schema(example = "rak_customer_write")]
    pub permission: String,
    /// JSON Schema of `config`; each property's `x-stripe-name` and
    /// `x-stripe-in` (`path`, `body`, `query`) say where it goes.
    #[schema(value_type = Object)]
    pub config_schema: Value,
    /// Example configs.
    #[schema(value_type = Vec<Object>)]
    pub examples: Vec<Value>,
}

impl From<&ActionDef> for ActionObject {
    fn from(def: &ActionDef) -> Self {
        Self {
            object: "action",
            name: def.name.clone(),
            description: def.description.clone(),
            method: def.method.as_str(),
            path: def.path.clone(),
            kind: match def.kind {
                Kind::Object => "object",
                Kind::List => "list",
                Kind::Search => "search",
                Kind::Delete => "delete",
            },
            permission: def.permission.clone(),
            config_schema: schema::config_schema(def),
            examples: def.examples.clone(),
        }
    }
}

/// The catalogue.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActionList {
    /// Always `list`.
    #[schema(example = "list")]
    pub object: &'static str,
    /// Every action (besides `stripe.rawRequest`, which takes `method`, `path`, `params`, `headers`).
    pub data: Vec<ActionObject>,
}

/// List actions
///
/// The typed action catalogue (`stripe.createCustomer`, …), each with its Stripe method
/// and path, the restricted-key permission it needs, the JSON Schema of its config and
/// examples. Any valid key.
#[utoipa::path(get, path = "/api/v1/actions", tag = "actions",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "Every action", body = ActionList, example = super::examples::action_list), StandardErrors))]
pub async fn list_actions(_caller: Principal) -> axum::Json<ActionList> {
    axum::Json(ActionList {
        object: "list",
        data: Catalog::builtin()
            .actions()
            .iter()
            .map(ActionObject::from)
            .collect(),
    })
}

/// Retrieve an action
///
/// One action of the catalogue by name, with its config's JSON Schema. Any valid key.
#[utoipa::path(get, path = "/api/v1/actions/{name}", tag = "actions",
    params(("name" = String, Path, description = "The action's name, e.g. stripe.createCustomer")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The action", body = ActionObject, example = super::examples::action_object), StandardErrors,
        (status = 404, description = "No such action (`action_unknown`, naming the nearest)", body = ErrorResponse)))]
pub async fn get_action(
    _caller: Principal,
    Path(name): Path<String>,
) -> Result<axum::Json<ActionObject>, ApiError> {
    Ok(axum::Json(actions::describe(&name)?.into()))
}

/// A call: an action and its config (a whole workflow step is accepted: `id` and `type` are ignored).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
// `id` and `type` are accepted so that a whole workflow step can be sent as is, and then ignored.
#[allow(dead_code)]
pub struct CallAction {
    /// `stripe.createCustomer`, …, or `stripe.rawRequest`.
    #[schema(example = "stripe.createCustomer")]
    pub action: String,
    /// The action's fields (see `GET /api/v1/actions/{name}`), plus `expand`,
    /// `stripeAccount`, `stripeVersion`, `idempotencyKey` and, for lists,
    /// `limit`, `startingAfter`, `endingBefore`, `autoPaginate`, `maxItems`.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"email": "jane@example.com", "metadata": {"source": "workflow"}}))]
    pub config: Value,
    /// A workflow step's id (ignored).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub id: Option<Value>,
    /// A workflow step's type (ignored).
    #[serde(default, rename = "type")]
    #[schema(value_type = Option<Object>)]
    pub step_type: Option<Value>,
}

/// Run an action
///
/// Runs an action through the connection. The answer is Stripe's, verbatim: its status,
/// its body (the object, a list, or Stripe's error), its `Request-Id`, and the
/// `Idempotency-Key` used for a write. Invalid configs get 422 naming the field and
/// nothing is sent. Needs `connections:write`.
#[utoipa::path(post, path = "/api/v1/connections/{id}/actions", tag = "actions", request_body(content = CallAction, example = super::examples::call_action),
    params(
        ("id" = String, Path, description = "Connection id (conn_…)"),
        ("Idempotency-Key" = Option<String>, Header, description = "For writes, when config.idempotencyKey is absent; generated otherwise"),
    ),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Stripe's object or list, verbatim (any Stripe status passes through with Stripe's body)", content_type = "application/json", body = serde_json::Value, example = super::examples::stripe_customer),
        (status = 400, description = "Malformed request or unknown action (Patchbay's envelope), or Stripe's 400 verbatim", body = RelayedError),
        (status = 401, description = "No valid API key, or Stripe refused the connection's key (Stripe's body)", body = RelayedError),
        (status = 402, description = "Stripe: valid parameters but the request failed (a card declined), verbatim", body = RelayedError),
        (status = 403, description = "The key lacks `connections:write`, or Stripe refused a permission (Stripe's body)", body = RelayedError),
        (status = 404, description = "No such connection, or Stripe's `resource_missing`, verbatim", body = RelayedError),
        (status = 409, description = "The connection is not active, or Stripe's conflict (idempotency), verbatim", body = RelayedError),
        BodyErrors,
        (status = 422, description = "The config breaks a rule; `param` names the field (`config.amount`)", body = ErrorResponse),
        (status = 429, description = "Stripe's rate limit, verbatim", body = RelayedError),
        (status = 502, description = "Stripe could not be reached. A write's answer carries the `Idempotency-Key` it was sent with: retry with that key, Stripe acts at most once", body = ErrorResponse),
        (status = 503, description = "The database is not answering, or Stripe's 503, verbatim", body = RelayedError),
        (status = 504, description = "Stripe did not answer in time. A write's answer carries the `Idempotency-Key` it was sent with: retry with that key, Stripe acts at most once", body = ErrorResponse),
    ))]
pub async fn call_action(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<CallAction>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "id")?;
    let ctx = AuditContext::new(&Principal::Tenant(tenant.clone()), &request_id);
    let idempotency = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 255)
        .map(str::to_owned);
    let output = match actions::run(
        &state,
        &tenant,
        &ctx,
        id,
        &body.action,
        &body.config,
        idempotency,
    )
    .await
    {
        Ok(output) => output,
        Err(failure) => return Ok(failure_response(failure)),
    };
    let internal = |e: &dyn std::fmt::Display| ApiError::from(ServiceError::internal(e));
    let mut response = match output {
        ActionOutput::Answer {
            status,
            body,
            request_id,
            idempotency_key,
        } => {
            let mut builder = Response::builder()
                .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY))
                .header("content-type", "application/json");
            if let Some(value) = request_id.and_then(|r| HeaderValue::from_str(&r).ok()) {
                builder = builder.header("request-id", value);
            }
            if let Some(value) = idempotency_key.and_then(|k| HeaderValue::from_str(&k).ok()) {
                builder = builder.header("idempotency-key", value);
            }
            builder.body(Body::from(body)).map_err(|e| internal(&e))?
        }
        ActionOutput::Stream { request_id, body } => {
            let mut builder = Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json");
            if let Some(value) = request_id.and_then(|r| HeaderValue::from_str(&r).ok()) {
                builder = builder.header("request-id", value);
            }
            builder
                .body(Body::from_stream(body))
                .map_err(|e| internal(&e))?
        }
    };
    response.extensions_mut().insert(Passthrough);
    Ok(response)
}

/// Patchbay's envelope for a failed action; when the write was sent and no
/// answer came, with the `Idempotency-Key` it carried (retry with it).
fn failure_response(failure: ActionFailure) -> Response {
    let mut response = ApiError::from(failure.error).into_response();
    if let Some(value) = failure
        .idempotency_key
        .and_then(|k| HeaderValue::from_str(&k).ok())
    {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", value);
        // Kept apart so it survives the envelope the request-context layer renders.
        response.extensions_mut().insert(ExtraHeaders(headers));
    }
    response
}

/// Per action: `available`, `missing_permission` (named) or `unknown`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CapabilityList {
    /// Always `list`.
    #[schema(example = "list")]
    pub object: &'static str,
    /// One entry per action.
    pub data: Vec<Capability>,
}

/// List a connection's capabilities
///
/// Which actions this connection can run: a secret key or `read_write` grant runs all
/// (`available`); a restricted key what Stripe has shown it may, `missing_permission`
/// (with the permission) where Stripe refused, `unknown` where never tried. Needs
/// `connections:read`.
#[utoipa::path(get, path = "/api/v1/connections/{id}/capabilities", tag = "actions",
    params(("id" = String, Path, description = "Connection id (conn_…)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "Per action", body = CapabilityList, example = super::examples::capability_list), StandardErrors, NotFound))]
pub async fn capabilities(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<CapabilityList>, ApiError> {
    tenant.require(Scope::ConnectionsRead)?;
    let id = parse_id(&id, "id")?;
    Ok(axum::Json(CapabilityList {
        object: "list",
        data: actions::capabilities(&state, tenant.tenant_id, id).await?,
    }))
}
