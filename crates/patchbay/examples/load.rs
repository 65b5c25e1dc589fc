//! The load generator and fake Stripe behind `scripts/bench-load`.
//!
//! `load fake-stripe <port>`: a tiny, fast stand-in for Stripe: the account
//! for `GET /v1/account` (so connections are created with their test call),
//! a fixed customer for anything else, 401 without a test-mode bearer key.
//!
//! `load run`: sets up TENANTS tenants with PER_TENANT connections each, then
//! sends requests at a FIXED rate (open loop: request `i` is due at
//! `start + i / rate` whether or not earlier ones have answered, and its
//! latency counts from that moment, so a stalled server shows as latency
//! instead of a slower generator), WARMUP seconds unmeasured and DURATION
//! seconds measured, spread over the tenants and their connections:
//! 40 % `GET /api/v1/connections/{id}`, 20 % the action `stripe.getCustomer`,
//! 10 % the action `stripe.createCustomer`, 30 % the raw proxy
//! (`GET …/proxy/v1/customers/cus_123`). It reports the requests, errors
//! (any answer but 2xx, or none), p50/p99 per kind, and the server's RSS
//! (`/proc/<pid>/status`) after the warm-up, every ten seconds, and at the end.
//! Settings come from the environment (see `Settings::from_env`).
//!
//! `load latency <name> <paths-file>`: the added latency of a call at a rate
//! below saturation, behind `scripts/bench-proxy` scenario (l). CALLERS
//! callers (50), each on its own kept-alive connection, send RATE requests/s
//! in all, evenly spaced (request `i` is due at `start + i / RATE`, sent by
//! caller `i % CALLERS`; its latency counts from when it was due if the
//! caller's previous answer came later than that, so a slow answer that
//! delays the next request shows as latency, else from when the timer
//! fired, so tokio's millisecond timer does not count), for
//! WARMUP seconds unmeasured, then DURATION seconds. Each line of the file is
//! a URL; LATENCY_HEADER (`name: value`) is sent with each request, and with
//! LATENCY_BODY the request is a POST of that JSON, else a GET. It prints one
//! line: `<name> <count> <errors> <p50 ms> <p90 ms> <p99 ms> <max ms>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::time::Instant;

const CUSTOMER: &str = r#"{"id":"cus_123","object":"customer","balance":0,"created":1700000000,"currency":"usd","delinquent":false,"description":"Load customer","email":"load@example.com","invoice_prefix":"LOAD01","livemode":false,"metadata":{"plan":"pro"},"name":"Load Customer","phone":null,"preferred_locales":[],"tax_exempt":"none"}"#;
const ACCOUNT: &str = r#"{"id":"acct_1Load","object":"account","business_profile":{"name":"Load Ltd"},"country":"US","default_currency":"usd","email":"load@example.com","settings":{"dashboard":{"display_name":"Load"}},"type":"standard"}"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Read,
    GetCustomer,
    CreateCustomer,
    Proxy,
}

impl Kind {
    /// The mix: out of every ten requests, 4 reads, 2 + 1 actions, 3 proxied.
    fn of(i: u64) -> Self {
        match i % 10 {
            0 | 3 | 5 | 8 => Self::Read,
            1 | 6 => Self::GetCustomer,
            9 => Self::CreateCustomer,
            _ => Self::Proxy,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Read => "read (GET connection)",
            Self::GetCustomer => "action getCustomer",
            Self::CreateCustomer => "action createCustomer",
            Self::Proxy => "proxy GET customer",
        }
    }
}

#[derive(Debug)]
struct Settings {
    base: String,
    admin: String,
    stripe_key: String,
    tenants: usize,
    per_tenant: usize,
    rate: f64,
    warmup: u64,
    duration: u64,
    pid: Option<u32>,
}

impl Settings {
    fn from_env() -> Self {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        let num = |name: &str, default: &str| -> u64 {
            var(name, default)
                .parse()
                .unwrap_or_else(|_| panic!("{name} must be a whole number"))
        };
        Self {
            base: var("LOAD_BASE", "http://127.0.0.1:8080"),
            admin: std::env::var("LOAD_ADMIN").expect("LOAD_ADMIN: the admin token"),
            stripe_key: var("LOAD_STRIPE_KEY", "sk_test_LoadGenerator0123456789"),
            tenants: num("TENANTS", "100") as usize,
            per_tenant: num("PER_TENANT", "10") as usize,
            rate: num("RATE", "400") as f64,
            warmup: num("WARMUP", "30"),
            duration: num("DURATION", "60"),
            pid: std::env::var("LOAD_PID").ok().and_then(|p| p.parse().ok()),
        }
    }
}

