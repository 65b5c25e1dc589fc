//! Typed actions: a named Stripe operation through a connection. The config is
//! validated and encoded before anything is sent; the answer is Stripe's,
//! verbatim; what Stripe says about the key's permissions is remembered for
//! capabilities; every call is audited off the request path. List actions may
//! auto-paginate: Patchbay follows `starting_after` and streams one list out.

use std::time::Instant;

use axum::http::Method;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use patchbay_core::ConnectionId;
use patchbay_core::api_key::Scope;
use patchbay_core::connect::GrantScope;
use patchbay_core::connection::{AuthMethod, ConnectionStatus};
use patchbay_core::store::PermissionObservation;
use patchbay_core::time::now;
use patchbay_stripe::actions::{
    ActionDef, AutoPaginate, Catalog, HttpMethod, Kind, PreparedCall, prepare,
};
use patchbay_stripe::{
    Body, RateKey, StripeKey, StripeRequest, StripeResponse, missing_permission,
};
use serde_json::{Value, json};
use tracing::warn;

use super::credentials::{Credential, open_for_call};
use super::error::{ErrorKind, ServiceError};
use crate::auth::{AuditContext, TenantPrincipal};
use crate::state::AppState;

/// The raw escape hatch, handled outside the catalogue.
pub const RAW_REQUEST: &str = "stripe.rawRequest";

/// What a call returns.
pub enum ActionOutput {
    /// Stripe's answer, verbatim.
    Answer {
        /// Stripe's status.
        status: u16,
        /// Stripe's body.
        body: Bytes,
        /// Stripe's `Request-Id`.
        request_id: Option<String>,
        /// The `Idempotency-Key` sent (POST).
        idempotency_key: Option<String>,
    },
    /// An auto-paginated list, streamed (status 200).
    Stream {
        /// The first page's `Request-Id`.
        request_id: Option<String>,
        /// The list, as JSON bytes.
        body: BoxStream<'static, Result<Bytes, std::io::Error>>,
    },
}

impl std::fmt::Debug for ActionOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Answer { status, .. } => write!(f, "Answer({status})"),
            Self::Stream { .. } => f.write_str("Stream"),
        }
    }
}

/// A refused or failed action. When the Stripe call was made and no answer
/// came (Stripe unreachable, timed out), it carries the `Idempotency-Key` the
/// call was sent with, so the caller can retry it safely with that key.
#[derive(Debug)]
pub struct ActionFailure {
    /// What went wrong.
    pub error: ServiceError,
    /// The key the write was sent with, if it was sent.
    pub idempotency_key: Option<String>,
}

impl From<ServiceError> for ActionFailure {
    fn from(error: ServiceError) -> Self {
        Self {
            error,
            idempotency_key: None,
        }
    }
}

fn unknown_action(name: &str) -> ServiceError {
    let near = Catalog::builtin().suggest(name);
    ServiceError::new(
        ErrorKind::NotFound,
        "action_unknown",
        format!(
            "No action named '{}'.{} GET /api/v1/actions lists them all.",
            name.chars().take(100).collect::<String>(),
            if near.is_empty() {
                String::new()
            } else {
                format!(" Did you mean {}?", near.join(", "))
            }
        ),
    )
    .with_param("action")
}

/// The catalogue entry for `name`.
pub fn describe(name: &str) -> Result<&'static ActionDef, ServiceError> {
    Catalog::builtin()
        .get(name)
        .ok_or_else(|| unknown_action(name))
}

