//! Two real replicas on one PostgreSQL, as a scaled-out deployment runs them:
//! a key revoked (or a tenant disabled) through one replica is refused by the
//! other within a second although that one had it cached for a minute, with
//! the change carried by PostgreSQL `NOTIFY` or by Redis; and with Redis the
//! two keep one connection under its Stripe rate limit together.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use wiremock::{MockServer, Request, Respond, ResponseTemplate};

use crate::support::{ADMIN, Client, Env, PgSchema, Server, data_dir, master_key};

/// Far longer than the test: only the invalidation bus explains a refusal.
const KEY_CACHE_TTL: &str = "60s";

fn env_for(data: &std::path::Path, pg: &str, stripe: &str, redis: Option<&str>) -> Env {
    // A channel and key prefix of this run's own: tests running at the same
    // time on the same PostgreSQL and Redis do not hear each other.
    let prefix = format!("pbtest_{}", uuid::Uuid::new_v4().simple());
    let mut env = Env::new(data)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_MASTER_KEYS", master_key("k1"))
        .set("PATCHBAY_DATABASE_URL", pg)
        .set("PATCHBAY_STRIPE_API_BASE", stripe)
        .set("PATCHBAY_STRIPE_MAX_RETRIES", "0")
        .set("PATCHBAY_KEY_CACHE_TTL", KEY_CACHE_TTL)
        .set("PATCHBAY_REDIS_PREFIX", prefix);
    if let Some(url) = redis {
        env = env.set("PATCHBAY_REDIS_URL", url);
    }
    env
}