/// One connection to call, with its tenant's key.
struct Target {
    key: String,
    connection: String,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("fake-stripe") => {
            let port: u16 = args
                .get(2)
                .and_then(|p| p.parse().ok())
                .expect("fake-stripe <port>");
            fake_stripe(port).await;
        }
        Some("run") => run(Settings::from_env()).await,
        Some("latency") => {
            let (Some(name), Some(file)) = (args.get(2), args.get(3)) else {
                eprintln!("usage: load latency <name> <paths-file>");
                std::process::exit(2);
            };
            latency(name, file).await;
        }
        _ => {
            eprintln!(
                "usage: load fake-stripe <port> | load run | load latency <name> <paths-file> (settings from the environment)"
            );
            std::process::exit(2);
        }
    }
}

async fn fake_stripe(port: u16) {
    fn authorized(headers: &HeaderMap) -> bool {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer sk_test_"))
    }
    fn answer(headers: &HeaderMap, body: &'static str) -> axum::response::Response {
        if !authorized(headers) {
            return (
                StatusCode::UNAUTHORIZED,
                [("content-type", "application/json")],
                r#"{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}"#,
            )
                .into_response();
        }
        (
            [
                ("content-type", "application/json"),
                ("request-id", "req_LoadFakeStripe0001"),
            ],
            body,
        )
            .into_response()
    }
    let app = Router::new()
        .route(
            "/v1/account",
            get(|h: HeaderMap| async move { answer(&h, ACCOUNT) }),
        )
        .fallback(|h: HeaderMap| async move { answer(&h, CUSTOMER) });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("fake Stripe: cannot listen");
    axum::serve(listener, app).await.expect("fake Stripe");
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut request = http.request(method, &url).header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url}: {status} {}", &text[..text.len().min(300)]));
    }
    serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))
}

