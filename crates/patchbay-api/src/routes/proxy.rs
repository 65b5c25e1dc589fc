//! The raw proxy: any Stripe endpoint through a connection, at
//! `/api/v1/connections/{id}/proxy/{*path}` and, for a key bound to one
//! connection, at Stripe's own paths (`/v1/*`, `/v2/*`) so an official SDK
//! needs only a new base URL. Method, raw query and body go out untouched;
//! Stripe's status, body and useful headers come back verbatim, streamed.
//! Patchbay's own refusals keep the error envelope.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use futures::TryStreamExt;
use patchbay_core::audit::AuditEvent;
use patchbay_stripe::RateKey;
use patchbay_stripe::proxy::{RawBody, RawRequest};
use serde_json::json;

use crate::auth::{Caller, TenantPrincipal};
use crate::context::RequestId;
use crate::error::{ApiError, ErrorResponse, RelayedError};
use crate::extract::parse_id;
use crate::services::error::ServiceError;
use crate::services::proxy::{self, Addressed};
use crate::state::AppState;

/// Marks a response whose body is Stripe's: never rewritten into the envelope.
#[derive(Debug, Clone, Copy)]
pub struct Passthrough;

/// Caller headers that go to Stripe (besides configured ones).
const FORWARDED: [&str; 5] = [
    "content-type",
    "stripe-account",
    "stripe-context",
    "stripe-version",
    "idempotency-key",
];

/// Stripe's headers that come back.
const RETURNED: [&str; 8] = [
    "content-type",
    "content-length",
    "request-id",
    "stripe-version",
    "idempotency-key",
    "stripe-should-retry",
    "idempotent-replayed",
    "original-request",
];

/// Bodies up to this size are kept in memory so a safe retry can resend them.
const BUFFER_FOR_RETRY: u64 = 256 * 1024;

/// Proxy a Stripe request
///
/// `ANY /api/v1/connections/{id}/proxy/{*path}`: any Stripe endpoint (`v1/…`, `v2/…`)
/// through the connection, with any method Stripe takes. Patchbay adds the connection's
/// credentials (and `Stripe-Account` for Connect grants); Stripe's answer comes back
/// verbatim and streamed, whatever its status. Needs the `proxy` scope; the same proxy
/// answers at `/v1/*` and `/v2/*` for a key bound to one connection.
#[utoipa::path(post, path = "/api/v1/connections/{id}/proxy/{path}", tag = "proxy",
    params(
        ("id" = String, Path, description = "Connection id (conn_…)"),
        ("path" = String, Path, description = "Stripe path after the API base, starting with v1/ or v2/ (e.g. v1/customers). Any method works: GET, POST, DELETE as Stripe takes them."),
    ),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Stripe's answer, verbatim (any Stripe status, body and its Request-Id, Stripe-Version and Idempotency-Key headers)", content_type = "application/json", body = serde_json::Value, example = super::examples::stripe_customer),
        (status = 400, description = "A path that is not a Stripe API path (traversal, encoding tricks, not v1/ or v2/), a bad Stripe-Account, a multipart Content-Type without a boundary; or Stripe's 400, verbatim", body = RelayedError),
        (status = 401, description = "No valid API key, or Stripe refused the connection's key (Stripe's body)", body = RelayedError),
        (status = 402, description = "Stripe: valid parameters but the request failed (a card declined), verbatim", body = RelayedError),
        (status = 403, description = "The key lacks the `proxy` scope, or is bound to another connection; or Stripe refused a permission (Stripe's body)", body = RelayedError),
        (status = 404, description = "No such connection, or Stripe's `resource_missing`, verbatim", body = RelayedError),
        (status = 409, description = "The connection is not `active` (`connection_not_active`), or Stripe's conflict, verbatim", body = RelayedError),
        (status = 429, description = "Stripe's rate limit, verbatim", body = RelayedError),
        (status = 413, description = "The body is larger than PATCHBAY_PROXY_MAX_BODY_BYTES", body = ErrorResponse),
        (status = 502, description = "Stripe could not be reached", body = ErrorResponse),
    ))]
