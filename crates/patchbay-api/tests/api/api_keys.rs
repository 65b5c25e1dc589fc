//! Tenant API keys: shown once, scoped, revocable at once, expiring, several at a time.

use std::time::Duration;

use serde_json::json;

use crate::support::{ADMIN, TestApp, assert_envelope};

#[tokio::test]
async fn keys_are_shown_once_and_several_work_at_once() {
    let app = TestApp::new().await;
    let (tenant, first) = app.tenant(&["admin"]).await;
    let created = app
        .post(
            "/api/v1/api-keys",
            &first,
            json!({"name": "deploy", "scopes": ["connections:write", "proxy"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let second = created.body["key"].as_str().unwrap().to_owned();
    assert!(second.starts_with("pbk_"));
    assert_eq!(
        created.body["scopes"],
        json!(["connections:write", "proxy"])
    );
    assert_eq!(created.body["status"], "active");
    assert_eq!(created.body["tenant_id"], tenant.as_str());
    let hint = created.body["hint"].as_str().unwrap();
    assert!(second.ends_with(&hint["pbk_…".len()..]));

    // Both keys work; the secret is never shown again.
    let list = app.get("/api/v1/api-keys", &first).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 2);
    assert!(!list.text.contains(&second) && !list.text.contains(&first));
    assert!(
        list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("key").is_none())
    );
    assert_eq!(app.get("/api/v1/connections", &second).await.status, 200);
    let one = app
        .get(&format!("/api/v1/api-keys/{}", created.id()), &first)
        .await;
    assert_eq!(one.body["name"], "deploy");
    assert!(one.body.get("key").is_none());

    // Rotation story: revoke the old one; the new one keeps working.
    let first_id = list.body["data"][1]["id"].as_str().unwrap().to_owned();
    let revoked = app
        .delete(&format!("/api/v1/api-keys/{first_id}"), &first)
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(revoked.body["status"], "revoked");
    let refused = app.get("/api/v1/connections", &first).await;
    assert_eq!(refused.status, 401);
    assert_eq!(assert_envelope(&refused), "api_key_revoked");
    assert_eq!(app.get("/api/v1/connections", &second).await.status, 200);
}

#[tokio::test]
async fn revocation_beats_the_cache_on_this_instance() {
    let app = TestApp::with(|c| c.key_cache_ttl = Duration::from_secs(3600)).await;
    let (tenant, key) = app.tenant(&["admin"]).await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);
    }
    let list = app
        .get(&format!("/api/v1/tenants/{tenant}/api-keys"), ADMIN)
        .await;
    let id = list.body["data"][0]["id"].as_str().unwrap().to_owned();
    let revoked = app
        .delete(&format!("/api/v1/tenants/{tenant}/api-keys/{id}"), ADMIN)
        .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 401);
}

#[tokio::test]
async fn another_replicas_revocation_takes_effect_within_the_ttl() {
    // Time moves only when the test says so; the margins of a minute make a
    // slow machine irrelevant.
    let ttl = Duration::from_secs(3600);
    let minute = Duration::from_secs(60);
    let app = TestApp::with(|c| c.key_cache_ttl = ttl).await;
    let (tenant, key) = app.tenant(&["admin"]).await;
    assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);
    // The entry expires and is refreshed from the store: still fine.
    app.clock.advance(ttl + minute);
    assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);
    // Revoked behind this replica's back (as another replica would): the
    // cached verification is trusted until its TTL has passed, then refused.
    revoke_in_the_store(&app, &tenant, &key).await;
    assert_eq!(
        app.get("/api/v1/api-keys", &key).await.status,
        200,
        "trusted within the TTL"
    );
    app.clock.advance(ttl - minute);
    assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);
    app.clock.advance(2 * minute);
    let refused = app.get("/api/v1/api-keys", &key).await;
    assert_eq!(refused.status, 401);
    assert_eq!(assert_envelope(&refused), "api_key_revoked");
    // A wrong token for the same key id is invalid, whatever the cache holds.
    let forged = with_wrong_secret(&key, 'A');
    assert_eq!(
        assert_envelope(&app.get("/api/v1/api-keys", &forged).await),
        "api_key_invalid"
    );
}

#[tokio::test]
async fn the_cache_can_be_disabled() {
    let app = TestApp::with(|c| c.key_cache_ttl = Duration::ZERO).await;
    let (tenant, key) = app.tenant(&["admin"]).await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);
    }
    // Every request reads the store: the very next one sees a revocation made
    // behind the API's back, with no time passing at all.
    revoke_in_the_store(&app, &tenant, &key).await;
    let refused = app.get("/api/v1/api-keys", &key).await;
    assert_eq!(refused.status, 401);
    assert_eq!(assert_envelope(&refused), "api_key_revoked");
}

