//! Tenant isolation: one tenant's key never sees, changes or deletes another
//! tenant's objects, and gets 404 (not 403), as for an object that does not exist.

use axum::http::Method;
use serde_json::json;

use crate::connections::SK;
use crate::support::{ADMIN, TestApp, assert_envelope};

#[tokio::test]
async fn every_route_with_an_id_hides_other_tenants_objects() {
    let app = TestApp::new().await;
    let (tenant_a, key_a) = app.tenant(&["admin"]).await;
    let (tenant_b, key_b) = app.tenant(&["admin"]).await;
    let conn = app
        .post(
            "/api/v1/connections",
            &key_a,
            json!({"provider": "stripe", "api_key": SK, "validate": false}),
        )
        .await
        .id();
    let key_list = app.get("/api/v1/api-keys", &key_a).await;
    let key_id = key_list.body["data"][0]["id"].as_str().unwrap().to_owned();

    let routes = [
        (Method::GET, format!("/api/v1/connections/{conn}"), None),
        (
            Method::PATCH,
            format!("/api/v1/connections/{conn}"),
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, format!("/api/v1/connections/{conn}"), None),
        (
            Method::POST,
            format!("/api/v1/connections/{conn}/validate"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/v1/connections/{conn}/rotate"),
            Some(json!({"api_key": "sk_test_51HzyxWVU9876543210abcABC7777"})),
        ),
        (
            Method::POST,
            format!("/api/v1/connections/{conn}/refresh"),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("/api/v1/connections/{conn}/capabilities"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/connections/{conn}/actions"),
            Some(json!({"action": "stripe.getBalance", "config": {}})),
        ),
        (
            Method::GET,
            format!("/api/v1/connections/{conn}/proxy/v1/balance"),
            None,
        ),
        (Method::GET, format!("/api/v1/api-keys/{key_id}"), None),
        (Method::DELETE, format!("/api/v1/api-keys/{key_id}"), None),
    ];
    for (method, path, body) in &routes {
        let reply = app
            .call(method.clone(), path, Some(&key_b), body.clone())
            .await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), "resource_missing");
    }
    // The same requests for ids that never existed look exactly alike.
    let ghost = "conn_01jq3v6k8e9r0f7t5b2n4m6p8s";
    let missing = app
        .get(&format!("/api/v1/connections/{ghost}"), &key_b)
        .await;
    let foreign = app
        .get(&format!("/api/v1/connections/{conn}"), &key_b)
        .await;
    assert_eq!(missing.status, foreign.status);
    assert_eq!(missing.body["error"]["code"], foreign.body["error"]["code"]);

    // Lists and audit logs show only one's own.
    let list_b = app.get("/api/v1/connections", &key_b).await;
    assert!(list_b.body["data"].as_array().unwrap().is_empty());
    let audit_b = app.get("/api/v1/audit-events?limit=100", &key_b).await;
    let events_b = audit_b.body["data"].as_array().unwrap();
    // B's own events (its creation, its key) are there, and nothing of A's.
    assert!(!events_b.is_empty(), "{}", audit_b.text);
    assert!(
        events_b.iter().all(|e| e["tenant_id"] == tenant_b.as_str()),
        "{}",
        audit_b.text
    );
    let filter = app
        .get(
            &format!("/api/v1/audit-events?tenant_id={tenant_a}"),
            &key_b,
        )
        .await;
    assert_eq!(
        filter.status, 400,
        "tenants cannot ask for another tenant's log"
    );

    // Admin routes: a key id under the wrong tenant is not found either.
    let wrong = app
        .get(
            &format!("/api/v1/tenants/{tenant_b}/api-keys/{key_id}"),
            ADMIN,
        )
        .await;
    assert_eq!(wrong.status, 404);
    let wrong = app
        .delete(
            &format!("/api/v1/tenants/{tenant_b}/api-keys/{key_id}"),
            ADMIN,
        )
        .await;
    assert_eq!(wrong.status, 404);

    // Nothing of tenant A changed.
    let still = app
        .get(&format!("/api/v1/connections/{conn}"), &key_a)
        .await;
    assert_eq!(still.status, 200);
    assert!(still.body["name"].is_null());
    assert_eq!(app.get("/api/v1/api-keys", &key_a).await.status, 200);
}

#[tokio::test]
async fn a_tenant_cannot_make_its_audit_events_carry_another_tenants_request_id() {
    use axum::body::Body;
    use axum::http::Request;

    let app = TestApp::new().await;
    let (_, key_a) = app.tenant(&["admin"]).await;
    let (_, key_b) = app.tenant(&["admin"]).await;
    let b_created = app
        .post(
            "/api/v1/api-keys",
            &key_b,
            json!({"name": "b", "scopes": ["admin"]}),
        )
        .await;
    assert_eq!(b_created.status, 201, "{}", b_created.text);
    let b_request_id = b_created.headers["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    // Tenant A sends B's request id as its own.
    let a_created = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/api/v1/api-keys")
                .header("x-api-key", &key_a)
                .header("x-request-id", &b_request_id)
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"name": "a", "scopes": ["admin"]}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(a_created.status, 201, "{}", a_created.text);
    let a_request_id = a_created.headers["x-request-id"].to_str().unwrap();
    assert_ne!(a_request_id, b_request_id, "the server made its own id");
    assert_eq!(
        a_created.headers["x-client-request-id"],
        b_request_id.as_str()
    );

    let events = app
        .get("/api/v1/audit-events?action=api_key.created", &key_a)
        .await;
    assert_eq!(events.status, 200, "{}", events.text);
    let event = &events.body["data"][0];
    assert_eq!(event["target_id"], a_created.body["id"]);
    assert_eq!(event["request_id"], a_request_id, "the server's id");
    assert_eq!(
        event["client_request_id"],
        b_request_id.as_str(),
        "kept apart"
    );

    let admin_view = app
        .get("/api/v1/audit-events?action=api_key.created", ADMIN)
        .await;
    let carrying_b: Vec<_> = admin_view.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["request_id"] == b_request_id.as_str())
        .collect();
    assert_eq!(carrying_b.len(), 1, "only B's own event has B's request id");
    assert_eq!(carrying_b[0]["target_id"], b_created.body["id"]);
}
