//! Liveness, readiness and Prometheus metrics: what orchestrators and
//! scrapers call, without credentials.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use patchbay_core::StoreError;
use patchbay_core::store::Backend;
use serde::Serialize;

use crate::error::{ApiError, ErrorResponse, ErrorType};
use crate::state::AppState;

/// Health answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// The database in use (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "sqlite")]
    pub database: Option<&'static str>,
}

/// Liveness
///
/// The process is up. Answers 200 without touching the database; use it as a liveness
/// probe. No credentials.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Up", body = Health, example = super::examples::health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        database: None,
    })
}

/// How long `/readyz` waits for the database: well under an orchestrator's
/// probe timeout (Kubernetes: 1 s by default, often raised), and far shorter
/// than the pool's acquire timeout, so an unreachable database answers 503
/// promptly. Each check asks the pool afresh, so readiness returns by itself
/// once the database answers again (the pool replaces broken connections).
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness
///
/// The process can serve: its database answers within two seconds. Use it as a
/// readiness probe (the Docker image's HEALTHCHECK calls it); 503 while the
/// database does not answer, back to 200 by itself once it does. No credentials.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health, example = super::examples::ready),
        (status = 503, description = "The database does not answer", body = ErrorResponse),
    ))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = match state.store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let answer = tokio::time::timeout(READINESS_TIMEOUT, state.store.ping())
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "no answer within {} ms",
                READINESS_TIMEOUT.as_millis()
            )))
        });
    match answer {
        Ok(()) => Ok(Json(Health {
            status: "ready",
            database: Some(database),
        })),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::ApiError,
                "database_unavailable",
                format!("The {database} database does not answer."),
            ))
        }
    }
}

/// Prometheus metrics
///
/// Requests by route and status with latencies, Stripe calls, retries and
/// rate-limiter waits, vault operations, jobs, webhook deliveries and database
/// pools (see the README's table). Labels come from closed sets and never carry
/// ids, paths or secrets. No credentials; expose it to your scraper only.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String, example = super::examples::metrics),
        (status = 404, description = "Metrics are not enabled in this process", body = ErrorResponse),
    ))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            )],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequestError,
            "metrics_disabled",
            "Metrics are not enabled in this process.",
        )
        .into_response(),
    }
}
