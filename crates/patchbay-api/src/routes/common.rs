//! Pieces shared by the route modules: the list envelope, paging parameters,
//! the deleted-object answer, reusable error responses and PATCH helpers.

use patchbay_core::id::IdKind;
use patchbay_core::{Id, PageRequest};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{ApiError, ErrorResponse};
use crate::extract::parse_id;

/// A page of objects, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListResponse<T> {
    /// Always `list`.
    #[schema(example = "list")]
    pub object: &'static str,
    /// The objects.
    pub data: Vec<T>,
    /// Whether more objects follow (pass the last id as `starting_after`).
    pub has_more: bool,
    /// The path listed.
    pub url: String,
}

impl<T> ListResponse<T> {
    /// Wraps a page.
    pub fn new(data: Vec<T>, has_more: bool, url: impl Into<String>) -> Self {
        Self {
            object: "list",
            data,
            has_more,
            url: url.into(),
        }
    }
}

/// `{"id", "object", "deleted": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// The deleted object's id.
    pub id: String,
    /// Its type.
    pub object: &'static str,
    /// Always true.
    pub deleted: bool,
}

/// Builds a page request from raw paging parameters.
pub fn page<K: IdKind>(
    limit: Option<u32>,
    starting_after: Option<&str>,
    ending_before: Option<&str>,
) -> Result<PageRequest<Id<K>>, ApiError> {
    // An empty value (`?starting_after=`) means no cursor, as from an HTML form.
    let after = starting_after
        .filter(|s| !s.is_empty())
        .map(|s| parse_id::<K>(s, "starting_after"))
        .transpose()?;
    let before = ending_before
        .filter(|s| !s.is_empty())
        .map(|s| parse_id::<K>(s, "ending_before"))
        .transpose()?;
    PageRequest::new(limit, after, before).map_err(|e| {
        ApiError::bad_request("parameter_invalid", e.message).with_param(e.param.to_string())
    })
}

/// Tells "absent" (`None`) from "null" (`Some(None)`) in PATCH bodies.
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Errors every authenticated operation may answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum StandardErrors {
    /// The request is malformed: bad JSON, unknown or missing fields, wrong types, a malformed id.
    #[response(status = 400)]
    BadRequest(ErrorResponse),
    /// No API key, or an invalid, revoked or expired one.
    #[response(status = 401)]
    Unauthorized(ErrorResponse),
    /// The key lacks a scope, belongs to a disabled tenant, or is the wrong kind of credential.
    #[response(status = 403)]
    Forbidden(ErrorResponse),
    /// The database is not answering.
    #[response(status = 503)]
    Unavailable(ErrorResponse),
}

/// An object that does not exist for this caller.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum NotFound {
    /// No such object (another tenant's objects are indistinguishable from missing ones).
    #[response(status = 404)]
    NotFound(ErrorResponse),
}

/// A value that parsed but breaks a rule.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Unprocessable {
    /// A value breaks a rule; `param` names it.
    #[response(status = 422)]
    Unprocessable(ErrorResponse),
}

/// What a JSON request body can be refused for before it is read.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum BodyErrors {
    /// The body is larger than `PATCHBAY_MAX_BODY_BYTES`.
    #[response(status = 413)]
    TooLarge(ErrorResponse),
    /// The body is not sent as `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorResponse),
}
