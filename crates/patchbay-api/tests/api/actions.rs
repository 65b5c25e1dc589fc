//! Typed actions through the real router, wiremock as Stripe: the exact
//! request Stripe gets, Stripe's answer verbatim, validation before any call,
//! idempotency keys, permissions learned into capabilities, auto-pagination
//! and the raw escape hatch.

use axum::http::Method;
use serde_json::{Value, json};
use wiremock::matchers::{body_string, header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::connections::{RK, SK, account, account_for};
use crate::support::{ADMIN, TestApp, assert_envelope};

async fn setup(app: &TestApp, key: &str) -> (String, String, String) {
    let (tenant, token) = app.tenant(&["connections:write", "proxy"]).await;
    account_for(app, key, account("acct_1Acme")).await;
    let conn = app
        .post(
            "/api/v1/connections",
            &token,
            json!({"provider": "stripe", "api_key": key}),
        )
        .await;
    assert_eq!(conn.status, 201, "{}", conn.text);
    (tenant, token, conn.id())
}

async fn call(app: &TestApp, token: &str, conn: &str, body: Value) -> crate::support::Reply {
    app.post(&format!("/api/v1/connections/{conn}/actions"), token, body)
        .await
}

fn decoded(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

#[tokio::test]
async fn create_customer_sends_stripes_encoding_and_answers_stripes_object() {
    let app = TestApp::new().await;
    let (_, token, conn) = setup(&app, SK).await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .and(header("authorization", format!("Bearer {SK}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("request-id", "req_cus")
                .set_body_json(json!({"id": "cus_new", "object": "customer"})),
        )
        .mount(&app.stripe)
        .await;
    // A whole workflow step, as integration documents write it.
    let reply = call(
        &app,
        &token,
        &conn,
        json!({"id": "create-customer", "type": "action", "action": "stripe.createCustomer",
               "config": {"email": "jane@example.com", "name": "Jane", "address": {"line1": "1 Main St", "postal_code": "94107"},
                          "metadata": {"source": "workflow"}, "expand": ["tax"]}}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body, json!({"id": "cus_new", "object": "customer"}));
    assert_eq!(reply.headers["request-id"], "req_cus");
    let key = reply.headers["idempotency-key"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!key.is_empty(), "a generated idempotency key comes back");

    let sent = app.stripe.received_requests().await.unwrap();
    let sent = sent
        .iter()
        .find(|r| r.url.path() == "/v1/customers")
        .unwrap();
    let mut pairs = decoded(&sent.body);
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            ("address[line1]".into(), "1 Main St".into()),
            ("address[postal_code]".into(), "94107".into()),
            ("email".into(), "jane@example.com".into()),
            ("expand[0]".into(), "tax".into()),
            ("metadata[source]".into(), "workflow".into()),
            ("name".into(), "Jane".into()),
        ]
    );
    assert_eq!(sent.headers["idempotency-key"], key.as_str());
    assert_eq!(
        sent.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
}

#[tokio::test]
async fn bad_calls_are_refused_before_anything_is_sent() {
    let app = TestApp::new().await;
    let (tenant, token, conn) = setup(&app, SK).await;
    let before = app.stripe.received_requests().await.unwrap().len();
    let unknown = call(
        &app,
        &token,
        &conn,
        json!({"action": "stripe.createCustomr", "config": {}}),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(assert_envelope(&unknown), "action_unknown");
    assert!(
        unknown.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stripe.createCustomer")
    );
    for (config, param) in [
        (json!({"emial": "x"}), "config.emial"),
        (json!({"email": 5}), "config.email"),
        (json!({"metadata": "x"}), "config.metadata"),
        (json!({"address": {"zip": "1"}}), "config.address.zip"),
    ] {
        let reply = call(
            &app,
            &token,
            &conn,
            json!({"action": "stripe.createCustomer", "config": config}),
        )
        .await;
        assert_eq!(reply.status, 422, "{config}: {}", reply.text);
        assert_eq!(reply.body["error"]["param"], param, "{config}");
    }
    let list = call(
        &app,
        &token,
        &conn,
        json!({"action": "stripe.listCustomers", "config": {"limit": 500}}),
    )
    .await;
    assert_eq!(list.status, 422);
    assert_eq!(list.body["error"]["param"], "config.limit");
    let get = call(
        &app,
        &token,
        &conn,
        json!({"action": "stripe.getCustomer", "config": {}}),
    )
    .await;
    assert_eq!(get.status, 422);
    assert_eq!(get.body["error"]["code"], "parameter_missing");
    let extra = call(
        &app,
        &token,
        &conn,
        json!({"action": "stripe.getCustomer", "config": {"customerId": "cus_1"}, "extra": 1}),
    )
    .await;
    assert_eq!(extra.status, 400);
    assert_eq!(
        app.stripe.received_requests().await.unwrap().len(),
        before,
        "nothing was sent"
    );

    // Without the proxy scope.
    let reader = app.key(&tenant, &["connections:read"]).await;
    let refused = call(
        &app,
        &reader,
        &conn,
        json!({"action": "stripe.getCustomer", "config": {"customerId": "cus_1"}}),
    )
    .await;
    assert_eq!(refused.status, 403);
}

#[tokio::test]
async fn stripe_errors_pass_through_and_permissions_become_capabilities() {
    let app = TestApp::new().await;
    // A restricted key: its test call reads balance.
    let (tenant, token) = app.tenant(&["connections:write", "proxy"]).await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {"type": "invalid_request_error", "message": "The provided key 'rk_test_***9999' does not have the required permissions for this endpoint on account 'acct_1'. Having the 'rak_accounts_kyc_basic_read' permission would allow this request to continue."}})))
        .mount(&app.stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/balance"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"object": "balance"})))
        .mount(&app.stripe)
        .await;
    let conn = app
        .post(
            "/api/v1/connections",
            &token,
            json!({"provider": "stripe", "api_key": RK}),
        )
        .await;
    assert_eq!(conn.status, 201, "{}", conn.text);
    let conn = conn.id();
    let _ = tenant;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(ResponseTemplate::new(403).insert_header("request-id", "req_403").set_body_json(json!({"error": {"type": "invalid_request_error", "message": "The provided key 'rk_test_***9999' does not have the required permissions for this endpoint on account 'acct_1'. Having the 'rak_customer_write' permission would allow this request to continue."}})))
        .mount(&app.stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/customers/cus_1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "cus_1", "object": "customer"})),
        )
        .mount(&app.stripe)
        .await;
    let refused = call(
        &app,
        &token,
        &conn,
        json!({"action": "stripe.createCustomer", "config": {"email": "a@b.c"}}),
    )
    .await;
    assert_eq!(refused.status, 403);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rak_customer_write"),
        "Stripe's body: {}",
        refused.text
    );
    let got = call(
        &app,
        &token,
        &conn,
        json!({"action": "stripe.getCustomer", "config": {"customerId": "cus_1"}}),
    )
    .await;
    assert_eq!(got.status, 200);

    let caps = app
        .get(&format!("/api/v1/connections/{conn}/capabilities"), &token)
        .await;
    assert_eq!(caps.status, 200, "{}", caps.text);
    let status = |name: &str| {
        caps.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["action"] == name)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("stripe.createCustomer"), "missing_permission");
    assert_eq!(status("stripe.getCustomer"), "available");
    assert_eq!(
        status("stripe.listCustomers"),
        "available",
        "the same read permission"
    );
    let any_unknown = caps.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["status"] == "unknown");
    let count = caps.body["data"].as_array().unwrap().len();
    assert!(any_unknown || count <= 3, "untried permissions are unknown");
}

