//! Logs at every level, in both formats, never hold a token or a key.

use serde_json::json;
use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{ADMIN, Client, Env, Server, data_dir, master_key};

const SK: &str = "sk_test_51HlogsSECRETone0123456789ab";
const SK2: &str = "sk_test_51HlogsSECRETtwo0123456789cd";
const PK: &str = "pk_test_51HlogsPUBLISHABLE0123456789";

async fn exercise(format: &str) -> (String, Vec<String>) {
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
    let (status, out) = server.stop();
    assert!(status.success());
    (
        out,
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
    let (out, secrets) = exercise("text").await;
    assert!(out.lines().count() > 50, "trace logging was on");
    assert!(out.contains("stripe call"), "the Stripe calls were logged");
    for secret in &secrets {
        assert!(!out.contains(secret.as_str()), "a secret reached the log");
    }
}

#[tokio::test]
async fn json_logs_are_json_and_hold_no_secret() {
    let (out, secrets) = exercise("json").await;
    let json_lines: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect();
    assert!(json_lines.len() > 50);
    assert!(json_lines.iter().any(|l| l["level"] == "INFO"));
    for secret in &secrets {
        assert!(!out.contains(secret.as_str()));
    }
}