/// Revokes `key` directly in the store, as another replica would: this
/// replica's cache is not told.
async fn revoke_in_the_store(app: &TestApp, tenant: &str, key: &str) {
    let tenant_id: patchbay_core::TenantId = tenant.parse().unwrap();
    let (key_id, _) = patchbay_vault::api_token::parse_tenant_token(key).unwrap();
    let event = patchbay_core::audit::AuditEvent::new(
        Some(tenant_id),
        patchbay_core::audit::Actor::System,
        "api_key.revoked",
        None,
        json!({}),
        None,
    );
    let revoked = app
        .state
        .store
        .revoke_api_key(tenant_id, key_id, patchbay_core::time::now(), &event)
        .await
        .unwrap();
    assert!(revoked.is_some_and(|k| k.revoked_at.is_some()));
}

#[tokio::test]
async fn scopes_are_enforced_and_named() {
    let app = TestApp::new().await;
    let (_, reader) = app.tenant(&["connections:read"]).await;
    let listed = app.get("/api/v1/connections", &reader).await;
    assert_eq!(listed.status, 200);
    let write = app
        .post(
            "/api/v1/connections",
            &reader,
            json!({"provider": "stripe", "api_key": "sk_test_51HabcDEF0123456789xyz"}),
        )
        .await;
    assert_eq!(write.status, 403);
    assert_eq!(assert_envelope(&write), "insufficient_scope");
    assert!(
        write.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connections:write")
    );
    let keys = app.get("/api/v1/api-keys", &reader).await;
    assert_eq!(keys.status, 403);
    assert!(
        keys.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'admin'")
    );
    let audit = app.get("/api/v1/audit-events", &reader).await;
    assert_eq!(audit.status, 403);
}

#[tokio::test]
async fn key_creation_validates_its_input() {
    let app = TestApp::new().await;
    let (tenant, key) = app.tenant(&["admin"]).await;
    let cases = [
        (json!({"scopes": []}), 422, "scopes"),
        (json!({"scopes": ["root"]}), 400, "scopes[0]"),
        (json!({}), 400, "scopes"),
        (
            json!({"scopes": ["admin"], "expires_at": "2001-01-01T00:00:00Z"}),
            422,
            "expires_at",
        ),
        (
            json!({"scopes": ["admin"], "expires_at": "tomorrow"}),
            400,
            "expires_at",
        ),
        (json!({"scopes": ["admin"], "name": ""}), 422, "name"),
    ];
    for (body, status, param) in cases {
        let reply = app.post("/api/v1/api-keys", &key, body.clone()).await;
        assert_eq!(reply.status.as_u16(), status, "{body}: {}", reply.text);
        assert_envelope(&reply);
        assert_eq!(
            reply.body["error"]["param"], param,
            "{body}: {}",
            reply.text
        );
    }
    let ghost = app
        .post(
            "/api/v1/tenants/ten_01jq3v6k8e9r0f7t5b2n4m6p8s/api-keys",
            ADMIN,
            json!({"scopes": ["admin"]}),
        )
        .await;
    assert_eq!(ghost.status, 404);
    let list = app
        .get(&format!("/api/v1/tenants/{tenant}/api-keys"), ADMIN)
        .await;
    assert_eq!(
        list.body["data"].as_array().unwrap().len(),
        1,
        "no rejected key was stored"
    );
}

#[tokio::test]
async fn expired_keys_are_refused() {
    // The cache is on and holds the key when it expires.
    let app = TestApp::with(|c| c.key_cache_ttl = Duration::from_secs(24 * 3600)).await;
    let (tenant, _) = app.tenant(&["admin"]).await;
    let expiry = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let created = app
        .post(
            &format!("/api/v1/tenants/{tenant}/api-keys"),
            ADMIN,
            json!({"scopes": ["admin"], "expires_at": expiry.to_rfc3339()}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let key = created.body["key"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);
    app.clock.advance(Duration::from_secs(3600 - 60));
    assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);
    app.clock.advance(Duration::from_secs(61));
    let refused = app.get("/api/v1/api-keys", &key).await;
    assert_eq!(refused.status, 401);
    assert_eq!(assert_envelope(&refused), "api_key_expired");
}

#[tokio::test]
async fn last_use_is_recorded_in_batches() {
    let app = TestApp::new().await;
    let (_, key) = app.tenant(&["admin"]).await;
    let before = app.get("/api/v1/api-keys", &key).await;
    assert!(before.body["data"][0]["last_used_at"].is_null());
    app.state.keys.usage().flush().await.unwrap();
    let after = app.get("/api/v1/api-keys", &key).await;
    assert!(
        after.body["data"][0]["last_used_at"].is_string(),
        "{}",
        after.text
    );
}

/// The same key id with its secret's last character changed.
pub fn with_wrong_secret(key: &str, last: char) -> String {
    let mut wrong = key[..key.len() - 1].to_owned();
    wrong.push(if key.ends_with(last) { 'Q' } else { last });
    wrong
}
