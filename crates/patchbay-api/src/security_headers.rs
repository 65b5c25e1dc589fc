//! Headers that keep responses out of caches, sniffers and frames: every
//! response is `nosniff` and sends no referrer; JSON gets a policy that lets a
//! browser run nothing; a response that carries a secret says `no-store`.

use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, PRAGMA, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::response::{IntoResponseParts, Response, ResponseParts};

/// For JSON: load nothing, run nothing, be framed by nobody.
const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";
/// For the other pages (`/docs`, whose Swagger UI needs its scripts and
/// styles): only refuse to be framed.
const PAGE_POLICY: &str = "frame-ancestors 'none'";

/// Marks a response that carries a secret (a new API key, and later connect
/// session tokens or subscription secrets): no cache may keep it. Put it in a
/// handler's response tuple: `(StatusCode::CREATED, NoStore, Json(body))`.
#[derive(Debug, Clone, Copy)]
pub struct NoStore;

impl IntoResponseParts for NoStore {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        let headers = res.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        Ok(res)
    }
}

/// Adds the headers every response gets (see the module documentation): the
/// outermost layer, so that responses made by other layers get them too.
pub async fn add(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(CONTENT_SECURITY_POLICY) {
        let policy = if json { API_POLICY } else { PAGE_POLICY };
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    }
    response
}
