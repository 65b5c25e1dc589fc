//! API keys are checked against a SHA-256 digest: wrong secrets cost nothing
//! and lock nobody out (issue 14's two findings), and keys stored with an
//! argon2id hash before the digest keep working and are upgraded on first use.

use std::time::Duration;

use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Params, Version};
use patchbay_core::api_key::{ApiKey, Scope, Scopes};
use patchbay_core::audit::{Actor, AuditEvent};
use patchbay_core::{ApiKeyId, TenantId};
use patchbay_vault::ApiToken;
use patchbay_vault::api_token::parse_tenant_token;
use serde_json::json;

use crate::api_keys::with_wrong_secret;
use crate::support::{TestApp, assert_envelope};

/// What the store holds for the key of `token`.
async fn stored_hash(app: &TestApp, token: &str) -> String {
    let (key_id, _) = parse_tenant_token(token).unwrap();
    app.state
        .store
        .find_api_key_credential(key_id)
        .await
        .unwrap()
        .expect("the key exists")
        .hash
}

/// A fresh app without the verified-key cache: every request checks the secret.
async fn uncached() -> TestApp {
    TestApp::with(|c| c.key_cache_ttl = Duration::ZERO).await
}

#[tokio::test]
async fn wrong_secrets_do_not_lock_out_the_holder_on_a_fresh_verifier() {
    let app = uncached().await;
    let (_, key) = app.tenant(&["admin"]).await;
    // The holder has never been verified here: nothing of it is cached.
    for (i, last) in ('a'..='z').enumerate() {
        let reply = app
            .get("/api/v1/api-keys", &with_wrong_secret(&key, last))
            .await;
        assert_eq!(reply.status, 401, "attempt {i}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), "api_key_invalid");
    }
    let reply = app.get("/api/v1/api-keys", &key).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn wrong_secrets_never_run_argon2_for_a_digest_stored_key() {
    let app = uncached().await;
    let (tenant, key) = app.tenant(&["admin"]).await;
    let mut keys = vec![key];
    for _ in 0..4 {
        keys.push(app.key(&tenant, &["connections:read"]).await);
    }
    for key in &keys {
        assert!(stored_hash(&app, key).await.starts_with("sha256$"));
        for last in ['x', 'y', 'z'] {
            let reply = app
                .get("/api/v1/connections", &with_wrong_secret(key, last))
                .await;
            assert_eq!(assert_envelope(&reply), "api_key_invalid");
        }
        assert_eq!(app.get("/api/v1/connections", key).await.status, 200);
    }
    assert_eq!(app.state.keys.legacy_verifications(), 0);
}

#[tokio::test]
async fn a_key_stored_with_argon2id_works_and_is_upgraded_to_the_digest() {
    legacy_key_is_upgraded(uncached().await).await;
}

#[tokio::test]
async fn a_key_stored_with_argon2id_is_upgraded_on_postgres_too() {
    if let Some(app) = TestApp::on_postgres(|c| c.key_cache_ttl = Duration::ZERO).await {
        legacy_key_is_upgraded(app).await;
    }
}

async fn legacy_key_is_upgraded(app: TestApp) {
    let (tenant, _) = app.tenant(&["admin"]).await;
    let tenant: TenantId = tenant.parse().unwrap();
    let (token, phc) = insert_legacy_key(&app, tenant).await;
    let key = token.expose();

    // A wrong secret runs argon2id once and changes nothing.
    let reply = app
        .get("/api/v1/api-keys", &with_wrong_secret(key, 'x'))
        .await;
    assert_eq!(assert_envelope(&reply), "api_key_invalid");
    assert_eq!(app.state.keys.legacy_verifications(), 1);
    assert_eq!(stored_hash(&app, key).await, phc);

    // The right one authenticates, and the store now holds its digest.
    let reply = app.get("/api/v1/api-keys", key).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(app.state.keys.legacy_verifications(), 2);
    assert_eq!(stored_hash(&app, key).await, token.stored_hash());

    // From then on argon2id never runs for it, right secret or wrong.
    assert_eq!(app.get("/api/v1/api-keys", key).await.status, 200);
    let reply = app
        .get("/api/v1/api-keys", &with_wrong_secret(key, 'y'))
        .await;
    assert_eq!(assert_envelope(&reply), "api_key_invalid");
    assert_eq!(app.state.keys.legacy_verifications(), 2);
}

/// Stores a key of `tenant` the way Patchbay did before the digest: an argon2id
/// PHC string of the secret part (cheap parameters; they travel in the string).
async fn insert_legacy_key(app: &TestApp, tenant: TenantId) -> (ApiToken, String) {
    let id = ApiKeyId::new();
    let token = ApiToken::generate(id).unwrap();
    let argon = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(1024, 1, 1, None).unwrap(),
    );
    let salt = argon2::password_hash::phc::Salt::new(b"legacy-key-salt!").unwrap();
    let phc = argon
        .hash_password_with_salt(token.secret_part().as_bytes(), salt.as_ref())
        .unwrap()
        .to_string();
    assert!(phc.starts_with("$argon2id$"));
    let key = ApiKey {
        id,
        tenant_id: tenant,
        name: Some("legacy".into()),
        scopes: Scopes::new(vec![Scope::Admin]).unwrap(),
        hint: token.hint(),
        connection_id: None,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        created_at: patchbay_core::time::now(),
    };
    let event = AuditEvent::new(
        Some(tenant),
        Actor::System,
        "api_key.created",
        Some(id.to_string()),
        json!({}),
        None,
    );
    app.state
        .store
        .create_api_key(&key, &phc, &event)
        .await
        .unwrap();
    (token, phc)
}
