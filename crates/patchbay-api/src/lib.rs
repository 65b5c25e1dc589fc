//! Patchbay's HTTP API: axum routes documented with utoipa, authentication,
//! the error envelope, and the services behind the routes.

pub mod auth;
pub mod clock;
pub mod context;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod request_line;
mod routes;
pub mod security_headers;
pub mod services;
pub mod state;
pub mod tenant_limits;

pub use routes::{app, openapi};
pub use state::{ApiConfig, AppState};

/// The OpenAPI document as pretty JSON, as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}
