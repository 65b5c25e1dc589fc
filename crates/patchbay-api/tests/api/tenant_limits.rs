//! Per-tenant limits: the request rate (GCRA, read from an injected clock, so
//! no test sleeps for it), the admin's overrides and their validation, the
//! bound on concurrent Stripe calls, the forgetting of idle tenants, and the
//! 429 documented on every tenant operation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use parking_lot::Mutex;
use patchbay_api::clock::Clock;
use patchbay_api::tenant_limits::TenantLimitSettings;
use patchbay_core::Timestamp;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::connections::{SK, account, account_for};
use crate::support::{ADMIN, Reply, TestApp, assert_envelope};

/// Time that moves only when told.
#[derive(Debug)]
struct ManualClock {
    start: (Instant, Timestamp),
    offset: Mutex<Duration>,
}

impl ManualClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: (Instant::now(), patchbay_core::time::now()),
            offset: Mutex::new(Duration::ZERO),
        })
    }

    fn advance(&self, by: Duration) {
        *self.offset.lock() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.start.1 + *self.offset.lock()
    }

    fn instant(&self) -> Instant {
        self.start.0 + *self.offset.lock()
    }
}

/// Tenants may send `per_second` requests a second in bursts of `burst`, on
/// a clock that stands still.
fn with_rate(
    per_second: u32,
    burst: u32,
) -> (Arc<ManualClock>, impl FnOnce(&mut patchbay_api::ApiConfig)) {
    let clock = ManualClock::new();
    let c = clock.clone();
    let tweak = move |config: &mut patchbay_api::ApiConfig| {
        config.clock = c;
        config.tenant_limits = TenantLimitSettings {
            requests_per_second: per_second,
            burst,
            ..TenantLimitSettings::default()
        };
    };
    (clock, tweak)
}

/// An app on SQLite with [`with_rate`].
async fn app_with_rate(per_second: u32, burst: u32) -> (TestApp, Arc<ManualClock>) {
    let (clock, tweak) = with_rate(per_second, burst);
    (TestApp::with(tweak).await, clock)
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|v| v.to_str().unwrap())
}

fn assert_limited(reply: &Reply, code: &str) {
    assert_eq!(reply.status, 429, "{}", reply.text);
    assert_eq!(assert_envelope(reply), code, "{}", reply.text);
    assert_eq!(reply.body["error"]["type"], "rate_limit_error");
    let retry: u64 = header(reply, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!(retry >= 1, "{retry}");
}

const LIST: &str = "/api/v1/connections";

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_with_the_headers_until_time_passes() {
    let (app, clock) = app_with_rate(1, 2).await;
    let (_, token) = app.tenant(&["admin"]).await;
    let (_, other) = app.tenant(&["admin"]).await;

    let first = app.get(LIST, &token).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some("\"tenant\";q=2;w=2")
    );
    assert_eq!(header(&first, "ratelimit"), Some("\"tenant\";r=1;t=1"));
    let second = app.get(LIST, &token).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(header(&second, "ratelimit"), Some("\"tenant\";r=0;t=2"));

    let refused = app.get(LIST, &token).await;
    assert_limited(&refused, "rate_limited");
    assert_eq!(header(&refused, "retry-after"), Some("1"));
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        Some("\"tenant\";q=2;w=2")
    );
    assert_eq!(header(&refused, "ratelimit"), Some("\"tenant\";r=0;t=2"));
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 a second"),
        "{}",
        refused.text
    );
    // Refused before the handler: a POST does nothing either.
    let post = app
        .post(LIST, &token, json!({"provider": "stripe", "api_key": SK}))
        .await;
    assert_limited(&post, "rate_limited");

    // Another tenant has its own budget; the admin and health have none.
    let theirs = app.get(LIST, &other).await;
    assert_eq!(theirs.status, 200, "{}", theirs.text);
    for _ in 0..5 {
        let admin = app.get("/api/v1/tenants", ADMIN).await;
        assert_eq!(admin.status, 200, "{}", admin.text);
        assert_eq!(header(&admin, "ratelimit"), None);
        let health = app.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(health.status, 200);
        assert_eq!(header(&health, "ratelimit"), None);
    }

    // One second later one more request is allowed, then two seconds the whole burst.
    clock.advance(Duration::from_secs(1));
    assert_eq!(app.get(LIST, &token).await.status, 200);
    assert_limited(&app.get(LIST, &token).await, "rate_limited");
    clock.advance(Duration::from_secs(2));
    assert_eq!(app.get(LIST, &token).await.status, 200);
    assert_eq!(app.get(LIST, &token).await.status, 200);
    assert_limited(&app.get(LIST, &token).await, "rate_limited");
}

