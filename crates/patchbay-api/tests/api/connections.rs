//! Connections against wiremock standing in for Stripe: the test call's rules,
//! what is recorded, validation, rotation and the rejections that store nothing.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::support::{Reply, TestApp, assert_envelope};

pub const SK: &str = "sk_test_51HabcDEF0123456789xyzXYZ4242";
pub const SK2: &str = "sk_test_51HzyxWVU9876543210abcABC7777";
pub const RK: &str = "rk_test_51HabcDEF0123456789xyzXYZ9999";

pub fn account(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("request-id", "req_acct")
        .set_body_json(json!({
            "id": id, "object": "account", "email": "ops@acme.test", "country": "US",
            "default_currency": "usd", "settings": {"dashboard": {"display_name": "Acme"}}
        }))
}

fn stripe_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("request-id", "req_fail")
        .set_body_json(json!({"error": {"type": "invalid_request_error", "message": message}}))
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Mounts `/v1/account` answering `template` for `key`.
pub async fn account_for(app: &TestApp, key: &str, template: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .and(header("authorization", bearer(key).as_str()))
        .respond_with(template)
        .mount(&app.stripe)
        .await;
}

pub async fn create(app: &TestApp, token: &str, body: Value) -> Reply {
    app.post("/api/v1/connections", token, body).await
}

async fn connection_count(app: &TestApp, token: &str) -> usize {
    app.get("/api/v1/connections?limit=100", token).await.body["data"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_secret_key_is_proven_and_its_account_recorded() {
    let app = TestApp::new().await;
    let (tenant, token) = app.tenant(&["connections:write"]).await;
    account_for(&app, SK, account("acct_1Acme")).await;
    let reply = create(
        &app,
        &token,
        json!({"provider": "stripe", "api_key": SK, "external_id": "user-42", "name": "Main", "metadata": {"plan": "pro"}, "stripe_version": "2026-10-28.endive"}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let c = &reply.body;
    assert!(c["id"].as_str().unwrap().starts_with("conn_"));
    assert_eq!(c["object"], "connection");
    assert_eq!(c["tenant_id"], tenant.as_str());
    assert_eq!(c["provider"], "stripe");
    assert_eq!(c["auth_method"], "secret_key");
    assert_eq!(c["livemode"], false);
    assert_eq!(c["status"], "active");
    assert_eq!(c["stripe_account_id"], "acct_1Acme");
    assert_eq!(c["account_name"], "Acme");
    assert_eq!(c["account_country"], "US");
    assert_eq!(c["default_currency"], "usd");
    assert_eq!(c["key_hint"], "sk_test_…4242");
    assert_eq!(c["external_id"], "user-42");
    assert_eq!(c["metadata"], json!({"plan": "pro"}));
    assert!(c["last_validated_at"].is_string());
    assert!(c["last_error"].is_null());
    assert!(!reply.text.contains(SK));

    let received = &app.stripe.received_requests().await.unwrap()[0];
    assert_eq!(received.headers["authorization"], bearer(SK).as_str());
    assert_eq!(received.headers["stripe-version"], "2026-10-28.endive");

    let got = app
        .get(&format!("/api/v1/connections/{}", reply.id()), &token)
        .await;
    assert_eq!(got.body, reply.body);
}

#[tokio::test]
async fn a_restricted_key_without_permissions_is_valid_and_says_what_it_lacks() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["connections:write"]).await;
    let denied = stripe_error(
        403,
        "The provided key 'rk_test_***9999' does not have the required permissions for this endpoint. Having the 'rak_account_read' permission would allow this request to continue.",
    );
    account_for(&app, RK, denied).await;
    Mock::given(path("/v1/balance"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"object": "balance"})))
        .mount(&app.stripe)
        .await;
    let reply = create(&app, &token, json!({"provider": "stripe", "api_key": RK})).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["auth_method"], "restricted_key");
    assert_eq!(reply.body["status"], "active");
    assert_eq!(
        reply.body["missing_permissions"],
        json!(["rak_account_read"])
    );
    assert!(reply.body["stripe_account_id"].is_null());
}

