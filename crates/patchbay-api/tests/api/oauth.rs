//! Stripe Connect OAuth through the real router, wiremock as Stripe's API and
//! Connect endpoints: the platform, auth-url, the callback (happy path and
//! every refusal), calls as the connected account, refresh under
//! concurrency, revocation, and deauthorization on delete with its retry.

use std::time::Duration;

use axum::http::Method;
use patchbay_core::job::ClaimRequest;
use patchbay_core::time::{add_seconds, now};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::connections::{SK, account, account_for};
use crate::support::{TestApp, assert_envelope};

const CLIENT_ID: &str = "ca_FkyHCg7X8mlvCUdMDao4mMxagUfhIwXb";
const CALLBACK: &str = "https://pb.example/api/v1/oauth/stripe/callback";
pub(crate) const CONNECTED: &str = "acct_1Connected";
const ACCESS: &str = "sk_test_51AccessTokenOfTheConnectedAcct0001";
const REFRESH: &str = "rt_TheRefreshToken0001";

/// A tenant with its test-mode platform configured; returns its key.
pub(crate) async fn platform(app: &TestApp) -> String {
    let (_, token) = app.tenant(&["admin"]).await;
    account_for(app, SK, account("acct_1Platform")).await;
    let put = app
        .put(
            "/api/v1/integrations/stripe",
            &token,
            json!({"client_id": CLIENT_ID, "secret_key": SK, "redirect_uris": [CALLBACK]}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    token
}

fn token_response(access: &str, refresh: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": access, "refresh_token": refresh, "token_type": "bearer",
        "stripe_user_id": CONNECTED, "stripe_publishable_key": "pk_test_x",
        "livemode": false, "scope": "read_write"
    }))
}

/// Stripe's token endpoint answering `template` for the authorization code.
async fn token_endpoint(app: &TestApp, code: &str, template: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains(format!("code={code}")))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(body_string_contains(format!("client_id={CLIENT_ID}")))
        .and(body_string_contains(format!("client_secret={SK}")))
        .respond_with(template)
        .mount(&app.stripe)
        .await;
}

/// `/v1/account` as the connected account: the platform key plus Stripe-Account.
async fn connected_account(app: &TestApp, template: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .and(header("authorization", format!("Bearer {SK}").as_str()))
        .and(header("stripe-account", CONNECTED))
        .respond_with(template)
        .mount(&app.stripe)
        .await;
}

/// The state inside an authorize URL.
fn state_of(url: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned()
}