/// Runs `action` with `config` on connection `id`.
pub async fn run(
    state: &AppState,
    caller: &TenantPrincipal,
    ctx: &AuditContext,
    id: ConnectionId,
    action: &str,
    config: &Value,
    idempotency_header: Option<String>,
) -> Result<ActionOutput, ActionFailure> {
    if !caller.scopes.allows(Scope::Proxy) {
        return Err(ServiceError::forbidden(
            "insufficient_scope",
            "This API key lacks the 'proxy' scope needed to call Stripe through a connection.",
        )
        .into());
    }
    let started = Instant::now();
    let (mut call, permission) = if action == RAW_REQUEST {
        (raw_request(config)?, None)
    } else {
        let def = describe(action)?;
        let call = prepare(def, config)
            .map_err(|e| ServiceError::unprocessable(e.code, e.message).with_param(e.param))?;
        (call, Some(def.permission.as_str()))
    };
    if call.idempotency_key.is_none() && call.method == HttpMethod::Post {
        // The caller's header, else one of ours: the same across Patchbay's
        // retries, and returned so the caller can retry with it too.
        call.idempotency_key = Some(
            idempotency_header
                .unwrap_or_else(|| format!("patchbay-{}", uuid::Uuid::new_v4().simple())),
        );
    }
    let opened = open_for_call(state, caller.tenant_id, id).await?;
    let conn = &opened.connection;
    if conn.status != ConnectionStatus::Active {
        return Err(ServiceError::conflict(
            "connection_not_active",
            format!(
                "Connection {id} is '{}', not 'active': validate it or fix its credential first.",
                conn.status.as_str()
            ),
        )
        .into());
    }
    let stripe_account = match (&opened.credential, &call.stripe_account) {
        (Credential::ConnectGrant(grant), Some(asked)) if *asked != grant.account => {
            return Err(ServiceError::unprocessable(
                "stripe_account_conflict",
                "This connection is a Connect grant for another account; its calls always act on its own account.",
            )
            .with_param("config.stripeAccount")
            .into());
        }
        (Credential::ConnectGrant(grant), _) => Some(grant.account.clone()),
        (Credential::ApiKey(_), asked) => asked.clone(),
    };
    let version = call
        .stripe_version
        .clone()
        .or_else(|| conn.stripe_version.clone());
    let key = opened.credential.key().clone();
    let target = Target {
        state: state.clone(),
        key,
        connection: id,
        livemode: conn.livemode,
        stripe_account,
        version,
    };
    let audit = |status: u16, request_id: Option<String>| {
        ctx.event(
            caller.tenant_id,
            "action.called",
            id,
            json!({
                "action": action,
                "status": status,
                "stripe_request_id": request_id,
                "duration_ms": started.elapsed().as_millis() as u64,
            }),
        )
    };
    // A call that got no answer is audited too, with the status it answers.
    let failed = |error: ServiceError, idempotency_key: Option<String>| async move {
        let status = crate::error::ApiError::from(error.clone()).status.as_u16();
        state.audit_log.record(audit(status, None)).await;
        ActionFailure {
            error,
            idempotency_key,
        }
    };
    let output = match call.auto_paginate {
        Some(auto) => match paginate(target, call, auto).await {
            Ok(output) => output,
            Err(e) => return Err(failed(e, None).await),
        },
        None => {
            let response = match target.send(&call).await {
                Ok(response) => response,
                Err(e) => return Err(failed(e, call.idempotency_key.clone()).await),
            };
            let output = ActionOutput::Answer {
                status: response.status.as_u16(),
                request_id: response.request_id.clone(),
                idempotency_key: response
                    .headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .or(call.idempotency_key.clone()),
                body: response.body.clone(),
            };
            if let Some(permission) = permission {
                learn(state, caller, id, permission, &response).await;
            }
            output
        }
    };
    let (status, request_id) = match &output {
        ActionOutput::Answer {
            status, request_id, ..
        } => (*status, request_id.clone()),
        ActionOutput::Stream { request_id, .. } => (200, request_id.clone()),
    };
    state.audit_log.record(audit(status, request_id)).await;
    Ok(output)
}

/// Where calls go, with what.
#[derive(Clone)]
struct Target {
    state: AppState,
    key: StripeKey,
    connection: ConnectionId,
    livemode: bool,
    stripe_account: Option<String>,
    version: Option<String>,
}

impl Target {
    async fn send(&self, call: &PreparedCall) -> Result<StripeResponse, ServiceError> {
        let method = match call.method {
            HttpMethod::Get => Method::GET,
            HttpMethod::Post => Method::POST,
            HttpMethod::Delete => Method::DELETE,
        };
        let mut request = StripeRequest::new(method, &call.path)
            .on_account(self.stripe_account.clone())
            .with_version(self.version.clone());
        if call.method == HttpMethod::Post {
            request.body = Some(Body::Form(call.pairs.clone()));
            request.idempotency_key = call.idempotency_key.clone();
        } else {
            request.query = call.pairs.clone();
        }
        let rate = self.connection.to_string();
        self.state
            .stripe
            .send(
                self.key.secret(),
                request,
                Some(RateKey {
                    key: &rate,
                    livemode: self.livemode,
                }),
            )
            .await
            .map_err(stripe_failure)
    }
}

