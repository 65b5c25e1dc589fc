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
    let app = TestApp::with(|c| c.key_cache_ttl = Duration::from_millis(300)).await;
    let (tenant, key) = app.tenant(&["admin"]).await;
    let list = app.get("/api/v1/api-keys", &key).await;
    assert_eq!(list.status, 200);
    // The entry expires and is refreshed from the store (no new argon2 run): still fine.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);
    // Revoked behind this replica's back (as another replica would), the key is
    // refused once the cache entry's TTL has passed.
    let tenant_id: patchbay_core::TenantId = tenant.parse().unwrap();
    let key_id: patchbay_core::ApiKeyId = list.body["data"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let event = patchbay_core::audit::AuditEvent::new(
        Some(tenant_id),
        patchbay_core::audit::Actor::System,
        "api_key.revoked",
        None,
        json!({}),
        None,
    );
    app.state
        .store
        .revoke_api_key(tenant_id, key_id, patchbay_core::time::now(), &event)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
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
    let (_, key) = app.tenant(&["admin"]).await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);
    }
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
    let app = TestApp::new().await;
    let (tenant, _) = app.tenant(&["admin"]).await;
    let soon = (chrono::Utc::now() + chrono::TimeDelta::milliseconds(3000)).to_rfc3339();
    let created = app
        .post(
            &format!("/api/v1/tenants/{tenant}/api-keys"),
            ADMIN,
            json!({"scopes": ["admin"], "expires_at": soon}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let key = created.body["key"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
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
fn with_wrong_secret(key: &str, last: char) -> String {
    let mut wrong = key[..key.len() - 1].to_owned();
    wrong.push(if key.ends_with(last) { 'Q' } else { last });
    wrong
}

#[tokio::test]
async fn repeated_wrong_secrets_lock_the_key_id_but_not_its_holder() {
    let app = TestApp::new().await;
    let (_, key) = app.tenant(&["admin"]).await;
    let (_, other) = app.tenant(&["admin"]).await;
    // The holder has been verified on this replica.
    assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);

    for attempt in 0..10 {
        let reply = app
            .get("/api/v1/api-keys", &with_wrong_secret(&key, 'x'))
            .await;
        assert_eq!(reply.status, 401, "attempt {attempt}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), "api_key_invalid");
    }
    // Any further secret for that key id is refused without argon2id.
    for last in ['x', 'y'] {
        let reply = app
            .get("/api/v1/api-keys", &with_wrong_secret(&key, last))
            .await;
        assert_eq!(reply.status, 429, "{}", reply.text);
        assert_eq!(assert_envelope(&reply), "api_key_locked");
        assert_eq!(reply.body["error"]["type"], "rate_limit_error");
        let retry_after: u64 = reply.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
        assert!(
            !reply.text.contains(&key[key.len() - 43..]),
            "no secret echoed"
        );
    }
    // The holder keeps working, and other key ids are not affected.
    assert_eq!(app.get("/api/v1/api-keys", &key).await.status, 200);
    assert_eq!(app.get("/api/v1/api-keys", &other).await.status, 200);
    let reply = app
        .get("/api/v1/api-keys", &with_wrong_secret(&other, 'x'))
        .await;
    assert_eq!(reply.status, 401);
}