async fn auth_url(app: &TestApp, token: &str, query: &str) -> Value {
    let reply = app
        .get(
            &format!("/api/v1/connections/stripe/auth-url{query}"),
            token,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

async fn callback(app: &TestApp, query: &str) -> crate::support::Reply {
    app.call(
        Method::GET,
        &format!("/api/v1/oauth/stripe/callback?{query}"),
        None,
        None,
    )
    .await
}

async fn connection_count(app: &TestApp, token: &str) -> usize {
    app.get("/api/v1/connections?limit=100", token).await.body["data"]
        .as_array()
        .unwrap()
        .len()
}

/// Connects the account through the whole flow; returns the connection id.
pub(crate) async fn connect(app: &TestApp, token: &str, external_id: &str) -> String {
    let url = auth_url(app, token, &format!("?external_id={external_id}")).await;
    let state = state_of(url["url"].as_str().unwrap());
    token_endpoint(app, "ac_good", token_response(ACCESS, REFRESH)).await;
    connected_account(app, account(CONNECTED)).await;
    let reply = callback(app, &format!("code=ac_good&scope=read_write&state={state}")).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.id()
}

#[tokio::test]
async fn the_whole_flow_creates_a_connection_that_calls_as_the_connected_account() {
    let app = TestApp::new().await;
    whole_flow(&app).await;
    // Tokens are sealed in the database, never stored in clear.
    let db = std::fs::read(app.dir.path().join("patchbay.db")).unwrap();
    let text = String::from_utf8_lossy(&db);
    assert!(!text.contains(ACCESS) && !text.contains(REFRESH) && !text.contains(SK));
}

#[tokio::test]
async fn the_whole_flow_and_concurrent_refreshes_on_postgres() {
    let Some(app) = TestApp::on_postgres(|_| {}).await else {
        return;
    };
    whole_flow(&app).await;
    refreshes(&app).await;
}

async fn whole_flow(app: &TestApp) {
    let token = platform(app).await;

    let got = app.get("/api/v1/integrations/stripe", &token).await;
    assert_eq!(got.body["test"]["client_id"], CLIENT_ID);
    assert_eq!(got.body["test"]["platform_account_id"], "acct_1Platform");
    assert!(got.body["live"].is_null());
    assert!(!got.text.contains(SK), "the platform key is never shown");

    let url = auth_url(
        app,
        &token,
        "?external_id=user-42&stripe_user[email]=a%40b.test",
    )
    .await;
    let link = url::Url::parse(url["url"].as_str().unwrap()).unwrap();
    assert_eq!(link.path(), "/oauth/authorize");
    let q: std::collections::HashMap<_, _> = link.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["scope"], "read_write");
    assert_eq!(q["redirect_uri"], CALLBACK);
    assert_eq!(q["stripe_user[email]"], "a@b.test");
    assert_eq!(q["state"], url["state"].as_str().unwrap());
    assert!(q["state"].len() >= 43, "at least 256 bits, base64url");

    // Stripe sends the browser back with a code; Patchbay exchanges it.
    token_endpoint(app, "ac_good", token_response(ACCESS, REFRESH)).await;
    connected_account(app, account(CONNECTED)).await;
    let reply = callback(
        app,
        &format!("code=ac_good&scope=read_write&state={}", q["state"]),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["auth_method"], "oauth");
    assert_eq!(reply.body["stripe_account_id"], CONNECTED);
    assert_eq!(reply.body["status"], "active");
    assert_eq!(reply.body["scope"], "read_write");
    assert_eq!(reply.body["livemode"], false);
    assert_eq!(reply.body["external_id"], "user-42");
    assert!(!reply.text.contains(ACCESS) && !reply.text.contains(REFRESH));
    let id = reply.id();

    // A call through the connection: the platform key with Stripe-Account
    // (the wiremock above matches only that pair).
    let validated = app
        .post(
            &format!("/api/v1/connections/{id}/validate"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(validated.status, 200, "{}", validated.text);
    assert_eq!(validated.body["status"], "active");

    // The state was single use.
    let replay = callback(app, &format!("code=ac_good&state={}", q["state"])).await;
    assert_eq!(replay.status, 400);
    assert_eq!(assert_envelope(&replay), "oauth_state_invalid");
    assert_eq!(connection_count(app, &token).await, 1);
}

#[tokio::test]
async fn a_return_to_gets_the_browser_back_with_the_outcome() {
    let app = TestApp::new().await;
    let token = platform(&app).await;
    let url = auth_url(
        &app,
        &token,
        "?external_id=u1&return_to=https%3A%2F%2Fapp.example.com%2Fdone%3Ftab%3D2",
    )
    .await;
    token_endpoint(&app, "ac_good", token_response(ACCESS, REFRESH)).await;
    connected_account(&app, account(CONNECTED)).await;
    let state = state_of(url["url"].as_str().unwrap());
    let reply = callback(&app, &format!("code=ac_good&state={state}")).await;
    assert_eq!(reply.status, 303, "{}", reply.text);
    let location = url::Url::parse(reply.headers["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.host_str(), Some("app.example.com"));
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["tab"], "2");
    assert!(q["connection_id"].starts_with("conn_"));
    assert_eq!(q["status"], "active");

    // The end user declines: back with the error, nothing created.
    let url = auth_url(
        &app,
        &token,
        "?external_id=u2&return_to=https%3A%2F%2Fapp.example.com%2Fdone",
    )
    .await;
    let state = state_of(url["url"].as_str().unwrap());
    let reply = callback(
        &app,
        &format!("error=access_denied&error_description=The+user+denied&state={state}"),
    )
    .await;
    assert_eq!(reply.status, 303);
    let location = reply.headers["location"].to_str().unwrap().to_owned();
    assert!(location.contains("error=access_denied"), "{location}");
    assert_eq!(connection_count(&app, &token).await, 1);
}

#[tokio::test]
async fn refused_codes_and_bad_states_create_nothing() {
    let app = TestApp::with(|c| c.oauth_state_ttl = Duration::from_millis(200)).await;
    let token = platform(&app).await;
    token_endpoint(
        &app,
        "ac_Jv4s8GQ0aF9XAbCdEfGhIjKlMnOpQr",
        ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant", "error_description": "Authorization code does not exist: ac_Jv4s8GQ0aF9XAbCdEfGhIjKlMnOpQr"
        })),
    )
    .await;
    let url = auth_url(&app, &token, "?external_id=u1").await;
    let reply = callback(
        &app,
        &format!(
            "code=ac_Jv4s8GQ0aF9XAbCdEfGhIjKlMnOpQr&state={}",
            state_of(url["url"].as_str().unwrap())
        ),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(assert_envelope(&reply), "invalid_grant");
    assert!(
        !reply.text.contains("ac_Jv4s8GQ0aF9XAbCdEfGhIjKlMnOpQr"),
        "codes are masked: {}",
        reply.text
    );

    let url = auth_url(&app, &token, "?external_id=u1").await;
    let reply = callback(
        &app,
        &format!(
            "error=access_denied&state={}",
            state_of(url["url"].as_str().unwrap())
        ),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(assert_envelope(&reply), "access_denied");

    // Forged, missing and expired states.
    for query in ["code=ac_x&state=forged", "code=ac_x", "code=ac_x&state="] {
        let reply = callback(&app, query).await;
        assert_eq!(reply.status, 400, "{query}");
        assert_eq!(assert_envelope(&reply), "oauth_state_invalid", "{query}");
    }
    let url = auth_url(&app, &token, "").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = callback(
        &app,
        &format!("code=ac_x&state={}", state_of(url["url"].as_str().unwrap())),
    )
    .await;
    assert_eq!(assert_envelope(&reply), "oauth_state_invalid");

    // Another tenant's state only ever acts for the tenant it was issued to.
    let other = platform(&app).await;
    let url = auth_url(&app, &other, "?external_id=u9").await;
    token_endpoint(&app, "ac_good", token_response(ACCESS, REFRESH)).await;
    connected_account(&app, account(CONNECTED)).await;
    let reply = callback(
        &app,
        &format!(
            "code=ac_good&state={}",
            state_of(url["url"].as_str().unwrap())
        ),
    )
    .await;
    assert_eq!(reply.status, 201);
    assert_eq!(connection_count(&app, &token).await, 0);
    assert_eq!(connection_count(&app, &other).await, 1);
}

#[tokio::test]
async fn auth_url_checks_its_parameters() {
    let app = TestApp::new().await;
    let (_, bare) = app.tenant(&["admin"]).await;
    let none = app.get("/api/v1/connections/stripe/auth-url", &bare).await;
    assert_eq!(none.status, 409);
    assert_eq!(assert_envelope(&none), "integration_missing");

    let token = platform(&app).await;
    for (query, param) in [
        (
            "?redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
            "redirect_uri",
        ),
        ("?scope=everything", "scope"),
        ("?stripe_landing=elsewhere", "stripe_landing"),
        ("?stripe_user[password]=x", "stripe_user[password]"),
        ("?return_to=javascript%3Aalert(1)", "return_to"),
        ("?mode=sandbox", "mode"),
        ("?mode=live", ""),
    ] {
        let reply = app
            .get(
                &format!("/api/v1/connections/stripe/auth-url{query}"),
                &token,
            )
            .await;
        assert!(reply.status.is_client_error(), "{query}: {}", reply.text);
        assert_envelope(&reply);
        if !param.is_empty() {
            assert_eq!(reply.status, 422, "{query}");
            assert_eq!(reply.body["error"]["param"], param, "{query}");
        }
    }
    let unknown = app
        .get("/api/v1/connections/stripe/auth-url?redirect=x", &token)
        .await;
    assert_eq!(unknown.status, 400);

    // A read-only key may not start flows.
    let tenant_key = app.get("/api/v1/api-keys", &token).await.body["data"][0]["tenant_id"]
        .as_str()
        .map(str::to_owned);
    if let Some(tenant) = tenant_key {
        let reader = app.key(&tenant, &["connections:read"]).await;
        let reply = app
            .get("/api/v1/connections/stripe/auth-url", &reader)
            .await;
        assert_eq!(reply.status, 403);
    }
}

#[tokio::test]
async fn the_platform_is_checked_and_protected_while_in_use() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    account_for(&app, SK, account("acct_1Platform")).await;
    for (body, param) in [
        (
            json!({"client_id": "ac_123", "secret_key": SK, "redirect_uris": [CALLBACK]}),
            "client_id",
        ),
        (
            json!({"client_id": CLIENT_ID, "secret_key": "rk_test_51HabcDEF0123456789xyzXYZ9999", "redirect_uris": [CALLBACK]}),
            "secret_key",
        ),
        (
            json!({"client_id": CLIENT_ID, "secret_key": "pk_test_51HabcDEF0123456789xyzXYZ9999", "redirect_uris": [CALLBACK]}),
            "secret_key",
        ),
        (
            json!({"client_id": CLIENT_ID, "secret_key": SK, "redirect_uris": []}),
            "redirect_uris",
        ),
        (
            json!({"client_id": CLIENT_ID, "secret_key": SK, "redirect_uris": ["http://evil.example/cb"]}),
            "redirect_uris[0]",
        ),
        (
            json!({"client_id": CLIENT_ID, "secret_key": SK, "redirect_uris": [CALLBACK], "scope": "all"}),
            "scope",
        ),
    ] {
        let reply = app
            .put("/api/v1/integrations/stripe", &token, body.clone())
            .await;
        assert_eq!(reply.status, 422, "{body}: {}", reply.text);
        assert_eq!(reply.body["error"]["param"], param, "{body}");
        assert!(!reply.text.contains(SK));
    }

    let token = platform(&app).await;
    let id = connect(&app, &token, "user-1").await;
    // In use: a delete is refused, as is a new client id.
    let refused = app.delete("/api/v1/integrations/stripe", &token).await;
    assert_eq!(refused.status, 409);
    assert_eq!(assert_envelope(&refused), "integration_in_use");
    let moved = app
        .put(
            "/api/v1/integrations/stripe",
            &token,
            json!({"client_id": "ca_AnotherClientIdOfPlatform00", "secret_key": SK, "redirect_uris": [CALLBACK]}),
        )
        .await;
    assert_eq!(moved.status, 409, "{}", moved.text);
    // force removes the platform and its connections.
    let forced = app
        .delete("/api/v1/integrations/stripe?force=true", &token)
        .await;
    assert_eq!(forced.status, 204, "{}", forced.text);
    let gone = app.get(&format!("/api/v1/connections/{id}"), &token).await;
    assert_eq!(gone.status, 404);
    let missing = app.delete("/api/v1/integrations/stripe", &token).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn a_deauthorized_account_becomes_revoked_with_the_reason() {
    let app = TestApp::new().await;
    let token = platform(&app).await;
    let id = connect(&app, &token, "user-1").await;
    app.stripe.reset().await;
    connected_account(
        &app,
        ResponseTemplate::new(403).set_body_json(json!({"error": {
            "type": "invalid_request_error", "code": "account_invalid",
            "message": "The provided key 'sk_test_***4242' does not have access to account 'acct_1Connected' (or that account does not exist). Application access may have been revoked."
        }})),
    )
    .await;
    let reply = app
        .post(
            &format!("/api/v1/connections/{id}/validate"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["status"], "revoked");
    assert_eq!(reply.body["last_error"]["code"], "stripe_access_revoked");
    let still = app.get(&format!("/api/v1/connections/{id}"), &token).await;
    assert_eq!(still.body["status"], "revoked");
}

#[tokio::test]
async fn concurrent_refreshes_exchange_the_token_once_and_both_succeed() {
    refreshes(&TestApp::new().await).await;
}

async fn refreshes(app: &TestApp) {
    app.stripe.reset().await;
    let token = platform(app).await;
    let id = connect(app, &token, "user-1").await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains(format!("refresh_token={REFRESH}")))
        .respond_with(
            token_response(
                "sk_test_51NewAccessTokenOfConnected0002",
                "rt_NewRefresh0002",
            )
            .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&app.stripe)
        .await;
    let path = format!("/api/v1/connections/{id}/refresh");
    let (a, b) = tokio::join!(
        app.post(&path, &token, json!({})),
        app.post(&path, &token, json!({}))
    );
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(b.status, 200, "{}", b.text);
    assert!(a.body["refreshed_at"].is_string());
    assert_eq!(a.body["refreshed_at"], b.body["refreshed_at"]);
    assert_eq!(a.body["key_hint"], "sk_test_…0002");
    // The stored refresh token is the new one: a next refresh sends it.
    Mock::given(method("POST"))
        .and(path_is("/oauth/token"))
        .and(body_string_contains("refresh_token=rt_NewRefresh0002"))
        .respond_with(token_response(
            "sk_test_51ThirdAccessTokenOfConnect0003",
            "rt_Third0003",
        ))
        .expect(1)
        .mount(&app.stripe)
        .await;
    let c = app.post(&path, &token, json!({})).await;
    assert_eq!(c.status, 200, "{}", c.text);
    app.stripe.verify().await;

    // An API-key connection has nothing to refresh.
    account_for(
        app,
        "sk_test_51HzyxWVU9876543210abcABC7777",
        account("acct_1Other"),
    )
    .await;
    let key_conn = app
        .post(
            "/api/v1/connections",
            &token,
            json!({"provider": "stripe", "api_key": "sk_test_51HzyxWVU9876543210abcABC7777"}),
        )
        .await
        .id();
    let reply = app
        .post(
            &format!("/api/v1/connections/{key_conn}/refresh"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(assert_envelope(&reply), "refresh_not_supported");
}

fn path_is(p: &str) -> wiremock::matchers::PathExactMatcher {
    path(p)
}

/// Runs every job due within the next hour, as the worker would.
async fn run_due_jobs(app: &TestApp) -> usize {
    let at = add_seconds(now(), 3600);
    let claimed = app
        .state
        .store
        .system_claim_jobs(&ClaimRequest {
            owner: "test".into(),
            now: at,
            lease_until: add_seconds(at, 60),
            limit: 100,
            kinds: patchbay_core::job::KindFilter::Except(
                patchbay_core::job::kinds::WEBHOOK_DELIVER,
            ),
        })
        .await
        .unwrap();
    let mut ran = 0;
    for claimed in claimed {
        if claimed.job.kind != patchbay_core::job::kinds::CONNECT_DEAUTHORIZE {
            app.state
                .store
                .release_job(claimed.job.id, claimed.lease_token, now())
                .await
                .unwrap();
            continue;
        }
        let outcome = patchbay_api::services::jobs::dispatch(&app.state, &claimed.job).await;
        app.state
            .store
            .finish_job(claimed.job.id, claimed.lease_token, &outcome, now())
            .await
            .unwrap();
        ran += 1;
    }
    ran
}

#[tokio::test]
async fn delete_deauthorizes_and_retries_until_stripe_confirms() {
    let app = TestApp::new().await;
    let token = platform(&app).await;
    let id = connect(&app, &token, "user-1").await;
    let id2 = connect_second(&app, &token).await;

    // Stripe answers: deauthorized, then deleted.
    Mock::given(method("POST"))
        .and(path("/oauth/deauthorize"))
        .and(header("authorization", format!("Bearer {SK}").as_str()))
        .and(body_string_contains(format!("client_id={CLIENT_ID}")))
        .and(body_string_contains(format!("stripe_user_id={CONNECTED}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"stripe_user_id": CONNECTED})),
        )
        .up_to_n_times(1)
        .mount(&app.stripe)
        .await;
    let deleted = app
        .delete(&format!("/api/v1/connections/{id}"), &token)
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(
        app.get(&format!("/api/v1/connections/{id}"), &token)
            .await
            .status,
        404
    );

    // Stripe down: the connection becomes revoking and a job retries.
    // (The second connection reaches another account: deauthorizing is needed.)
    Mock::given(method("POST"))
        .and(path("/oauth/deauthorize"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&app.stripe)
        .await;
    let pending = app
        .delete(&format!("/api/v1/connections/{id2}"), &token)
        .await;
    assert_eq!(pending.status, 202, "{}", pending.text);
    assert_eq!(pending.body["status"], "revoking");
    assert_eq!(
        pending.body["last_error"]["code"],
        "deauthorization_pending"
    );
    // Still down at the job's first run: retried, still there.
    Mock::given(method("POST"))
        .and(path("/oauth/deauthorize"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&app.stripe)
        .await;
    assert_eq!(run_due_jobs(&app).await, 1);
    assert_eq!(
        app.get(&format!("/api/v1/connections/{id2}"), &token)
            .await
            .body["status"],
        "revoking"
    );
    // Back up: the next run deauthorizes and deletes.
    Mock::given(method("POST"))
        .and(path("/oauth/deauthorize"))
        .and(body_string_contains("stripe_user_id=acct_1SecondAccount"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"stripe_user_id": CONNECTED})),
        )
        .mount(&app.stripe)
        .await;
    let mut ran = 0;
    for _ in 0..5 {
        ran += run_due_jobs(&app).await;
        if app
            .get(&format!("/api/v1/connections/{id2}"), &token)
            .await
            .status
            == 404
        {
            break;
        }
    }
    assert!(ran >= 1);
    assert_eq!(
        app.get(&format!("/api/v1/connections/{id2}"), &token)
            .await
            .status,
        404
    );
}

/// A second connection, to another account, under another external id.
async fn connect_second(app: &TestApp, token: &str) -> String {
    let url = auth_url(app, token, "?external_id=user-2").await;
    token_endpoint(
        app,
        "ac_second",
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": ACCESS, "refresh_token": REFRESH, "token_type": "bearer",
            "stripe_user_id": "acct_1SecondAccount", "livemode": false, "scope": "read_write"
        })),
    )
    .await;
    let state = state_of(url["url"].as_str().unwrap());
    let reply = callback(app, &format!("code=ac_second&state={state}")).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.id()
}

#[tokio::test]
async fn the_same_end_user_connecting_again_relinks_the_connection() {
    let app = TestApp::new().await;
    let token = platform(&app).await;
    let id = connect(&app, &token, "user-1").await;
    let url = auth_url(&app, &token, "?external_id=user-1").await;
    token_endpoint(
        &app,
        "ac_again",
        token_response("sk_test_51RelinkedAccessTokenConnect0009", "rt_Relinked"),
    )
    .await;
    let reply = callback(
        &app,
        &format!(
            "code=ac_again&state={}",
            state_of(url["url"].as_str().unwrap())
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.id(), id);
    assert_eq!(reply.body["key_hint"], "sk_test_…0009");
    assert_eq!(connection_count(&app, &token).await, 1);
}

#[tokio::test]
async fn a_connection_sharing_its_account_is_deleted_without_deauthorizing_the_other() {
    let app = TestApp::new().await;
    let token = platform(&app).await;
    let first = connect(&app, &token, "user-1").await;
    // A second end user connects the same Stripe account.
    let url = auth_url(&app, &token, "?external_id=user-2").await;
    token_endpoint(&app, "ac_shared", token_response(ACCESS, REFRESH)).await;
    let second = callback(
        &app,
        &format!(
            "code=ac_shared&state={}",
            state_of(url["url"].as_str().unwrap())
        ),
    )
    .await;
    assert_eq!(second.status, 201, "{}", second.text);
    Mock::given(method("POST"))
        .and(path("/oauth/deauthorize"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"stripe_user_id": CONNECTED})),
        )
        .expect(1)
        .mount(&app.stripe)
        .await;
    // The first goes alone: the account stays connected for the second.
    let deleted = app
        .delete(&format!("/api/v1/connections/{first}"), &token)
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    // The last one deauthorizes (the one expected call).
    let deleted = app
        .delete(&format!("/api/v1/connections/{}", second.id()), &token)
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    app.stripe.verify().await;
}

#[tokio::test]
async fn a_deauthorization_stripe_refuses_is_answered_not_retried_forever() {
    let app = TestApp::new().await;
    let token = platform(&app).await;
    let id = connect(&app, &token, "user-1").await;
    Mock::given(method("POST"))
        .and(path("/oauth/deauthorize"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client", "error_description": "No such application: 'ca_FkyHCg7X8mlvCUdMDao4mMxagUfhIwXb'"
        })))
        .mount(&app.stripe)
        .await;
    let reply = app
        .delete(&format!("/api/v1/connections/{id}"), &token)
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(assert_envelope(&reply), "oauth_refused");
    let still = app.get(&format!("/api/v1/connections/{id}"), &token).await;
    assert_eq!(still.status, 200);
    assert_eq!(
        still.body["status"], "active",
        "nothing changed: fix the platform and delete again"
    );
}