#[tokio::test]
async fn rejected_keys_store_nothing() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    account_for(
        &app,
        SK,
        stripe_error(401, "Invalid API Key provided: sk_test_****4242"),
    )
    .await;
    let invalid = create(&app, &token, json!({"provider": "stripe", "api_key": SK})).await;
    assert_eq!(invalid.status, 422, "{}", invalid.text);
    assert_eq!(assert_envelope(&invalid), "stripe_key_invalid");
    assert_eq!(invalid.body["error"]["param"], "api_key");
    assert!(
        invalid.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("req_fail")
    );

    let before = app.stripe.received_requests().await.unwrap().len();
    for (key, code) in [
        (
            "pk_test_51HabcDEF0123456789xyzXYZ4242",
            "stripe_key_publishable",
        ),
        (
            "whsec_51HabcDEF0123456789xyzXYZ4242",
            "stripe_key_wrong_type",
        ),
        ("ca_51HabcDEF0123456789xyzXYZ4242", "stripe_key_wrong_type"),
        ("sk_test_51Habc DEF0123456789xyz", "stripe_key_malformed"),
        ("", "stripe_key_malformed"),
        ("sk_test_short", "stripe_key_malformed"),
        ("hello", "stripe_key_malformed"),
    ] {
        let reply = create(&app, &token, json!({"provider": "stripe", "api_key": key})).await;
        assert_eq!(reply.status, 422, "{key}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), code, "{key}");
        assert_eq!(reply.body["error"]["param"], "api_key");
        if key.len() > 8 {
            assert!(!reply.text.contains(key), "the key is not echoed");
        }
    }
    assert_eq!(
        app.stripe.received_requests().await.unwrap().len(),
        before,
        "malformed keys never reach Stripe"
    );
    for (body, status, param) in [
        (
            json!({"provider": "paypal", "api_key": SK2}),
            400,
            "provider",
        ),
        (json!({"api_key": SK2}), 400, "provider"),
        (
            json!({"provider": "stripe", "api_key": SK2, "metadata": {"": "x"}}),
            422,
            "metadata.",
        ),
        (
            json!({"provider": "stripe", "api_key": SK2, "stripe_version": "latest"}),
            422,
            "stripe_version",
        ),
        (
            json!({"provider": "stripe", "api_key": SK2, "external_id": ""}),
            422,
            "external_id",
        ),
        (
            json!({"provider": "stripe", "api_key": SK2, "validate": "yes"}),
            400,
            "validate",
        ),
    ] {
        let reply = create(&app, &token, body.clone()).await;
        assert_eq!(reply.status.as_u16(), status, "{body}: {}", reply.text);
        assert_eq!(reply.body["error"]["param"], param, "{body}");
    }

    // Stripe failing: 502 after the retries, nothing stored.
    Mock::given(path("/v1/account"))
        .and(header("authorization", bearer(SK2).as_str()))
        .respond_with(stripe_error(500, "boom"))
        .mount(&app.stripe)
        .await;
    let failing = create(&app, &token, json!({"provider": "stripe", "api_key": SK2})).await;
    assert_eq!(failing.status, 502, "{}", failing.text);
    assert_eq!(assert_envelope(&failing), "stripe_unavailable");
    assert_eq!(failing.body["error"]["type"], "api_connection_error");

    assert_eq!(connection_count(&app, &token).await, 0);
    let audit = app
        .get("/api/v1/audit-events?action=connection.created", &token)
        .await;
    assert_eq!(audit.body["data"].as_array().unwrap().len(), 0);

    // Stored as pending when asked not to validate.
    let pending = create(
        &app,
        &token,
        json!({"provider": "stripe", "api_key": SK2, "validate": false}),
    )
    .await;
    assert_eq!(pending.status, 201);
    assert_eq!(pending.body["status"], "pending");
}

