//! Webhook deliveries in the real binary, on both engines: a replica killed
//! with `kill -9` while a delivery is in flight leaves it queued under its
//! lease; after a restart the delivery is made, with the same `webhook-id`.

use std::time::Duration;

use patchbay_stripe::webhook::sign_header;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{ADMIN, Client, Env, PgSchema, Server, data_dir, master_key, wait_until};

const WHSEC: &str = "whsec_binary_tests_0123456789";

async fn received(receiver: &MockServer) -> Vec<String> {
    receiver
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            r.headers
                .get("webhook-id")?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .collect()
}

async fn killed_mid_delivery_delivers_after_restart(db: Option<&str>) {
    let receiver = MockServer::start().await;
    // The first delivery hangs: the replica is killed while it waits.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(600)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let (_tmp, data) = data_dir();
    let mut env = Env::new(&data)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_MASTER_KEYS", master_key("k1"))
        .set("PATCHBAY_STRIPE_API_BASE", "http://127.0.0.1:9")
        .set("PATCHBAY_STRIPE_MAX_RETRIES", "0")
        .set("PATCHBAY_JOB_LEASE", "2s")
        .set("PATCHBAY_JOB_POLL", "100ms")
        .set("PATCHBAY_WEBHOOK_TIMEOUT", "10m")
        .set("PATCHBAY_WEBHOOK_ALLOW_INSECURE_LOOPBACK", "true");
    if let Some(url) = db {
        env = env.set("PATCHBAY_DATABASE_URL", url);
    }
    let mut first = Server::start(&env).await;
    let client = Client::new(&first);
    let (_, token) = client.tenant().await;
    let (s, c) = client
        .post(
            "/api/v1/connections",
            &token,
            json!({"provider": "stripe", "api_key": "sk_test_51HhooksKILL9xyz0123456789", "validate": false}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let conn = c["id"].as_str().unwrap().to_owned();
    client
        .subscribe_invoice_paid(&token, &format!("{}/hook", receiver.uri()))
        .await;
    let endpoint = client.webhook_endpoint(&token, &conn, WHSEC).await;

    let body = json!({"id": "evt_1Kill9", "object": "event", "type": "invoice.paid",
        "created": 1_763_900_000, "livemode": false, "data": {"object": {"id": "in_1"}}})
    .to_string();
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/webhooks/stripe/{endpoint}", first.base))
        .header("Stripe-Signature", sign_header(WHSEC, at, body.as_bytes()))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let receipt: serde_json::Value = response.json().await.unwrap();
    let event = receipt["event_id"].as_str().unwrap().to_owned();

    wait_until(
        "the first delivery attempt",
        Duration::from_secs(20),
        || async { received(&receiver).await.len() == 1 },
    )
    .await;
    first.child.kill().unwrap(); // SIGKILL mid-delivery.
    first.child.wait().unwrap();

    let second = Server::start(&env).await;
    let client = Client::new(&second);
    wait_until(
        "the delivery to succeed after the restart",
        Duration::from_secs(30),
        || async {
            let (_, d) = client
                .get(&format!("/api/v1/events/{event}/deliveries"), &token)
                .await;
            d["data"][0]["status"] == "succeeded"
        },
    )
    .await;
    let ids = received(&receiver).await;
    assert_eq!(ids.len(), 2, "one retry after the lease: {ids:?}");
    assert!(
        ids.iter().all(|id| *id == event),
        "same webhook-id: {ids:?}"
    );
    let (status, _) = second.stop();
    assert!(status.success());
}

#[tokio::test]
async fn a_delivery_killed_mid_flight_is_made_after_restart_on_sqlite() {
    killed_mid_delivery_delivers_after_restart(None).await;
}

#[tokio::test]
async fn a_delivery_killed_mid_flight_is_made_after_restart_on_postgres() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    killed_mid_delivery_delivers_after_restart(Some(&pg.url)).await;
    pg.drop_schema().await;
}
