//! The router, by surface, each with its own layers: operations (health,
//! metrics, documentation; no credentials), the management API (admin token
//! and tenant keys), the browser routes (tenant keys and connect sessions,
//! CORS for the tenant's origins), and the public callbacks (the OAuth
//! callback; its state authenticates). The caller is resolved once, by the
//! surface's layer, and placed in the request; inside it, every route a
//! tenant calls is rate-limited per tenant, and the routes that call Stripe
//! on the request hold one of the tenant's Stripe slots (`tenant_limits`).
//! Every route carries its OpenAPI description.

mod actions;
mod admin;
mod api_keys;
mod audit;
mod common;
mod connect_sessions;
mod connections;
mod events;
mod examples;
mod health;
mod integrations;
mod oauth;
mod proxy;
mod settings;
mod subscriptions;
mod tenants;
mod webhooks;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, PROXY_AUTHORIZATION};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::MethodRouter;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::auth::{Caller, Surface, resolve_caller};
use crate::context::request_context;
use crate::state::AppState;
use crate::tenant_limits::{TooManyRequests, rate_limit, upstream_bound};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Patchbay",
        description = "Stripe connections for integration platforms: an encrypted vault of tenants' Stripe keys, proven by a test call.\n\nAuthenticate with a tenant API key (or the platform admin token) as `x-api-key: <key>` or `Authorization: Bearer <key>`. Errors share one envelope: `{\"error\":{\"type\",\"code\",\"message\",\"param\",\"request_id\"}}`. Lists are keyset-paginated with `limit`, `starting_after` and `ending_before`, newest first.",
        license(name = "Apache-2.0")
    ),
    paths(proxy::proxy_connection),
    modifiers(&Security),
    tags(
        (name = "tenants", description = "Platform admin: tenants."),
        (name = "api-keys", description = "Tenant API keys; the secret is shown once."),
        (name = "connections", description = "Stripe connections: by secret or restricted key, or by Stripe Connect OAuth."),
        (name = "actions", description = "Typed Stripe actions (stripe.createCustomer, …): the catalogue with JSON Schemas, calls through a connection, and each connection's capabilities."),
        (name = "proxy", description = "The raw proxy: any Stripe endpoint through a connection, Stripe's answer verbatim; also at /v1/* and /v2/* for a key bound to one connection."),
        (name = "oauth", description = "Stripe Connect OAuth: the tenant's platform, the authorize URL, Stripe's callback, and connect sessions for browsers."),
        (name = "webhooks", description = "Webhooks: Stripe's signed events in (endpoints, verified, stored once), and deliveries out to your subscriptions in the Standard Webhooks format, with retries and an attempt log."),
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

/// Health, readiness and metrics: no credentials.
fn operations() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The management API: the admin token and tenant keys; never CORS.
fn management() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
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
        .routes(routes!(connections::list_connections))
        .routes(routes!(
            connections::get_connection,
            connections::update_connection,
            connections::delete_connection
        ))
        .routes(routes!(actions::list_actions))
        .routes(routes!(actions::get_action))
        .routes(routes!(actions::capabilities))
        .routes(routes!(
            integrations::get_integration,
            integrations::delete_integration
        ))
        .routes(routes!(connect_sessions::create_connect_session))
        .routes(routes!(settings::get_settings, settings::put_settings))
        .routes(routes!(
            webhooks::create_connection_endpoint,
            webhooks::list_connection_endpoints
        ))
        .routes(routes!(webhooks::create_platform_endpoint))
        .routes(routes!(webhooks::list_endpoints))
        .routes(routes!(
            webhooks::get_endpoint,
            webhooks::update_endpoint,
            webhooks::delete_endpoint
        ))
        .routes(routes!(webhooks::roll_endpoint_secret))
        .routes(routes!(events::list_connection_events))
        .routes(routes!(events::list_events))
        .routes(routes!(events::get_event))
        .routes(routes!(events::list_deliveries))
        .routes(routes!(events::redeliver))
        .routes(routes!(
            subscriptions::create_subscription,
            subscriptions::list_subscriptions
        ))
        .routes(routes!(
            subscriptions::get_subscription,
            subscriptions::update_subscription,
            subscriptions::delete_subscription
        ))
        .routes(routes!(subscriptions::roll_subscription_secret))
        .routes(routes!(audit::list_audit_events))
        .routes(routes!(admin::key_status))
}

/// The management routes that call Stripe on the request (a test call, an
/// action, a grant refresh): each holds one of its tenant's Stripe slots.
fn management_upstream() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(connections::validate_connection))
        .routes(routes!(connections::rotate_connection))
        .routes(routes!(connections::refresh_connection))
        .routes(routes!(actions::call_action))
        .routes(routes!(integrations::put_integration))
}

/// The two routes a browser with a connect session may call (tenant keys work
/// there too, without CORS); creating a connection makes a test call, so it
/// holds a Stripe slot.
fn browser() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(oauth::auth_url))
}

fn browser_upstream() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(connections::create_connection))
}

