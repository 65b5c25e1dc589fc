//! Issue 14 finding 12: per-tenant limits on connections and API keys, checked
//! before any Stripe call, answered with a 409 naming the limit and its variable.

use serde_json::json;

use crate::connections::{SK, account, account_for, create};
use crate::support::{ADMIN, TestApp, assert_envelope};

#[tokio::test]
async fn connections_stop_at_the_tenant_limit_before_stripe_is_called() {
    let app = TestApp::with(|c| c.max_connections_per_tenant = 2).await;
    let (_, token) = app.tenant(&["admin"]).await;
    let (_, other) = app.tenant(&["admin"]).await;
    account_for(&app, SK, account("acct_1Acme")).await;
    let pending = json!({"provider": "stripe", "api_key": SK, "validate": false});
    let first = create(&app, &token, pending.clone()).await.id();
    assert_eq!(create(&app, &token, pending.clone()).await.status, 201);

    let calls = app.stripe.received_requests().await.unwrap().len();
    for body in [
        pending.clone(),
        json!({"provider": "stripe", "api_key": SK}),
    ] {
        let refused = create(&app, &token, body).await;
        assert_eq!(refused.status, 409, "{}", refused.text);
        assert_eq!(assert_envelope(&refused), "tenant_limit_reached");
        let message = refused.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("limit is 2"), "{message}");
        assert!(
            message.contains("PATCHBAY_MAX_CONNECTIONS_PER_TENANT"),
            "{message}"
        );
    }
    assert_eq!(
        app.stripe.received_requests().await.unwrap().len(),
        calls,
        "refused before any Stripe call"
    );
    assert_eq!(
        create(&app, &other, pending.clone()).await.status,
        201,
        "the limit is per tenant"
    );
    let deleted = app
        .delete(&format!("/api/v1/connections/{first}"), &token)
        .await;
    assert_eq!(deleted.status, 200);
    let again = create(&app, &token, json!({"provider": "stripe", "api_key": SK})).await;
    assert_eq!(again.status, 201, "{}", again.text);
}

#[tokio::test]
async fn api_keys_stop_at_the_tenant_limit_and_revoked_ones_free_a_place() {
    let app = TestApp::with(|c| c.max_api_keys_per_tenant = 2).await;
    // `tenant` mints the first key.
    let (tenant, token) = app.tenant(&["admin"]).await;
    let second = app
        .post("/api/v1/api-keys", &token, json!({"scopes": ["proxy"]}))
        .await;
    assert_eq!(second.status, 201, "{}", second.text);

    let by_tenant = app
        .post("/api/v1/api-keys", &token, json!({"scopes": ["proxy"]}))
        .await;
    let by_admin = app
        .post(
            &format!("/api/v1/tenants/{tenant}/api-keys"),
            ADMIN,
            json!({"scopes": ["proxy"]}),
        )
        .await;
    for refused in [by_tenant, by_admin] {
        assert_eq!(refused.status, 409, "{}", refused.text);
        assert_eq!(assert_envelope(&refused), "tenant_limit_reached");
        let message = refused.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("limit is 2"), "{message}");
        assert!(
            message.contains("PATCHBAY_MAX_API_KEYS_PER_TENANT"),
            "{message}"
        );
    }
    let listed = app.get("/api/v1/api-keys", &token).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);

    let revoked = app
        .delete(&format!("/api/v1/api-keys/{}", second.id()), &token)
        .await;
    assert_eq!(revoked.status, 200);
    let third = app
        .post("/api/v1/api-keys", &token, json!({"scopes": ["proxy"]}))
        .await;
    assert_eq!(third.status, 201, "{}", third.text);
}
