//! The streaming path for the raw proxy: a caller's request forwarded to the
//! configured Stripe base and nowhere else, its path checked against
//! traversal and injection, the response handed back unread so its body
//! streams. Beside the buffered path (`send`), which typed calls use.
//!
//! Retries follow the buffered path's rules but only where a retry is safe
//! and possible: the caller allows them, the method is idempotent or the POST
//! carries an `Idempotency-Key`, and the body is in memory (a streamed body
//! cannot be sent twice).

use std::time::Instant;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use secrecy::{ExposeSecret, SecretString};
use tracing::debug;
use url::Url;

use crate::client::RateKey;
use crate::metrics::{self, RetryReason, Via};
use crate::rate_limit::RateClass;
use crate::redact::{Redacted, redact};
use crate::retry::RetryPolicy;
use crate::streaming::{self, IdleTimeout, OutgoingBody};
use crate::{StripeClient, StripeError};

/// A request body for the proxy.
pub enum RawBody {
    /// No body.
    Empty,
    /// A small body already in memory (may be retried).
    Buffered(bytes::Bytes),
    /// A body streamed from the caller (sent once).
    Stream(OutgoingBody),
}

impl std::fmt::Debug for RawBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("Empty"),
            Self::Buffered(b) => write!(f, "Buffered({} bytes)", b.len()),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl RawBody {
    /// A body streamed from the caller.
    pub fn stream<S>(stream: S) -> Self
    where
        S: futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    {
        Self::Stream(streaming::streamed(stream))
    }
}

/// Stripe's answer to a proxied request: its head, and its body unread
/// (streamed, failing if it stalls longer than the client's timeout).
pub type ProxyResponse = http::Response<IdleTimeout>;

/// A caller's request, its headers already filtered to what may be forwarded.
#[derive(Debug)]
pub struct RawRequest {
    /// The method, as received.
    pub method: Method,
    /// `v1/…` or `v2/…`, percent-encoded as received; see [`check_proxy_path`].
    pub path: String,
    /// The raw query string, as received.
    pub query: Option<String>,
    /// Headers to send (`Stripe-Account`, `Stripe-Version`, `Idempotency-Key`,
    /// `Content-Type`, allowlisted ones); credentials are added here.
    pub headers: HeaderMap,
    /// The body.
    pub body: RawBody,
    /// Whether Patchbay may retry (the caller did not opt out).
    pub retries: bool,
}

fn refuse(message: impl Into<String>) -> StripeError {
    StripeError::InvalidRequest(Redacted::ours(message.into()))
}

