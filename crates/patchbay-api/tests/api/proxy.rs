//! The raw proxy through the real router, wiremock as Stripe: credentials
//! injected and the caller's stripped, Stripe's answer verbatim, connected
//! accounts, bound keys at the root paths, retries, and a table of traversal
//! and injection attempts refused before anything leaves.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::connections::{SK, account, account_for};
use crate::support::{ADMIN, TestApp, assert_envelope};

/// A tenant, a proxy key, and an active connection; returns (tenant, key, connection).
async fn setup(app: &TestApp) -> (String, String, String) {
    let (tenant, key) = app.tenant(&["connections:write", "proxy"]).await;
    account_for(app, SK, account("acct_1Acme")).await;
    let conn = app
        .post(
            "/api/v1/connections",
            &key,
            json!({"provider": "stripe", "api_key": SK}),
        )
        .await;
    assert_eq!(conn.status, 201, "{}", conn.text);
    (tenant, key, conn.id())
}

async fn raw(
    app: &TestApp,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> crate::support::Reply {
    let mut builder = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    app.send(builder.body(body).unwrap()).await
}

#[tokio::test]
async fn the_connection_key_goes_out_and_stripes_answer_comes_back_verbatim() {
    let app = TestApp::new().await;
    let (_, key, conn) = setup(&app).await;
    Mock::given(method("POST"))
        .and(path("/v1/customers/cus_1"))
        .and(header("authorization", format!("Bearer {SK}").as_str()))
        .respond_with(
            ResponseTemplate::new(402)
                .insert_header("request-id", "req_upstream1")
                .insert_header("stripe-version", "2026-05-27.dahlia")
                .insert_header("x-internal", "never-returned")
                .set_body_raw(r#"{"error":{"type":"card_error","code":"card_declined","message":"Your card was declined."}}"#, "application/json"),
        )
        .mount(&app.stripe)
        .await;
    let reply = raw(
        &app,
        Method::POST,
        &format!("/api/v1/connections/{conn}/proxy/v1/customers/cus_1?expand[0]=default_source"),
        &[
            ("x-api-key", &key),
            ("cookie", "session=secret"),
            ("x-custom", "nope"),
            ("stripe-version", "2026-05-27.dahlia"),
            ("idempotency-key", "idem-123"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Body::from("name=Jane&metadata[order]=6735"),
    )
    .await;
    assert_eq!(reply.status, 402, "{}", reply.text);
    assert_eq!(
        reply.body["error"]["code"], "card_declined",
        "Stripe's body, not the envelope"
    );
    assert_eq!(reply.headers["request-id"], "req_upstream1");
    assert_eq!(reply.headers["stripe-version"], "2026-05-27.dahlia");
    assert!(reply.headers.get("x-internal").is_none());

    let sent = app.stripe.received_requests().await.unwrap();
    let sent = sent
        .iter()
        .find(|r| r.url.path() == "/v1/customers/cus_1")
        .unwrap();
    assert_eq!(sent.url.query(), Some("expand[0]=default_source"));
    assert_eq!(sent.body, b"name=Jane&metadata[order]=6735");
    assert_eq!(sent.headers["idempotency-key"], "idem-123");
    assert_eq!(sent.headers["stripe-version"], "2026-05-27.dahlia");
    for stripped in ["x-api-key", "cookie", "x-custom"] {
        assert!(
            sent.headers.get(stripped).is_none(),
            "{stripped} was forwarded"
        );
    }
    assert!(
        !format!("{:?}", sent.headers).contains(&key),
        "the Patchbay key never leaves"
    );
}

#[tokio::test]
async fn paths_that_try_to_leave_the_api_are_refused_before_anything_is_sent() {
    let app = TestApp::new().await;
    let (_, key, conn) = setup(&app).await;
    let before = app.stripe.received_requests().await.unwrap().len();
    let attempts = [
        "v3/customers",
        "customers",
        "v1",
        "v1/",
        "v1/../v1/customers",
        "v1/customers/..",
        "v1/./customers",
        "v1/%2e%2e/admin",
        "v1/%2E%2E/admin",
        "v1/%2e/customers",
        "v1/customers%2f..%2fadmin",
        "v1/customers%2Fx",
        "v1/customers%5c..",
        "v1/%252e%252e/admin",
        "v1/customers%00",
        "v1/customers%0d%0aHost:%20evil",
        "v1/customers%0a",
        "v1/customers%3a8080",
        "v1/customers%40evil.example",
        "v1/@evil.example/x",
        "v1/customers@evil",
        "v1//evil.example/x",
        "v1/customers//x",
        "v1/cus:tomers",
        "v1/customers%",
        "v1/customers%zz",
        "v1/customers%2",
        "v1/customers%23frag",
        "v1/customers%3fx=1",
        "v1/customers%7f",
        "v1/customers%1f",
        "v1/cust\\omers",
    ];
    assert!(attempts.len() >= 30);
    for attempt in attempts {
        let reply = raw(
            &app,
            Method::GET,
            &format!(
                "/api/v1/connections/{conn}/proxy/{}",
                attempt.replace('\\', "%5C")
            ),
            &[("x-api-key", &key)],
            Body::empty(),
        )
        .await;
        assert_eq!(reply.status, 400, "{attempt}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), "path_invalid", "{attempt}");
        assert_eq!(reply.body["error"]["param"], "path", "{attempt}");
    }
    assert_eq!(
        app.stripe.received_requests().await.unwrap().len(),
        before,
        "nothing went upstream"
    );
}

#[tokio::test]
async fn the_proxy_needs_its_scope_an_active_connection_and_the_right_key_shape() {
    let app = TestApp::new().await;
    let (tenant, key, conn) = setup(&app).await;
    let uri = format!("/api/v1/connections/{conn}/proxy/v1/customers");
    let no_scope = app.key(&tenant, &["connections:write"]).await;
    let reply = raw(
        &app,
        Method::GET,
        &uri,
        &[("x-api-key", &no_scope)],
        Body::empty(),
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(assert_envelope(&reply), "insufficient_scope");
    let reply = raw(
        &app,
        Method::GET,
        &uri,
        &[("x-api-key", ADMIN)],
        Body::empty(),
    )
    .await;
    assert_eq!(reply.status, 403);

    // A pending connection: 409 naming its status.
    let pending = app
        .post("/api/v1/connections", &key, json!({"provider": "stripe", "api_key": "sk_test_51HzyxWVU9876543210abcABC7777", "validate": false}))
        .await
        .id();
    let reply = raw(
        &app,
        Method::GET,
        &format!("/api/v1/connections/{pending}/proxy/v1/customers"),
        &[("x-api-key", &key)],
        Body::empty(),
    )
    .await;
    assert_eq!(reply.status, 409);
    assert_eq!(assert_envelope(&reply), "connection_not_active");

    // Root paths need a bound key; a bound key works only there.
    let reply = raw(
        &app,
        Method::GET,
        "/v1/customers",
        &[("authorization", &format!("Bearer {key}"))],
        Body::empty(),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(assert_envelope(&reply), "api_key_not_bound");
    let bound = app
        .post(
            &format!("/api/v1/tenants/{tenant}/api-keys"),
            ADMIN,
            json!({"scopes": ["proxy"], "connection_id": conn}),
        )
        .await;
    assert_eq!(bound.status, 201, "{}", bound.text);
    assert_eq!(bound.body["connection_id"], conn.as_str());
    let bound = bound.body["key"].as_str().unwrap().to_owned();
    Mock::given(method("GET"))
        .and(path("/v1/customers"))
        .and(header("authorization", format!("Bearer {SK}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"object": "list", "data": [], "has_more": false, "url": "/v1/customers"}),
        ))
        .mount(&app.stripe)
        .await;
    let reply = raw(
        &app,
        Method::GET,
        "/v1/customers?limit=3",
        &[("authorization", &format!("Bearer {bound}"))],
        Body::empty(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["object"], "list");
    for (m, p) in [
        (Method::GET, "/api/v1/connections".to_owned()),
        (Method::GET, uri.clone()),
    ] {
        let reply = raw(&app, m, &p, &[("x-api-key", &bound)], Body::empty()).await;
        assert_eq!(reply.status, 403, "{p}");
        assert_eq!(assert_envelope(&reply), "api_key_bound", "{p}");
    }
    // Binding needs the proxy scope only, and a connection of the tenant.
    let bad = app
        .post(
            &format!("/api/v1/tenants/{tenant}/api-keys"),
            ADMIN,
            json!({"scopes": ["admin"], "connection_id": conn}),
        )
        .await;
    assert_eq!(bad.status, 422);
    let (_, other) = app.tenant(&["admin"]).await;
    let foreign = app
        .post(
            "/api/v1/api-keys",
            &other,
            json!({"scopes": ["proxy"], "connection_id": conn}),
        )
        .await;
    assert_eq!(foreign.status, 404, "{}", foreign.text);
}

#[tokio::test]
async fn retries_are_safe_only_and_can_be_turned_off() {
    let app = TestApp::new().await;
    let (_, key, conn) = setup(&app).await;
    Mock::given(method("GET"))
        .and(path("/v1/balance"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(json!({"error": {"type": "api_error", "message": "down"}})),
        )
        .mount(&app.stripe)
        .await;
    async fn count(app: &TestApp) -> usize {
        app.stripe
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/v1/balance")
            .count()
    }
    let uri = format!("/api/v1/connections/{conn}/proxy/v1/balance");
    let base = count(&app).await;
    let reply = raw(
        &app,
        Method::GET,
        &uri,
        &[("x-api-key", &key)],
        Body::empty(),
    )
    .await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        count(&app).await - base,
        2,
        "a GET is retried (max_retries = 1 in tests)"
    );
    let reply = raw(
        &app,
        Method::GET,
        &uri,
        &[("x-api-key", &key), ("patchbay-retry", "off")],
        Body::empty(),
    )
    .await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        count(&app).await - base,
        3,
        "Patchbay-Retry: off sends once"
    );
}

#[tokio::test]
async fn a_large_response_streams_through_whole_and_a_multipart_upload_arrives_intact() {
    let app = TestApp::new().await;
    let (_, key, conn) = setup(&app).await;
    let big = vec![b'x'; 20 * 1024 * 1024];
    Mock::given(method("GET"))
        .and(path("/v1/files/file_1/contents"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(big.clone(), "application/octet-stream"),
        )
        .mount(&app.stripe)
        .await;
    let reply = raw(
        &app,
        Method::GET,
        &format!("/api/v1/connections/{conn}/proxy/v1/files/file_1/contents"),
        &[("x-api-key", &key)],
        Body::empty(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text.len(), big.len());

    let boundary = "----patchbay-test-boundary";
    let upload = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\ndispute_evidence\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n{}\r\n--{boundary}--\r\n",
        "y".repeat(600_000)
    );
    Mock::given(method("POST"))
        .and(path("/v1/files"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "file_2", "object": "file"})),
        )
        .mount(&app.stripe)
        .await;
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let reply = raw(
        &app,
        Method::POST,
        &format!("/api/v1/connections/{conn}/proxy/v1/files"),
        &[
            ("x-api-key", &key),
            ("content-type", &content_type),
            ("content-length", &upload.len().to_string()),
        ],
        Body::from(upload.clone()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let sent = app.stripe.received_requests().await.unwrap();
    let sent = sent.iter().find(|r| r.url.path() == "/v1/files").unwrap();
    assert_eq!(sent.body, upload.as_bytes());
    assert_eq!(sent.headers["content-type"], content_type.as_str());

    // Over the limit: refused with the envelope.
    let small = TestApp::with(|c| c.proxy_max_body_bytes = 1024).await;
    let (_, key, conn) = setup(&small).await;
    let reply = raw(
        &small,
        Method::POST,
        &format!("/api/v1/connections/{conn}/proxy/v1/files"),
        &[
            ("x-api-key", &key),
            ("content-type", &content_type),
            ("content-length", &upload.len().to_string()),
        ],
        Body::from(upload.clone()),
    )
    .await;
    assert_eq!(reply.status, 413);
    assert_eq!(assert_envelope(&reply), "body_too_large");
    // The same without a Content-Length: streamed, cut at the limit, still a 413.
    let reply = raw(
        &small,
        Method::POST,
        &format!("/api/v1/connections/{conn}/proxy/v1/files"),
        &[("x-api-key", &key), ("content-type", &content_type)],
        Body::from_stream(futures::stream::iter(
            upload
                .into_bytes()
                .chunks(4096)
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )),
    )
    .await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert_eq!(assert_envelope(&reply), "body_too_large");
}

#[tokio::test]
async fn connected_accounts_and_context_headers_pass_and_calls_are_audited() {
    let app = TestApp::new().await;
    let (tenant, key, conn) = setup(&app).await;
    Mock::given(method("GET"))
        .and(path("/v1/charges"))
        .and(header("stripe-account", "acct_1Connected0001"))
        .and(header("stripe-context", "acct_1Org/acct_1Child"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("request-id", "req_ctx")
                .set_body_json(json!({"object": "list", "data": []})),
        )
        .mount(&app.stripe)
        .await;
    let reply = raw(
        &app,
        Method::GET,
        &format!("/api/v1/connections/{conn}/proxy/v1/charges?customer=cus_secretish"),
        &[
            ("x-api-key", &key),
            ("stripe-account", "acct_1Connected0001"),
            ("stripe-context", "acct_1Org/acct_1Child"),
        ],
        Body::empty(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let bad = raw(
        &app,
        Method::GET,
        &format!("/api/v1/connections/{conn}/proxy/v1/charges"),
        &[("x-api-key", &key), ("stripe-account", "evil.example")],
        Body::empty(),
    )
    .await;
    assert_eq!(bad.status, 400);

    // The audit record: method, path, query names (never values), status, Stripe's request id.
    let found = app
        .audit_events("proxy.request", &tenant, 1)
        .await
        .first()
        .cloned();
    let event = found.expect("a proxy.request audit event");
    assert_eq!(event["target_id"], conn.as_str());
    assert_eq!(event["details"]["path"], "v1/charges");
    assert_eq!(event["details"]["status"], 200);
    assert_eq!(event["details"]["stripe_request_id"], "req_ctx");
    assert_eq!(event["details"]["query_keys"], json!(["customer"]));
    assert!(!event.to_string().contains("cus_secretish"));
}

#[tokio::test]
async fn a_connect_grant_calls_with_the_platform_key_on_its_account() {
    let app = TestApp::new().await;
    let token = crate::oauth::platform(&app).await;
    let conn = crate::oauth::connect(&app, &token, "user-1").await;
    let tenant = app.get("/api/v1/api-keys", &token).await.body["data"][0]["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = app.key(&tenant, &["proxy"]).await;
    Mock::given(method("GET"))
        .and(path("/v1/customers"))
        .and(header("authorization", format!("Bearer {SK}").as_str()))
        .and(header("stripe-account", crate::oauth::CONNECTED))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
        )
        .mount(&app.stripe)
        .await;
    let uri = format!("/api/v1/connections/{conn}/proxy/v1/customers");
    let reply = raw(
        &app,
        Method::GET,
        &uri,
        &[("x-api-key", &key)],
        Body::empty(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    // The grant's account is fixed: another one is refused, not sent.
    let reply = raw(
        &app,
        Method::GET,
        &uri,
        &[
            ("x-api-key", &key),
            ("stripe-account", "acct_1SomeoneElse00"),
        ],
        Body::empty(),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(assert_envelope(&reply), "stripe_account_conflict");
    // Stripe-Context supersedes Stripe-Account: it may not name another account either.
    let before = app.stripe.received_requests().await.unwrap().len();
    let reply = raw(
        &app,
        Method::GET,
        &uri,
        &[
            ("x-api-key", &key),
            ("stripe-context", "acct_1SomeoneElse00"),
        ],
        Body::empty(),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(assert_envelope(&reply), "stripe_account_conflict");
    assert_eq!(
        app.stripe.received_requests().await.unwrap().len(),
        before,
        "nothing sent"
    );
    // An unauthenticated OPTIONS on the proxy is a plain refusal, not an error.
    let reply = raw(&app, Method::OPTIONS, &uri, &[], Body::empty()).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
}

/// The opened connection is reused between calls (one read per TTL), but a
/// rotation, an invalidating validation and a deletion take effect on the very
/// next call: the cache is dropped by every change, not left to expire.
#[tokio::test]
async fn the_next_call_after_a_change_uses_the_change_not_the_cached_credential() {
    use crate::connections::SK2;
    let app = TestApp::new().await;
    let (_, key, conn) = setup(&app).await;
    let headers = [("x-api-key", key.as_str())];
    for sk in [SK, SK2] {
        Mock::given(method("GET"))
            .and(path("/v1/balance"))
            .and(header("authorization", format!("Bearer {sk}").as_str()))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"key": &sk[sk.len() - 4..]})),
            )
            .mount(&app.stripe)
            .await;
    }
    let url = format!("/api/v1/connections/{conn}/proxy/v1/balance");
    for _ in 0..3 {
        let reply = raw(&app, Method::GET, &url, &headers, Body::empty()).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["key"], "4242");
    }

    // Rotation: the very next call carries the new key.
    account_for(&app, SK2, account("acct_1Acme")).await;
    let rotated = app
        .post(
            &format!("/api/v1/connections/{conn}/rotate"),
            &key,
            json!({"api_key": SK2}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let reply = raw(&app, Method::GET, &url, &headers, Body::empty()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["key"], "7777", "the cached old key was used");

    // Deletion: the very next call finds no connection.
    let deleted = app
        .delete(&format!("/api/v1/connections/{conn}"), &key)
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    let reply = raw(&app, Method::GET, &url, &headers, Body::empty()).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(assert_envelope(&reply), "resource_missing");
}

#[tokio::test]
async fn a_multipart_body_without_a_boundary_is_refused_before_anything_is_sent() {
    let app = TestApp::new().await;
    let (_, key, conn) = setup(&app).await;
    let before = app.stripe.received_requests().await.unwrap().len();
    for content_type in [
        "multipart/form-data",
        "Multipart/Form-Data; charset=utf-8",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=\"\"",
    ] {
        let reply = raw(
            &app,
            Method::POST,
            &format!("/api/v1/connections/{conn}/proxy/v1/files"),
            &[("x-api-key", &key), ("content-type", content_type)],
            Body::from("--x\r\n"),
        )
        .await;
        assert_eq!(reply.status, 400, "{content_type}: {}", reply.text);
        assert_eq!(
            assert_envelope(&reply),
            "content_type_invalid",
            "{content_type}"
        );
    }
    assert_eq!(
        app.stripe.received_requests().await.unwrap().len(),
        before,
        "nothing reached Stripe"
    );
}