#[tokio::test]
async fn unreachable_stripe_is_a_clear_502() {
    let app = TestApp::unreachable_stripe().await;
    let (_, token) = app.tenant(&["connections:write"]).await;
    let reply = create(&app, &token, json!({"provider": "stripe", "api_key": SK})).await;
    assert_eq!(reply.status, 502, "{}", reply.text);
    assert_eq!(assert_envelope(&reply), "stripe_unreachable");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"validate\": false")
    );
    assert_eq!(connection_count(&app, &token).await, 0);
}

#[tokio::test]
async fn duplicate_external_ids_conflict() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["connections:write"]).await;
    let (_, other) = app.tenant(&["connections:write"]).await;
    let body =
        json!({"provider": "stripe", "api_key": SK, "external_id": "same", "validate": false});
    assert_eq!(create(&app, &token, body.clone()).await.status, 201);
    let dup = create(&app, &token, body.clone()).await;
    assert_eq!(dup.status, 409);
    assert_eq!(assert_envelope(&dup), "external_id_taken");
    assert_eq!(dup.body["error"]["param"], "external_id");
    assert_eq!(
        create(&app, &other, body).await.status,
        201,
        "external ids are per tenant"
    );
}

#[tokio::test]
async fn validate_records_active_invalid_and_error() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    account_for(&app, SK, account("acct_1Acme")).await;
    let id = create(&app, &token, json!({"provider": "stripe", "api_key": SK}))
        .await
        .id();
    let url = format!("/api/v1/connections/{id}/validate");

    app.stripe.reset().await;
    account_for(&app, SK, stripe_error(401, "Invalid API Key provided")).await;
    let invalid = app.post(&url, &token, json!({})).await;
    assert_eq!(invalid.status, 200, "{}", invalid.text);
    assert_eq!(invalid.body["status"], "invalid");
    assert_eq!(invalid.body["last_error"]["code"], "stripe_key_invalid");
    assert_eq!(invalid.body["last_error"]["stripe_request_id"], "req_fail");
    assert_eq!(
        invalid.body["stripe_account_id"], "acct_1Acme",
        "account details are kept"
    );

    app.stripe.reset().await;
    account_for(&app, SK, stripe_error(503, "down")).await;
    let error = app.post(&url, &token, json!({})).await;
    assert_eq!(error.body["status"], "error");
    assert_eq!(error.body["last_error"]["code"], "stripe_unavailable");

    let filtered = app.get("/api/v1/connections?status=error", &token).await;
    assert_eq!(filtered.body["data"].as_array().unwrap().len(), 1);

    app.stripe.reset().await;
    account_for(&app, SK, account("acct_1Acme")).await;
    let active = app.post(&url, &token, json!({})).await;
    assert_eq!(active.body["status"], "active");
    assert!(active.body["last_error"].is_null());

    let audit = app
        .get(
            &format!("/api/v1/audit-events?action=connection.validated&target_id={id}"),
            &token,
        )
        .await;
    let events = audit.body["data"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["details"]["status"], "active");
    assert_eq!(events[1]["details"]["status"], "error");
    assert_eq!(events[2]["details"]["previous_status"], "active");
}

