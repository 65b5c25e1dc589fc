//! Tenants: admin-only CRUD; disabling and deleting stop the tenant's keys.

use serde_json::json;

use crate::support::{ADMIN, TestApp, assert_envelope};

#[tokio::test]
async fn admin_manages_tenants() {
    let app = TestApp::new().await;
    let created = app
        .post(
            "/api/v1/tenants",
            ADMIN,
            json!({"name": "  Acme  ", "metadata": {"plan": "pro"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["name"], "Acme");
    assert_eq!(created.body["object"], "tenant");
    assert_eq!(created.body["status"], "active");
    let id = created.id();
    assert!(id.starts_with("ten_"));

    let got = app.get(&format!("/api/v1/tenants/{id}"), ADMIN).await;
    assert_eq!(got.body, created.body);

    let patched = app
        .patch(
            &format!("/api/v1/tenants/{id}"),
            ADMIN,
            json!({"name": "Acme Inc", "metadata": {"plan": null, "tier": "1"}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["name"], "Acme Inc");
    assert_eq!(patched.body["metadata"], json!({"tier": "1"}));
    let cleared = app
        .patch(
            &format!("/api/v1/tenants/{id}"),
            ADMIN,
            json!({"metadata": null}),
        )
        .await;
    assert_eq!(cleared.body["metadata"], json!({}));
    let bad = app
        .patch(
            &format!("/api/v1/tenants/{id}"),
            ADMIN,
            json!({"status": "sleeping"}),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["param"], "status");

    for i in 0..4 {
        app.post("/api/v1/tenants", ADMIN, json!({"name": format!("t{i}")}))
            .await;
    }
    let page = app
        .get(
            "/api/v1/tenants?limit=2&starting_after=&ending_before=",
            ADMIN,
        )
        .await;
    assert_eq!(page.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["has_more"], true);
    assert_eq!(page.body["data"][0]["name"], "t3", "newest first");

    let deleted = app.delete(&format!("/api/v1/tenants/{id}"), ADMIN).await;
    assert_eq!(
        deleted.body,
        json!({"id": id, "object": "tenant", "deleted": true})
    );
    let gone = app.get(&format!("/api/v1/tenants/{id}"), ADMIN).await;
    assert_eq!(gone.status, 404);
    assert_eq!(assert_envelope(&gone), "resource_missing");
    assert_eq!(
        app.delete(&format!("/api/v1/tenants/{id}"), ADMIN)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn disabled_and_deleted_tenants_keys_stop_working() {
    let app = TestApp::new().await;
    let (tenant, key) = app.tenant(&["admin"]).await;
    assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);

    let off = app
        .patch(
            &format!("/api/v1/tenants/{tenant}"),
            ADMIN,
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(off.status, 200);
    let refused = app.get("/api/v1/api-keys", &key).await;
    assert_eq!(refused.status, 403);
    assert_eq!(assert_envelope(&refused), "tenant_disabled");

    app.patch(
        &format!("/api/v1/tenants/{tenant}"),
        ADMIN,
        json!({"status": "active"}),
    )
    .await;
    assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);

    app.delete(&format!("/api/v1/tenants/{tenant}"), ADMIN)
        .await;
    let refused = app.get("/api/v1/api-keys", &key).await;
    assert_eq!(refused.status, 401);
    assert_eq!(assert_envelope(&refused), "api_key_invalid");
}

#[tokio::test]
async fn tenant_routes_are_admin_only() {
    let app = TestApp::new().await;
    let (tenant, key) = app.tenant(&["admin"]).await;
    for reply in [
        app.get("/api/v1/tenants", &key).await,
        app.get(&format!("/api/v1/tenants/{tenant}"), &key).await,
        app.post("/api/v1/tenants", &key, json!({"name": "x"}))
            .await,
        app.get(&format!("/api/v1/tenants/{tenant}/api-keys"), &key)
            .await,
        app.get("/api/v1/admin/keys", &key).await,
    ] {
        assert_eq!(reply.status, 403, "{}", reply.text);
        assert_eq!(assert_envelope(&reply), "admin_required");
    }
}