/// Checks a proxied path: Stripe's API prefixes only (`v1/`, `v2/`), plain
/// ASCII path characters, no traversal in any spelling (`..`, `%2e`, `%2f`,
/// `%5c`, double encoding), no absolute URL or authority (`:`, `@`, `//`), no
/// backslash, controls, NUL or CR/LF.
pub fn check_proxy_path(path: &str) -> Result<(), StripeError> {
    let shown: String = path.chars().take(200).collect();
    let bad = |why: &str| {
        refuse(format!(
            "'{}' is not a Stripe API path: {why}",
            shown.escape_default()
        ))
    };
    if !(path.starts_with("v1/") || path.starts_with("v2/")) || path.len() <= 3 {
        return Err(bad("it must start with v1/ or v2/"));
    }
    if path.len() > 2048 {
        return Err(bad("it is too long"));
    }
    for b in path.bytes() {
        let allowed = b.is_ascii_alphanumeric() || b"/-_.~%+,=;!$&'()*".contains(&b);
        if !allowed {
            return Err(bad(
                "it may contain only letters, digits and - _ . ~ %, and no ':', '@', '\\\\', spaces or control characters",
            ));
        }
    }
    if path.contains("//") {
        return Err(bad("empty segments ('//') are not allowed"));
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(bad("'.' and '..' segments are not allowed"));
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let value = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            match value {
                None => return Err(bad("'%' must start a two-digit escape")),
                // Encoded '.', '/', '\\', '%' (double encoding), controls and NUL, ':', '@'.
                Some(v)
                    if matches!(v, b'.' | b'/' | b'\\' | b'%' | b':' | b'@' | b'?' | b'#')
                        || v < 0x20
                        || v == 0x7f =>
                {
                    return Err(bad(
                        "encoded '.', '/', '\\\\', '%', ':', '@', '?', '#' and control characters are not allowed",
                    ));
                }
                Some(_) => i += 3,
            }
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Checks a raw query string: no controls, NUL, spaces or fragments.
fn check_query(query: &str) -> Result<(), StripeError> {
    if query.len() > 16 * 1024 {
        return Err(refuse("the query string is too long"));
    }
    if query
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'#' || b >= 0x80)
    {
        return Err(refuse(
            "the query string may not contain spaces, '#', non-ASCII or control characters (percent-encode them)",
        ));
    }
    Ok(())
}

impl StripeClient {
    /// The URL a proxied request goes to: the configured API base and the
    /// checked path, and nothing else (scheme, host and port are the base's).
    pub fn proxy_url(&self, path: &str, query: Option<&str>) -> Result<Url, StripeError> {
        check_proxy_path(path)?;
        if let Some(q) = query {
            check_query(q)?;
        }
        let base = &self.config().api_base;
        let base_path = base.path().trim_end_matches('/');
        // The base's scheme, host and port as parsed once; only the checked
        // path and query are set (no host parsing per request).
        let mut url = base.clone();
        url.set_path(&format!("{base_path}/{path}"));
        url.set_query(query.filter(|q| !q.is_empty()));
        url.set_fragment(None);
        let same_origin = url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default();
        let under_base = url.path().starts_with(&format!("{base_path}/v1/"))
            || url.path().starts_with(&format!("{base_path}/v2/"));
        if !same_origin || !under_base {
            return Err(refuse("the path leaves the Stripe API"));
        }
        Ok(url)
    }

    /// Forwards a proxied request with `key` and returns Stripe's response
    /// unread (its body streams). `Err` when no answer came (or the request
    /// was refused before sending).
    pub async fn forward(
        &self,
        key: &SecretString,
        request: RawRequest,
        rate: Option<RateKey<'_>>,
    ) -> Result<ProxyResponse, StripeError> {
        let url = self.proxy_url(&request.path, request.query.as_deref())?;
        let uri = http::Uri::try_from(url.as_str())
            .map_err(|_| refuse("the path is not a valid request target"))?;
        let mut headers = request.headers;
        let mut auth = HeaderValue::try_from(format!("Bearer {}", key.expose_secret()))
            .map_err(|_| refuse("the stored key is not a valid header value"))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("Patchbay/", env!("CARGO_PKG_VERSION"), " proxy")),
        );
        let idempotent = matches!(
            request.method,
            Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
        ) || (request.method == Method::POST
            && headers.contains_key("idempotency-key"));
        let class = if matches!(request.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            RateClass::Read
        } else {
            RateClass::Write
        };
        let policy = self.config().retry;
        let (mut stream, buffered) = match request.body {
            RawBody::Empty => (None, Some(bytes::Bytes::new())),
            RawBody::Buffered(b) => (None, Some(b)),
            RawBody::Stream(s) => (Some(s), None),
        };
        let retry_safe = request.retries && idempotent && buffered.is_some();
        let timeout = self.config().timeout;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.wait_for_slot(rate, class).await?;
            // The streamed body goes out once (no retry); a buffered one each time.
            let body = match stream.take() {
                Some(s) => s,
                None => match buffered.as_ref().filter(|b| !b.is_empty()) {
                    Some(b) => streaming::full(b.clone()),
                    None => streaming::empty(),
                },
            };
            let mut outgoing = http::Request::new(body);
            *outgoing.method_mut() = request.method.clone();
            *outgoing.uri_mut() = uri.clone();
            *outgoing.headers_mut() = headers.clone();
            let may_retry = retry_safe && attempt <= policy.max_retries;
            let started = Instant::now();
            // The head within the timeout; the body then streams (see `IdleTimeout`).
            let answer = match tokio::time::timeout(
                timeout,
                self.streaming_http().request(outgoing),
            )
            .await
            {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(e)) => Err(describe(&e)),
                Err(_) => Err(format!("timed out: no answer within {timeout:?}")),
            };
            match &answer {
                Ok(response) => metrics::answered(Via::Proxy, response.status(), started.elapsed()),
                Err(_) => metrics::unanswered(Via::Proxy, started.elapsed()),
            }
            match answer {
                Ok(response) => {
                    debug!(method = %request.method, status = response.status().as_u16(), attempt, "proxied stripe call");
                    if !response.status().is_success()
                        && may_retry
                        && RetryPolicy::should_retry_status(response.status(), response.headers())
                    {
                        metrics::retry(Via::Proxy, RetryReason::Status);
                        tokio::time::sleep(policy.backoff(attempt, Some(response.headers()))).await;
                        continue;
                    }
                    return Ok(response.map(|body| IdleTimeout::new(body, timeout)));
                }
                Err(e) => {
                    let message = redact(&e, Some(key));
                    if may_retry {
                        metrics::retry(Via::Proxy, RetryReason::NoAnswer);
                        tokio::time::sleep(policy.backoff(attempt, None)).await;
                        continue;
                    }
                    return Err(StripeError::Unreachable {
                        message,
                        attempts: attempt,
                    });
                }
            }
        }
    }
}

/// What went wrong with an attempt that got no answer, with its causes.
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let what = if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = format!("{what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_api_paths_pass() {
        for ok in [
            "v1/customers",
            "v1/customers/cus_123",
            "v1/customers/search",
            "v2/core/events",
            "v1/payment_intents/pi_1/confirm",
            "v1/customers/cus_1%20x",
        ] {
            assert!(check_proxy_path(ok).is_ok(), "{ok}");
        }
    }
}
