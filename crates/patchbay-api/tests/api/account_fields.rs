//! Issue 14 finding 11: what Stripe says about the account is bounded and
//! checked before it is stored: a malformed account id refuses the answer,
//! a malformed country or currency is dropped, a long name is cut.

use serde_json::json;
use wiremock::ResponseTemplate;

use crate::connections::{SK, account_for, create};
use crate::support::{TestApp, assert_envelope};

#[tokio::test]
async fn oversized_and_malformed_fields_are_cut_or_dropped() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let long_name = format!("Acme\n{}", "N".repeat(100_000));
    account_for(
        &app,
        SK,
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "acct_1Acme", "object": "account", "country": "United States",
            "default_currency": "us dollars",
            "settings": {"dashboard": {"display_name": long_name}},
        })),
    )
    .await;
    let reply = create(&app, &token, json!({"provider": "stripe", "api_key": SK})).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let name = reply.body["account_name"].as_str().unwrap();
    assert_eq!(name.chars().count(), 200);
    assert!(
        name.starts_with("Acme NNN"),
        "control characters are replaced"
    );
    assert!(reply.body["account_country"].is_null());
    assert!(reply.body["default_currency"].is_null());
    let stored = app
        .get(&format!("/api/v1/connections/{}", reply.id()), &token)
        .await;
    assert_eq!(stored.body, reply.body);
}

#[tokio::test]
async fn a_malformed_account_id_refuses_the_answer_and_stores_nothing() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    for id in [
        json!(format!("acct_{}", "1".repeat(10_000))),
        json!("acct_../../other"),
        json!("cus_1Acme"),
        json!(42),
    ] {
        app.stripe.reset().await;
        account_for(
            &app,
            SK,
            ResponseTemplate::new(200).set_body_json(json!({"id": id, "country": "US"})),
        )
        .await;
        let reply = create(&app, &token, json!({"provider": "stripe", "api_key": SK})).await;
        assert_eq!(reply.status, 502, "{id}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), "stripe_unexpected_response");
        assert!(reply.text.len() < 2_000, "the value is not echoed");
        if id.is_string() {
            assert!(
                reply.text.contains("malformed account id"),
                "{}",
                reply.text
            );
        }
    }
    let list = app.get("/api/v1/connections", &token).await;
    assert!(list.body["data"].as_array().unwrap().is_empty());
}