/// A Stripe call that got no usable answer.
fn stripe_failure(e: patchbay_stripe::StripeError) -> ServiceError {
    match e {
        patchbay_stripe::StripeError::InvalidRequest(m) => {
            ServiceError::unprocessable("parameter_invalid", m.as_str().to_owned())
                .with_param("config.path")
        }
        other => super::error::stripe_call_failed(other),
    }
}

/// Remembers what the answer says about the action's permission.
async fn learn(
    state: &AppState,
    caller: &TenantPrincipal,
    id: ConnectionId,
    permission: &str,
    response: &StripeResponse,
) {
    let observation = match response.status.as_u16() {
        200..=299 => Some(PermissionObservation {
            permission: permission.to_owned(),
            granted: true,
            stripe_request_id: response.request_id.clone(),
            observed_at: now(),
        }),
        403 => response
            .error_body()
            .and_then(|e| e.message)
            .and_then(|m| missing_permission(m.as_str()))
            .map(|named| PermissionObservation {
                permission: named,
                granted: false,
                stripe_request_id: response.request_id.clone(),
                observed_at: now(),
            }),
        _ => None,
    };
    let Some(observation) = observation else {
        return;
    };
    let memo = &state.permission_memo;
    let (name, granted) = (observation.permission.as_str(), observation.granted);
    if !memo.should_record(id, name, granted, Instant::now()) {
        return;
    }
    match state
        .store
        .record_permission(caller.tenant_id, id, &observation)
        .await
    {
        Ok(()) => memo.recorded(id, name, granted, Instant::now()),
        Err(e) => warn!(error = %e, connection = %id, "could not record a permission observation"),
    }
}

/// `stripe.rawRequest`: `{"method","path","params","headers"}` under the proxy's path rules.
fn raw_request(config: &Value) -> Result<PreparedCall, ServiceError> {
    let bad = |param: &str, message: &str| {
        ServiceError::unprocessable("parameter_invalid", message.to_owned())
            .with_param(format!("config.{param}"))
    };
    let map = config
        .as_object()
        .ok_or_else(|| bad("", "config must be an object"))?;
    for key in map.keys() {
        if !matches!(key.as_str(), "method" | "path" | "params" | "headers") {
            return Err(ServiceError::unprocessable("parameter_unknown", format!("stripe.rawRequest does not take '{key}'; it takes method, path, params and headers.")).with_param(format!("config.{key}")));
        }
    }
    let method = match map
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("GET") => HttpMethod::Get,
        Some("POST") => HttpMethod::Post,
        Some("DELETE") => HttpMethod::Delete,
        _ => return Err(bad("method", "method must be GET, POST or DELETE.")),
    };
    let path = map
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("path", "path is required, e.g. /v1/customers."))?;
    patchbay_stripe::proxy::check_proxy_path(path.trim_start_matches('/'))
        .map_err(|e| bad("path", &e.to_string()))?;
    let mut pairs = Vec::new();
    if let Some(params) = map.get("params").filter(|v| !v.is_null()) {
        let params = params
            .as_object()
            .ok_or_else(|| bad("params", "params must be an object."))?;
        for (k, v) in params {
            flatten(k.clone(), v, &mut pairs);
        }
    }
    let mut call = PreparedCall {
        method,
        path: format!("/{}", path.trim_start_matches('/')),
        pairs,
        stripe_account: None,
        stripe_version: None,
        idempotency_key: None,
        auto_paginate: None,
    };
    if let Some(headers) = map.get("headers").filter(|v| !v.is_null()) {
        let headers = headers
            .as_object()
            .ok_or_else(|| bad("headers", "headers must be an object."))?;
        for (name, value) in headers {
            let value = value
                .as_str()
                .filter(|v| !v.chars().any(char::is_control))
                .ok_or_else(|| bad("headers", "header values must be strings."))?
                .to_owned();
            match name.to_ascii_lowercase().as_str() {
                "stripe-account" => call.stripe_account = Some(value),
                "stripe-version" => call.stripe_version = Some(value),
                "idempotency-key" => call.idempotency_key = Some(value),
                other => {
                    return Err(bad(
                        "headers",
                        &format!(
                            "'{other}' cannot be sent; stripe.rawRequest passes Stripe-Account, Stripe-Version and Idempotency-Key."
                        ),
                    ));
                }
            }
        }
    }
    Ok(call)
}