pub async fn proxy_connection(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, path)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "id")?;
    forward(
        &state,
        tenant_of(caller)?,
        Addressed::ById(id),
        path,
        request,
    )
    .await
}

/// `ANY /v1/{*path}` and `ANY /v2/{*path}`: the bound connection.
pub async fn proxy_root(
    caller: Caller,
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let path = request.uri().path().trim_start_matches('/').to_owned();
    forward(&state, tenant_of(caller)?, Addressed::Root, path, request).await
}

fn tenant_of(caller: Caller) -> Result<TenantPrincipal, ApiError> {
    match caller {
        Caller::Tenant(t) => Ok(t),
        _ => Err(ApiError::forbidden(
            "tenant_key_required",
            "The proxy acts for one tenant's connection: call it with a tenant API key that has the 'proxy' scope.",
        )),
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::bad_request(
                    "header_invalid",
                    format!("The {name} header is not plain text."),
                )
                .with_param(name.to_owned())
            })
        })
        .transpose()
}

/// A multipart body without its boundary cannot be parsed by anyone: refused
/// here (400 `content_type_invalid`) rather than sent on to Stripe.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = header_text(headers, "content-type")? else {
        return Ok(());
    };
    let mut params = value.split(';');
    let multipart = params
        .next()
        .and_then(|essence| essence.trim().get(..10))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("multipart/"));
    let boundary = params.any(|p| {
        p.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("boundary") && !v.trim().trim_matches('"').is_empty()
        })
    });
    if multipart && !boundary {
        return Err(ApiError::bad_request(
            "content_type_invalid",
            "A multipart Content-Type needs a boundary parameter.",
        )
        .with_param("Content-Type".to_owned()));
    }
    Ok(())
}

async fn forward(
    state: &AppState,
    caller: TenantPrincipal,
    addressed: Addressed,
    path: String,
    request: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    // The raw path as received (percent-encoded), not axum's decoded capture.
    let raw_path = match addressed {
        Addressed::Root => path,
        Addressed::ById(_) => parts
            .uri
            .path()
            .split_once("/proxy/")
            .map(|(_, p)| p.to_owned())
            .unwrap_or_default(),
    };
    patchbay_stripe::proxy::check_proxy_path(&raw_path).map_err(path_error)?;
    check_content_type(&parts.headers)?;
    let target = proxy::target(
        state,
        &caller,
        addressed,
        header_text(&parts.headers, "stripe-account")?,
        header_text(&parts.headers, "stripe-context")?,
        header_text(&parts.headers, "stripe-version")?,
    )
    .await?;

    let mut headers = HeaderMap::new();
    for name in FORWARDED.iter().copied().chain(
        state
            .config
            .proxy_forward_headers
            .iter()
            .map(String::as_str),
    ) {
        if let Some(value) = parts.headers.get(name) {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| ApiError::from(ServiceError::internal(&"bad header name")))?,
                value.clone(),
            );
        }
    }
    if let Some(account) = &target.stripe_account {
        headers.insert("stripe-account", header_value(account)?);
    }
    if let Some(version) = &target.stripe_version {
        headers.insert("stripe-version", header_value(version)?);
    }
    let retries = !parts
        .headers
        .get("patchbay-retry")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"off"));
    let max = state.config.proxy_max_body_bytes;
    let length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    // Set by a streamed body that turns out larger than allowed.
    let over_limit = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = match length {
        Some(0) => RawBody::Empty,
        Some(n) if n <= BUFFER_FOR_RETRY => {
            RawBody::Buffered(axum::body::to_bytes(body, n as usize).await.map_err(|_| {
                ApiError::bad_request("body_unreadable", "The request body could not be read.")
            })?)
        }
        None if parts.method == axum::http::Method::GET
            || parts.method == axum::http::Method::DELETE =>
        {
            RawBody::Empty
        }
        _ => RawBody::stream(limited(body, max, over_limit.clone())),
    };
    let rate = target.connection.to_string();
    let method = parts.method.clone();
    let upstream = state
        .stripe
        .forward(
            target.key.secret(),
            RawRequest {
                method: method.clone(),
                path: raw_path.clone(),
                query: parts.uri.query().map(str::to_owned),
                headers,
                body,
                retries,
            },
            Some(RateKey {
                key: &rate,
                livemode: target.livemode,
            }),
        )
        .await
        .map_err(|e| {
            if over_limit.load(std::sync::atomic::Ordering::Relaxed) {
                too_large(max)
            } else {
                ApiError::from(upstream_error(e))
            }
        })?;

    let (upstream, upstream_body) = upstream.into_parts();
    let status = upstream.status;
    let mut response = Response::new(Body::new(upstream_body));
    *response.status_mut() = status;
    let mut request_id = None;
    let out = response.headers_mut();
    for name in RETURNED {
        if let Some(value) = upstream.headers.get(name) {
            if name == "request-id" {
                request_id = value.to_str().ok().map(str::to_owned);
            }
            out.insert(name, value.clone());
        }
    }
    response.extensions_mut().insert(Passthrough);

    let request_ids = parts.extensions.get::<RequestId>();
    let event = AuditEvent::new(
        Some(caller.tenant_id),
        patchbay_core::audit::Actor::ApiKey(caller.key_id),
        "proxy.request",
        Some(target.connection.to_string()),
        json!({
            "method": method.as_str(),
            "path": raw_path,
            "query_keys": parts.uri.query().map(query_keys),
            "status": status.as_u16(),
            "stripe_request_id": request_id,
            "duration_ms": started.elapsed().as_millis() as u64,
        }),
        request_ids.map(|r| r.as_str().to_owned()),
    )
    .with_client_request_id(request_ids.and_then(|r| r.client()).map(str::to_owned));
    state.audit_log.record(event).await;
    Ok(response)
}

