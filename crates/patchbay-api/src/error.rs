//! The one error type of the HTTP API and its envelope, the shape Stripe uses:
//! `{"error":{"type","code","message","param","request_id"}}`. Handlers return
//! [`ApiError`]; the request-context middleware adds the request id. Details of
//! 5xx errors go to the log, never to the client.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use patchbay_core::{StoreError, ValidationError};
use serde::Serialize;

use crate::services::error::{ErrorKind, ServiceError};

/// The `type` of an error, as in Stripe's envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The request is wrong: fix it before retrying.
    InvalidRequestError,
    /// No usable credential.
    AuthenticationError,
    /// The credential may not do this.
    PermissionError,
    /// Too many requests; retry later.
    RateLimitError,
    /// Stripe could not be reached or failed.
    ApiConnectionError,
    /// Patchbay failed.
    ApiError,
}

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Error type.
    pub kind: ErrorType,
    /// Stable code to branch on.
    pub code: Cow<'static, str>,
    /// What happened and what to do.
    pub message: String,
    /// The request field at fault.
    pub param: Option<String>,
    /// Seconds to wait before retrying (sets `Retry-After`).
    pub retry_after: Option<u64>,
}

/// The error envelope as documented.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorObject,
}

/// An error of an operation that relays Stripe's answers (actions, the raw
/// proxy): Patchbay's own envelope, or Stripe's error body verbatim, whose
/// `error` has a `type` and usually `message`, `code`, `param`, `doc_url`
/// (and no `request_id`: Stripe's is in its `Request-Id` header). Documented
/// only; Patchbay's own errors are [`ErrorResponse`]s, which fit it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RelayedError {
    /// Patchbay's error object, or Stripe's.
    pub error: RelayedErrorObject,
}

/// The error object of a [`RelayedError`]; other fields Stripe sends pass
/// through too.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RelayedErrorObject {
    /// `invalid_request_error`, `card_error`, `api_error`, … (Stripe's types
    /// include `card_error` and `idempotency_error`, which Patchbay never sends).
    #[serde(rename = "type")]
    #[schema(example = "card_error")]
    pub kind: String,
    /// Human-readable explanation.
    #[schema(example = "Your card was declined.")]
    pub message: Option<String>,
    /// Machine-readable code, when there is one.
    #[schema(example = "card_declined")]
    pub code: Option<String>,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// Patchbay's request id (Patchbay's errors only).
    pub request_id: Option<String>,
}

/// One error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    /// `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `rate_limit_error`, `api_connection_error` or `api_error`.
    #[serde(rename = "type")]
    #[schema(example = "invalid_request_error")]
    pub kind: ErrorType,
    /// Stable machine-readable code.
    #[schema(example = "parameter_invalid")]
    pub code: String,
    /// Human-readable explanation.
    #[schema(example = "name cannot be empty.")]
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "name")]
    pub param: Option<String>,
    /// The `x-request-id` of this request; quote it when asking for help.
    #[schema(example = "req_7Hq2cX9mWn4pLk8vR3tY6b1z")]
    pub request_id: String,
}

impl utoipa::PartialSchema for ErrorType {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some([
                "invalid_request_error",
                "authentication_error",
                "permission_error",
                "rate_limit_error",
                "api_connection_error",
                "api_error",
            ]))
            .into()
    }
}
impl utoipa::ToSchema for ErrorType {}

impl ApiError {
    /// An error with every field given.
    pub fn new(
        status: StatusCode,
        kind: ErrorType,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code: code.into(),
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// Names the field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Asks the client to wait.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// 400: the request does not have the expected shape.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::bad_request(code, message).into()
    }

    /// 422: the request parsed, but a value breaks a rule.
    pub fn unprocessable(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        ServiceError::unprocessable(code, message).into()
    }

    /// 404 for a record that does not exist for this caller.
    pub fn not_found(what: &str, id: &str) -> Self {
        ServiceError::not_found(what, id).into()
    }

    /// 409: a uniqueness rule.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::conflict(code, message).into()
    }

    /// 401.
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::unauthenticated(code, message).into()
    }

    /// 403.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::forbidden(code, message).into()
    }

    /// 500. The cause is logged with the request id; the client sees none of it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        ServiceError::internal(cause).into()
    }

    /// The envelope for this error.
    pub fn body(&self, request_id: &str) -> ErrorResponse {
        ErrorResponse {
            error: ErrorObject {
                kind: self.kind,
                code: self.code.to_string(),
                message: self.message.clone(),
                param: self.param.clone(),
                request_id: request_id.to_owned(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    /// The body is written by the request-context middleware, which knows the
    /// request id; the error travels to it in the response extensions.
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// A service's refusal in HTTP terms: the status and envelope type for each
/// kind of failure.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, kind) = match e.kind {
            ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, ErrorType::InvalidRequestError),
            ErrorKind::Unprocessable => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorType::InvalidRequestError,
            ),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, ErrorType::InvalidRequestError),
            ErrorKind::Conflict => (StatusCode::CONFLICT, ErrorType::InvalidRequestError),
            ErrorKind::Unauthenticated => {
                (StatusCode::UNAUTHORIZED, ErrorType::AuthenticationError)
            }
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, ErrorType::PermissionError),
            ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, ErrorType::RateLimitError),
            ErrorKind::UpstreamRateLimited => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorType::RateLimitError)
            }
            ErrorKind::UpstreamFailed => (StatusCode::BAD_GATEWAY, ErrorType::ApiConnectionError),
            ErrorKind::UpstreamTimeout => {
                (StatusCode::GATEWAY_TIMEOUT, ErrorType::ApiConnectionError)
            }
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, ErrorType::ApiError),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, ErrorType::ApiError),
        };
        Self {
            status,
            kind,
            code: e.code,
            message: e.message,
            param: e.param,
            retry_after: e.retry_after,
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<patchbay_vault::VaultError> for ApiError {
    fn from(e: patchbay_vault::VaultError) -> Self {
        ServiceError::from(e).into()
    }
}
