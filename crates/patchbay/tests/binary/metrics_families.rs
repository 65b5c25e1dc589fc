//! `/metrics` after real work, on both engines: a connection created with its
//! Stripe test call, a proxied call retried once after a 500, a job run and a
//! webhook delivered. Every documented family is present, every label of
//! every family comes from its closed set, and no id or secret appears.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use patchbay_stripe::webhook::sign_header;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{ADMIN, Client, Env, PgSchema, Server, data_dir, master_key, wait_until};

const SK: &str = "sk_test_51HmetricsFAMILIES0123456789ab";
const WHSEC: &str = "whsec_metrics_families_0123456789";

/// A label's closed set: listed values, or digits (an HTTP status), or a
/// route template.
#[derive(Clone, Copy)]
enum Allowed {
    Values(&'static [&'static str]),
    StatusCode,
    RouteTemplate,
    /// A histogram bucket bound.
    Bound,
}

const JOB_KINDS: &[&str] = &[
    "connection.revalidate",
    "keys.purge_previous",
    "connect.deauthorize",
    "webhook.deliver",
    "events.purge",
    "other",
];
const STRIPE_STATUSES: &[&str] = &[
    "200",
    "201",
    "400",
    "401",
    "402",
    "403",
    "404",
    "409",
    "424",
    "429",
    "500",
    "502",
    "503",
    "504",
    "1xx",
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "other",
    "no_answer",
];
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other",
];

/// Whether this test's work must have made a family appear, and its labels'
/// closed sets.
type Family = (bool, Vec<(&'static str, Allowed)>);

/// Every family `/metrics` may show.
fn families() -> BTreeMap<&'static str, Family> {
    use Allowed::*;
    let via = ("via", Values(&["api", "proxy", "connect"]));
    let class = ("class", Values(&["read", "write"]));
    let engine = ("engine", Values(&["sqlite", "postgres"]));
    let pool = ("pool", Values(&["main", "reader", "writer"]));
    BTreeMap::from([
        (
            "patchbay_http_requests_total",
            (
                true,
                vec![
                    ("method", Values(METHODS)),
                    ("route", RouteTemplate),
                    ("status", StatusCode),
                ],
            ),
        ),
        (
            "patchbay_http_request_duration_seconds",
            (
                true,
                vec![("method", Values(METHODS)), ("route", RouteTemplate)],
            ),
        ),
        (
            "patchbay_stripe_requests_total",
            (true, vec![via, ("status", Values(STRIPE_STATUSES))]),
        ),
        (
            "patchbay_stripe_request_duration_seconds",
            (true, vec![via]),
        ),
        (
            "patchbay_stripe_retries_total",
            (
                true,
                vec![via, ("reason", Values(&["status", "no_answer"]))],
            ),
        ),
        (
            "patchbay_stripe_rate_limit_total",
            (
                true,
                vec![
                    class,
                    ("outcome", Values(&["immediate", "waited", "refused"])),
                ],
            ),
        ),
        (
            "patchbay_stripe_rate_limit_wait_seconds",
            (true, vec![class]),
        ),
        (
            "patchbay_vault_operations_total",
            (
                true,
                vec![
                    (
                        "operation",
                        Values(&["seal", "open", "new_data_key", "open_data_key", "rewrap"]),
                    ),
                    ("outcome", Values(&["ok", "error"])),
                ],
            ),
        ),
        (
            "patchbay_jobs",
            (
                true,
                vec![
                    ("kind", Values(JOB_KINDS)),
                    ("state", Values(&["queued", "running", "dead"])),
                ],
            ),
        ),
        (
            "patchbay_jobs_started_total",
            (true, vec![("kind", Values(JOB_KINDS))]),
        ),
        (
            "patchbay_jobs_finished_total",
            (
                true,
                vec![
                    ("kind", Values(JOB_KINDS)),
                    ("outcome", Values(&["done", "rescheduled", "retry", "dead"])),
                ],
            ),
        ),
        (
            "patchbay_webhook_deliveries_total",
            (
                true,
                vec![(
                    "outcome",
                    Values(&["delivered", "failed", "retried", "skipped"]),
                )],
            ),
        ),
        (
            "patchbay_webhook_deliveries_stored",
            (true, vec![("state", Values(&["pending", "failed"]))]),
        ),
        (
            "patchbay_webhook_events_received_total",
            (
                true,
                vec![(
                    "outcome",
                    Values(&["stored", "duplicate", "ignored", "signature_invalid"]),
                )],
            ),
        ),
        (
            "patchbay_db_pool_connections",
            (
                true,
                vec![engine, pool, ("state", Values(&["idle", "in_use"]))],
            ),
        ),
        (
            "patchbay_db_pool_max_connections",
            (true, vec![engine, pool]),
        ),
        // Only with a channel between replicas (PostgreSQL or Redis).
        ("patchbay_invalidation_listening", (false, vec![])),
        (
            "patchbay_invalidations_total",
            (
                false,
                vec![("direction", Values(&["published", "received"]))],
            ),
        ),
        ("patchbay_audit_pending", (false, vec![])),
        ("patchbay_audit_written_total", (false, vec![])),
        ("patchbay_http_connections_open", (false, vec![])),
        (
            "patchbay_http_connections_closed_total",
            (
                false,
                vec![("reason", Values(&["idle_timeout", "header_read_timeout"]))],
            ),
        ),
    ])
}

fn allows(allowed: Allowed, value: &str) -> bool {
    match allowed {
        Allowed::Values(values) => values.contains(&value),
        Allowed::StatusCode => value.len() == 3 && value.bytes().all(|b| b.is_ascii_digit()),
        Allowed::Bound => value == "+Inf" || value.parse::<f64>().is_ok(),
        Allowed::RouteTemplate => {
            value == "unmatched"
                || (value.starts_with('/')
                    && value.split('/').skip(1).all(|segment| {
                        (segment.starts_with('{') && segment.ends_with('}'))
                            || segment.bytes().all(|b| {
                                b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)
                            })
                    }))
        }
    }
}