/// The names in a query string, without their values (which may be personal data).
fn query_keys(query: &str) -> Vec<String> {
    let mut keys: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, _)| k.chars().take(100).collect())
        .collect();
    keys.sort();
    keys.dedup();
    keys.truncate(50);
    keys
}

fn header_value(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value)
        .map_err(|_| ApiError::from(ServiceError::internal(&"a header value is not valid")))
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        crate::error::ErrorType::InvalidRequestError,
        "body_too_large",
        format!(
            "The request body is larger than this proxy accepts ({max} bytes, PATCHBAY_PROXY_MAX_BODY_BYTES)."
        ),
    )
}

/// The caller's body as a stream that fails past `max` bytes.
fn limited(
    body: Body,
    max: u64,
    over_limit: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    let mut seen = 0u64;
    body.into_data_stream()
        .map_err(std::io::Error::other)
        .and_then(move |chunk| {
            seen += chunk.len() as u64;
            let over = seen > max;
            if over {
                over_limit.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            async move {
                if over {
                    Err(std::io::Error::other("request body over the proxy's limit"))
                } else {
                    Ok(chunk)
                }
            }
        })
}

fn path_error(e: patchbay_stripe::StripeError) -> ApiError {
    let message = match &e {
        patchbay_stripe::StripeError::InvalidRequest(m) => m.as_str().to_owned(),
        other => other.to_string(),
    };
    ApiError::bad_request("path_invalid", message).with_param("path")
}

fn upstream_error(e: patchbay_stripe::StripeError) -> ServiceError {
    match e {
        patchbay_stripe::StripeError::InvalidRequest(m) => {
            ServiceError::bad_request("path_invalid", m.as_str().to_owned())
        }
        other => crate::services::error::stripe_call_failed(other),
    }
}

/// Keeps the envelope off Stripe's bodies.
pub fn is_passthrough(response: &Response) -> bool {
    response.extensions().get::<Passthrough>().is_some()
}
