//! The application in-process: a fresh SQLite store, a generated keyring,
//! wiremock standing in for Stripe, and helpers to call routes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use patchbay_api::clock::OffsetClock;
use patchbay_api::{ApiConfig, AppState};
use patchbay_stripe::{ClientConfig, RetryPolicy, StripeClient};
use patchbay_vault::{Keyring, generate_master_key, verify_keyring_against_store};
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::MockServer;

pub const ADMIN: &str = "pba_test_admin_token_0123456789abcdefghijklmnop";

/// A response, decoded.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .expect("response has an id")
            .to_owned()
    }
}

pub struct TestApp {
    pub state: AppState,
    pub router: axum::Router,
    pub stripe: MockServer,
    pub dir: tempfile::TempDir,
    /// The clock API-key verification reads: advance it instead of sleeping.
    pub clock: Arc<OffsetClock>,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut ApiConfig)) -> Self {
        Self::build(tweak, |_| {}).await
    }

    /// An app whose Stripe is a closed port.
    pub async fn unreachable_stripe() -> Self {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        Self::build(
            |_| {},
            move |c| c.api_base = url::Url::parse(&base).unwrap(),
        )
        .await
    }

    /// The app on a fresh schema of `TEST_DATABASE_URL`'s PostgreSQL; `None`
    /// when it is unset (an error under `CI=true`).
    pub async fn on_postgres(tweak: impl FnOnce(&mut ApiConfig)) -> Option<Self> {
        let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true requires TEST_DATABASE_URL"
            );
            eprintln!("TEST_DATABASE_URL unset: skipping the PostgreSQL run");
            return None;
        };
        let schema = format!("api_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&base).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
        Some(Self::build_on(Some(url), &Default::default(), tweak, |_| {}).await)
    }

    /// The app on the store at `url` (already prepared), with `pool` settings.
    pub async fn on_store(url: &str, pool: &patchbay_store::PoolSettings) -> Self {
        Self::build_on(Some(url.to_owned()), pool, |_| {}, |_| {}).await
    }

    pub async fn build(
        tweak: impl FnOnce(&mut ApiConfig),
        client: impl FnOnce(&mut ClientConfig),
    ) -> Self {
        Self::build_on(None, &Default::default(), tweak, client).await
    }

    /// The app on the store at `url`, or on SQLite in a temporary directory.
    async fn build_on(
        url: Option<String>,
        pool: &patchbay_store::PoolSettings,
        tweak: impl FnOnce(&mut ApiConfig),
        client: impl FnOnce(&mut ClientConfig),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url =
            url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("patchbay.db").display()));
        let store = patchbay_store::open(&url, pool, true).await.unwrap();
        let keyring = Keyring::parse(&generate_master_key("k1").unwrap()).unwrap();
        verify_keyring_against_store(&keyring, store.as_ref())
            .await
            .unwrap();
        let stripe = MockServer::start().await;
        let mut client_config = ClientConfig {
            api_base: url::Url::parse(&stripe.uri()).unwrap(),
            // The same fake answers Connect's /oauth/* paths.
            connect_base: url::Url::parse(&stripe.uri()).unwrap(),
            timeout: Duration::from_secs(2),
            retry: RetryPolicy {
                max_retries: 1,
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
            },
            ..ClientConfig::default()
        };
        client(&mut client_config);
        let client = StripeClient::new(client_config).unwrap();
        let clock = Arc::new(OffsetClock::default());
        let mut config = ApiConfig {
            clock: clock.clone(),
            max_body_bytes: 64 * 1024,
            ..ApiConfig::default()
        };
        tweak(&mut config);
        let state = AppState::new(
            store,
            Arc::new(keyring),
            client,
            Some(&SecretString::from(ADMIN)),
            config,
            None,
        );
        let router = patchbay_api::app(state.clone());
        Self {
            state,
            router,
            stripe,
            dir,
            clock,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header("x-api-key", token);
        }
        let request = match body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
            None => builder.body(Body::empty()).unwrap(),
        };
        self.send(request).await
    }

    /// The tenant's audit events of `action`, newest first, once there are at
    /// least `want` (the audit log writes off the request path); what there
    /// is after 2.5 s otherwise.
    pub async fn audit_events(&self, action: &str, tenant: &str, want: usize) -> Vec<Value> {
        let mut events = Vec::new();
        for _ in 0..50 {
            let reply = self
                .get(
                    &format!("/api/v1/audit-events?action={action}&tenant_id={tenant}"),
                    ADMIN,
                )
                .await;
            events = reply.body["data"].as_array().cloned().unwrap_or_default();
            if events.len() >= want {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        events
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }
    pub async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    /// A request with `Authorization: Bearer <token>` and extra headers.
    pub async fn bearer(
        &self,
        method: Method,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = match body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
            None => builder.body(Body::empty()).unwrap(),
        };
        self.send(request).await
    }

    /// A tenant and an API key of it with `scopes`; returns (tenant id, token).
    pub async fn tenant(&self, scopes: &[&str]) -> (String, String) {
        let t = self
            .post("/api/v1/tenants", ADMIN, json!({"name": "Tenant"}))
            .await;
        assert_eq!(t.status, 201, "{}", t.text);
        let tenant = t.id();
        let token = self.key(&tenant, scopes).await;
        (tenant, token)
    }

    /// A new key for `tenant`.
    pub async fn key(&self, tenant: &str, scopes: &[&str]) -> String {
        let k = self
            .post(
                &format!("/api/v1/tenants/{tenant}/api-keys"),
                ADMIN,
                json!({"scopes": scopes}),
            )
            .await;
        assert_eq!(k.status, 201, "{}", k.text);
        k.body["key"].as_str().unwrap().to_owned()
    }
}

/// Asserts the error envelope and returns the code.
pub fn assert_envelope(reply: &Reply) -> String {
    let error = &reply.body["error"];
    assert!(error.is_object(), "no error envelope: {}", reply.text);
    for field in ["type", "code", "message", "request_id"] {
        assert!(error[field].is_string(), "missing {field}: {}", reply.text);
    }
    assert_eq!(
        error["request_id"].as_str(),
        reply
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        "the envelope's request id is the header's"
    );
    assert!(reply.status.is_client_error() || reply.status.is_server_error());
    error["code"].as_str().unwrap().to_owned()
}
