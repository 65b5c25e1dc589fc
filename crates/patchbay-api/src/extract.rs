//! Extractors whose rejections speak the error envelope and name the field:
//! JSON bodies (syntax, types, unknown and missing fields, size, content type),
//! query strings, and prefixed ids in paths.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use bytes::Bytes;
use patchbay_core::Id;
use patchbay_core::id::IdKind;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorType};

/// A JSON request body.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let ct = ct.trim().to_ascii_lowercase();
                ct == "application/json" || ct.starts_with("application/json;")
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorType::InvalidRequestError,
                "content_type_invalid",
                "Send the request body as JSON with 'Content-Type: application/json'.",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ErrorType::InvalidRequestError,
                        "body_too_large",
                        "The request body is larger than this server accepts.",
                    )
                } else {
                    ApiError::bad_request("body_unreadable", "The request body could not be read.")
                }
            })?;
        parse_json(&bytes).map(Json)
    }
}

/// An optional JSON body: an empty body is `None`; anything else must be
/// a JSON object, as for [`Json`].
impl<S, T> axum::extract::OptionalFromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let empty = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0")
            || (request.headers().get(CONTENT_TYPE).is_none()
                && request
                    .headers()
                    .get(axum::http::header::TRANSFER_ENCODING)
                    .is_none()
                && request
                    .headers()
                    .get(axum::http::header::CONTENT_LENGTH)
                    .is_none());
        if empty {
            return Ok(None);
        }
        <Json<T> as FromRequest<S>>::from_request(request, state)
            .await
            .map(Some)
    }
}

/// Parses JSON, naming the field at fault in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "body_missing",
            "A JSON request body is required.",
        ));
    }
    // Serde would read a struct from an array too; every body here is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(
            "body_not_object",
            "The request body must be a JSON object.",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        json_error(&path, &inner)
    })?;
    deserializer.end().map_err(|e| json_error(".", &e))?;
    Ok(value)
}

fn json_error(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let text = e.to_string();
    // serde's messages end with " at line L column C"; keep that only for syntax errors.
    let bare = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(head, _)| head)
        .to_owned();
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(
            "body_invalid_json",
            format!("The request body is not valid JSON: {text}."),
        ),
        Category::Data => {
            let field = path.trim_start_matches('.');
            if let Some(name) = between(&bare, "missing field `", "`") {
                let param = join(field, &name);
                ApiError::bad_request(
                    "parameter_missing",
                    format!("Missing required parameter: {param}."),
                )
                .with_param(param)
            } else if let Some(name) = between(&bare, "unknown field `", "`") {
                let param = if field.ends_with(&name) {
                    field.to_owned()
                } else {
                    join(field, &name)
                };
                let expected = bare
                    .split_once(", expected ")
                    .map(|(_, rest)| format!(" Expected {rest}."))
                    .unwrap_or_default();
                ApiError::bad_request(
                    "parameter_unknown",
                    format!("Received unknown parameter: {param}.{expected}"),
                )
                .with_param(param)
            } else {
                let param = if field.is_empty() {
                    "body".to_owned()
                } else {
                    field.to_owned()
                };
                ApiError::bad_request(
                    "parameter_invalid",
                    format!("Invalid value for {param}: {bare}."),
                )
                .with_param(param)
            }
        }
    }
}

fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(rest[..rest.find(end)?].to_owned())
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() || parent == "?" {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// A query string.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|e| {
                let param = e.path().to_string();
                let message = e.into_inner().to_string();
                if let Some(name) = between(&message, "unknown field `", "`") {
                    ApiError::bad_request(
                        "parameter_unknown",
                        format!("Received unknown query parameter: {name}."),
                    )
                    .with_param(name)
                } else if param == "." || param.is_empty() {
                    ApiError::bad_request(
                        "parameter_invalid",
                        format!("Invalid query string: {message}."),
                    )
                } else {
                    ApiError::bad_request(
                        "parameter_invalid",
                        format!("Invalid value for {param}: {message}."),
                    )
                    .with_param(param)
                }
            })
    }
}

/// Parses a prefixed id from a path segment; a malformed one is a 400 naming `param`.
pub fn parse_id<K: IdKind>(raw: &str, param: &'static str) -> Result<Id<K>, ApiError> {
    raw.parse::<Id<K>>()
        .map_err(|e| ApiError::bad_request("invalid_id", e.to_string()).with_param(param))
}