/// Creates the tenants, their keys and their connections (each connection
/// with its test call to the fake Stripe), a few at a time.
async fn setup(http: &reqwest::Client, s: &Settings) -> Vec<Target> {
    let started = std::time::Instant::now();
    let tenants = futures::stream::iter(0..s.tenants)
        .map(|t| async move {
            let tenant = call(
                http,
                reqwest::Method::POST,
                format!("{}/api/v1/tenants", s.base),
                &s.admin,
                Some(json!({"name": format!("load tenant {t}")})),
            )
            .await
            .expect("create tenant");
            let id = tenant["id"].as_str().expect("tenant id").to_owned();
            let key = call(
                http,
                reqwest::Method::POST,
                format!("{}/api/v1/tenants/{id}/api-keys", s.base),
                &s.admin,
                Some(json!({"scopes": ["connections:write", "proxy"]})),
            )
            .await
            .expect("create API key")["key"]
                .as_str()
                .expect("key")
                .to_owned();
            let mut targets = Vec::new();
            for c in 0..s.per_tenant {
                let created = call(
                    http,
                    reqwest::Method::POST,
                    format!("{}/api/v1/connections", s.base),
                    &key,
                    Some(json!({"provider": "stripe", "api_key": s.stripe_key,
                                "name": format!("load {t}/{c}")})),
                )
                .await
                .expect("create connection");
                assert_eq!(created["status"], "active", "{created}");
                targets.push(Target {
                    key: key.clone(),
                    connection: created["id"].as_str().expect("connection id").to_owned(),
                });
            }
            targets
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let targets: Vec<Target> = tenants.into_iter().flatten().collect();
    println!(
        "setup: {} tenants, {} connections in {:.1} s",
        s.tenants,
        targets.len(),
        started.elapsed().as_secs_f64()
    );
    targets
}

fn rss_mb(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[derive(Default)]
struct Results {
    latencies: BTreeMap<Kind, Vec<f64>>,
    errors: BTreeMap<Kind, u64>,
    first_errors: Vec<String>,
}

async fn one(
    http: &reqwest::Client,
    base: &str,
    target: &Target,
    kind: Kind,
) -> Result<(), String> {
    let conn = format!("{base}/api/v1/connections/{}", target.connection);
    let (method, url, body) = match kind {
        Kind::Read => (reqwest::Method::GET, conn, None),
        Kind::GetCustomer => (
            reqwest::Method::POST,
            format!("{conn}/actions"),
            Some(json!({"action": "stripe.getCustomer", "config": {"customerId": "cus_123"}})),
        ),
        Kind::CreateCustomer => (
            reqwest::Method::POST,
            format!("{conn}/actions"),
            Some(json!({"action": "stripe.createCustomer",
                        "config": {"email": "load@example.com", "name": "Load Customer"}})),
        ),
        Kind::Proxy => (
            reqwest::Method::GET,
            format!("{conn}/proxy/v1/customers/cus_123"),
            None,
        ),
    };
    call(http, method, url, &target.key, body).await.map(|_| ())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The generator's HTTP client, keeping up to `idle` connections per host.
fn client(idle: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(idle)
        .tcp_nodelay(true)
        .build()
        .expect("HTTP client")
}

async fn run(s: Settings) {
    let http = client(1024);
    let targets = Arc::new(setup(&http, &s).await);
    let results = Arc::new(Mutex::new(Results::default()));
    let interval = Duration::from_secs_f64(1.0 / s.rate);
    let warmup_n = (s.rate * s.warmup as f64) as u64;
    let total_n = warmup_n + (s.rate * s.duration as f64) as u64;
    println!(
        "load: {} req/s open loop, {} s warm-up + {} s measured, {} connections of {} tenants",
        s.rate,
        s.warmup,
        s.duration,
        targets.len(),
        s.tenants
    );
    let start = Instant::now() + Duration::from_millis(100);
    let measured_from = start + interval * u32::try_from(warmup_n).expect("warm-up too long");
    let mut rss_series = Vec::new();
    let mut next_rss = measured_from;
    let mut in_flight = Vec::with_capacity(1024);
    let mut behind = Duration::ZERO;
    for i in 0..total_n {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        behind = behind.max(Instant::now().saturating_duration_since(due));
        if Instant::now() >= next_rss {
            rss_series.push(((next_rss - measured_from).as_secs(), rss_mb(s.pid)));
            next_rss += Duration::from_secs(10);
        }
        // Connections in turn, so every tenant and connection is used evenly.
        let target = targets.clone();
        let http = http.clone();
        let base = s.base.clone();
        let results = results.clone();
        let measured = i >= warmup_n;
        in_flight.push(tokio::spawn(async move {
            let kind = Kind::of(i);
            let t = &target[(i as usize / 10 * 7 + i as usize) % target.len()];
            let outcome = one(&http, &base, t, kind).await;
            let ms = due.elapsed().as_secs_f64() * 1000.0;
            if !measured && outcome.is_ok() {
                return;
            }
            let mut r = results.lock();
            match outcome {
                Ok(()) => r.latencies.entry(kind).or_default().push(ms),
                Err(e) => {
                    *r.errors.entry(kind).or_default() += 1;
                    if r.first_errors.len() < 5 {
                        r.first_errors.push(e);
                    }
                }
            }
        }));
        if in_flight.len() >= 1024 {
            in_flight.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
        }
    }
    for task in in_flight {
        task.await.expect("request task");
    }
    let ended = Instant::now();
    let rss_end = rss_mb(s.pid);
    let r = results.lock();
    let ok: usize = r.latencies.values().map(Vec::len).sum();
    let errors: u64 = r.errors.values().sum();
    println!(
        "requests: {} measured ({} s at {} req/s; all {} including warm-up), errors: {errors}",
        ok as u64 + errors,
        s.duration,
        s.rate,
        total_n
    );
    println!(
        "generator: at most {:.1} ms behind schedule; last answer {:.1} s after the last request was due",
        behind.as_secs_f64() * 1000.0,
        (ended - (start + interval.mul_f64(total_n as f64))).as_secs_f64()
    );
    println!(
        "{:<24} {:>8} {:>9} {:>9} {:>9}",
        "kind", "count", "p50 ms", "p99 ms", "max ms"
    );
    for (kind, lat) in r.latencies.iter() {
        let mut sorted = lat.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "{:<24} {:>8} {:>9.2} {:>9.2} {:>9.2}",
            kind.name(),
            sorted.len(),
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.99),
            sorted.last().copied().unwrap_or(f64::NAN)
        );
    }
    for (kind, n) in r.errors.iter() {
        println!("errors {:<17} {n}", kind.name());
    }
    for e in &r.first_errors {
        println!("error: {e}");
    }
    if s.pid.is_some() {
        let series: Vec<String> = rss_series
            .iter()
            .map(|(t, mb)| format!("{t}s {:.1}", mb.unwrap_or(f64::NAN)))
            .collect();
        println!(
            "RSS MB every 10 s from the end of warm-up: {}",
            series.join(", ")
        );
        let warm = rss_series.first().and_then(|(_, mb)| *mb);
        if let (Some(warm), Some(end)) = (warm, rss_end) {
            let change = (end - warm) / warm * 100.0;
            println!(
                "RSS: {warm:.1} MB after warm-up, {end:.1} MB at the end ({change:+.1} %){}",
                if change.abs() <= 10.0 {
                    ""
                } else {
                    "  <- more than 10 %"
                }
            );
        }
    }
    if errors > 0 {
        std::process::exit(1);
    }
}

/// See the module documentation (`load latency`).
async fn latency(name: &str, file: &str) {
    let num = |var: &str, default: f64| -> f64 {
        std::env::var(var)
            .ok()
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{var} must be a number"))
            })
            .unwrap_or(default)
    };
    let rate = num("RATE", 1000.0);
    let callers = num("CALLERS", 50.0) as usize;
    let warmup = num("WARMUP", 3.0);
    let duration = num("DURATION", 10.0);
    let urls: Vec<String> = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!urls.is_empty(), "{file}: no URLs");
    let header = std::env::var("LATENCY_HEADER").ok().map(|h| {
        let (k, v) = h.split_once(':').expect("LATENCY_HEADER: name: value");
        (k.trim().to_owned(), v.trim().to_owned())
    });
    let body = std::env::var("LATENCY_BODY").ok();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let warmup_n = (rate * warmup) as u64;
    let total_n = warmup_n + (rate * duration) as u64;
    let urls = Arc::new(urls);
    let start = Instant::now() + Duration::from_millis(200);
    let tasks: Vec<_> = (0..callers as u64)
        .map(|k| {
            let urls = urls.clone();
            let header = header.clone();
            let body = body.clone();
            // One client each: each caller keeps its own connection.
            let http = client(1);
            tokio::spawn(async move {
                let mut measured = Vec::new();
                let mut errors = 0u64;
                let mut first_error = None;
                let mut i = k;
                while i < total_n {
                    let due = start + interval.mul_f64(i as f64);
                    // Late because the previous answer came after this one was
                    // due: the server's doing, so latency counts from `due`.
                    // Otherwise from the moment the timer fired (tokio's timer
                    // ticks in whole milliseconds: up to 1 ms after `due`).
                    let behind = Instant::now() > due;
                    tokio::time::sleep_until(due).await;
                    let from = if behind { due } else { Instant::now() };
                    let url = &urls[i as usize % urls.len()];
                    let mut request = match &body {
                        Some(b) => http
                            .post(url)
                            .header("content-type", "application/json")
                            .body(b.clone()),
                        None => http.get(url),
                    };
                    if let Some((k, v)) = &header {
                        request = request.header(k, v);
                    }
                    let outcome = match request.send().await {
                        Ok(r) if r.status().is_success() => {
                            r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                        }
                        Ok(r) => Err(format!("{url}: {}", r.status())),
                        Err(e) => Err(format!("{url}: {e}")),
                    };
                    let ms = from.elapsed().as_secs_f64() * 1000.0;
                    match outcome {
                        Ok(()) if i >= warmup_n => measured.push(ms),
                        Ok(()) => {}
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                    i += callers as u64;
                }
                (measured, errors, first_error)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (measured, e, first) = task.await.expect("caller task");
        all.extend(measured);
        errors += e;
        if let Some(first) = first {
            eprintln!("{name}: error: {first}");
        }
    }
    all.sort_by(f64::total_cmp);
    println!(
        "{name} {} {errors} {:.3} {:.3} {:.3} {:.3}",
        all.len(),
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(f64::NAN)
    );
    if errors > 0 {
        std::process::exit(1);
    }
}
