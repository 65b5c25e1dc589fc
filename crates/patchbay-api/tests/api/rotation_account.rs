//! Issue 14 finding 4: a rotation never moves a connection to another Stripe
//! account unless the caller says so, and then it is audited as such.

use serde_json::{Value, json};
use wiremock::matchers::{header, path};
use wiremock::{Mock, ResponseTemplate};

use crate::connections::{RK, SK, SK2, account, account_for, create};
use crate::support::{TestApp, assert_envelope};

const OTHER: &str = "sk_test_51HotherACCOUNT0123456789xyz";

/// A restricted key that cannot read its account but can read the balance.
async fn restricted_without_account_read(app: &TestApp, key: &str) {
    account_for(
        app,
        key,
        ResponseTemplate::new(403).set_body_json(json!({"error": {
            "type": "invalid_request_error",
            "message": "Having the 'rak_account_read' permission would allow this request to continue."
        }})),
    )
    .await;
    Mock::given(path("/v1/balance"))
        .and(header("authorization", format!("Bearer {key}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"object": "balance"})))
        .mount(&app.stripe)
        .await;
}

async fn rotated_events(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    app.get(
        &format!("/api/v1/audit-events?action=connection.rotated&target_id={id}"),
        token,
    )
    .await
    .body["data"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn an_unknown_account_is_not_rotated_to_another_without_consent() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    restricted_without_account_read(&app, RK).await;
    account_for(&app, OTHER, account("acct_2Other")).await;
    let restricted = create(&app, &token, json!({"provider": "stripe", "api_key": RK})).await;
    assert_eq!(restricted.status, 201, "{}", restricted.text);
    assert!(restricted.body["stripe_account_id"].is_null());
    let pending = create(
        &app,
        &token,
        json!({"provider": "stripe", "api_key": SK, "validate": false}),
    )
    .await;
    assert!(pending.body["stripe_account_id"].is_null());

    for (connection, before) in [(restricted, "rk_test_…9999"), (pending, "sk_test_…4242")] {
        let id = connection.id();
        let refused = app
            .post(
                &format!("/api/v1/connections/{id}/rotate"),
                &token,
                json!({"api_key": OTHER}),
            )
            .await;
        assert_eq!(refused.status, 422, "{}", refused.text);
        assert_eq!(assert_envelope(&refused), "account_unknown");
        assert_eq!(refused.body["error"]["param"], "api_key");
        let message = refused.body["error"]["message"].as_str().unwrap();
        for says in [
            "not known",
            "validate",
            "new connection",
            "allow_account_change",
        ] {
            assert!(
                message.contains(says),
                "the refusal says {says:?}: {message}"
            );
        }
        let unchanged = app.get(&format!("/api/v1/connections/{id}"), &token).await;
        assert_eq!(unchanged.body["key_hint"], before);
        assert!(unchanged.body["stripe_account_id"].is_null());
        assert!(rotated_events(&app, &token, &id).await.is_empty());
    }
}

#[tokio::test]
async fn an_accepted_account_change_is_made_and_audited_as_one() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    restricted_without_account_read(&app, RK).await;
    account_for(&app, OTHER, account("acct_2Other")).await;
    let id = create(&app, &token, json!({"provider": "stripe", "api_key": RK}))
        .await
        .id();
    let url = format!("/api/v1/connections/{id}/rotate");

    let rotated = app
        .post(
            &url,
            &token,
            json!({"api_key": OTHER, "allow_account_change": true}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    assert_eq!(rotated.body["stripe_account_id"], "acct_2Other");
    assert_eq!(rotated.body["auth_method"], "secret_key");
    let events = rotated_events(&app, &token, &id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["details"]["account_change"],
        json!({"from": null, "to": "acct_2Other", "accepted_by_caller": true})
    );
    assert_eq!(events[0]["details"]["stripe_account_id"], "acct_2Other");

    // A known account and a key that cannot say where it leads: refused, or
    // accepted with the old account's details cleared.
    restricted_without_account_read(&app, "rk_test_51HnewRESTRICTED0123456789ab").await;
    let unverifiable = app
        .post(
            &url,
            &token,
            json!({"api_key": "rk_test_51HnewRESTRICTED0123456789ab"}),
        )
        .await;
    assert_eq!(unverifiable.status, 422, "{}", unverifiable.text);
    assert_eq!(assert_envelope(&unverifiable), "account_unverifiable");
    let accepted = app
        .post(
            &url,
            &token,
            json!({"api_key": "rk_test_51HnewRESTRICTED0123456789ab", "allow_account_change": true}),
        )
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert!(accepted.body["stripe_account_id"].is_null());
    assert!(accepted.body["account_name"].is_null());
    let events = rotated_events(&app, &token, &id).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0]["details"]["account_change"],
        json!({"from": "acct_2Other", "to": null, "accepted_by_caller": true})
    );
}

#[tokio::test]
async fn the_same_known_account_rotates_without_consent_and_without_an_account_change() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    account_for(&app, SK, account("acct_1Acme")).await;
    account_for(&app, SK2, account("acct_1Acme")).await;
    account_for(&app, OTHER, account("acct_2Other")).await;
    let id = create(&app, &token, json!({"provider": "stripe", "api_key": SK}))
        .await
        .id();
    let url = format!("/api/v1/connections/{id}/rotate");
    let other = app.post(&url, &token, json!({"api_key": OTHER})).await;
    assert_eq!(other.status, 422);
    assert_eq!(assert_envelope(&other), "account_mismatch");
    let same = app.post(&url, &token, json!({"api_key": SK2})).await;
    assert_eq!(same.status, 200, "{}", same.text);
    assert_eq!(same.body["stripe_account_id"], "acct_1Acme");
    let events = rotated_events(&app, &token, &id).await;
    assert_eq!(events.len(), 1);
    assert!(events[0]["details"]["account_change"].is_null());
    assert_eq!(events[0]["details"]["stripe_account_id"], "acct_1Acme");
    let not_bool = app
        .post(
            &url,
            &token,
            json!({"api_key": SK, "allow_account_change": "yes"}),
        )
        .await;
    assert_eq!(not_bool.status, 400);
    assert_eq!(not_bool.body["error"]["param"], "allow_account_change");
}