#[tokio::test]
async fn auto_pagination_follows_cursors_and_streams_one_list() {
    let app = TestApp::new().await;
    let (_, token, conn) = setup(&app, SK).await;
    let page = |from: usize, n: usize, has_more: bool| {
        let data: Vec<Value> = (from..from + n)
            .map(|i| json!({"id": format!("cus_{i:04}"), "object": "customer"}))
            .collect();
        ResponseTemplate::new(200).set_body_json(
            json!({"object": "list", "data": data, "has_more": has_more, "url": "/v1/customers"}),
        )
    };
    Mock::given(method("GET"))
        .and(path("/v1/customers"))
        .and(query_param("starting_after", "cus_0099"))
        .respond_with(page(100, 100, true))
        .mount(&app.stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/customers"))
        .and(query_param("starting_after", "cus_0199"))
        .respond_with(page(200, 50, false))
        .mount(&app.stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/customers"))
        .and(query_param("limit", "100"))
        .respond_with(page(0, 100, true))
        .up_to_n_times(1)
        .mount(&app.stripe)
        .await;
    let reply = call(&app, &token, &conn, json!({"action": "stripe.listCustomers", "config": {"autoPaginate": true, "maxItems": 10000}})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["object"], "list");
    assert_eq!(reply.body["data"].as_array().unwrap().len(), 250);
    assert_eq!(reply.body["has_more"], false);
    assert_eq!(reply.body["data"][249]["id"], "cus_0249");

    // Capped: has_more stays true.
    Mock::given(method("GET"))
        .and(path("/v1/customers"))
        .and(query_param("limit", "100"))
        .respond_with(page(0, 100, true))
        .mount(&app.stripe)
        .await;
    let capped = call(&app, &token, &conn, json!({"action": "stripe.listCustomers", "config": {"autoPaginate": true, "maxItems": 120}})).await;
    assert_eq!(
        capped.body["data"].as_array().unwrap().len(),
        120,
        "{}",
        capped.text
    );
    assert_eq!(capped.body["has_more"], true);
}

#[tokio::test]
async fn raw_requests_follow_the_proxy_rules() {
    let app = TestApp::new().await;
    let (_, token, conn) = setup(&app, SK).await;
    Mock::given(method("POST"))
        .and(path("/v1/customers/cus_1/tax_ids"))
        .and(body_string("type=eu_vat&value=DE123456789"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "txi_1", "object": "tax_id"})),
        )
        .mount(&app.stripe)
        .await;
    let reply = call(&app, &token, &conn, json!({"action": "stripe.rawRequest", "config": {"method": "POST", "path": "/v1/customers/cus_1/tax_ids", "params": {"type": "eu_vat", "value": "DE123456789"}}})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["id"], "txi_1");
    for (config, param) in [
        (
            json!({"method": "GET", "path": "/v1/../admin"}),
            "config.path",
        ),
        (
            json!({"method": "PUT", "path": "/v1/customers"}),
            "config.method",
        ),
        (
            json!({"method": "GET", "path": "/v1/customers", "headers": {"Authorization": "Bearer x"}}),
            "config.headers",
        ),
    ] {
        let reply = call(
            &app,
            &token,
            &conn,
            json!({"action": "stripe.rawRequest", "config": config}),
        )
        .await;
        assert_eq!(reply.status, 422, "{config}");
        assert_eq!(reply.body["error"]["param"], param, "{config}");
    }
}

