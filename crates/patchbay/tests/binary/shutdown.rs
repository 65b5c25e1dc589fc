//! SIGTERM lets in-flight requests finish, then the process exits cleanly.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{ADMIN, Client, Env, Server, data_dir, master_key, terminate, wait_timeout};

#[tokio::test]
async fn in_flight_requests_finish_after_sigterm() {
    let stripe = MockServer::start().await;
    Mock::given(path("/v1/account"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(1500))
                .set_body_json(json!({"id": "acct_1Slow"})),
        )
        .mount(&stripe)
        .await;
    let (_tmp, data) = data_dir();
    let env = Env::new(&data)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_MASTER_KEYS", master_key("k1"))
        .set("PATCHBAY_STRIPE_API_BASE", stripe.uri());
    let mut server = Server::start(&env).await;
    let client = Client::new(&server);
    let (_, token) = client.tenant().await;
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .post(
                    "/api/v1/connections",
                    &token,
                    json!({"provider": "stripe", "api_key": "sk_test_51HslowREQUEST0123456789ab"}),
                )
                .await
        }
    });
    // SIGTERM only once the request is in flight: Stripe (the mock) has it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stripe
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never reached Stripe"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    terminate(&server.child);
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 201, "the in-flight request completed: {body}");
    let exit = wait_timeout(&mut server.child, Duration::from_secs(20)).expect("exits");
    assert!(exit.success(), "{exit}");
}
