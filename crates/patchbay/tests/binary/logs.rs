//! Logs at every level, in both formats, never hold a token or a key.

use serde_json::json;
use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{ADMIN, Client, Env, Server, data_dir, master_key};

const SK: &str = "sk_test_51HlogsSECRETone0123456789ab";
const SK2: &str = "sk_test_51HlogsSECRETtwo0123456789cd";
const PK: &str = "pk_test_51HlogsPUBLISHABLE0123456789";

/// Runs a server through creation, validation, rotation and refusals; returns
/// its standard output, its standard error and the secrets it was given.
async fn exercise(format: &str) -> (String, String, Vec<String>) {
    let stripe = MockServer::start().await;
    for key in [SK, SK2] {
        Mock::given(path("/v1/account"))
            .and(header("authorization", format!("Bearer {key}").as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": "acct_1Logs", "email": "a@b.co"})),
            )
            .mount(&stripe)
            .await;
    }
    let (_tmp, data) = data_dir();
    let master = master_key("k1");
    let env = Env::new(&data)
        .set("PATCHBAY_LOG", "trace")
        .set("PATCHBAY_LOG_FORMAT", format)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_MASTER_KEYS", &master)
        .set("PATCHBAY_STRIPE_API_BASE", stripe.uri());
    let server = Server::start(&env).await;
    let client = Client::new(&server);
    let (_, token) = client.tenant().await;
    let (status, conn) = client
        .post(
            "/api/v1/connections",
            &token,
            json!({"provider": "stripe", "api_key": SK}),
        )
        .await;
    assert_eq!(status, 201, "{conn}");
    let id = conn["id"].as_str().unwrap();
    client
        .post(
            &format!("/api/v1/connections/{id}/validate"),
            &token,
            json!({}),
        )
        .await;
    let (status, _) = client
        .post(
            &format!("/api/v1/connections/{id}/rotate"),
            &token,
            json!({"api_key": SK2}),
        )
        .await;
    assert_eq!(status, 200);
    client
        .post(
            "/api/v1/connections",
            &token,
            json!({"provider": "stripe", "api_key": PK}),
        )
        .await;
    client
        .get("/api/v1/connections", "pbk_not_a_real_key")
        .await;
    let http = reqwest::Client::new();
    http.get(format!("{}/api/v1/connections", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, stdout, stderr) = server.stop_apart();
    assert!(status.success());
    (
        stdout,
        stderr,
        vec![
            ADMIN.into(),
            token.clone(),
            token[token.len() - 43..].into(),
            SK.into(),
            SK2.into(),
            PK.into(),
            master[3..].into(),
        ],
    )
}

#[tokio::test]
async fn trace_logs_hold_no_secret() {
    let (stdout, stderr, secrets) = exercise("text").await;
    let out = stdout + &stderr;
    assert!(out.lines().count() > 50, "trace logging was on");
    assert!(out.contains("stripe call"), "the Stripe calls were logged");
    for secret in &secrets {
        assert!(!out.contains(secret.as_str()), "a secret reached the log");
    }
}

#[tokio::test]
async fn json_logs_are_json_and_hold_no_secret() {
    let (stdout, stderr, secrets) = exercise("json").await;
    assert_eq!(
        stdout, "",
        "nothing but logs is printed, and logs go to stderr"
    );
    let lines = every_line_is_a_json_object(&stderr);
    assert!(lines.len() > 50, "trace logging was on");
    assert!(lines.iter().any(|l| l["level"] == "INFO"));
    assert!(
        lines.iter().any(|l| l["message"] == "stripe call"),
        "the Stripe calls were logged"
    );
    for secret in &secrets {
        assert!(
            !stderr.contains(secret.as_str()),
            "a secret reached the log"
        );
    }
}

/// The first start on the embedded default (generated master key and admin
/// token, with their warnings) keeps standard error JSON too.
#[tokio::test]
async fn json_logs_of_a_first_start_are_json() {
    let (_tmp, data) = data_dir();
    let env = Env::new(&data).set("PATCHBAY_LOG_FORMAT", "json");
    let server = Server::start(&env).await;
    let (status, _, stderr) = server.stop_apart();
    assert!(status.success());
    let lines = every_line_is_a_json_object(&stderr);
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("DEVELOPMENT master key"))),
        "the development-key warning is a JSON log line: {stderr}"
    );
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    assert!(
        !stderr.contains(token.trim()),
        "the admin token is not logged"
    );
}

/// Parses every line of `out` (none skipped) as a JSON object.
fn every_line_is_a_json_object(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(value) if value.is_object() => value,
                _ => panic!("a standard error line is not a JSON object: {line:?}"),
            },
        )
        .collect()
}