#[tokio::test]
async fn rotation_checks_account_and_mode_then_swaps() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    account_for(&app, SK, account("acct_1Acme")).await;
    let id = create(&app, &token, json!({"provider": "stripe", "api_key": SK}))
        .await
        .id();
    let url = format!("/api/v1/connections/{id}/rotate");

    // Another account, another mode, the same key, an invalid key, no account permission.
    const OTHER: &str = "sk_test_51HotherACCOUNT0123456789xyz";
    const LIVE: &str = "sk_live_51HabcDEF0123456789xyzXYZ4242";
    const BAD: &str = "sk_test_51HrevokedKEY0123456789xyzab";
    account_for(&app, OTHER, account("acct_1Other")).await;
    account_for(&app, BAD, stripe_error(401, "Invalid API Key provided")).await;
    account_for(
        &app,
        RK,
        stripe_error(
            403,
            "Having the 'rak_account_read' permission would allow this request to continue.",
        ),
    )
    .await;
    Mock::given(path("/v1/balance"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"object": "balance"})))
        .mount(&app.stripe)
        .await;
    for (key, status, code) in [
        (OTHER, 422, "account_mismatch"),
        (LIVE, 422, "mode_mismatch"),
        (SK, 422, "same_key"),
        (BAD, 422, "stripe_key_invalid"),
        (RK, 422, "account_unverifiable"),
        (
            "pk_test_51HabcDEF0123456789xyzXYZ4242",
            422,
            "stripe_key_publishable",
        ),
    ] {
        let reply = app.post(&url, &token, json!({"api_key": key})).await;
        assert_eq!(reply.status.as_u16(), status, "{key}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), code, "{key}");
        assert!(!reply.text.contains(key) || key == SK && !reply.text.contains(SK));
    }
    let bad_keep = app
        .post(
            &url,
            &token,
            json!({"api_key": SK2, "keep_previous_for_seconds": 0}),
        )
        .await;
    assert_eq!(bad_keep.status, 422);
    assert_eq!(bad_keep.body["error"]["param"], "keep_previous_for_seconds");
    let unchanged = app.get(&format!("/api/v1/connections/{id}"), &token).await;
    assert_eq!(unchanged.body["key_hint"], "sk_test_…4242");

    // The same account: swapped, the old key kept for an hour.
    account_for(&app, SK2, account("acct_1Acme")).await;
    let rotated = app
        .post(
            &url,
            &token,
            json!({"api_key": SK2, "keep_previous_for_seconds": 3600}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    assert_eq!(rotated.body["key_hint"], "sk_test_…7777");
    assert_eq!(rotated.body["previous_key_hint"], "sk_test_…4242");
    assert!(rotated.body["previous_key_expires_at"].is_string());
    assert_eq!(rotated.body["status"], "active");

    // The connection now calls Stripe with the new key.
    app.stripe.reset().await;
    account_for(&app, SK2, account("acct_1Acme")).await;
    let validated = app
        .post(
            &format!("/api/v1/connections/{id}/validate"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(validated.body["status"], "active");
    let seen = app.stripe.received_requests().await.unwrap();
    assert!(!seen.is_empty(), "the validation called Stripe");
    assert!(
        seen.iter()
            .all(|r| r.headers["authorization"] == bearer(SK2).as_str())
    );

    let audit = app
        .get(
            &format!("/api/v1/audit-events?action=connection.rotated&target_id={id}"),
            &token,
        )
        .await;
    let event = &audit.body["data"][0];
    assert_eq!(event["details"]["previous_key_hint"], "sk_test_…4242");
    assert_eq!(event["details"]["key_hint"], "sk_test_…7777");
    assert!(event["request_id"].as_str().unwrap().starts_with("req_"));
    assert!(event["actor"].as_str().unwrap().starts_with("key_"));

    // Rotating again without keeping destroys the kept key at once.
    account_for(&app, SK, account("acct_1Acme")).await;
    let back = app.post(&url, &token, json!({"api_key": SK})).await;
    assert_eq!(back.status, 200, "{}", back.text);
    assert!(back.body["previous_key_hint"].is_null());
}

#[tokio::test]
async fn calls_in_flight_use_the_old_or_the_new_key_never_neither() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    account_for(&app, SK, account("acct_1Acme")).await;
    account_for(&app, SK2, account("acct_1Acme")).await;
    let id = create(&app, &token, json!({"provider": "stripe", "api_key": SK}))
        .await
        .id();
    let validate = format!("/api/v1/connections/{id}/validate");
    let rotate = format!("/api/v1/connections/{id}/rotate");
    let mut calls = Vec::new();
    for _ in 0..12 {
        calls.push(app.post(&validate, &token, json!({})));
    }
    let (rotated, validations) = tokio::join!(
        app.post(&rotate, &token, json!({"api_key": SK2})),
        futures::future::join_all(calls)
    );
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    for v in validations {
        assert_eq!(v.status, 200, "{}", v.text);
        assert_eq!(v.body["status"], "active");
    }
    for r in app.stripe.received_requests().await.unwrap() {
        let auth = r.headers["authorization"].to_str().unwrap();
        assert!(auth == bearer(SK) || auth == bearer(SK2), "{auth}");
    }
}

#[tokio::test]
async fn patch_and_delete() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["connections:write"]).await;
    let a = create(&app, &token, json!({"provider": "stripe", "api_key": SK, "validate": false, "external_id": "a", "metadata": {"x": "1", "y": "2"}})).await.id();
    create(
        &app,
        &token,
        json!({"provider": "stripe", "api_key": SK, "validate": false, "external_id": "b"}),
    )
    .await;
    let url = format!("/api/v1/connections/{a}");
    let patched = app
        .patch(&url, &token, json!({"name": "Renamed", "metadata": {"x": null, "z": "3"}, "stripe_version": "2024-06-20"}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["name"], "Renamed");
    assert_eq!(patched.body["metadata"], json!({"y": "2", "z": "3"}));
    assert_eq!(patched.body["stripe_version"], "2024-06-20");
    assert_eq!(patched.body["external_id"], "a", "absent fields stay");
    let cleared = app
        .patch(&url, &token, json!({"name": null, "stripe_version": null}))
        .await;
    assert!(cleared.body["name"].is_null() && cleared.body["stripe_version"].is_null());
    let clash = app.patch(&url, &token, json!({"external_id": "b"})).await;
    assert_eq!(clash.status, 409);
    assert_eq!(assert_envelope(&clash), "external_id_taken");
    let bad = app
        .patch(&url, &token, json!({"stripe_version": "v2"}))
        .await;
    assert_eq!(bad.status, 422);
    let unknown = app.patch(&url, &token, json!({"api_key": SK2})).await;
    assert_eq!(unknown.status, 400, "the key changes only through rotation");

    let deleted = app.delete(&url, &token).await;
    assert_eq!(
        deleted.body,
        json!({"id": a, "object": "connection", "deleted": true})
    );
    assert_eq!(app.get(&url, &token).await.status, 404);
    assert_eq!(app.delete(&url, &token).await.status, 404);
}

#[tokio::test]
async fn list_filters_and_pages() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["connections:write"]).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let live = i % 3 == 0;
        let key = if live {
            "sk_live_51HabcDEF0123456789xyzXYZ4242"
        } else {
            SK
        };
        ids.push(create(&app, &token, json!({"provider": "stripe", "api_key": key, "validate": false, "external_id": format!("e{i}")})).await.id());
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut url = "/api/v1/connections?limit=3".to_owned();
    loop {
        let page = app.get(&url, &token).await;
        let data = page.body["data"].as_array().unwrap();
        seen.extend(data.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        if page.body["has_more"] != true {
            break;
        }
        url = format!(
            "/api/v1/connections?limit=3&starting_after={}",
            seen.last().unwrap()
        );
    }
    assert_eq!(seen, ids);
    let back = app
        .get(
            &format!("/api/v1/connections?limit=3&ending_before={}", ids[4]),
            &token,
        )
        .await;
    let back: Vec<&str> = back.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        back,
        ids[1..4].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let live = app
        .get("/api/v1/connections?livemode=true&limit=100", &token)
        .await;
    assert_eq!(live.body["data"].as_array().unwrap().len(), 3);
    let pending = app
        .get("/api/v1/connections?status=pending&external_id=e2", &token)
        .await;
    assert_eq!(pending.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_background_validator_proves_pending_connections() {
    let app = TestApp::with(|c| c.revalidate_every = Duration::from_secs(1)).await;
    let (_, token) = app.tenant(&["connections:write"]).await;
    account_for(&app, SK, account("acct_1Acme")).await;
    let id = create(
        &app,
        &token,
        json!({"provider": "stripe", "api_key": SK, "validate": false}),
    )
    .await
    .id();
    let background = patchbay_api::services::background::spawn(app.state.clone());
    // Wait for the event (the status turning active), however slow the machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let c = loop {
        let c = app.get(&format!("/api/v1/connections/{id}"), &token).await;
        if c.body["status"] != "pending" || std::time::Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    background.stop().await;
    assert_eq!(c.body["status"], "active", "{}", c.text);
    assert_eq!(c.body["stripe_account_id"], "acct_1Acme");
}
