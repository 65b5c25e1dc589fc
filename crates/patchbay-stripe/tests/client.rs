//! The Stripe client against wiremock: request shape, the test call's rules,
//! retries, timeouts and the per-connection rate limit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use patchbay_stripe::{
    Body, ClientConfig, KeyOutcome, Limits, RateKey, RetryPolicy, StripeClient, StripeError,
    StripeKey, StripeRequest,
};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::json;
use url::Url;
use wiremock::matchers::{header, header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SK: &str = "sk_test_51HabcDEF0123456789xyzXYZ4242";
const RK: &str = "rk_test_51HabcDEF0123456789xyzXYZ9999";

fn config(base: &str) -> ClientConfig {
    ClientConfig {
        api_base: Url::parse(base).unwrap(),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_millis(500),
        retry: RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        },
        ..ClientConfig::default()
    }
}

fn client(server: &MockServer) -> StripeClient {
    StripeClient::new(config(&server.uri())).unwrap()
}

fn key(s: &str) -> StripeKey {
    StripeKey::parse(SecretString::from(s)).unwrap()
}

fn stripe_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("request-id", "req_err")
        .set_body_json(json!({"error": {"type": "invalid_request_error", "message": message}}))
}

#[tokio::test]
async fn sends_credentials_versions_accounts_and_form_bodies() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .and(header("authorization", format!("Bearer {SK}").as_str()))
        .and(header("stripe-version", "2026-10-28.endive"))
        .and(header("stripe-account", "acct_123"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(header_exists("idempotency-key"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("request-id", "req_abc")
                .set_body_json(json!({"id": "cus_1", "object": "customer"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut request = StripeRequest::new(Method::POST, "/v1/customers")
        .on_account(Some("acct_123".into()))
        .with_version(Some("2026-10-28.endive".into()));
    request.body = Some(Body::Form(patchbay_stripe::form::flatten(&json!({
        "email": "a@b.co",
        "metadata": {"order_id": "6735"},
        "preferred_locales": ["en", "fr"]
    }))));
    let response = client(&server)
        .send(key(SK).secret(), request, None)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.request_id.as_deref(), Some("req_abc"));
    assert_eq!(response.json::<serde_json::Value>().unwrap()["id"], "cus_1");

    let received = &server.received_requests().await.unwrap()[0];
    let body = String::from_utf8(received.body.clone()).unwrap();
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            ("email".into(), "a@b.co".into()),
            ("metadata[order_id]".into(), "6735".into()),
            ("preferred_locales[0]".into(), "en".into()),
            ("preferred_locales[1]".into(), "fr".into()),
        ]
    );
    let idem = received
        .headers
        .get("idempotency-key")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(idem.starts_with("patchbay-") && idem.len() <= 255);
}

#[tokio::test]
async fn gets_carry_query_and_no_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/customers"))
        .and(query_param("limit", "3"))
        .and(query_param("expand[0]", "data.default_source"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
        )
        .mount(&server)
        .await;
    let request = StripeRequest::get(
        "/v1/customers",
        &[("limit", "3"), ("expand[0]", "data.default_source")],
    );
    let response = client(&server)
        .send(key(SK).secret(), request, None)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let received = &server.received_requests().await.unwrap()[0];
    assert!(received.headers.get("idempotency-key").is_none());
}

#[tokio::test]
async fn paths_outside_the_api_are_refused_before_sending() {
    let server = MockServer::start().await;
    for bad in ["/v1/../x", "//evil.example/v1/x", "/admin", "/v1/x?y=1"] {
        let err = client(&server)
            .send(key(SK).secret(), StripeRequest::get(bad, &[]), None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StripeError::InvalidRequest(_)),
            "{bad}: {err:?}"
        );
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn secret_key_test_call_records_the_account() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(ResponseTemplate::new(200).insert_header("request-id", "req_acc").set_body_json(json!({
            "id": "acct_1ABC", "object": "account", "email": "ops@acme.test", "country": "DE",
            "default_currency": "eur", "settings": {"dashboard": {"display_name": "Acme GmbH"}}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let check = client(&server)
        .check_key(&key(SK), None, None, None)
        .await
        .unwrap();
    assert_eq!(check.request_id.as_deref(), Some("req_acc"));
    let KeyOutcome::Valid {
        account: Some(account),
        missing_permissions,
    } = check.outcome
    else {
        panic!("expected a valid key with an account: {check:?}");
    };
    assert_eq!(account.stripe_account_id.as_deref(), Some("acct_1ABC"));
    assert_eq!(account.account_name.as_deref(), Some("Acme GmbH"));
    assert_eq!(account.country.as_deref(), Some("DE"));
    assert_eq!(account.default_currency.as_deref(), Some("eur"));
    assert!(missing_permissions.is_empty());
}

#[tokio::test]
async fn a_401_means_invalid() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/account"))
        .respond_with(stripe_error(
            401,
            "Invalid API Key provided: sk_test_****4242",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let check = client(&server)
        .check_key(&key(SK), None, None, None)
        .await
        .unwrap();
    assert_eq!(check.request_id.as_deref(), Some("req_err"));
    assert!(
        matches!(check.outcome, KeyOutcome::Invalid { message: Some(m) } if m.contains("Invalid API Key"))
    );
}

#[tokio::test]
async fn restricted_key_403_is_valid_with_the_missing_permission_recorded() {
    let server = MockServer::start().await;
    let denied = |perm: &str| {
        stripe_error(
            403,
            &format!(
                "The provided key 'rk_test_***9999' does not have the required permissions for this endpoint on account 'acct_1'. Having the '{perm}' permission would allow this request to continue."
            ),
        )
    };
    Mock::given(path("/v1/account"))
        .respond_with(denied("rak_account_read"))
        .mount(&server)
        .await;
    Mock::given(path("/v1/balance"))
        .respond_with(denied("rak_balance_read"))
        .mount(&server)
        .await;
    Mock::given(path("/v1/customers"))
        .and(query_param("limit", "1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
        )
        .mount(&server)
        .await;
    let check = client(&server)
        .check_key(&key(RK), None, None, None)
        .await
        .unwrap();
    assert_eq!(
        check.outcome,
        KeyOutcome::Valid {
            account: None,
            missing_permissions: vec!["rak_account_read".into(), "rak_balance_read".into()],
        }
    );

    // A key without any of the probed permissions is still a valid key.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(denied("rak_x_read"))
        .mount(&server)
        .await;
    let check = client(&server)
        .check_key(&key(RK), None, None, None)
        .await
        .unwrap();
    assert!(
        matches!(check.outcome, KeyOutcome::Valid { ref missing_permissions, .. } if missing_permissions.len() == 3)
    );
}

#[tokio::test]
async fn an_upstream_without_the_account_endpoint_falls_back_to_balance() {
    // localstripe has no /v1/account: the test call must still work there.
    let server = MockServer::start().await;
    Mock::given(path("/v1/account"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(path("/v1/balance"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"object": "balance"})))
        .expect(1)
        .mount(&server)
        .await;
    let check = client(&server)
        .check_key(&key(SK), None, None, None)
        .await
        .unwrap();
    assert_eq!(
        check.outcome,
        KeyOutcome::Valid {
            account: None,
            missing_permissions: vec![]
        }
    );
}

/// When a call arrived and the idempotency key it carried.
type Call = (Instant, Option<String>);

/// Answers from a script, one entry per call, repeating the last; records each call.
#[derive(Clone)]
struct Script {
    steps: Arc<Vec<ResponseTemplate>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Script {
    fn new(steps: Vec<ResponseTemplate>) -> Self {
        Self {
            steps: Arc::new(steps),
            calls: Arc::default(),
        }
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Respond for Script {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut calls = self.calls.lock().unwrap();
        let idem = request
            .headers
            .get("idempotency-key")
            .map(|v| v.to_str().unwrap().to_owned());
        calls.push((Instant::now(), idem));
        let i = (calls.len() - 1).min(self.steps.len() - 1);
        self.steps[i].clone()
    }
}

#[tokio::test]
async fn a_429_then_200_is_retried_with_the_same_idempotency_key() {
    let server = MockServer::start().await;
    let script = Script::new(vec![
        stripe_error(429, "Too many requests"),
        ResponseTemplate::new(200).set_body_json(json!({"id": "cus_1"})),
    ]);
    Mock::given(method("POST"))
        .respond_with(script.clone())
        .mount(&server)
        .await;
    let mut request = StripeRequest::new(Method::POST, "/v1/customers");
    request.idempotency_key = Some("caller-key-1".into());
    let response = client(&server)
        .send(key(SK).secret(), request, None)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.attempts, 2);
    let calls = script.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1.as_deref(), Some("caller-key-1"));
    assert_eq!(calls[1].1.as_deref(), Some("caller-key-1"));

    // A generated key is also kept across retries.
    let server = MockServer::start().await;
    let script = Script::new(vec![stripe_error(409, "lock"), ResponseTemplate::new(200)]);
    Mock::given(method("POST"))
        .respond_with(script.clone())
        .mount(&server)
        .await;
    let request = StripeRequest::new(Method::POST, "/v1/customers");
    client(&server)
        .send(key(SK).secret(), request, None)
        .await
        .unwrap();
    let calls = script.calls();
    assert!(calls[0].1.is_some());
    assert_eq!(calls[0].1, calls[1].1);
}

#[tokio::test]
async fn repeated_500s_end_with_stripes_error_after_the_retry_budget() {
    let server = MockServer::start().await;
    let script = Script::new(vec![stripe_error(500, "Something went wrong")]);
    Mock::given(path("/v1/account"))
        .respond_with(script.clone())
        .mount(&server)
        .await;
    let err = client(&server)
        .check_key(&key(SK), None, None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StripeError::Api { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(err.request_id(), Some("req_err"));
    assert_eq!(script.calls().len(), 3, "one attempt and two retries");
}

#[tokio::test]
async fn stripe_should_retry_false_stops_retries() {
    let server = MockServer::start().await;
    let script = Script::new(vec![
        stripe_error(503, "unavailable").insert_header("stripe-should-retry", "false"),
    ]);
    Mock::given(method("GET"))
        .respond_with(script.clone())
        .mount(&server)
        .await;
    let response = client(&server)
        .send(
            key(SK).secret(),
            StripeRequest::get("/v1/balance", &[]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(script.calls().len(), 1);

    // And `true` makes a normally final status retryable.
    let server = MockServer::start().await;
    let script = Script::new(vec![
        stripe_error(400, "odd").insert_header("stripe-should-retry", "true"),
        ResponseTemplate::new(200),
    ]);
    Mock::given(method("GET"))
        .respond_with(script.clone())
        .mount(&server)
        .await;
    let response = client(&server)
        .send(
            key(SK).secret(),
            StripeRequest::get("/v1/balance", &[]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(script.calls().len(), 2);
}

#[tokio::test]
async fn timeouts_are_retried_then_reported_as_unreachable() {
    // A server that accepts connections (the kernel completes them) and never
    // answers: without the per-attempt timeout the call would never end.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", silent.local_addr().unwrap());
    let timeout = config(&base).timeout;
    let started = Instant::now();
    let client = StripeClient::new(config(&base)).unwrap();
    let sk = key(SK);
    let call = client.send(sk.secret(), StripeRequest::get("/v1/balance", &[]), None);
    let err = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("each attempt is cut at the timeout")
        .unwrap_err();
    assert!(
        matches!(err, StripeError::Unreachable { attempts: 3, ref message } if message.contains("timed out")),
        "{err:?}"
    );
    assert!(
        started.elapsed() >= timeout * 3,
        "each of the three attempts waited for the timeout"
    );
}

#[tokio::test]
async fn a_slow_answer_inside_the_timeout_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(100)))
        .expect(1)
        .mount(&server)
        .await;
    let client = StripeClient::new(ClientConfig {
        timeout: Duration::from_secs(30),
        ..config(&server.uri())
    })
    .unwrap();
    let ok = client
        .send(
            key(SK).secret(),
            StripeRequest::get("/v1/balance", &[]),
            None,
        )
        .await
        .unwrap();
    assert_eq!((ok.status.as_u16(), ok.attempts), (200, 1));
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = StripeClient::new(config(&base)).unwrap();
    let err = client
        .check_key(&key(SK), None, None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StripeError::Unreachable { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains(SK));
}

#[tokio::test]
async fn a_burst_of_200_never_exceeds_25_per_second_on_a_test_mode_connection() {
    let server = MockServer::start().await;
    let script = Script::new(vec![
        ResponseTemplate::new(200).set_body_json(json!({"object": "balance"})),
    ]);
    Mock::given(method("GET"))
        .respond_with(script.clone())
        .mount(&server)
        .await;
    let limits = Limits {
        max_wait: Duration::from_secs(30),
        ..Limits::default()
    };
    let client = StripeClient::new(ClientConfig {
        limits,
        timeout: Duration::from_secs(30),
        ..config(&server.uri())
    })
    .unwrap();
    let sk = key(SK);
    let started = Instant::now();
    let calls = (0..200).map(|_| {
        let client = client.clone();
        let sk = sk.clone();
        async move {
            client
                .send(
                    sk.secret(),
                    StripeRequest::get("/v1/balance", &[]),
                    Some(RateKey {
                        key: "conn_burst",
                        livemode: false,
                    }),
                )
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.status == 200)),
        "every call succeeds, queued"
    );
    let mut times: Vec<Instant> = script.calls().into_iter().map(|(t, _)| t).collect();
    times.sort();
    assert_eq!(times.len(), 200);
    // Only lower bounds, which a slow machine cannot break (a request can
    // arrive late, never before its slot): no more than 25 requests arrive
    // before one window has passed since the burst began, no more than 50
    // before two, and so on. The slots themselves are checked exactly, for
    // every sliding window, by the rate limiter's own tests.
    for (i, arrived) in times.iter().enumerate() {
        let windows = u32::try_from(i / 25).unwrap();
        assert!(
            *arrived >= started + limits.window * windows,
            "request {} arrived {:?} after the burst began, before {windows} windows had passed",
            i + 1,
            *arrived - started
        );
    }
}

#[tokio::test]
async fn a_queue_longer_than_the_wait_limit_fails_fast() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let client = StripeClient::new(ClientConfig {
        limits: Limits {
            test: 2,
            max_wait: Duration::from_millis(100),
            ..Limits::default()
        },
        ..config(&server.uri())
    })
    .unwrap();
    let sk = key(SK);
    let rate = Some(RateKey {
        key: "conn_q",
        livemode: false,
    });
    for _ in 0..2 {
        client
            .send(sk.secret(), StripeRequest::get("/v1/balance", &[]), rate)
            .await
            .unwrap();
    }
    let err = client
        .send(sk.secret(), StripeRequest::get("/v1/balance", &[]), rate)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StripeError::RateLimited { retry_after_ms } if retry_after_ms > 100),
        "{err:?}"
    );
    // Writes have their own budget.
    let write = StripeRequest::new(Method::POST, "/v1/customers");
    assert!(client.send(sk.secret(), write, rate).await.is_ok());
}

/// The raw proxy's client: no whole-request timeout, but the answer's head
/// must come within the timeout and each body read must make progress within
/// it. A server that sends the head and part of the body, then goes silent.
#[tokio::test]
async fn a_proxied_answer_that_stalls_fails_after_the_idle_timeout() {
    use http_body_util::BodyExt;
    use patchbay_stripe::proxy::{RawBody, RawRequest};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                if head.starts_with("GET /v1/slow_head") {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"id\":\"cus_",
                    )
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let client = StripeClient::new(config(&base)).unwrap();
    let request = |path: &str| RawRequest {
        method: Method::GET,
        path: path.to_owned(),
        query: None,
        headers: Default::default(),
        body: RawBody::Empty,
        retries: false,
    };
    let secret = SecretString::from(SK);

    // The head came: the answer is handed back, and its body fails once it
    // stalls for the timeout (500 ms here), not after the 30 s of silence.
    let started = Instant::now();
    let response = client
        .forward(&secret, request("v1/customers/cus_1"), None)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let read = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .expect("the stalled body must fail, not hang");
    let error = read.unwrap_err();
    assert!(error.to_string().contains("stalled"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // No head within the timeout: no answer, reported as unreachable.
    let slow = tokio::time::timeout(
        Duration::from_secs(10),
        client.forward(&secret, request("v1/slow_head"), None),
    )
    .await
    .expect("a missing head must time out, not hang");
    match slow {
        Err(StripeError::Unreachable { message, attempts }) => {
            assert_eq!(attempts, 1);
            assert!(
                message.as_str().contains("timed out"),
                "{}",
                message.as_str()
            );
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}
