//! Security headers: `nosniff` and no referrer on every response, a policy that
//! lets a browser run nothing on JSON, `no-store` on responses with a secret.

use axum::http::Method;
use serde_json::json;

use crate::support::{ADMIN, Reply, TestApp};

const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn every_response_is_nosniff_and_json_gets_a_strict_policy() {
    let app = TestApp::new().await;
    let (_, key) = app.tenant(&["admin"]).await;
    let replies = [
        app.get("/healthz", ADMIN).await,
        app.get("/api/v1/tenants", ADMIN).await,
        app.get("/api/v1/connections", &key).await,
        app.get("/api/v1/tenants", "pbk_wrong").await,
        app.get("/no/such/route", ADMIN).await,
        app.call(Method::PUT, "/healthz", None, None).await,
        app.get("/openapi.json", ADMIN).await,
    ];
    for reply in &replies {
        assert!(
            header(reply, "content-type")
                .unwrap()
                .starts_with("application/json"),
            "{}",
            reply.text
        );
        assert_eq!(header(reply, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(reply, "referrer-policy"), Some("no-referrer"));
        assert_eq!(
            header(reply, "content-security-policy"),
            Some(API_POLICY),
            "{}",
            reply.status
        );
    }
}

#[tokio::test]
async fn a_response_with_a_new_api_key_is_not_stored_and_others_may_be() {
    let app = TestApp::new().await;
    let (tenant, key) = app.tenant(&["admin"]).await;
    let by_admin = app
        .post(
            &format!("/api/v1/tenants/{tenant}/api-keys"),
            ADMIN,
            json!({"scopes": ["admin"]}),
        )
        .await;
    let by_tenant = app
        .post(
            "/api/v1/api-keys",
            &key,
            json!({"scopes": ["connections:read"]}),
        )
        .await;
    for created in [&by_admin, &by_tenant] {
        assert_eq!(created.status, 201, "{}", created.text);
        assert!(created.body["key"].is_string());
        assert_eq!(header(created, "cache-control"), Some("no-store"));
        assert_eq!(header(created, "pragma"), Some("no-cache"));
    }
    let listed = app.get("/api/v1/api-keys", &key).await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        header(&listed, "cache-control"),
        None,
        "no secret in a list"
    );
}

#[tokio::test]
async fn the_docs_page_is_nosniff_and_unframeable_but_may_run_swagger_ui() {
    let app = TestApp::new().await;
    let page = app.call(Method::GET, "/docs/", None, None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        header(&page, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text.contains("swagger"), "{}", page.text);
    assert_eq!(header(&page, "x-content-type-options"), Some("nosniff"));
    assert_eq!(
        header(&page, "content-security-policy"),
        Some("frame-ancestors 'none'"),
        "scripts and styles stay allowed"
    );
}
