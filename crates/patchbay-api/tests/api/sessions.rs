//! Connect sessions and CORS: a tenant's backend mints a short-lived token for
//! one end user; the browser may use it only on the two browser routes
//! (auth-url and POST /connections), only for that end user, only once, and
//! only from the tenant's allowed origins.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::connections::{SK, SK2, account, account_for};
use crate::support::{ADMIN, Reply, TestApp, assert_envelope};

const CLIENT_ID: &str = "ca_SessionTestPlatform0001";
const REDIRECT: &str = "https://pb.example/api/v1/oauth/stripe/callback";
const APP_ORIGIN: &str = "https://app.example.com";
const EVIL_ORIGIN: &str = "https://evil.example";
const AUTH_URL: &str = "/api/v1/connections/stripe/auth-url";
const CONNECTIONS: &str = "/api/v1/connections";

async fn mint(app: &TestApp, token: &str, body: Value) -> Reply {
    app.post("/api/v1/connect-sessions", token, body).await
}

/// A session for `external_id` allowing `allowed`; returns its token.
async fn session(app: &TestApp, token: &str, external_id: &str, allowed: &[&str]) -> String {
    let reply = mint(
        app,
        token,
        json!({"external_id": external_id, "allowed": allowed}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.body["token"].as_str().unwrap().to_owned()
}

/// Configures the tenant's test-mode Connect platform (key SK).
async fn platform(app: &TestApp, token: &str) {
    account_for(app, SK, account("acct_1Platform0001")).await;
    let reply = app
        .put(
            "/api/v1/integrations/stripe",
            token,
            json!({"client_id": CLIENT_ID, "secret_key": SK, "redirect_uris": [REDIRECT]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// A session's bearer call with no extra headers.
async fn as_session(
    app: &TestApp,
    m: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    app.bearer(m, path, token, &[], body).await
}

fn assert_code(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(assert_envelope(reply), code, "{}", reply.text);
}

fn assert_param(reply: &Reply, status: u16, param: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_envelope(reply);
    assert_eq!(reply.body["error"]["param"], param, "{}", reply.text);
}

fn header_of<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|v| v.to_str().unwrap())
}

fn acao(reply: &Reply) -> Option<&str> {
    header_of(reply, "access-control-allow-origin")
}

async fn connection_count(app: &TestApp, token: &str) -> usize {
    let reply = app.get("/api/v1/connections?limit=100", token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_session_is_minted_for_one_end_user_and_shown_once() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let before = Utc::now();
    let reply = mint(
        &app,
        &token,
        json!({"external_id": "user-42", "allowed": ["oauth", "api_key"], "return_to": "https://app.example.com/done"}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let s = &reply.body;
    assert_eq!(s["object"], "connect_session");
    assert!(
        s["id"].as_str().unwrap().starts_with("cs_"),
        "{}",
        reply.text
    );
    assert_eq!(s["external_id"], "user-42");
    let mut allowed: Vec<&str> = s["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    allowed.sort_unstable();
    assert_eq!(allowed, ["api_key", "oauth"]);
    assert_eq!(s["return_to"], "https://app.example.com/done");
    let jwt = s["token"].as_str().unwrap();
    assert!(
        jwt.starts_with("eyJ") && jwt.split('.').count() == 3,
        "{jwt}"
    );
    let expires: DateTime<Utc> = s["expires_at"].as_str().unwrap().parse().unwrap();
    let lifetime = (expires - before).num_seconds();
    assert!(
        (1795..=1805).contains(&lifetime),
        "default lifetime {lifetime}s, not 30 minutes"
    );
    let cache = header_of(&reply, "cache-control").expect("a Cache-Control header");
    assert!(cache.contains("no-store"), "{cache}");

    let short = mint(
        &app,
        &token,
        json!({"external_id": "user-42", "allowed": ["api_key"], "expires_in_seconds": 120}),
    )
    .await;
    assert_eq!(short.status, 201, "{}", short.text);
    let expires: DateTime<Utc> = short.body["expires_at"].as_str().unwrap().parse().unwrap();
    let lifetime = (expires - before).num_seconds();
    assert!(
        (115..=125).contains(&lifetime),
        "asked 120s, got {lifetime}s"
    );
    assert_ne!(short.body["token"], reply.body["token"]);
}

#[tokio::test]
async fn a_bad_session_request_names_the_field() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let cases = [
        (json!({"external_id": "u", "allowed": []}), 422, "allowed"),
        (
            json!({"external_id": "u", "allowed": ["password"]}),
            400,
            "allowed[0]",
        ),
        (
            json!({"external_id": "", "allowed": ["oauth"]}),
            422,
            "external_id",
        ),
        (
            json!({"external_id": "u", "allowed": ["oauth"], "return_to": "http://app.example.com/done"}),
            422,
            "return_to",
        ),
        (
            json!({"external_id": "u", "allowed": ["oauth"], "return_to": "/relative/done"}),
            422,
            "return_to",
        ),
        (
            json!({"external_id": "u", "allowed": ["oauth"], "expires_in_seconds": 59}),
            422,
            "expires_in_seconds",
        ),
        (
            json!({"external_id": "u", "allowed": ["oauth"], "expires_in_seconds": 86_401}),
            422,
            "expires_in_seconds",
        ),
    ];
    for (body, status, param) in cases {
        let reply = mint(&app, &token, body.clone()).await;
        assert_param(&reply, status, param);
        assert!(reply.body.get("token").is_none(), "{body}: {}", reply.text);
    }
    // The bounds themselves are accepted.
    for seconds in [60, 86_400] {
        let reply = mint(
            &app,
            &token,
            json!({"external_id": "u", "allowed": ["oauth"], "expires_in_seconds": seconds}),
        )
        .await;
        assert_eq!(reply.status, 201, "{seconds}: {}", reply.text);
    }
    // Minting needs connections:write.
    let (_, reader) = app.tenant(&["connections:read"]).await;
    let reply = mint(
        &app,
        &reader,
        json!({"external_id": "u", "allowed": ["oauth"]}),
    )
    .await;
    assert_code(&reply, 403, "insufficient_scope");
    // The admin token belongs to no tenant.
    let reply = mint(
        &app,
        ADMIN,
        json!({"external_id": "u", "allowed": ["oauth"]}),
    )
    .await;
    assert_code(&reply, 403, "tenant_key_required");
}

#[tokio::test]
async fn a_session_cannot_mint_sessions_or_call_any_other_route() {
    let app = TestApp::new().await;
    let (tenant, token) = app.tenant(&["admin"]).await;
    account_for(&app, SK2, account("acct_1Acme")).await;
    let conn = app
        .post(
            CONNECTIONS,
            &token,
            json!({"provider": "stripe", "api_key": SK2}),
        )
        .await;
    assert_eq!(conn.status, 201, "{}", conn.text);
    let conn = conn.id();
    let jwt = session(&app, &token, "user-42", &["oauth", "api_key"]).await;
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/api/v1/connect-sessions".into(),
            Some(json!({"external_id": "user-42", "allowed": ["oauth"]})),
        ),
        (Method::GET, CONNECTIONS.into(), None),
        (Method::GET, format!("{CONNECTIONS}/{conn}"), None),
        (Method::DELETE, format!("{CONNECTIONS}/{conn}"), None),
        (Method::POST, format!("{CONNECTIONS}/{conn}/validate"), None),
        (Method::GET, "/api/v1/settings".into(), None),
        (
            Method::PUT,
            "/api/v1/settings".into(),
            Some(json!({"allowed_origins": [EVIL_ORIGIN]})),
        ),
        (Method::GET, "/api/v1/integrations/stripe".into(), None),
        (Method::GET, "/api/v1/api-keys".into(), None),
        (Method::GET, "/api/v1/audit-events".into(), None),
        (Method::GET, format!("/api/v1/tenants/{tenant}"), None),
    ];
    for (m, p, body) in calls {
        let reply = as_session(&app, m.clone(), &p, &jwt, body.clone()).await;
        assert_code(&reply, 403, "session_forbidden");
        // In the x-api-key header it is no better.
        let reply = app.call(m.clone(), &p, Some(&jwt), body).await;
        assert_eq!(reply.status, 403, "{m} {p} (x-api-key): {}", reply.text);
        assert_eq!(assert_envelope(&reply), "session_forbidden", "{m} {p}");
    }
    // Nothing was changed by those calls.
    assert_eq!(connection_count(&app, &token).await, 1);
    let settings = app.get("/api/v1/settings", &token).await;
    assert_eq!(
        settings.body["allowed_origins"],
        json!([]),
        "{}",
        settings.text
    );
}

#[tokio::test]
async fn a_session_starts_oauth_for_its_end_user_and_its_state_completes_the_flow() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    platform(&app, &token).await;
    let minted = mint(
        &app,
        &token,
        json!({"external_id": "user-42", "allowed": ["oauth"], "return_to": "https://app.example.com/done"}),
    )
    .await;
    assert_eq!(minted.status, 201, "{}", minted.text);
    let jwt = minted.body["token"].as_str().unwrap().to_owned();

    // Another end user, or another return URL, is refused.
    let reply = as_session(
        &app,
        Method::GET,
        &format!("{AUTH_URL}?external_id=user-43"),
        &jwt,
        None,
    )
    .await;
    assert_code(&reply, 403, "session_scope_mismatch");
    let reply = as_session(
        &app,
        Method::GET,
        &format!("{AUTH_URL}?return_to=https%3A%2F%2Fevil.example%2Fsteal"),
        &jwt,
        None,
    )
    .await;
    assert_param(&reply, 422, "return_to");
    // Its own external_id is fine.
    let reply = as_session(
        &app,
        Method::GET,
        &format!("{AUTH_URL}?external_id=user-42"),
        &jwt,
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let reply = as_session(&app, Method::GET, AUTH_URL, &jwt, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let state = reply.body["state"].as_str().unwrap().to_owned();
    let url = url::Url::parse(reply.body["url"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), "/oauth/authorize", "{url}");
    let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(
        query.get("client_id").map(String::as_str),
        Some(CLIENT_ID),
        "{url}"
    );
    assert_eq!(query.get("state"), Some(&state), "{url}");
    assert_eq!(
        query.get("redirect_uri").map(String::as_str),
        Some(REDIRECT),
        "{url}"
    );
    assert_eq!(
        query.get("response_type").map(String::as_str),
        Some("code"),
        "{url}"
    );

    // Stripe sends the end user back with a code; the state names the session's end user.
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("code=ac_SessionCode0001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "sk_test_accessTOKEN0123456789", "refresh_token": "rt_refreshTOKEN0123456789",
            "token_type": "bearer", "stripe_publishable_key": "pk_test_x",
            "stripe_user_id": "acct_1Connected0001", "livemode": false, "scope": "read_write"
        })))
        .mount(&app.stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .and(header("stripe-account", "acct_1Connected0001"))
        .respond_with(account("acct_1Connected0001"))
        .with_priority(1)
        .mount(&app.stripe)
        .await;
    let back = app
        .call(
            Method::GET,
            &format!("/api/v1/oauth/stripe/callback?code=ac_SessionCode0001&scope=read_write&state={state}"),
            None,
            None,
        )
        .await;
    assert_eq!(back.status, 303, "{}", back.text);
    let location = url::Url::parse(header_of(&back, "location").unwrap()).unwrap();
    assert_eq!(
        location.origin().ascii_serialization(),
        APP_ORIGIN,
        "{location}"
    );
    assert_eq!(location.path(), "/done", "{location}");
    let pairs: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(
        pairs.get("external_id").map(String::as_str),
        Some("user-42"),
        "{location}"
    );
    let id = pairs.get("connection_id").expect("a connection id").clone();
    let conn = app.get(&format!("{CONNECTIONS}/{id}"), &token).await;
    assert_eq!(conn.status, 200, "{}", conn.text);
    assert_eq!(conn.body["external_id"], "user-42");
    assert_eq!(conn.body["auth_method"], "oauth");
    assert_eq!(conn.body["stripe_account_id"], "acct_1Connected0001");

    // The session created its connection: it is spent.
    let reply = as_session(&app, Method::GET, AUTH_URL, &jwt, None).await;
    assert_code(&reply, 403, "session_used");
}

#[tokio::test]
async fn a_session_submits_a_key_for_its_end_user_once() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    platform(&app, &token).await;
    account_for(&app, SK2, account("acct_1Acme")).await;
    let jwt = session(&app, &token, "user-42", &["oauth", "api_key"]).await;

    let other = json!({"provider": "stripe", "api_key": SK2, "external_id": "user-43"});
    let reply = as_session(&app, Method::POST, CONNECTIONS, &jwt, Some(other)).await;
    assert_code(&reply, 403, "session_scope_mismatch");
    assert_eq!(connection_count(&app, &token).await, 0);

    let reply = as_session(
        &app,
        Method::POST,
        CONNECTIONS,
        &jwt,
        Some(json!({"provider": "stripe", "api_key": SK2, "name": "From the browser"})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["external_id"], "user-42");
    assert_eq!(reply.body["auth_method"], "secret_key");
    assert_eq!(reply.body["stripe_account_id"], "acct_1Acme");
    let id = reply.id();
    let stored = app.get(&format!("{CONNECTIONS}/{id}"), &token).await;
    assert_eq!(stored.body["external_id"], "user-42", "{}", stored.text);

    // Spent: on both routes.
    let again = json!({"provider": "stripe", "api_key": SK2, "external_id": "user-42"});
    let reply = as_session(&app, Method::POST, CONNECTIONS, &jwt, Some(again)).await;
    assert_code(&reply, 403, "session_used");
    let reply = as_session(&app, Method::GET, AUTH_URL, &jwt, None).await;
    assert_code(&reply, 403, "session_used");
    assert_eq!(connection_count(&app, &token).await, 1);

    // A body naming the session's own external_id is accepted.
    let jwt = session(&app, &token, "user-44", &["api_key"]).await;
    let reply = as_session(
        &app,
        Method::POST,
        CONNECTIONS,
        &jwt,
        Some(json!({"provider": "stripe", "api_key": SK2, "external_id": "user-44"})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["external_id"], "user-44");
}

#[tokio::test]
async fn a_session_does_only_what_it_allows() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    platform(&app, &token).await;
    account_for(&app, SK2, account("acct_1Acme")).await;

    let oauth_only = session(&app, &token, "user-42", &["oauth"]).await;
    let body = json!({"provider": "stripe", "api_key": SK2});
    let reply = as_session(
        &app,
        Method::POST,
        CONNECTIONS,
        &oauth_only,
        Some(body.clone()),
    )
    .await;
    assert_code(&reply, 403, "session_forbidden");
    assert_eq!(connection_count(&app, &token).await, 0);
    let reply = as_session(&app, Method::GET, AUTH_URL, &oauth_only, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let key_only = session(&app, &token, "user-42", &["api_key"]).await;
    let reply = as_session(&app, Method::GET, AUTH_URL, &key_only, None).await;
    assert_code(&reply, 403, "session_forbidden");
    let reply = as_session(&app, Method::POST, CONNECTIONS, &key_only, Some(body)).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
}

/// Flips one character of the token's `part` (0 header, 1 payload, 2 signature).
fn flip(token: &str, part: usize, at: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut chars: Vec<char> = parts[part].chars().collect();
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    parts[part] = chars.into_iter().collect();
    parts.join(".")
}

#[tokio::test]
async fn a_tampered_session_is_invalid() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    account_for(&app, SK2, account("acct_1Acme")).await;
    let jwt = session(&app, &token, "user-42", &["oauth", "api_key"]).await;
    let body = json!({"provider": "stripe", "api_key": SK2});

    // A payload re-signed by nobody: the end user changed to another.
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["sub"], "user-42", "{claims}");
    claims["sub"] = json!("user-43");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );

    for bad in [
        flip(&jwt, 2, 10),
        flip(&jwt, 2, 0),
        flip(&jwt, 1, 12),
        forged,
        format!("{}.{}.", parts[0], parts[1]),
    ] {
        let reply = as_session(&app, Method::POST, CONNECTIONS, &bad, Some(body.clone())).await;
        assert_code(&reply, 401, "session_invalid");
        let reply = as_session(&app, Method::GET, AUTH_URL, &bad, None).await;
        assert_code(&reply, 401, "session_invalid");
    }
    assert_eq!(connection_count(&app, &token).await, 0);
    // The untouched token still works.
    let reply = as_session(&app, Method::POST, CONNECTIONS, &jwt, Some(body)).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
}

#[tokio::test]
async fn an_expired_session_is_invalid() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    platform(&app, &token).await;
    let jwt = session(&app, &token, "user-42", &["oauth", "api_key"]).await;
    let long = mint(
        &app,
        &token,
        json!({"external_id": "user-42", "allowed": ["oauth"], "expires_in_seconds": 3600}),
    )
    .await;
    assert_eq!(long.status, 201, "{}", long.text);
    let long = long.body["token"].as_str().unwrap().to_owned();
    // A body for another end user proves the session authenticated without spending it.
    let probe = json!({"provider": "stripe", "api_key": SK2, "external_id": "other"});
    let reply = as_session(&app, Method::POST, CONNECTIONS, &jwt, Some(probe.clone())).await;
    assert_code(&reply, 403, "session_scope_mismatch");

    app.clock.advance(Duration::from_secs(29 * 60));
    let reply = as_session(&app, Method::GET, AUTH_URL, &jwt, None).await;
    assert_eq!(reply.status, 200, "29 minutes in: {}", reply.text);

    app.clock.advance(Duration::from_secs(61));
    let reply = as_session(&app, Method::POST, CONNECTIONS, &jwt, Some(probe)).await;
    assert_code(&reply, 401, "session_invalid");
    let reply = as_session(&app, Method::GET, AUTH_URL, &jwt, None).await;
    assert_code(&reply, 401, "session_invalid");
    // A session asked to live an hour still does.
    let reply = as_session(&app, Method::GET, AUTH_URL, &long, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn a_disabled_tenants_session_is_refused() {
    let app = TestApp::new().await;
    let (tenant, token) = app.tenant(&["admin"]).await;
    account_for(&app, SK2, account("acct_1Acme")).await;
    let jwt = session(&app, &token, "user-42", &["oauth", "api_key"]).await;
    let probe = json!({"provider": "stripe", "api_key": SK2, "external_id": "other"});
    let reply = as_session(&app, Method::POST, CONNECTIONS, &jwt, Some(probe.clone())).await;
    assert_code(&reply, 403, "session_scope_mismatch");

    let reply = app
        .patch(
            &format!("/api/v1/tenants/{tenant}"),
            ADMIN,
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = as_session(&app, Method::POST, CONNECTIONS, &jwt, Some(probe)).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_envelope(&reply);
    let reply = as_session(
        &app,
        Method::POST,
        CONNECTIONS,
        &jwt,
        Some(json!({"provider": "stripe", "api_key": SK2})),
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    let reply = as_session(&app, Method::GET, AUTH_URL, &jwt, None).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
}

#[tokio::test]
async fn settings_hold_the_tenants_origins() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let reply = app.get("/api/v1/settings", &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({"object": "tenant_settings", "allowed_origins": []})
    );

    let reply = app
        .put(
            "/api/v1/settings",
            &token,
            json!({"allowed_origins": ["https://App.Example.com", "http://localhost:3000"]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut origins: Vec<&str> = reply.body["allowed_origins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    origins.sort_unstable();
    assert_eq!(origins, ["http://localhost:3000", APP_ORIGIN]);
    assert_eq!(reply.body["object"], "tenant_settings");

    for (origins, param) in [
        (json!(["http://app.example.com"]), "allowed_origins[0]"),
        (
            json!([APP_ORIGIN, "https://app.example.com/path"]),
            "allowed_origins[1]",
        ),
        (json!(["*"]), "allowed_origins[0]"),
        (
            json!([APP_ORIGIN, APP_ORIGIN, "app.example.com"]),
            "allowed_origins[2]",
        ),
    ] {
        let reply = app
            .put(
                "/api/v1/settings",
                &token,
                json!({"allowed_origins": origins}),
            )
            .await;
        assert_param(&reply, 422, param);
    }
    let many: Vec<String> = (0..21)
        .map(|i| format!("https://a{i}.example.com"))
        .collect();
    let reply = app
        .put("/api/v1/settings", &token, json!({"allowed_origins": many}))
        .await;
    assert_param(&reply, 422, "allowed_origins");
    // Refused writes changed nothing.
    let reply = app.get("/api/v1/settings", &token).await;
    assert_eq!(
        reply.body["allowed_origins"].as_array().unwrap().len(),
        2,
        "{}",
        reply.text
    );

    // Writing them takes the admin scope.
    let (_, writer) = app.tenant(&["connections:write"]).await;
    let reply = app
        .put(
            "/api/v1/settings",
            &writer,
            json!({"allowed_origins": [EVIL_ORIGIN]}),
        )
        .await;
    assert_code(&reply, 403, "insufficient_scope");
}

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> Reply {
    app.send(
        Request::builder()
            .method(Method::OPTIONS)
            .uri(path)
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn allow_origin(app: &TestApp, token: &str, origin: &str) {
    let reply = app
        .put(
            "/api/v1/settings",
            token,
            json!({"allowed_origins": [origin]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn only_the_browser_routes_answer_a_preflight_and_only_for_listed_origins() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    // Before any tenant lists the origin, nothing is allowed.
    let reply = preflight(&app, CONNECTIONS, APP_ORIGIN, "POST").await;
    assert_eq!(acao(&reply), None, "{:?}", reply.headers);
    allow_origin(&app, &token, APP_ORIGIN).await;

    for (p, m) in [(CONNECTIONS, "POST"), (AUTH_URL, "GET")] {
        let reply = preflight(&app, p, APP_ORIGIN, m).await;
        assert!(
            reply.status.is_success(),
            "{p}: {} {}",
            reply.status,
            reply.text
        );
        assert_eq!(acao(&reply), Some(APP_ORIGIN), "{p}: {:?}", reply.headers);
        let headers = header_of(&reply, "access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(headers.contains("authorization"), "{p}: {headers}");
        assert!(headers.contains("content-type"), "{p}: {headers}");
        assert!(!headers.contains("x-api-key"), "{p}: {headers}");
        let methods = header_of(&reply, "access-control-allow-methods").unwrap_or_default();
        assert!(methods.contains(m), "{p}: {methods}");
        assert_ne!(
            header_of(&reply, "access-control-allow-credentials"),
            Some("true"),
            "no cookies are involved"
        );

        let reply = preflight(&app, p, EVIL_ORIGIN, m).await;
        assert_eq!(acao(&reply), None, "{p} from evil: {:?}", reply.headers);
    }

    // Management routes never answer CORS.
    for p in [
        "/api/v1/api-keys",
        "/api/v1/settings",
        "/api/v1/connect-sessions",
        "/api/v1/audit-events",
    ] {
        let reply = preflight(&app, p, APP_ORIGIN, "GET").await;
        assert_eq!(acao(&reply), None, "{p}: {:?}", reply.headers);
    }
    let reply = preflight(
        &app,
        "/api/v1/connections/conn_0000000000000000000000000",
        APP_ORIGIN,
        "GET",
    )
    .await;
    assert_eq!(acao(&reply), None, "{:?}", reply.headers);
}

#[tokio::test]
async fn a_session_gets_cors_only_from_its_tenants_origins_and_a_key_never() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let (_, other) = app.tenant(&["admin"]).await;
    platform(&app, &token).await;
    account_for(&app, SK2, account("acct_1Acme")).await;
    allow_origin(&app, &token, APP_ORIGIN).await;
    // Another tenant lists another origin: a preflight from it passes, a session of ours does not.
    allow_origin(&app, &other, "https://other.example.com").await;

    let jwt = session(&app, &token, "user-42", &["oauth", "api_key"]).await;
    let reply = app
        .bearer(Method::GET, AUTH_URL, &jwt, &[("origin", APP_ORIGIN)], None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(acao(&reply), Some(APP_ORIGIN), "{:?}", reply.headers);

    for origin in [EVIL_ORIGIN, "https://other.example.com", "null"] {
        let reply = app
            .bearer(Method::GET, AUTH_URL, &jwt, &[("origin", origin)], None)
            .await;
        assert_code(&reply, 403, "origin_not_allowed");
        assert_eq!(acao(&reply), None, "{origin}: {:?}", reply.headers);
        let reply = app
            .bearer(
                Method::POST,
                CONNECTIONS,
                &jwt,
                &[("origin", origin)],
                Some(json!({"provider": "stripe", "api_key": SK2})),
            )
            .await;
        assert_code(&reply, 403, "origin_not_allowed");
    }
    assert_eq!(connection_count(&app, &token).await, 0);

    let reply = app
        .bearer(
            Method::POST,
            CONNECTIONS,
            &jwt,
            &[("origin", APP_ORIGIN)],
            Some(json!({"provider": "stripe", "api_key": SK2})),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(acao(&reply), Some(APP_ORIGIN), "{:?}", reply.headers);

    // A tenant key from a listed origin: it works, without CORS headers.
    let keyed = |m: Method, p: &str, body: Option<Value>| {
        let mut b = Request::builder()
            .method(m)
            .uri(p)
            .header("x-api-key", token.as_str())
            .header("origin", APP_ORIGIN);
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        b.body(body).unwrap()
    };
    let reply = app
        .send(keyed(
            Method::POST,
            CONNECTIONS,
            Some(json!({"provider": "stripe", "api_key": SK2, "external_id": "backend-1"})),
        ))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(acao(&reply), None, "{:?}", reply.headers);
    let reply = app.send(keyed(Method::GET, AUTH_URL, None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(acao(&reply), None, "{:?}", reply.headers);
    let reply = app.send(keyed(Method::GET, CONNECTIONS, None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(acao(&reply), None, "{:?}", reply.headers);
}

#[tokio::test]
async fn the_session_token_never_reaches_the_audit_log() {
    let app = TestApp::new().await;
    let (tenant, token) = app.tenant(&["admin"]).await;
    platform(&app, &token).await;
    account_for(&app, SK2, account("acct_1Acme")).await;
    let minted = mint(
        &app,
        &token,
        json!({"external_id": "user-42", "allowed": ["oauth", "api_key"], "return_to": "https://app.example.com/done"}),
    )
    .await;
    assert_eq!(minted.status, 201, "{}", minted.text);
    let id = minted.body["id"].as_str().unwrap().to_owned();
    let jwt = minted.body["token"].as_str().unwrap().to_owned();
    let reply = as_session(&app, Method::GET, AUTH_URL, &jwt, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = as_session(
        &app,
        Method::POST,
        CONNECTIONS,
        &jwt,
        Some(json!({"provider": "stripe", "api_key": SK2})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let reply = as_session(&app, Method::GET, CONNECTIONS, &jwt, None).await;
    assert_code(&reply, 403, "session_forbidden");

    let signature = jwt.rsplit('.').next().unwrap();
    let payload = jwt.split('.').nth(1).unwrap();
    for (who, path) in [
        (token.as_str(), "/api/v1/audit-events?limit=100".to_owned()),
        (
            ADMIN,
            format!("/api/v1/audit-events?limit=100&tenant_id={tenant}"),
        ),
    ] {
        let log = app.get(&path, who).await;
        assert_eq!(log.status, 200, "{}", log.text);
        let events = log.body["data"].as_array().unwrap();
        let minted_event = events
            .iter()
            .find(|e| e["action"] == "connect_session.created")
            .unwrap_or_else(|| panic!("no connect_session.created event: {}", log.text));
        assert_eq!(minted_event["target_id"], id.as_str());
        let created = events
            .iter()
            .find(|e| e["action"] == "connection.created")
            .unwrap_or_else(|| panic!("no connection.created event: {}", log.text));
        assert_eq!(
            created["actor"],
            id.as_str(),
            "the session acted: {created}"
        );
        assert!(!log.text.contains(&jwt), "the token is in the audit log");
        assert!(
            !log.text.contains(signature),
            "the token's signature is in the audit log"
        );
        assert!(
            !log.text.contains(payload),
            "the token's payload is in the audit log"
        );
    }
}
