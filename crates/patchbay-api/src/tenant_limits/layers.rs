//! The two layers: [`rate_limit`] on every route a tenant key or connect
//! session calls, [`upstream_bound`] on the routes that call Stripe on the
//! request. Both sit inside the caller layer and pass the admin and
//! anonymous requests through untouched.
//!
//! Rate-limit headers follow draft-ietf-httpapi-ratelimit-headers, on every
//! answer to a tenant: `RateLimit-Policy: "tenant";q=<burst>;w=<seconds to
//! refill it>` and `RateLimit: "tenant";r=<requests left at once>;t=<seconds
//! until the whole burst is back>`; a refusal adds `Retry-After`.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;

use super::{Decision, Verdict};
use crate::auth::Caller;
use crate::context::ExtraHeaders;
use crate::error::ApiError;
use crate::services::error::{ErrorKind, ServiceError};
use crate::state::AppState;

const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const STATE: HeaderName = HeaderName::from_static("ratelimit");

fn tenant_of(request: &Request) -> Option<patchbay_core::TenantId> {
    request
        .extensions()
        .get::<Caller>()
        .and_then(Caller::tenant)
}

/// Whole seconds, rounded up.
fn ceil_seconds(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The two draft headers for a verdict.
fn headers(verdict: &Verdict) -> HeaderMap {
    let (remaining, reset) = match verdict.decision {
        Decision::Allowed { remaining, reset } => (remaining, reset),
        Decision::Limited { reset, .. } => (0, reset),
    };
    let mut headers = HeaderMap::new();
    let policy = format!(
        "\"tenant\";q={};w={}",
        verdict.rate.burst,
        verdict.rate.window_seconds()
    );
    let state = format!("\"tenant\";r={remaining};t={}", ceil_seconds(reset));
    for (name, value) in [(POLICY, policy), (STATE, state)] {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
    headers
}

/// Refuses a tenant's request over its rate with 429 `rate_limited`; adds the
/// rate-limit headers to every answer to a tenant.
pub async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(tenant) = tenant_of(&request) else {
        return next.run(request).await;
    };
    let verdict = state.tenant_limiter.check(tenant).await;
    let mut response = match verdict.decision {
        Decision::Allowed { .. } => next.run(request).await,
        Decision::Limited { retry_after, .. } => {
            let rate = verdict.rate;
            ApiError::from(
                ServiceError::new(
                    ErrorKind::RateLimited,
                    "rate_limited",
                    format!(
                        "This tenant sent more requests than its limit of {} a second (bursts of {}); retry after the time in Retry-After.",
                        rate.per_second, rate.burst
                    ),
                )
                .with_retry_after(ceil_seconds(retry_after)),
            )
            .into_response()
        }
    };
    let ours = headers(&verdict);
    // Kept apart so they survive the envelope the request-context layer renders.
    match response.extensions_mut().get_mut::<ExtraHeaders>() {
        Some(ExtraHeaders(extra)) => extra.extend(ours),
        None => {
            response.extensions_mut().insert(ExtraHeaders(ours));
        }
    }
    response
}

/// Holds one of the tenant's Stripe slots for the whole request, until its
/// response body has been sent (the proxy streams Stripe's); refuses with
/// 429 `upstream_concurrency_exceeded` when none frees up in time.
pub async fn upstream_bound(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(tenant) = tenant_of(&request) else {
        return next.run(request).await;
    };
    match state.tenant_limiter.upstream_slot(tenant).await {
        Ok(permit) => next.run(request).await.map(|body| {
            Body::new(Holding {
                body,
                _permit: permit,
            })
        }),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A body that keeps a permit until it is finished or dropped.
struct Holding {
    body: Body,
    _permit: OwnedSemaphorePermit,
}

impl HttpBody for Holding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant_limits::Rate;
    use std::time::Duration;

    #[test]
    fn the_headers_state_the_policy_and_what_is_left() {
        let rate = Rate {
            per_second: 200,
            burst: 400,
        };
        let h = headers(&Verdict {
            rate,
            decision: Decision::Allowed {
                remaining: 399,
                reset: Duration::from_millis(5),
            },
        });
        assert_eq!(h[POLICY], "\"tenant\";q=400;w=2");
        assert_eq!(h[STATE], "\"tenant\";r=399;t=1");
        let h = headers(&Verdict {
            rate,
            decision: Decision::Limited {
                retry_after: Duration::from_millis(5),
                reset: Duration::from_millis(2000),
            },
        });
        assert_eq!(h[STATE], "\"tenant\";r=0;t=2");
    }
}