#[tokio::test]
async fn the_admin_sets_validates_shows_and_resets_a_tenants_own_limits() {
    let (app, clock) = app_with_rate(100, 100).await;
    own_limits(&app, &clock).await;
}

#[tokio::test]
async fn the_admin_sets_validates_shows_and_resets_a_tenants_own_limits_postgres() {
    let (clock, tweak) = with_rate(100, 100);
    let Some(app) = TestApp::on_postgres(tweak).await else {
        return;
    };
    own_limits(&app, &clock).await;
}

async fn own_limits(app: &TestApp, clock: &ManualClock) {
    let (tenant, token) = app.tenant(&["admin"]).await;
    let url = format!("/api/v1/tenants/{tenant}");

    let created = app.get(&url, ADMIN).await;
    assert_eq!(
        created.body["limits"],
        json!({"requests_per_second": null, "burst": null, "max_concurrent_upstream": null}),
        "{}",
        created.text
    );

    let set = app
        .patch(
            &url,
            ADMIN,
            json!({"limits": {"requests_per_second": 1, "burst": 1, "max_concurrent_upstream": 3}}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let expected = json!({"requests_per_second": 1, "burst": 1, "max_concurrent_upstream": 3});
    assert_eq!(set.body["limits"], expected);
    assert_eq!(app.get(&url, ADMIN).await.body["limits"], expected);

    // Applied at once on this replica.
    let ok = app.get(LIST, &token).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(header(&ok, "ratelimit-policy"), Some("\"tenant\";q=1;w=1"));
    assert_limited(&app.get(LIST, &token).await, "rate_limited");

    // null puts one value back to the default; absent values stay.
    let one = app
        .patch(&url, ADMIN, json!({"limits": {"burst": null}}))
        .await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(
        one.body["limits"],
        json!({"requests_per_second": 1, "burst": null, "max_concurrent_upstream": 3})
    );
    clock.advance(Duration::from_secs(1));
    let reply = app.get(LIST, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        header(&reply, "ratelimit-policy"),
        Some("\"tenant\";q=100;w=100")
    );

    // null for the object resets them all.
    let all = app.patch(&url, ADMIN, json!({"limits": null})).await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(
        all.body["limits"],
        json!({"requests_per_second": null, "burst": null, "max_concurrent_upstream": null})
    );

    // Values out of range: 422 naming the field; nothing changes.
    for (field, value) in [
        ("requests_per_second", json!(0)),
        ("requests_per_second", json!(-5)),
        ("requests_per_second", json!(1_000_001)),
        ("burst", json!(0)),
        ("burst", json!(4_294_967_296_i64)),
        ("max_concurrent_upstream", json!(0)),
        ("max_concurrent_upstream", json!(100_001)),
    ] {
        let reply = app
            .patch(&url, ADMIN, json!({"limits": {field: value}}))
            .await;
        assert_eq!(reply.status, 422, "{field}={value}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), "parameter_invalid");
        assert_eq!(reply.body["error"]["param"], format!("limits.{field}"));
    }
    // Not a number, or an unknown limit: a malformed body.
    for body in [
        json!({"limits": {"burst": "ten"}}),
        json!({"limits": {"per_minute": 5}}),
        json!({"limits": 5}),
    ] {
        let reply = app.patch(&url, ADMIN, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert_envelope(&reply);
    }
    assert_eq!(
        app.get(&url, ADMIN).await.body["limits"],
        json!({"requests_per_second": null, "burst": null, "max_concurrent_upstream": null})
    );

    // Only the admin sets them (a second later: the stricter limit's last
    // request still counts against the rate until then).
    clock.advance(Duration::from_secs(1));
    let own = app
        .patch(&url, &token, json!({"limits": {"burst": 1000}}))
        .await;
    assert_eq!(own.status, 403, "{}", own.text);
    assert_eq!(assert_envelope(&own), "admin_required");
}

/// A proxy call through `conn`, in the background.
fn proxy(app: &Arc<TestApp>, token: &str, conn: &str) -> tokio::task::JoinHandle<Reply> {
    let app = app.clone();
    let uri = format!("/api/v1/connections/{conn}/proxy/v1/balance");
    let token = token.to_owned();
    tokio::spawn(async move { app.get(&uri, &token).await })
}

async fn connection(app: &TestApp, token: &str) -> String {
    let conn = app
        .post(LIST, token, json!({"provider": "stripe", "api_key": SK}))
        .await;
    assert_eq!(conn.status, 201, "{}", conn.text);
    conn.id()
}

#[tokio::test]
async fn a_tenants_stripe_calls_at_once_are_bounded_and_the_excess_refused_after_a_short_wait() {
    let app = TestApp::with(|c| c.tenant_limits.upstream_wait = Duration::from_millis(100)).await;
    account_for(&app, SK, account("acct_1Acme")).await;
    // Long enough that the first call still holds the only slot when the
    // second has waited its 100 ms.
    Mock::given(method("GET"))
        .and(path("/v1/balance"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"object": "balance"}))
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&app.stripe)
        .await;
    let (tenant, token) = app.tenant(&["admin"]).await;
    let (_, other) = app.tenant(&["admin"]).await;
    let conn = connection(&app, &token).await;
    let their_conn = connection(&app, &other).await;
    let set = app
        .patch(
            &format!("/api/v1/tenants/{tenant}"),
            ADMIN,
            json!({"limits": {"max_concurrent_upstream": 1}}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);

    let app = Arc::new(app);
    let first = proxy(&app, &token, &conn);
    // The first call holds the slot before the second asks (the slot is
    // taken long before Stripe's 1.5 s answer).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = proxy(&app, &token, &conn);
    let theirs = proxy(&app, &other, &their_conn);
    let second = second.await.unwrap();
    assert_limited(&second, "upstream_concurrency_exceeded");
    assert_eq!(header(&second, "retry-after"), Some("1"));
    assert!(
        header(&second, "ratelimit").is_some(),
        "{:?}",
        second.headers
    );
    let first = first.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text);
    assert!(header(&first, "ratelimit").is_some(), "{:?}", first.headers);
    // Another tenant's calls are not held back.
    assert_eq!(theirs.await.unwrap().status, 200);
    // The slot is free again once the first call's answer was sent.
    let again = proxy(&app, &token, &conn).await.unwrap();
    assert_eq!(again.status, 200, "{}", again.text);
}

#[tokio::test]
async fn tenants_idle_for_a_minute_are_forgotten() {
    let (app, clock) = app_with_rate(100, 100).await;
    let (_, a) = app.tenant(&["admin"]).await;
    let (_, b) = app.tenant(&["admin"]).await;
    assert_eq!(app.get(LIST, &a).await.status, 200);
    assert_eq!(app.get(LIST, &b).await.status, 200);
    assert_eq!(app.state.tenant_limiter.tracked(), 2);
    clock.advance(Duration::from_secs(30));
    assert_eq!(app.get(LIST, &b).await.status, 200);
    assert_eq!(app.state.tenant_limiter.tracked(), 2, "30 s is not idle");
    clock.advance(Duration::from_secs(45));
    assert_eq!(app.get(LIST, &b).await.status, 200);
    assert_eq!(
        app.state.tenant_limiter.tracked(),
        1,
        "a, idle 75 s with a full burst, is forgotten; b stays"
    );
}

#[test]
fn every_tenant_operation_documents_429_with_its_headers_and_admin_ones_do_not() {
    let doc: Value = serde_json::from_str(&patchbay_api::openapi_json()).unwrap();
    let mut documented = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let public = op["security"].is_null() || op["security"] == json!([{}]);
            let admin_only =
                path.starts_with("/api/v1/tenants") || path.starts_with("/api/v1/admin/");
            let too_many = &op["responses"]["429"];
            if public || admin_only {
                assert!(too_many.is_null(), "{method} {path} documents a 429");
                continue;
            }
            documented += 1;
            for name in ["Retry-After", "RateLimit-Policy", "RateLimit"] {
                assert!(
                    too_many["headers"][name].is_object(),
                    "{method} {path}: no {name} on 429"
                );
            }
            // Operations that relay Stripe's own errors (actions, the proxy)
            // document the wider RelayedError, which Patchbay's envelope fits.
            let relays = path.ends_with("/actions") || path.contains("/proxy/");
            let schema = &too_many["content"]["application/json"]["schema"]["$ref"];
            if relays {
                assert!(
                    schema == "#/components/schemas/RelayedError"
                        || schema == "#/components/schemas/ErrorResponse",
                    "{method} {path}: {schema}"
                );
            } else {
                assert_eq!(
                    schema, "#/components/schemas/ErrorResponse",
                    "{method} {path}"
                );
            }
            assert!(
                too_many["description"]
                    .as_str()
                    .unwrap()
                    .contains("rate_limited"),
                "{method} {path}"
            );
        }
    }
    assert!(documented >= 40, "{documented} tenant operations");
}
