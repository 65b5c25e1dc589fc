//! The one Stripe HTTP client of the process: pooled keep-alive connections
//! (HTTP/2 where the server offers it), rustls, timeouts, idempotency keys,
//! retries and per-connection rate limits.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use secrecy::{ExposeSecret, SecretString};
use tracing::debug;
use url::Url;

use crate::form;
use crate::metrics::{self, RetryReason, Via};
use crate::rate_limit::{Limiter, Limits, RateClass, RateLimiter};
use crate::redact::{Redacted, redact};
use crate::request::{Body, StripeRequest};
use crate::retry::RetryPolicy;
use crate::{StripeError, StripeResponse};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API base (`https://api.stripe.com`); paths are appended to it.
    pub api_base: Url,
    /// Connect OAuth base (`https://connect.stripe.com`).
    pub connect_base: Url,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole attempt, body included.
    pub timeout: Duration,
    /// Time a caller waiting on an answer (creating, validating or rotating a
    /// connection) gives Stripe, across all attempts and the waits between them.
    pub interactive_deadline: Duration,
    /// Retry budget and backoff.
    pub retry: RetryPolicy,
    /// Per-connection rate limits.
    pub limits: Limits,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            api_base: Url::parse("https://api.stripe.com").expect("static URL"),
            connect_base: Url::parse("https://connect.stripe.com").expect("static URL"),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            interactive_deadline: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            limits: Limits::default(),
        }
    }
}

/// Shared, cheap to clone.
#[derive(Debug, Clone)]
pub struct StripeClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    /// For the proxy: no whole-request timeout (a long body streams), a
    /// per-read idle timeout instead (see [`crate::streaming`]).
    streaming: crate::streaming::StreamingClient,
    config: ClientConfig,
    limiter: Arc<dyn Limiter>,
}

/// Which rate-limit bucket a call draws from: a connection id and its mode.
#[derive(Debug, Clone, Copy)]
pub struct RateKey<'a> {
    /// Usually the connection id.
    pub key: &'a str,
    /// Live mode has higher limits.
    pub livemode: bool,
}

impl StripeClient {
    /// Builds the client, rate limiting in this process. Fails only if the
    /// TLS stack cannot initialise.
    pub fn new(config: ClientConfig) -> Result<Self, StripeError> {
        let limiter = Arc::new(RateLimiter::new(config.limits));
        Self::with_limiter(config, limiter)
    }

