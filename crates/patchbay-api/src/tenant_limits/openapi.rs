//! Documents the tenant limits' 429 on every operation a tenant calls, in
//! one place instead of on each route: every secured operation except the
//! admin's own (`/api/v1/tenants…`, `/api/v1/admin/…`). Public callbacks
//! (an empty security requirement) and the unauthenticated operations are
//! left alone. An operation that already documents a 429 keeps it and gains
//! the headers and the tenant limits in its description.

use utoipa::Modify;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{ContentBuilder, Object, Ref, RefOr, Type};

/// The modifier; applied to the whole document.
#[derive(Debug)]
pub struct TooManyRequests;

const DESCRIPTION: &str = "Too many requests: this tenant's request rate (`rate_limited`) or its concurrent Stripe calls (`upstream_concurrency_exceeded`) are over its limits. `Retry-After` says how long to wait.";

/// Paths only the platform admin calls: never rate-limited.
const ADMIN_ONLY: [&str; 2] = ["/api/v1/tenants", "/api/v1/admin/"];

fn tenant_operation(path: &str, op: &Operation) -> bool {
    let secured = op.security.as_ref().is_some_and(|requirements| {
        requirements
            .iter()
            .any(|r| *r != SecurityRequirement::default())
    });
    secured && !ADMIN_ONLY.iter().any(|p| path.starts_with(p))
}

fn header(schema: Type, description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(Object::with_type(schema)))
        .description(Some(description))
        .build()
}

/// `Retry-After` and the two draft headers.
fn limit_headers() -> [(&'static str, utoipa::openapi::header::Header); 3] {
    [
        (
            "Retry-After",
            header(
                Type::Integer,
                "Seconds to wait before retrying (at least 1).",
            ),
        ),
        (
            "RateLimit-Policy",
            header(
                Type::String,
                "The tenant's rate policy (draft-ietf-httpapi-ratelimit-headers): `\"tenant\";q=<burst>;w=<seconds to refill it>`.",
            ),
        ),
        (
            "RateLimit",
            header(
                Type::String,
                "What is left of it: `\"tenant\";r=<requests left at once>;t=<seconds until the whole burst is back>`.",
            ),
        ),
    ]
}

fn too_many() -> Response {
    let mut builder = ResponseBuilder::new().description(DESCRIPTION).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorResponse")))
            .build(),
    );
    for (name, header) in limit_headers() {
        builder = builder.header(name, header);
    }
    builder.build()
}

/// An existing 429 with the tenant limits added.
fn extended(mut existing: Response) -> Response {
    existing.description = format!("{} Also: {DESCRIPTION}", existing.description.trim_end());
    for (name, header) in limit_headers() {
        existing
            .headers
            .entry(name.to_owned())
            .or_insert(RefOr::T(header));
    }
    existing
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
        item.query.as_mut(),
    ]
    .into_iter()
    .flatten()
    .chain(item.additional_operations.values_mut())
}

impl Modify for TooManyRequests {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            for op in operations(item) {
                if !tenant_operation(path, op) {
                    continue;
                }
                let responses = &mut op.responses.responses;
                let response = match responses.remove("429") {
                    Some(RefOr::T(existing)) => extended(existing),
                    Some(RefOr::Ref(_)) | None => too_many(),
                };
                responses.insert("429".to_owned(), RefOr::T(response));
            }
        }
    }
}
