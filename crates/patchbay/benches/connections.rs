//! Connections at volume, through the real HTTP stack (in-process server on a
//! local port, a local fake Stripe): 1,000 creations at once, then list pages
//! of a tenant holding 100,000 connections.
//! `cargo bench -p patchbay --bench connections` (TEST_DATABASE_URL adds PostgreSQL;
//! BENCH_ROWS changes the row count).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::get;
use patchbay_api::{ApiConfig, AppState};
use patchbay_core::audit::{Actor, AuditEvent};
use patchbay_core::connect::{ConnectionSecret, SecretRole};
use patchbay_core::connection::{
    AccountDetails, AuthMethod, Connection, ConnectionStatus, Provider,
};
use patchbay_core::store::NewConnection;
use patchbay_core::time::now;
use patchbay_core::{ConnectionId, Metadata, TenantId};
use patchbay_stripe::{ClientConfig, StripeClient};
use patchbay_vault::{Keyring, SecretContext, generate_master_key, verify_keyring_against_store};
use secrecy::SecretString;
use serde_json::{Value, json};

const ADMIN: &str = "pba_bench_admin_token_0123456789abcdefghij";

async fn fake_stripe() -> String {
    let app = axum::Router::new()
        .route(
            "/v1/account",
            get(|| async {
                Json(json!({"id": "acct_1Bench", "object": "account", "country": "US"}))
            }),
        )
        .route(
            "/v1/balance",
            get(|| async { Json(json!({"object": "balance"})) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn serve(state: AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = patchbay_api::app(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn post(http: &reqwest::Client, url: String, token: &str, body: Value) -> (u16, Value) {
    let r = http
        .post(url)
        .header("x-api-key", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn timed_gets(http: &reqwest::Client, urls: Vec<String>, token: &str) -> (f64, f64) {
    let mut samples = Vec::with_capacity(urls.len());
    for url in urls {
        let t = Instant::now();
        let r = http
            .get(url)
            .header("x-api-key", token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (
        common::percentile(&samples, 0.5),
        common::percentile(&samples, 0.99),
    )
}

#[tokio::main]
async fn main() {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let stripe = fake_stripe().await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    for backend in common::Backend::all().await {
        let store = backend.store.clone();
        let keyring = Arc::new(Keyring::parse(&generate_master_key("k1").unwrap()).unwrap());
        verify_keyring_against_store(&keyring, store.as_ref())
            .await
            .unwrap();
        let client = StripeClient::new(ClientConfig {
            api_base: url::Url::parse(&stripe).unwrap(),
            ..ClientConfig::default()
        })
        .unwrap();
        let state = AppState::new(
            store.clone(),
            keyring.clone(),
            client,
            Some(&SecretString::from(ADMIN)),
            ApiConfig::default(),
            None,
        );
        let base = serve(state).await;

        let (_, tenant) = post(
            &http,
            format!("{base}/api/v1/tenants"),
            ADMIN,
            json!({"name": "bench"}),
        )
        .await;
        let tenant_id: TenantId = tenant["id"].as_str().unwrap().parse().unwrap();
        let (_, key) = post(
            &http,
            format!("{base}/api/v1/tenants/{tenant_id}/api-keys"),
            ADMIN,
            json!({"scopes": ["admin"]}),
        )
        .await;
        let token = key["key"].as_str().unwrap().to_owned();

        // 1,000 creations at once, each with its test call.
        let started = Instant::now();
        let calls = (0..1000).map(|i| {
            let (http, base, token) = (http.clone(), base.clone(), token.clone());
            async move {
                post(&http, format!("{base}/api/v1/connections"), &token, json!({
                    "provider": "stripe", "api_key": format!("sk_test_51Hcreate{i:06}abcdefghijklmnop"), "external_id": format!("c{i}")
                })).await.0
            }
        });
        let statuses = futures::future::join_all(calls).await;
        let elapsed = started.elapsed().as_secs_f64();
        let failures = statuses.iter().filter(|s| **s != 201).count();
        println!(
            "[{}] created 1000 connections concurrently in {elapsed:.2}s ({:.0}/s), {failures} errors",
            backend.name,
            1000.0 / elapsed
        );
        assert_eq!(failures, 0);

        // Fill the tenant to `rows` connections directly through the store.
        let record = store.tenant_data_key(tenant_id).await.unwrap().unwrap();
        let data_key = Arc::new(keyring.open_data_key(&record).unwrap());
        let t = Instant::now();
        let ids: Arc<Vec<ConnectionId>> =
            Arc::new((0..rows - 1000).map(|_| ConnectionId::new()).collect());
        common::run_concurrently(rows - 1000, 16, |i| {
            let (store, data_key, ids) = (store.clone(), data_key.clone(), ids.clone());
            async move {
                let at = now();
                let id = ids[i];
                let id_text = id.to_string();
                let sealed = data_key
                    .seal(
                        SecretContext {
                            tenant: tenant_id,
                            record: &id_text,
                            field: "api_key",
                        },
                        &SecretString::from(format!("sk_test_51Hfill{i:08}abcdefghijkl")),
                    )
                    .unwrap();
                let connection = Connection {
                    id,
                    tenant_id,
                    provider: Provider::Stripe,
                    auth_method: AuthMethod::SecretKey,
                    livemode: false,
                    status: if i % 10 == 0 {
                        ConnectionStatus::Invalid
                    } else {
                        ConnectionStatus::Active
                    },
                    account: AccountDetails::default(),
                    key_hint: "sk_test_…ijkl".into(),
                    external_id: Some(format!("f{i}")),
                    name: None,
                    metadata: Metadata::default(),
                    stripe_version: None,
                    missing_permissions: vec![],
                    last_validated_at: Some(at),
                    last_error: None,
                    previous_key_hint: None,
                    previous_key_expires_at: None,
                    grant: None,
                    created_at: at,
                    updated_at: at,
                };
                let new = NewConnection {
                    connection,
                    data_key_id: record.id,
                    secrets: vec![ConnectionSecret::new(SecretRole::ApiKey, sealed)],
                    jobs: Vec::new(),
                    session: None,
                };
                let audit = AuditEvent::new(
                    Some(tenant_id),
                    Actor::System,
                    "connection.created",
                    None,
                    json!({}),
                    None,
                );
                store.create_connection(&new, &audit).await.unwrap();
            }
        })
        .await;
        println!(
            "[{}] filled to {rows} connections in {:.1}s",
            backend.name,
            t.elapsed().as_secs_f64()
        );

        // List pages: the first page, pages after random cursors, a filtered page;
        // on PostgreSQL first as the bulk fill leaves the planner statistics, then
        // after ANALYZE (what autovacuum does within a minute or so).
        let rounds: &[&str] = if backend.name == "postgres" {
            &["before ANALYZE", "steady state"]
        } else {
            &["steady state"]
        };
        for (round, label) in rounds.iter().enumerate() {
            if round == 1 {
                backend.analyze().await;
            }
            let page = |query: &str, n: usize| -> Vec<String> {
                (0..n)
                    .map(|_| format!("{base}/api/v1/connections?{query}"))
                    .collect()
            };
            let after_random_cursor = |limit: usize| -> Vec<String> {
                (0..1000)
                    .map(|i| {
                        format!(
                            "{base}/api/v1/connections?limit={limit}&starting_after={}",
                            ids[(i * 7919) % ids.len()]
                        )
                    })
                    .collect()
            };
            timed_gets(&http, page("limit=10", 200), &token).await; // warm-up
            let runs = [
                (
                    format!("first page (limit=10) of {rows}"),
                    page("limit=10", 1000),
                ),
                (
                    "page after a random cursor (limit=100)".to_owned(),
                    after_random_cursor(100),
                ),
                (
                    "page after a random cursor (limit=10)".to_owned(),
                    after_random_cursor(10),
                ),
                (
                    "filtered page (status=invalid, limit=10)".to_owned(),
                    page("limit=10&status=invalid", 500),
                ),
            ];
            for (what, urls) in runs {
                let (p50, p99) = timed_gets(&http, urls, &token).await;
                println!(
                    "[{}, {label}] {what}: p50 {p50:.2} ms, p99 {p99:.2} ms",
                    backend.name
                );
            }
        }
        backend.finish().await;
    }
}