/// Stripe's encoding for free-form params: `a[b]`, `a[0]`, `true`/`false`.
fn flatten(name: String, value: &Value, pairs: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => pairs.push((name, b.to_string())),
        Value::Number(n) => pairs.push((name, n.to_string())),
        Value::String(s) => pairs.push((name, s.clone())),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(format!("{name}[{i}]"), v, pairs);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                flatten(format!("{name}[{k}]"), v, pairs);
            }
        }
    }
}

/// Follows `starting_after` up to `max_items`, streaming one list object out.
/// The first page is fetched before answering, so its failure is Stripe's
/// answer as is; a later page's failure ends the list early with `has_more`
/// true and an `error` member.
async fn paginate(
    target: Target,
    call: PreparedCall,
    auto: AutoPaginate,
) -> Result<ActionOutput, ServiceError> {
    let mut first_call = call.clone();
    let page_size = call
        .pairs
        .iter()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse::<u32>().ok())
        .unwrap_or(100);
    first_call.pairs.retain(|(k, _)| k != "limit");
    first_call
        .pairs
        .push(("limit".into(), page_size.min(auto.max_items).to_string()));
    let response = target.send(&first_call).await?;
    if !response.status.is_success() {
        return Ok(ActionOutput::Answer {
            status: response.status.as_u16(),
            request_id: response.request_id.clone(),
            idempotency_key: None,
            body: response.body.clone(),
        });
    }
    let page: Value = serde_json::from_slice(&response.body).map_err(|_| {
        ServiceError::new(
            ErrorKind::UpstreamFailed,
            "stripe_unexpected_response",
            "Stripe answered a list with something that is not JSON.",
        )
    })?;
    let url = page
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or(&call.path)
        .to_owned();
    struct Pager {
        target: Target,
        call: PreparedCall,
        page: Option<Value>,
        remaining: u32,
        page_size: u32,
        started: bool,
        done: bool,
        url: String,
    }
    let pager = Pager {
        target,
        call,
        page: Some(page),
        remaining: auto.max_items,
        page_size,
        started: false,
        done: false,
        url,
    };
    let body = stream::unfold(pager, |mut p| async move {
        if p.done {
            return None;
        }
        // A page is always present until `done`: set before the first step, and
        // by every step that does not finish.
        let page = p
            .page
            .take()
            .unwrap_or_else(|| json!({"data": [], "has_more": false}));
        let items = page
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let has_more_upstream = page
            .get("has_more")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut chunk = String::new();
        if !p.started {
            chunk.push_str("{\"object\":\"list\",\"data\":[");
        }
        let mut last_id = None;
        let mut taken = 0usize;
        for item in items.iter().take(p.remaining as usize) {
            if p.started {
                chunk.push(',');
            }
            p.started = true;
            chunk.push_str(&item.to_string());
            last_id = item.get("id").and_then(Value::as_str).map(str::to_owned);
            p.remaining -= 1;
            taken += 1;
        }
        let finish = |chunk: &mut String, has_more: bool, url: &str, error: Option<Value>| {
            chunk.push_str(&format!("],\"has_more\":{has_more},\"url\":{}", json!(url)));
            if let Some(error) = error {
                chunk.push_str(&format!(",\"error\":{error}"));
            }
            chunk.push('}');
        };
        if p.remaining == 0 || !has_more_upstream || last_id.is_none() {
            // Capped with items left over (here or upstream): more remain.
            let more = p.remaining == 0 && (has_more_upstream || taken < items.len());
            finish(&mut chunk, more, &p.url, None);
            p.done = true;
            return Some((Ok(Bytes::from(chunk)), p));
        }
        // Next page.
        let mut next = p.call.clone();
        next.pairs
            .retain(|(k, _)| k != "starting_after" && k != "ending_before" && k != "limit");
        next.pairs
            .push(("starting_after".into(), last_id.unwrap_or_default()));
        next.pairs
            .push(("limit".into(), p.page_size.min(p.remaining).to_string()));
        match p.target.send(&next).await {
            Ok(r) if r.status.is_success() => match serde_json::from_slice::<Value>(&r.body) {
                Ok(v) => p.page = Some(v),
                Err(_) => {
                    finish(
                        &mut chunk,
                        true,
                        &p.url,
                        Some(
                            json!({"code": "stripe_unexpected_response", "message": "Stripe answered a page with something that is not JSON."}),
                        ),
                    );
                    p.done = true;
                }
            },
            Ok(r) => {
                let error = serde_json::from_slice::<Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("error").cloned())
                    .unwrap_or(
                        json!({"message": format!("Stripe answered {}", r.status.as_u16())}),
                    );
                finish(&mut chunk, true, &p.url, Some(error));
                p.done = true;
            }
            Err(e) => {
                finish(
                    &mut chunk,
                    true,
                    &p.url,
                    Some(json!({"code": e.code, "message": e.message})),
                );
                p.done = true;
            }
        }
        Some((Ok(Bytes::from(chunk)), p))
    });
    Ok(ActionOutput::Stream {
        request_id: response.request_id.clone(),
        body: body.boxed(),
    })
}

