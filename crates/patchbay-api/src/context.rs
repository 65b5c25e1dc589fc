//! Per-request context, applied to every route: the server's own request id
//! (`x-request-id`, always generated here; a sane id the client sent is kept
//! apart as its `client_request_id` and echoed as `x-client-request-id`), a
//! tracing span, the error envelope (ApiError bodies, and axum's own
//! 404/405/408/413 in the same shape), and HTTP metrics labelled by route
//! template and method name from closed sets.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{Instrument, debug, error, info, info_span};

use crate::error::{ApiError, ErrorType};
use crate::request_line::{MAX_METHOD_SHOWN, MAX_PATH_SHOWN, shown};
use crate::state::AppState;

/// The request's ids, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId {
    id: Arc<str>,
    client: Option<Arc<str>>,
}

impl RequestId {
    /// A new server-generated id, with the client's own id if it sent a sane one.
    pub fn new(client: Option<&str>) -> Self {
        Self {
            id: generate(),
            client: client.filter(|v| is_sane(v)).map(Arc::from),
        }
    }

    /// The server's id text (`req_…`).
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The id the client sent in `x-request-id`, if it was well formed.
    pub fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }
}

/// Headers an inner layer wants on the final response whatever it becomes
/// (an error rendered into the envelope here included), such as the
/// tenant rate-limit headers.
#[derive(Debug, Clone, Default)]
pub struct ExtraHeaders(pub HeaderMap);

const HEADER: HeaderName = HeaderName::from_static("x-request-id");
const CLIENT_HEADER: HeaderName = HeaderName::from_static("x-client-request-id");

/// The middleware. See the module documentation.
pub async fn request_context(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let ids = RequestId::new(request.headers().get(HEADER).and_then(|v| v.to_str().ok()));
    let id = ids.id.clone();
    let client_id = ids.client.clone();
    request.extensions_mut().insert(ids);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let uri = request.uri().clone(); // shares its buffer: no copy unless an error page needs it
    // One field: every log line inside the request carries the id; the line
    // that closes the request names method, route and status. (Each span field
    // is formatted when the span opens; fewer fields keep the hot path cheap.)
    let span = info_span!("request", request_id = %id);
    let started = Instant::now();

    let mut response = next.run(request).instrument(span.clone()).await;

    let extra = response.extensions_mut().remove::<ExtraHeaders>();
    if let Some(err) = response.extensions_mut().remove::<ApiError>() {
        response = render(&err, &id);
    } else if needs_envelope(&response) && !crate::routes::is_passthrough(&response) {
        response = render(&generic(response.status(), &method, uri.path()), &id);
    }
    let headers = response.headers_mut();
    if let Some(ExtraHeaders(extra)) = extra {
        headers.extend(extra);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(HEADER, value);
    }
    if let Some(value) = client_id.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(CLIENT_HEADER, value);
    }

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state
        .http_metrics
        .record(&method, &route, status, elapsed.as_secs_f64());
    span.in_scope(|| {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let method = shown(method.as_str(), MAX_METHOD_SHOWN);
        if status >= 500 {
            error!(%method, %route, status, latency_ms = ms, "request failed");
        } else if status >= 400 {
            info!(%method, %route, status, latency_ms = ms, "request refused");
        } else {
            debug!(%method, %route, status, latency_ms = ms, "request served");
        }
    });
    response
}

/// Ids from callers are accepted only if short and plain, so logs stay clean.
fn is_sane(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn generate() -> Arc<str> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 24];
    if !random_bytes(&mut bytes) {
        // The OS source practically never fails; a time-ordered UUID still identifies the request.
        return Arc::from(format!("req_{}", uuid::Uuid::now_v7().simple()));
    }
    let mut id = String::with_capacity(4 + bytes.len());
    id.push_str("req_");
    id.extend(
        bytes
            .iter()
            .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char),
    );
    Arc::from(id)
}

/// Fills `out` from the OS's random source, read 1 KiB at a time per thread
/// (one system call per ~40 request ids rather than one each).
fn random_bytes(out: &mut [u8]) -> bool {
    use std::cell::RefCell;
    const POOL: usize = 1024;
    thread_local! {
        static BUFFER: RefCell<([u8; POOL], usize)> = const { RefCell::new(([0; POOL], POOL)) };
    }
    BUFFER.with_borrow_mut(|(pool, used)| {
        if POOL - *used < out.len() {
            if getrandom::fill(pool).is_err() {
                return false;
            }
            *used = 0;
        }
        out.copy_from_slice(&pool[*used..*used + out.len()]);
        // Each byte is given out once.
        pool[*used..*used + out.len()].fill(0);
        *used += out.len();
        true
    })
}

/// An error status from axum or tower (no ApiError, not JSON) gets the envelope too.
fn needs_envelope(response: &Response) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error())
        && !response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"))
}

fn generic(status: StatusCode, method: &Method, path: &str) -> ApiError {
    let method = shown(method.as_str(), MAX_METHOD_SHOWN);
    let shown = shown(path, MAX_PATH_SHOWN);
    match status {
        StatusCode::NOT_FOUND => ApiError::new(
            status,
            ErrorType::InvalidRequestError,
            "route_not_found",
            format!("No route for {method} {shown}. The API is described at /docs."),
        ),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            ErrorType::InvalidRequestError,
            "method_not_allowed",
            format!("{method} is not allowed on {shown}."),
        ),
        StatusCode::REQUEST_TIMEOUT => ApiError::new(
            status,
            ErrorType::ApiError,
            "request_timeout",
            "The request took too long and was cancelled.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            ErrorType::InvalidRequestError,
            "body_too_large",
            "The request body is larger than this server accepts.",
        ),
        _ => ApiError::new(
            status,
            if status.is_server_error() {
                ErrorType::ApiError
            } else {
                ErrorType::InvalidRequestError
            },
            format!("http_{}", status.as_u16()),
            status
                .canonical_reason()
                .unwrap_or("The request failed.")
                .to_owned(),
        ),
    }
}

fn render(err: &ApiError, request_id: &str) -> Response {
    let mut response = (err.status, Json(err.body(request_id))).into_response();
    if let Some(seconds) = err.retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_and_plain_across_pool_refills() {
        // 24 bytes each from a 1 KiB pool: 2,000 ids refill it about 47 times.
        let ids: std::collections::HashSet<String> =
            (0..2_000).map(|_| generate().to_string()).collect();
        assert_eq!(ids.len(), 2_000);
        for id in &ids {
            assert_eq!(id.len(), 28, "{id}");
            assert!(id.starts_with("req_") && is_sane(id), "{id}");
        }
    }
}
