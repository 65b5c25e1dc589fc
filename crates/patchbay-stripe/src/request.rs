//! A request to Stripe, before credentials are added. Paths are checked so that
//! nothing in a request can point it at another host or outside the API.

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};

use crate::StripeError;

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// Form pairs, encoded as Stripe expects.
    Form(Vec<(String, String)>),
    /// Bytes passed through as they came (the raw proxy), with their content type.
    Raw {
        /// `Content-Type` to send.
        content_type: HeaderValue,
        /// The body.
        bytes: bytes::Bytes,
    },
}

/// One call to the Stripe API.
#[derive(Debug, Clone)]
pub struct StripeRequest {
    /// HTTP method.
    pub method: Method,
    /// `/v1/…` or `/v2/…`, already percent-encoded where needed.
    pub path: String,
    /// Query parameters (GET filters, `expand[0]`, …).
    pub query: Vec<(String, String)>,
    /// Body, for POST.
    pub body: Option<Body>,
    /// `Stripe-Account`: act on this connected account.
    pub stripe_account: Option<String>,
    /// `Stripe-Version`: pin the response shape.
    pub stripe_version: Option<String>,
    /// `Idempotency-Key` for a POST; generated when absent.
    pub idempotency_key: Option<String>,
    /// Other headers to pass on (`Stripe-Context`, …).
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
}

impl StripeRequest {
    /// A GET of `path` with `query`.
    pub fn get(path: &str, query: &[(&str, &str)]) -> Self {
        Self::new(Method::GET, path).with_query(query)
    }

    /// A request with no parameters yet.
    pub fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_owned(),
            query: Vec::new(),
            body: None,
            stripe_account: None,
            stripe_version: None,
            idempotency_key: None,
            extra_headers: Vec::new(),
        }
    }

    /// Adds query pairs.
    pub fn with_query(mut self, query: &[(&str, &str)]) -> Self {
        self.query
            .extend(query.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Acts on a connected account.
    pub fn on_account(mut self, account: Option<String>) -> Self {
        self.stripe_account = account;
        self
    }

    /// Pins an API version.
    pub fn with_version(mut self, version: Option<String>) -> Self {
        self.stripe_version = version;
        self
    }

    /// Whether retries may repeat this request safely without an idempotency key.
    pub(crate) fn is_idempotent_method(&self) -> bool {
        matches!(
            self.method,
            Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
        )
    }

    /// Checks the path: the API's own prefixes only, no traversal, no host.
    pub(crate) fn checked_path(&self) -> Result<&str, StripeError> {
        let p = self.path.as_str();
        let allowed_prefix = p.starts_with("/v1/") || p.starts_with("/v2/");
        let traversal = p
            .split('/')
            .any(|seg| seg == ".." || seg == "." || seg.eq_ignore_ascii_case("%2e%2e"));
        let odd = p.contains("//")
            || p.contains('\\')
            || p.contains('?')
            || p.contains('#')
            || p.bytes().any(|b| b.is_ascii_control() || b == b' ');
        if allowed_prefix && !traversal && !odd {
            Ok(p)
        } else {
            Err(StripeError::InvalidRequest(crate::redact::Redacted::ours(
                format!(
                    "'{}' is not a Stripe API path: it must start with /v1/ or /v2/ and contain no '..', '//', '?' or '#'",
                    p.chars().take(200).collect::<String>()
                ),
            )))
        }
    }

    /// Whether the request counts against the write limit.
    pub(crate) fn is_write(&self) -> bool {
        !matches!(self.method, Method::GET | Method::HEAD | Method::OPTIONS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_api_paths_pass() {
        for ok in [
            "/v1/customers",
            "/v1/customers/cus_1",
            "/v2/core/events",
            "/v1/customers/search",
        ] {
            assert!(StripeRequest::get(ok, &[]).checked_path().is_ok(), "{ok}");
        }
        for bad in [
            "/v1",
            "v1/customers",
            "/v3/x",
            "/v1/../admin",
            "/v1/%2E%2E/x",
            "//evil.example/v1/x",
            "/v1//x",
            "/v1/x?y=1",
            "/v1/x#f",
            "/v1/a b",
            "/v1/a\\b",
            "http://evil/v1/x",
        ] {
            assert!(
                StripeRequest::get(bad, &[]).checked_path().is_err(),
                "{bad}"
            );
        }
    }
}