/// Per action: whether this connection can run it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Capability {
    /// `stripe.createCustomer`
    pub action: String,
    /// `available`, `missing_permission` or `unknown` (never tried).
    pub status: &'static str,
    /// The permission it needs.
    pub permission: String,
    /// Why, when not available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What each action can do on this connection: a secret key or a
/// `read_write` grant can run everything; a `read_only` grant only reads; a
/// restricted key what Stripe has shown it may (a granted `…_write` implies
/// its `…_read`), a permission Stripe named as missing is missing, and the
/// rest is unknown until tried.
pub async fn capabilities(
    state: &AppState,
    tenant: patchbay_core::TenantId,
    id: ConnectionId,
) -> Result<Vec<Capability>, ServiceError> {
    let conn = state
        .store
        .get_connection(tenant, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("connection", &id.to_string()))?;
    let observed = state.store.connection_permissions(tenant, id).await?;
    let granted = |p: &str| {
        observed.iter().any(|o| {
            o.granted
                && (o.permission == p
                    || (p.ends_with("_read")
                        && o.permission == format!("{}_write", p.trim_end_matches("_read"))))
        })
    };
    let missing = |p: &str| {
        observed.iter().any(|o| !o.granted && o.permission == p)
            || conn.missing_permissions.iter().any(|m| m == p)
    };
    let read_only_grant = conn
        .grant
        .as_ref()
        .is_some_and(|g| g.scope == GrantScope::ReadOnly);
    Ok(Catalog::builtin()
        .actions()
        .iter()
        .map(|def| {
            let write = def.method != HttpMethod::Get || def.kind == Kind::Delete;
            let (status, reason) = match conn.auth_method {
                AuthMethod::SecretKey => ("available", None),
                AuthMethod::Oauth if read_only_grant && write => (
                    "missing_permission",
                    Some("The Connect grant is read_only; this action writes.".to_owned()),
                ),
                AuthMethod::Oauth => ("available", None),
                AuthMethod::RestrictedKey
                    if missing(&def.permission) && !granted(&def.permission) =>
                {
                    (
                        "missing_permission",
                        Some(format!(
                            "Stripe refused this key the '{}' permission.",
                            def.permission
                        )),
                    )
                }
                AuthMethod::RestrictedKey if granted(&def.permission) => ("available", None),
                AuthMethod::RestrictedKey => ("unknown", None),
            };
            Capability {
                action: def.name.clone(),
                status,
                permission: def.permission.clone(),
                reason,
            }
        })
        .collect())
}