/// `name{a="x",b="y"} value` into the name and its labels.
fn parse_sample(line: &str) -> (String, Vec<(String, String)>) {
    let Some((name, rest)) = line.split_once('{') else {
        let name = line.split_whitespace().next().unwrap();
        return (name.to_owned(), Vec::new());
    };
    let labels_text = &rest[..rest.rfind('}').expect("closing brace")];
    let mut labels = Vec::new();
    let mut remaining = labels_text;
    while let Some((key, after)) = remaining.split_once("=\"") {
        let end = after.find('"').expect("closing quote");
        labels.push((
            key.trim_start_matches(',').to_owned(),
            after[..end].to_owned(),
        ));
        remaining = &after[end + 1..];
    }
    (name.to_owned(), labels)
}

async fn every_family_after_real_work(db: Option<&str>, engine: &str) {
    let stripe = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "acct_1Metrics", "object": "account", "country": "US",
            "default_currency": "usd", "business_profile": {"name": "Acme"}
        })))
        .mount(&stripe)
        .await;
    // The first proxied call fails with a 500 and is retried.
    Mock::given(method("GET"))
        .and(path("/v1/customers/cus_1"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"error": {"type": "api_error"}})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/customers/cus_1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "cus_1", "object": "customer"})),
        )
        .with_priority(2)
        .mount(&stripe)
        .await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;

    let (_tmp, data) = data_dir();
    let mut env = Env::new(&data)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_MASTER_KEYS", master_key("k1"))
        .set("PATCHBAY_STRIPE_API_BASE", stripe.uri())
        .set("PATCHBAY_STRIPE_MAX_RETRIES", "1")
        .set("PATCHBAY_JOB_POLL", "100ms")
        .set("PATCHBAY_WEBHOOK_ALLOW_INSECURE_LOOPBACK", "true");
    if let Some(url) = db {
        env = env.set("PATCHBAY_DATABASE_URL", url);
    }
    let server = Server::start(&env).await;
    let client = Client::new(&server);
    let (tenant, token) = client.tenant().await;

    // A Stripe call: the connection's test call (GET /v1/account).
    let (s, c) = client
        .post(
            "/api/v1/connections",
            &token,
            json!({"provider": "stripe", "api_key": SK}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["status"], "active", "{c}");
    let conn = c["id"].as_str().unwrap().to_owned();
    // A proxied call, retried once after Stripe's 500.
    let (s, body) = client
        .get(
            &format!("/api/v1/connections/{conn}/proxy/v1/customers/cus_1"),
            &token,
        )
        .await;
    assert_eq!(s, 200, "{body}");

    // A delivery (a job of kind webhook.deliver): a subscription, a Stripe
    // endpoint, and a signed event to it.
    client
        .subscribe_invoice_paid(&token, &format!("{}/hook", receiver.uri()))
        .await;
    let endpoint = client.webhook_endpoint(&token, &conn, WHSEC).await;
    let body = json!({"id": "evt_1Metrics", "object": "event", "type": "invoice.paid",
        "created": 1_763_900_000, "livemode": false, "data": {"object": {"id": "in_1"}}})
    .to_string();
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/webhooks/stripe/{endpoint}", server.base))
        .header("Stripe-Signature", sign_header(WHSEC, at, body.as_bytes()))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let receipt: serde_json::Value = response.json().await.unwrap();
    let event = receipt["event_id"].as_str().unwrap().to_owned();
    wait_until("the delivery", Duration::from_secs(30), || async {
        let (_, d) = client
            .get(&format!("/api/v1/events/{event}/deliveries"), &token)
            .await;
        d["data"][0]["status"] == "succeeded"
    })
    .await;

    // The job counters are written as the delivery's job finishes, a moment
    // after the delivery reads as succeeded.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = http
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("patchbay_jobs_started_total{kind=\"webhook.deliver\"}")
            && text.contains("patchbay_webhook_deliveries_total{outcome=\"delivered\"}")
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery job metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let families = families();
    let mut seen = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, labels) = parse_sample(line);
        let (family, histogram) = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                families.contains_key(base).then_some((base, true))
            })
            .unwrap_or((name.as_str(), false));
        let Some((_, allowed)) = families.get(family) else {
            panic!(
                "{family} is not a known family (add it here and to the README's table): {line}"
            );
        };
        seen.insert(family.to_owned());
        for (key, value) in &labels {
            let rule = if histogram && key == "le" {
                Some(Allowed::Bound)
            } else {
                allowed.iter().find(|(k, _)| k == key).map(|(_, a)| *a)
            };
            let rule = rule.unwrap_or_else(|| panic!("{family}: unexpected label {key}: {line}"));
            assert!(
                allows(rule, value),
                "{family}: {key}=\"{value}\" is outside its set: {line}"
            );
        }
        if family == "patchbay_db_pool_connections" {
            assert!(line.contains(&format!("engine=\"{engine}\"")), "{line}");
        }
    }
    for (family, (required, _)) in &families {
        assert!(
            !required || seen.contains(*family),
            "{family} missing from:\n{text}"
        );
    }
    // What this test did shows in the values.
    for sample in [
        "patchbay_stripe_retries_total{via=\"proxy\",reason=\"status\"} 1",
        "patchbay_stripe_requests_total{via=\"proxy\",status=\"500\"} 1",
        "patchbay_stripe_requests_total{via=\"proxy\",status=\"200\"} 1",
        "patchbay_stripe_requests_total{via=\"api\",status=\"200\"} 1",
        "patchbay_webhook_deliveries_total{outcome=\"delivered\"} 1",
    ] {
        assert!(text.contains(sample), "{sample} missing from:\n{text}");
    }
    assert!(
        text.contains("patchbay_vault_operations_total{operation=\"seal\",outcome=\"ok\"}"),
        "{text}"
    );
    // No ids or secrets, anywhere.
    for secret in [
        tenant.as_str(),
        &conn,
        &endpoint,
        &event,
        &token,
        SK,
        WHSEC,
        ADMIN,
    ] {
        assert!(!text.contains(secret), "/metrics shows {secret}");
    }
    for prefix in [
        "ten_", "key_", "conn_", "dek_", "aud_", "job_", "we_", "ev_", "esub_", "dlv_",
    ] {
        let id_like = text.match_indices(prefix).any(|(at, _)| {
            let tail = &text.as_bytes()[at + prefix.len()..];
            tail.len() >= 26 && tail[..26].iter().all(u8::is_ascii_alphanumeric)
        });
        assert!(!id_like, "/metrics shows a {prefix}… id");
    }
    for stripe_id in ["acct_1Metrics", "cus_1", "evt_1Metrics"] {
        assert!(!text.contains(stripe_id), "/metrics shows {stripe_id}");
    }
    let (status, _) = server.stop();
    assert!(status.success());
}

#[tokio::test]
async fn every_metric_family_is_present_with_closed_set_labels_on_sqlite() {
    every_family_after_real_work(None, "sqlite").await;
}

#[tokio::test]
async fn every_metric_family_is_present_with_closed_set_labels_on_postgres() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    every_family_after_real_work(Some(&pg.url), "postgres").await;
    pg.drop_schema().await;
}
