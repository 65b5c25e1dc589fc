//! The router: every route with its OpenAPI description, the documentation
//! endpoints, metrics, and the layers every request passes through.

mod admin;
mod api_keys;
mod audit;
mod common;
mod connections;
mod health;
mod tenants;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
use axum::http::{HeaderName, StatusCode};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::context::request_context;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Patchbay",
        description = "Stripe connections for integration platforms: an encrypted vault of tenants' Stripe keys, proven by a test call.\n\nAuthenticate with a tenant API key (or the platform admin token) as `x-api-key: <key>` or `Authorization: Bearer <key>`. Errors share one envelope: `{\"error\":{\"type\",\"code\",\"message\",\"param\",\"request_id\"}}`. Lists are keyset-paginated with `limit`, `starting_after` and `ending_before`, newest first.",
        license(name = "Apache-2.0")
    ),
    modifiers(&Security),
    tags(
        (name = "tenants", description = "Platform admin: tenants."),
        (name = "api-keys", description = "Tenant API keys; the secret is shown once."),
        (name = "connections", description = "Stripe connections by secret or restricted key."),
        (name = "audit", description = "Who did what, when."),
        (name = "admin", description = "Platform admin: master-key status."),
        (name = "health", description = "Liveness, readiness and metrics."),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "A tenant API key (pbk_…) or the platform admin token.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The same key as `Authorization: Bearer <key>`, as the Stripe SDKs send it.",
                    ))
                    .build(),
            ),
        );
    }
}

fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(tenants::create_tenant, tenants::list_tenants))
        .routes(routes!(
            tenants::get_tenant,
            tenants::update_tenant,
            tenants::delete_tenant
        ))
        .routes(routes!(
            api_keys::admin_create_key,
            api_keys::admin_list_keys
        ))
        .routes(routes!(api_keys::admin_get_key, api_keys::admin_revoke_key))
        .routes(routes!(api_keys::create_key, api_keys::list_keys))
        .routes(routes!(api_keys::get_key, api_keys::revoke_key))
        .routes(routes!(
            connections::create_connection,
            connections::list_connections
        ))
        .routes(routes!(
            connections::get_connection,
            connections::update_connection,
            connections::delete_connection
        ))
        .routes(routes!(connections::validate_connection))
        .routes(routes!(connections::rotate_connection))
        .routes(routes!(audit::list_audit_events))
        .routes(routes!(admin::key_status))
}

/// The OpenAPI document the code describes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().split_for_parts().1
}

/// The whole application.
pub fn app(state: AppState) -> Router {
    let (router, api) = documented().split_for_parts();
    let max_body = state.config.max_body_bytes;
    let timeout = state.config.request_timeout;
    router
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(SetSensitiveRequestHeadersLayer::new([
            AUTHORIZATION,
            PROXY_AUTHORIZATION,
            COOKIE,
            HeaderName::from_static("x-api-key"),
        ]))
        .layer(axum::middleware::map_response(crate::security_headers::add))
        .with_state(state)
}

async fn fallback() -> StatusCode {
    StatusCode::NOT_FOUND
}
