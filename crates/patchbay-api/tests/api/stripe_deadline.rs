//! Issue 14 finding 5: a caller waiting on a test call (create, validate,
//! rotate) gets one deadline across all attempts, then a 504 naming Stripe;
//! the background validator keeps the longer per-attempt budget.

use std::time::Duration;

use serde_json::json;
use wiremock::Mock;
use wiremock::matchers::path;

use crate::connections::{SK, SK2, account, account_for, create};
use crate::support::{Reply, TestApp, assert_envelope};

/// Stripe answers only after 5 s; each attempt may take 4 s and is retried
/// once, so without an overall deadline a caller would wait about 8 s.
async fn slow_app() -> TestApp {
    TestApp::build(
        |_| {},
        |c| {
            c.timeout = Duration::from_secs(4);
            c.interactive_deadline = Duration::from_millis(300);
        },
    )
    .await
}

async fn slow_stripe(app: &TestApp) {
    app.stripe.reset().await;
    Mock::given(path("/v1/account"))
        .respond_with(account("acct_1Acme").set_delay(Duration::from_secs(5)))
        .mount(&app.stripe)
        .await;
}

fn assert_stripe_timeout(what: &str, reply: &Reply) {
    assert_eq!(reply.status, 504, "{what}: {}", reply.text);
    assert_eq!(assert_envelope(reply), "stripe_timeout", "{what}");
    assert_eq!(reply.body["error"]["type"], "api_connection_error");
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Stripe"), "{message}");
    assert!(message.contains("300ms"), "{message}");
    assert!(
        message.contains("PATCHBAY_STRIPE_INTERACTIVE_DEADLINE"),
        "{message}"
    );
}

#[tokio::test]
async fn create_validate_and_rotate_answer_504_when_the_deadline_passes() {
    let app = slow_app().await;
    let (_, token) = app.tenant(&["admin"]).await;
    account_for(&app, SK, account("acct_1Acme")).await;
    let id = create(&app, &token, json!({"provider": "stripe", "api_key": SK}))
        .await
        .id();
    slow_stripe(&app).await;

    let created = create(&app, &token, json!({"provider": "stripe", "api_key": SK2})).await;
    assert_stripe_timeout("create", &created);
    let validated = app
        .post(
            &format!("/api/v1/connections/{id}/validate"),
            &token,
            json!({}),
        )
        .await;
    assert_stripe_timeout("validate", &validated);
    let rotated = app
        .post(
            &format!("/api/v1/connections/{id}/rotate"),
            &token,
            json!({"api_key": SK2}),
        )
        .await;
    assert_stripe_timeout("rotate", &rotated);

    let list = app.get("/api/v1/connections", &token).await;
    let data = list.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "nothing was created");
    assert_eq!(data[0]["status"], "active", "nothing was recorded");
    assert_eq!(data[0]["key_hint"], "sk_test_…4242", "nothing was rotated");
}

#[tokio::test]
async fn the_background_validator_is_not_held_to_the_interactive_deadline() {
    let app = TestApp::build(
        |c| c.revalidate_every = Duration::from_secs(1),
        |c| c.interactive_deadline = Duration::from_millis(300),
    )
    .await;
    let (_, token) = app.tenant(&["admin"]).await;
    // Slower than the interactive deadline, well within an attempt's timeout (2 s).
    Mock::given(path("/v1/account"))
        .respond_with(account("acct_1Acme").set_delay(Duration::from_millis(800)))
        .mount(&app.stripe)
        .await;
    let id = create(
        &app,
        &token,
        json!({"provider": "stripe", "api_key": SK, "validate": false}),
    )
    .await
    .id();
    let background = patchbay_api::services::background::spawn(app.state.clone());
    let url = format!("/api/v1/connections/{id}");
    let mut status = String::new();
    for _ in 0..100 {
        status = app.get(&url, &token).await.body["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    background.stop().await;
    assert_eq!(status, "active", "the slow answer was waited for");
}