#[tokio::test]
async fn the_catalogue_is_served_with_schemas() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["connections:read"]).await;
    let list = app.get("/api/v1/actions", &token).await;
    assert_eq!(list.status, 200);
    let actions = list.body["data"].as_array().unwrap();
    assert!(actions.iter().any(|a| a["name"] == "stripe.createCustomer"));
    let one = app
        .get("/api/v1/actions/stripe.createCustomer", ADMIN)
        .await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.body["method"], "POST");
    assert_eq!(
        one.body["config_schema"]["properties"]["email"]["x-stripe-in"],
        "body"
    );
    let missing = app
        .call(
            Method::GET,
            "/api/v1/actions/stripe.nope",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(missing.status, 404);
}

/// A write whose answer never came (Stripe too slow, on every attempt) fails
/// with Patchbay's envelope and hands back the `Idempotency-Key` it was sent
/// with — the same one on each attempt — so the caller can retry safely
/// without knowing whether Stripe acted; the failed call is audited.
#[tokio::test]
async fn an_unanswered_write_returns_its_idempotency_key_and_is_audited() {
    let app = TestApp::build(
        |_| {},
        |c| c.timeout = std::time::Duration::from_millis(200),
    )
    .await;
    let (tenant, token, conn) = setup(&app, SK).await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "cus_late", "object": "customer"}))
                .set_delay(std::time::Duration::from_secs(2)),
        )
        .mount(&app.stripe)
        .await;
    let reply = call(
        &app,
        &token,
        &conn,
        json!({"action": "stripe.createCustomer", "config": {"email": "late@example.com"}}),
    )
    .await;
    assert!(
        reply.status == 504 || reply.status == 502,
        "{}: {}",
        reply.status,
        reply.text
    );
    assert_envelope(&reply);
    let key = reply.headers["idempotency-key"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(key.starts_with("patchbay-"), "{key}");
    let sent = app.stripe.received_requests().await.unwrap();
    let attempts: Vec<_> = sent
        .iter()
        .filter(|r| r.url.path() == "/v1/customers")
        .collect();
    assert_eq!(attempts.len(), 2, "one attempt and one retry");
    for attempt in attempts {
        assert_eq!(attempt.headers["idempotency-key"], key.as_str());
    }

    // The caller's own key comes back the same way.
    let mine = app
        .bearer(
            Method::POST,
            &format!("/api/v1/connections/{conn}/actions"),
            &token,
            &[("idempotency-key", "order-42-customer")],
            Some(
                json!({"action": "stripe.createCustomer", "config": {"email": "late@example.com"}}),
            ),
        )
        .await;
    assert!(mine.status.is_server_error(), "{}", mine.text);
    assert_eq!(mine.headers["idempotency-key"], "order-42-customer");

    // A read that fails carries no key.
    Mock::given(method("GET"))
        .and(path("/v1/customers/cus_slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(2)))
        .mount(&app.stripe)
        .await;
    let read = call(
        &app,
        &token,
        &conn,
        json!({"action": "stripe.getCustomer", "config": {"customerId": "cus_slow"}}),
    )
    .await;
    assert!(read.status.is_server_error(), "{}", read.text);
    assert!(read.headers.get("idempotency-key").is_none());

    // Each failed call is in the audit log with the status it answered.
    let statuses: Vec<u64> = app
        .audit_events("action.called", &tenant, 3)
        .await
        .iter()
        .map(|e| e["details"]["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses.len(), 3, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == u64::from(reply.status.as_u16())),
        "{statuses:?}"
    );
}
