//! The raw proxy streams: a large Stripe response passes through the real
//! binary without being held whole, measured by the process's peak resident
//! memory (`VmHWM`) before and after.

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{ADMIN, Client, Env, Server, data_dir, master_key};

const SK: &str = "sk_test_51HproxyMEM0123456789abcdef";
const SIZE: usize = 48 * 1024 * 1024;

/// Peak resident memory of `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test]
async fn a_48_mb_response_streams_through_without_being_held() {
    let stripe = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "acct_1Mem", "object": "account"})),
        )
        .mount(&stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/files/file_big/contents"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(vec![b'z'; SIZE], "application/octet-stream"),
        )
        .mount(&stripe)
        .await;
    let (_tmp, data) = data_dir();
    let env = Env::new(&data)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_MASTER_KEYS", master_key("k1"))
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
    let url = format!(
        "{}/api/v1/connections/{}/proxy/v1/files/file_big/contents",
        server.base,
        conn["id"].as_str().unwrap()
    );
    let http = reqwest::Client::new();
    let pid = server.child.id();
    let before = peak_rss(pid);
    let mut response = http
        .get(&url)
        .header("x-api-key", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0usize;
    while let Some(chunk) = response.chunk().await.unwrap() {
        assert!(chunk.iter().all(|b| *b == b'z'));
        received += chunk.len();
    }
    assert_eq!(received, SIZE);
    let grown = peak_rss(pid).saturating_sub(before);
    assert!(
        grown < 16 * 1024 * 1024,
        "peak RSS grew by {} MiB while streaming {} MiB",
        grown / (1024 * 1024),
        SIZE / (1024 * 1024)
    );
    server.stop();
}