    /// Builds the client with `limiter` (one shared by the replicas, say).
    pub fn with_limiter(
        config: ClientConfig,
        limiter: Arc<dyn Limiter>,
    ) -> Result<Self, StripeError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                StripeError::InvalidRequest(Redacted::ours(format!(
                    "HTTP client setup failed: {e}"
                )))
            })?;
        let streaming = crate::streaming::client(config.connect_timeout).map_err(|e| {
            StripeError::InvalidRequest(Redacted::ours(format!("HTTP client setup failed: {e}")))
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                streaming,
                limiter,
                config,
            }),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(crate) fn streaming_http(&self) -> &crate::streaming::StreamingClient {
        &self.inner.streaming
    }

    /// Waits for a slot of `rate`'s connection in `class` (when the call is
    /// rate-limited), recording the wait; fails at once when the slot is
    /// further away than the limiter allows.
    pub(crate) async fn wait_for_slot(
        &self,
        rate: Option<RateKey<'_>>,
        class: RateClass,
    ) -> Result<(), StripeError> {
        let Some(rate) = rate else {
            return Ok(());
        };
        let started = Instant::now();
        let slot = self
            .inner
            .limiter
            .acquire(rate.key, rate.livemode, class)
            .await;
        metrics::rate_limited(class, started.elapsed(), slot.is_err());
        slot.map_err(|wait| StripeError::RateLimited {
            retry_after_ms: wait.as_millis() as u64,
        })
    }

    /// The process's one HTTP client (for calls outside the API's conventions,
    /// such as Connect OAuth).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Runs `call` (one or more Stripe calls, retries included) within the
    /// interactive deadline; when it passes, the call is dropped mid-flight and
    /// the answer is [`StripeError::DeadlineExceeded`].
    pub async fn interactive<T>(
        &self,
        call: impl Future<Output = Result<T, StripeError>>,
    ) -> Result<T, StripeError> {
        let deadline = self.inner.config.interactive_deadline;
        tokio::time::timeout(deadline, call)
            .await
            .unwrap_or(Err(StripeError::DeadlineExceeded { deadline }))
    }

    /// Sends `request` authenticated with `key`. Any HTTP answer is `Ok` (check
    /// its status, or use [`StripeResponse::json`]); `Err` means no usable answer.
    /// POSTs get an `Idempotency-Key` that stays the same across retries.
    pub async fn send(
        &self,
        key: &SecretString,
        mut request: StripeRequest,
        rate: Option<RateKey<'_>>,
    ) -> Result<StripeResponse, StripeError> {
        let url = self.url(&request)?;
        if request.method == Method::POST && request.idempotency_key.is_none() {
            request.idempotency_key = Some(new_idempotency_key());
        }
        let headers = self.headers(key, &request)?;
        let body = match &request.body {
            Some(Body::Form(pairs)) => Some(bytes::Bytes::from(form::encode(pairs))),
            Some(Body::Raw { bytes, .. }) => Some(bytes.clone()),
            None => None,
        };
        let retry_safe = request.is_idempotent_method() || request.idempotency_key.is_some();
        let class = if request.is_write() {
            RateClass::Write
        } else {
            RateClass::Read
        };
        let policy = self.inner.config.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.wait_for_slot(rate, class).await?;
            let mut builder = self
                .inner
                .http
                .request(request.method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(body) = &body {
                builder = builder.body(body.clone());
            }
            let may_retry = retry_safe && attempt <= policy.max_retries;
            let started = Instant::now();
            let answer = self.attempt(builder, key).await;
            match &answer {
                Ok(response) => metrics::answered(Via::Api, response.status, started.elapsed()),
                Err(_) => metrics::unanswered(Via::Api, started.elapsed()),
            }
            match answer {
                Ok(response) => {
                    debug!(
                        method = %request.method,
                        path = %request.path,
                        status = response.status.as_u16(),
                        stripe_request_id = response.request_id.as_deref().unwrap_or(""),
                        attempt,
                        "stripe call"
                    );
                    if !response.status.is_success()
                        && may_retry
                        && RetryPolicy::should_retry_status(response.status, &response.headers)
                    {
                        metrics::retry(Via::Api, RetryReason::Status);
                        tokio::time::sleep(policy.backoff(attempt, Some(&response.headers))).await;
                        continue;
                    }
                    return Ok(StripeResponse {
                        attempts: attempt,
                        own_key: Some(key.clone()),
                        ..response
                    });
                }
                Err(message) => {
                    debug!(method = %request.method, path = %request.path, attempt, error = %message, "stripe call failed");
                    if may_retry {
                        metrics::retry(Via::Api, RetryReason::NoAnswer);
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

    async fn attempt(
        &self,
        builder: reqwest::RequestBuilder,
        key: &SecretString,
    ) -> Result<StripeResponse, Redacted> {
        let failed = |e| redact(&describe(e), Some(key));
        let response = builder.send().await.map_err(failed)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(failed)?;
        let request_id = request_id(&headers);
        Ok(StripeResponse {
            status,
            headers,
            body,
            request_id,
            attempts: 1,
            own_key: None,
        })
    }

    fn url(&self, request: &StripeRequest) -> Result<Url, StripeError> {
        let path = request.checked_path()?;
        let mut url = self.inner.config.api_base.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}{path}"));
        url.set_query(None);
        if !request.query.is_empty() {
            url.set_query(Some(&form::encode(&request.query)));
        }
        Ok(url)
    }

    fn headers(
        &self,
        key: &SecretString,
        request: &StripeRequest,
    ) -> Result<HeaderMap, StripeError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &request.extra_headers {
            headers.insert(name.clone(), value.clone());
        }
        let mut auth =
            HeaderValue::try_from(format!("Bearer {}", key.expose_secret())).map_err(|_| {
                StripeError::InvalidRequest(Redacted::ours(
                    "the stored key is not a valid header value",
                ))
            })?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("Patchbay/", env!("CARGO_PKG_VERSION"))),
        );
        let header = |name: &str, value: &str| {
            HeaderValue::try_from(value).map_err(|_| {
                StripeError::InvalidRequest(Redacted::ours(format!(
                    "{name} is not a valid header value"
                )))
            })
        };
        if let Some(version) = &request.stripe_version {
            headers.insert("stripe-version", header("Stripe-Version", version)?);
        }
        if let Some(account) = &request.stripe_account {
            headers.insert("stripe-account", header("Stripe-Account", account)?);
        }
        if let Some(key) = request
            .idempotency_key
            .as_ref()
            .filter(|_| request.method == Method::POST)
        {
            headers.insert("idempotency-key", header("Idempotency-Key", key)?);
        }
        match &request.body {
            Some(Body::Form(_)) => {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
            }
            Some(Body::Raw { content_type, .. }) => {
                headers.insert(CONTENT_TYPE, content_type.clone());
            }
            None => {}
        }
        Ok(headers)
    }
}

/// Stripe's `Request-Id` when it looks like one (`req_…`: letters, digits,
/// `_` and `-`, at most 64 characters) and holds nothing credential-shaped;
/// otherwise none: it is shown to tenants, stored and audited.
fn request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("request-id")?.to_str().ok()?;
    let plausible = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (plausible && redact(value, None).as_str() == value).then(|| value.to_owned())
}

/// What failed, without the URL: messages reach tenants, and the upstream's
/// address (PATCHBAY_STRIPE_API_BASE) is the operator's business.
pub(crate) fn describe(e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body could not be read"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{what}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// A fresh idempotency key: 128 random bits.
fn new_idempotency_key() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Without randomness, fall back to the clock: still unique per process in practice.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("patchbay-{hex}")
}
