//! Issue 14 finding 8: accepted timestamps are bounded, and written back as
//! RFC 3339 in UTC whatever offset they came with.

use chrono::Datelike;
use serde_json::json;

use crate::support::{TestApp, assert_envelope};

#[tokio::test]
async fn a_far_future_expiry_is_refused_naming_the_field() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    for expires_at in [
        "9999-12-31T23:59:59-05:00",
        "2100-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
    ] {
        let reply = app
            .post(
                "/api/v1/api-keys",
                &token,
                json!({"scopes": ["proxy"], "expires_at": expires_at}),
            )
            .await;
        assert_eq!(reply.status, 422, "{expires_at}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), "parameter_invalid");
        assert_eq!(reply.body["error"]["param"], "expires_at");
        assert!(!reply.text.contains("+10000"), "{}", reply.text);
    }
}

#[tokio::test]
async fn an_offset_timestamp_is_echoed_back_in_utc() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let next_year = chrono::Utc::now().date_naive().year_ce().1 + 1;
    let reply = app
        .post(
            "/api/v1/api-keys",
            &token,
            json!({"scopes": ["proxy"], "expires_at": format!("{next_year}-06-01T12:00:00.5+02:00")}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let expected = format!("{next_year}-06-01T10:00:00.500Z");
    assert_eq!(reply.body["expires_at"], expected.as_str());
    let got = app
        .get(&format!("/api/v1/api-keys/{}", reply.id()), &token)
        .await;
    assert_eq!(got.body["expires_at"], expected.as_str());
}
