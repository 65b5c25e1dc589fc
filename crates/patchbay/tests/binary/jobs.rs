//! The job worker in the real binary, on both engines: a replica killed with
//! `kill -9` in the middle of a job leaves it to another replica once the lease
//! expires, and two replicas on one database never run the same job twice.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{ADMIN, Client, Env, PgSchema, Server, data_dir, master_key, wait_until};

const SK: &str = "sk_test_51HjobsKILL9xyz0123456789ab";

fn account(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": id, "object": "account", "country": "US", "default_currency": "usd",
        "business_profile": {"name": "Acme"}
    }))
}

async fn account_requests(stripe: &MockServer) -> usize {
    stripe
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/v1/account")
        .count()
}

async fn status_of(client: &Client, token: &str, id: &str) -> Value {
    client
        .get(&format!("/api/v1/connections/{id}"), token)
        .await
        .1["status"]
        .clone()
}

fn env_for(data: &std::path::Path, stripe: &MockServer, keys: &str, db: Option<&str>) -> Env {
    let mut env = Env::new(data)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_MASTER_KEYS", keys)
        .set("PATCHBAY_STRIPE_API_BASE", stripe.uri())
        .set("PATCHBAY_STRIPE_MAX_RETRIES", "0")
        .set("PATCHBAY_JOB_LEASE", "2s")
        .set("PATCHBAY_JOB_POLL", "100ms");
    if let Some(url) = db {
        env = env.set("PATCHBAY_DATABASE_URL", url);
    }
    env
}

async fn killed_mid_job_is_retried_after_the_lease(db: Option<&str>) {
    let stripe = MockServer::start().await;
    // The first test call hangs: the replica is killed while it waits.
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(account("acct_1Hang").set_delay(Duration::from_secs(600)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(account("acct_1Jobs"))
        .with_priority(2)
        .mount(&stripe)
        .await;
    let (_tmp, data) = data_dir();
    let env = env_for(&data, &stripe, &master_key("k1"), db);
    let mut first = Server::start(&env).await;
    let client = Client::new(&first);
    let (_, token) = client.tenant().await;
    let (s, c) = client
        .post(
            "/api/v1/connections",
            &token,
            json!({"provider": "stripe", "api_key": SK, "validate": false}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(c["status"], "pending");
    // The worker picks the job up at once and is stuck in the test call.
    wait_until(
        "the first attempt to reach Stripe",
        Duration::from_secs(20),
        || async { account_requests(&stripe).await == 1 },
    )
    .await;
    first.child.kill().unwrap(); // SIGKILL: no graceful anything.
    first.child.wait().unwrap();

    let second = Server::start(&env).await;
    let client = Client::new(&second);
    // Still pending: the lease (2 s) protects the dead worker's job until it
    // expires, then the new replica retries it.
    wait_until(
        "the retried job to validate the connection",
        Duration::from_secs(30),
        || async { status_of(&client, &token, &id).await == "active" },
    )
    .await;
    assert_eq!(account_requests(&stripe).await, 2, "exactly one retry");
    let (_, c) = client
        .get(&format!("/api/v1/connections/{id}"), &token)
        .await;
    assert_eq!(c["stripe_account_id"], "acct_1Jobs");
    let (status, _) = second.stop();
    assert!(status.success());
}

#[tokio::test]
async fn a_job_killed_mid_run_is_retried_after_its_lease_on_sqlite() {
    killed_mid_job_is_retried_after_the_lease(None).await;
}

#[tokio::test]
async fn a_job_killed_mid_run_is_retried_after_its_lease_on_postgres() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    killed_mid_job_is_retried_after_the_lease(Some(&pg.url)).await;
    pg.drop_schema().await;
}

async fn two_replicas_run_each_job_once(db: Option<&str>) {
    let stripe = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(account("acct_1Both").set_delay(Duration::from_millis(200)))
        .mount(&stripe)
        .await;
    let (_tmp, data) = data_dir();
    let env = env_for(&data, &stripe, &master_key("k1"), db);
    let a = Server::start(&env).await;
    let b = Server::start(&env).await;
    let (ca, cb) = (Client::new(&a), Client::new(&b));
    let (_, token) = ca.tenant().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        // Alternate replicas: each wakes its own worker, both poll.
        let client = if i % 2 == 0 { &ca } else { &cb };
        let key = format!("sk_test_51HjobsBOTH{i:02}xyz0123456789ab");
        let (s, c) = client
            .post(
                "/api/v1/connections",
                &token,
                json!({"provider": "stripe", "api_key": key, "validate": false}),
            )
            .await;
        assert_eq!(s, 201, "{c}");
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        wait_until(
            "every connection to be validated",
            Duration::from_secs(60),
            || async { status_of(&ca, &token, id).await == "active" },
        )
        .await;
    }
    assert_eq!(
        account_requests(&stripe).await,
        20,
        "each job ran exactly once"
    );
    for server in [a, b] {
        let (status, _) = server.stop();
        assert!(status.success());
    }
}

#[tokio::test]
async fn two_replicas_never_run_one_job_twice_on_sqlite() {
    two_replicas_run_each_job_once(None).await;
}

#[tokio::test]
async fn two_replicas_never_run_one_job_twice_on_postgres() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    two_replicas_run_each_job_once(Some(&pg.url)).await;
    pg.drop_schema().await;
}