/// Waits until the replica hears the others (its listener is connected).
async fn until_listening(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = reqwest::get(format!("{}/metrics", server.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text
            .lines()
            .any(|l| l.trim() == "patchbay_invalidation_listening 1")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never started listening for invalidations:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls every 50 ms, up to 1 s, until `token` is refused with `code`.
async fn refused_within_a_second(client: &Client, token: &str, code: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = client.get("/api/v1/api-keys", token).await;
        if status != 200 {
            assert_eq!(body["error"]["code"], code, "{status} {body}");
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s (the cache TTL is {KEY_CACHE_TTL})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A new key of `tenant`: (key id, token).
async fn new_key(client: &Client, tenant: &str) -> (String, String) {
    let (s, k) = client
        .post(
            &format!("/api/v1/tenants/{tenant}/api-keys"),
            ADMIN,
            json!({"scopes": ["admin"]}),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    (
        k["id"].as_str().unwrap().to_owned(),
        k["key"].as_str().unwrap().to_owned(),
    )
}

async fn revoked_and_disabled_elsewhere_are_refused_within_a_second(pg: &str, redis: Option<&str>) {
    let stripe = MockServer::start().await;
    let (_tmp, data) = data_dir();
    let env = env_for(&data, pg, &stripe.uri(), redis);
    let a = Server::start(&env).await;
    let b = Server::start(&env).await;
    until_listening(&a).await;
    until_listening(&b).await;
    let (ca, cb) = (Client::new(&a), Client::new(&b));

    // A revoked key.
    let (tenant, _) = ca.tenant().await;
    let (key_id, token) = new_key(&ca, &tenant).await;
    let (s, body) = cb.get("/api/v1/api-keys", &token).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = ca
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{tenant}/api-keys/{key_id}"),
            ADMIN,
            None,
        )
        .await;
    assert!(s == 200 || s == 204, "{s} {body}");
    let took = refused_within_a_second(&cb, &token, "api_key_revoked").await;
    eprintln!("revoked key refused by the other replica after {took:?}");

    // A disabled tenant.
    let (tenant, token) = ca.tenant().await;
    let (s, body) = cb.get("/api/v1/api-keys", &token).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = ca
        .call(
            Method::PATCH,
            &format!("/api/v1/tenants/{tenant}"),
            ADMIN,
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let took = refused_within_a_second(&cb, &token, "tenant_disabled").await;
    eprintln!("disabled tenant refused by the other replica after {took:?}");

    // Both changes reached B through the shared channel.
    let text = reqwest::get(format!("{}/metrics", b.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let received: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("patchbay_invalidations_total{direction=\"received\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        received >= 2.0,
        "B received {received} invalidations:\n{text}"
    );
    a.stop();
    b.stop();
}

#[tokio::test]
async fn a_revocation_reaches_the_other_replica_within_a_second_by_notify_postgres() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    revoked_and_disabled_elsewhere_are_refused_within_a_second(&pg.url, None).await;
    pg.drop_schema().await;
}

#[tokio::test]
async fn a_revocation_reaches_the_other_replica_within_a_second_by_redis_postgres() {
    let Some(redis) = crate::redis::redis_url().await else {
        return;
    };
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    revoked_and_disabled_elsewhere_are_refused_within_a_second(&pg.url, Some(&redis)).await;
    pg.drop_schema().await;
}

/// A fake Stripe that notes when each proxied call (`/v1/customers`) arrived.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<Instant>>>);

impl Respond for Arrivals {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.url.path() == "/v1/customers" {
            self.0.lock().unwrap().push(Instant::now());
        }
        let body = if request.url.path() == "/v1/account" {
            json!({"id": "acct_1Shared", "object": "account", "country": "US",
                   "default_currency": "usd", "business_profile": {"name": "Acme"}})
        } else {
            json!({"object": "list", "data": [], "has_more": false, "url": "/v1/customers"})
        };
        ResponseTemplate::new(200).set_body_json(body)
    }
}

/// The most arrivals inside any span of `window`.
fn busiest(arrivals: &[Instant], window: Duration) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|t| **t < sorted[i] + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn two_replicas_sharing_redis_keep_a_connection_under_its_limit_redis_postgres() {
    const LIMIT: usize = 4;
    const CALLS: usize = 24;
    let Some(redis) = crate::redis::redis_url().await else {
        return;
    };
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    let stripe = MockServer::start().await;
    let arrivals = Arrivals::default();
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(arrivals.clone())
        .mount(&stripe)
        .await;
    let (_tmp, data) = data_dir();
    let env = env_for(&data, &pg.url, &stripe.uri(), Some(&redis))
        .set("PATCHBAY_STRIPE_RATE_LIMIT_TEST", LIMIT.to_string());
    let a = Server::start(&env).await;
    let b = Server::start(&env).await;
    let (ca, cb) = (Client::new(&a), Client::new(&b));
    let (_, token) = ca.tenant().await;
    let (s, conn) = ca
        .post(
            "/api/v1/connections",
            &token,
            json!({"provider": "stripe", "api_key": "sk_test_51HsharedLIMITxyz0123456789ab"}),
        )
        .await;
    assert_eq!(s, 201, "{conn}");
    let path = format!(
        "/api/v1/connections/{}/proxy/v1/customers",
        conn["id"].as_str().unwrap()
    );
    let calls = (0..CALLS).map(|i| {
        let client = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        let (token, path) = (token.clone(), path.clone());
        async move { client.get(&path, &token).await }
    });
    let answers: Vec<(u16, Value)> = futures::future::join_all(calls).await;
    for (s, body) in &answers {
        assert_eq!(*s, 200, "{body}");
    }
    let seen = arrivals.0.lock().unwrap().clone();
    assert_eq!(seen.len(), CALLS);
    // The limiter spaces the LIMIT-th next request 1.05 s apart; 150 ms of that
    // is left to scheduling between a replica's wake-up and the fake's receipt.
    // Each replica alone would let 2 x LIMIT through in such a span.
    let most = busiest(&seen, Duration::from_millis(900));
    assert!(
        most <= LIMIT,
        "{most} requests reached Stripe within 0.9 s; the shared limit is {LIMIT}/s"
    );
    // Shared, 24 calls at 4 per 1.05 s take at least five windows; apart,
    // each replica's 12 would take two.
    let span = *seen.iter().max().unwrap() - *seen.iter().min().unwrap();
    assert!(span >= Duration::from_secs(4), "all calls within {span:?}");
    a.stop();
    b.stop();
    pg.drop_schema().await;
}
