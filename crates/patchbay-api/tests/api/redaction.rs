//! Issue 14 finding 2: an upstream that echoes the key in its error messages
//! (a proxy or a fake in between; real Stripe masks keys) must not get the key
//! into a response, `last_error`, an audit record or a log.

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::connections::{SK, SK2, account, account_for, create};
use crate::secrets::Capture;
use crate::support::{Reply, TestApp, assert_envelope};

/// Answers `status` with the caller's key everywhere it can put it: the
/// message, the code, the param, the type and the `Request-Id` header.
struct Echo(u16);

impl Respond for Echo {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let key = auth.trim_start_matches("Bearer ");
        ResponseTemplate::new(self.0)
            .insert_header("request-id", key)
            .set_body_json(json!({"error": {
                "type": key,
                "code": format!("bad_{key}"),
                "param": key,
                "message": format!("No good: {key} (sent as '{auth}'), glued:x{key}x"),
            }}))
    }
}

async fn echo_on_account(app: &TestApp, status: u16) {
    app.stripe.reset().await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(Echo(status))
        .mount(&app.stripe)
        .await;
}

/// The key, and its body without the prefix (which a mask keeps).
fn assert_clean(what: &str, text: &str, keys: &[&str]) {
    for key in keys {
        let body = &key["sk_test_".len()..];
        assert!(
            !text.contains(&body[..body.len() - 4]),
            "{what} carries the key: {text}"
        );
    }
}

fn assert_refused(what: &str, reply: &Reply, keys: &[&str]) {
    assert!(
        reply.status.is_client_error() || reply.status.is_server_error(),
        "{what}: {}",
        reply.text
    );
    assert_envelope(reply);
    assert_clean(what, &reply.text, keys);
}

#[tokio::test(flavor = "current_thread")]
async fn a_key_echoed_by_the_upstream_reaches_no_response_record_or_log() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    account_for(&app, SK, account("acct_1Acme")).await;
    let id = create(&app, &token, json!({"provider": "stripe", "api_key": SK}))
        .await
        .id();
    let keys = [SK, SK2];

    for status in [400, 402, 418] {
        echo_on_account(&app, status).await;
        let created = create(&app, &token, json!({"provider": "stripe", "api_key": SK2})).await;
        assert_refused(&format!("create, {status}"), &created, &keys);
        assert_eq!(created.status, 502, "{}", created.text);
        assert!(
            created.text.contains(&format!("Stripe answered {status}")),
            "the refusal still says what Stripe answered: {}",
            created.text
        );

        let rotated = app
            .post(
                &format!("/api/v1/connections/{id}/rotate"),
                &token,
                json!({"api_key": SK2}),
            )
            .await;
        assert_refused(&format!("rotate, {status}"), &rotated, &keys);

        let validated = app
            .post(
                &format!("/api/v1/connections/{id}/validate"),
                &token,
                json!({}),
            )
            .await;
        assert_eq!(validated.status, 200, "{}", validated.text);
        assert_eq!(validated.body["status"], "error");
        assert_clean("validate", &validated.text, &keys);
        let stored = app.get(&format!("/api/v1/connections/{id}"), &token).await;
        assert_eq!(
            stored.body["last_error"]["code"],
            "stripe_unexpected_response"
        );
        assert!(
            stored.body["last_error"]["message"]
                .as_str()
                .unwrap()
                .contains("No good: sk_test_…4242"),
            "the message is kept, masked: {}",
            stored.text
        );
        assert!(
            stored.body["last_error"]["stripe_request_id"].is_null(),
            "a Request-Id that is not one is dropped"
        );
        assert_clean("last_error", &stored.text, &keys);
    }

    let audit = app.get("/api/v1/audit-events?limit=100", &token).await;
    assert_eq!(audit.status, 200);
    assert!(
        audit.body["data"].as_array().unwrap().len() >= 4,
        "{}",
        audit.text
    );
    assert_clean("the audit records", &audit.text, &keys);
    let listed = app.get("/api/v1/connections", &token).await;
    assert_clean("the list", &listed.text, &keys);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    // Callsite interest is shared with tests running on other threads, so only
    // the request log lines are sure to be captured here.
    assert!(logs.contains("request"), "the capture saw the requests");
    assert_clean("the log", &logs, &keys);
}