/// The raw proxy: tenant keys (bound ones too); Stripe's bodies untouched,
/// its own body limit, streamed both ways.
fn proxy_routes() -> OpenApiRouter<AppState> {
    use axum::routing::any;
    // Documented through `ApiDoc` (a wildcard path cannot go through `routes!`).
    OpenApiRouter::new()
        .route(
            "/api/v1/connections/{id}/proxy/{*path}",
            any(proxy::proxy_connection),
        )
        .route("/v1/{*path}", any(proxy::proxy_root))
        .route("/v2/{*path}", any(proxy::proxy_root))
}

pub use proxy::is_passthrough;

/// Public callbacks: their own parameters authenticate them.
fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(oauth::callback))
}

/// Stripe's webhook posts: the signature over the raw body authenticates
/// them; a body limit of their own.
fn stripe_webhooks() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(webhooks::receive_stripe))
}

fn documented() -> OpenApiRouter<AppState> {
    operations()
        .merge(management())
        .merge(management_upstream())
        .merge(browser())
        .merge(browser_upstream())
        .merge(proxy_routes())
        .merge(public())
        .merge(stripe_webhooks())
}

/// Paths of the browser routes, for their CORS preflight.
const BROWSER_PATHS: [&str; 2] = ["/api/v1/connections", "/api/v1/connections/stripe/auth-url"];

/// CORS for the browser routes only. A preflight (no credentials yet) is
/// answered for an origin some tenant lists; an actual request gets CORS
/// headers only when its caller is a connect session (whose origin the caller
/// layer already checked against its tenant's list) — never for a tenant key.
fn browser_cors(state: AppState) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::async_predicate(
            move |origin: HeaderValue, parts: &axum::http::request::Parts| {
                let state = state.clone();
                let caller = parts.extensions.get::<Caller>().cloned();
                let preflight = parts.method == Method::OPTIONS;
                async move {
                    match caller {
                        Some(Caller::Session(_)) => true,
                        Some(_) => false,
                        None if preflight => match origin.to_str() {
                            Ok(origin) => state
                                .store
                                .system_origin_allowed(origin)
                                .await
                                .unwrap_or(false),
                            Err(_) => false,
                        },
                        None => false,
                    }
                }
            },
        ))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            AUTHORIZATION,
            CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
        ])
        .max_age(Duration::from_secs(600))
}

/// The OpenAPI document the code describes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = documented().split_for_parts().1;
    // After the merge: the modifier sees every operation.
    TooManyRequests.modify(&mut doc);
    doc
}

/// The whole application.
pub fn app(state: AppState) -> Router {
    let api = openapi();
    let caller = |surface: Surface| {
        axum::middleware::from_fn_with_state((state.clone(), surface), resolve_caller)
    };
    // Inside the caller layer: the tenant's request rate, then (on the routes
    // that call Stripe) its concurrent Stripe calls.
    let rate = || axum::middleware::from_fn_with_state(state.clone(), rate_limit);
    let upstream = || axum::middleware::from_fn_with_state(state.clone(), upstream_bound);
    let (operations, _) = operations().split_for_parts();
    let (management, _) = management().split_for_parts();
    let (management_upstream, _) = management_upstream().split_for_parts();
    let (browser_upstream, _) = browser_upstream().split_for_parts();
    let (mut browser, _) = browser().split_for_parts();
    for path in BROWSER_PATHS {
        // The preflight's own endpoint; the CORS layer answers it.
        browser = browser.route(
            path,
            MethodRouter::new().options(|| async { StatusCode::NO_CONTENT }),
        );
    }
    let (public, _) = public().split_for_parts();
    let (proxy, _) = proxy_routes().split_for_parts();
    let (intake, _) = stripe_webhooks().split_for_parts();
    let max_body = state.config.max_body_bytes;
    let timeout = state.config.request_timeout;
    operations
        .merge(
            management
                .route_layer(rate())
                .route_layer(caller(Surface::Management)),
        )
        .merge(
            management_upstream
                .route_layer(upstream())
                .route_layer(rate())
                .route_layer(caller(Surface::Management)),
        )
        .merge(
            browser
                .route_layer(rate())
                .route_layer(browser_cors(state.clone()))
                .route_layer(caller(Surface::Browser)),
        )
        .merge(
            browser_upstream
                .route_layer(upstream())
                .route_layer(rate())
                .route_layer(browser_cors(state.clone()))
                .route_layer(caller(Surface::Browser)),
        )
        .merge(
            proxy
                .route_layer(upstream())
                .route_layer(rate())
                .route_layer(caller(Surface::Proxy)),
        )
        .merge(public)
        .merge(intake.route_layer(DefaultBodyLimit::max(state.config.webhooks.max_body_bytes)))
        .merge(docs(api))
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

/// Swagger UI at `/docs`, every asset served from the binary. Deep links
/// (`/docs/#/connections/create_connection`) open one operation; the online
/// validator badge is off, so the page never sends the document's URL to a
/// third party (nor needs the network at all).
fn docs(api: utoipa::openapi::OpenApi) -> SwaggerUi {
    SwaggerUi::new("/docs")
        .url("/openapi.json", api)
        .config(Config::default().deep_linking(true).validator_url("none"))
}

async fn fallback() -> StatusCode {
    StatusCode::NOT_FOUND
}
