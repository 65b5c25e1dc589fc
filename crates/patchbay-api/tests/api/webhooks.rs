//! Webhooks (issue 12) through the real router: endpoints and their signing
//! secrets, Stripe's signed posts (the signature table, deduplication under
//! concurrency, routing of Connect events, deauthorization), the event list,
//! and deliveries to a wiremock receiver in the Standard Webhooks format,
//! driven job by job (retries, Retry-After, disabling, redelivery, rolling).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use chrono::{DateTime, Utc};
use patchbay_core::job::{ClaimRequest, KindFilter, kinds};
use patchbay_core::time::{add_seconds, now};
use patchbay_stripe::webhook::sign_header;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::connections::{SK, SK2, account, account_for};
use crate::support::{Reply, TestApp, assert_envelope};

const WHSEC: &str = "whsec_0123456789abcdefEndpointSecretOne";
const WHSEC2: &str = "whsec_fedcba9876543210EndpointSecretTwo";
const WHSEC3: &str = "whsec_5555aaaa5555bbbbEndpointSecretThree";

/// An app whose deliveries may reach a receiver on 127.0.0.1, retrying fast.
async fn webhook_app() -> TestApp {
    TestApp::with(tweak).await
}

fn tweak(c: &mut patchbay_api::ApiConfig) {
    c.webhooks.policy.allow_insecure_loopback = true;
    c.webhooks.retry_base = Duration::from_millis(10);
    c.webhooks.retry_max = Duration::from_millis(40);
    c.webhooks.timeout = Duration::from_secs(5);
}

fn unix_now() -> i64 {
    Utc::now().timestamp()
}

/// A key connection of the tenant behind `token`, to account `acct`.
async fn key_connection(app: &TestApp, token: &str, key: &str, acct: &str) -> String {
    account_for(app, key, account(acct)).await;
    let reply = app
        .post(
            "/api/v1/connections",
            token,
            json!({"provider": "stripe", "api_key": key}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.id()
}

/// A connection endpoint with `secret` and `events`; returns its id.
async fn connection_endpoint(
    app: &TestApp,
    token: &str,
    connection: &str,
    secret: &str,
    events: Option<&[&str]>,
) -> String {
    let mut body = json!({"signing_secret": secret});
    if let Some(events) = events {
        body["events"] = json!(events);
    }
    let reply = app
        .post(
            &format!("/api/v1/connections/{connection}/webhook-endpoints"),
            token,
            body,
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.id()
}

/// A Stripe event as Stripe posts it.
fn stripe_event(id: &str, event_type: &str, created: i64, account: Option<&str>) -> String {
    let mut event = json!({
        "id": id,
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created,
        "type": event_type,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": "req_abc", "idempotency_key": null},
        "data": {"object": {"id": "in_1", "object": "invoice", "amount_paid": 4200, "currency": "usd"}},
    });
    if let Some(account) = account {
        event["account"] = json!(account);
    }
    event.to_string()
}

/// Posts `body` to the intake of `endpoint` with `signature` (no API key).
async fn intake(app: &TestApp, endpoint: &str, signature: Option<&str>, body: &str) -> Reply {
    app.send(intake_request(endpoint, signature, body)).await
}

fn intake_request(endpoint: &str, signature: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/webhooks/stripe/{endpoint}"))
        .header("content-type", "application/json; charset=utf-8")
        .header(
            "user-agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        );
    if let Some(signature) = signature {
        builder = builder.header("stripe-signature", signature);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

/// Posts `body` signed now with `secret`.
async fn signed(app: &TestApp, endpoint: &str, secret: &str, body: &str) -> Reply {
    let header = sign_header(secret, unix_now(), body.as_bytes());
    intake(app, endpoint, Some(&header), body).await
}

/// Posts a new event signed with `secret`; returns Patchbay's event id.
async fn post_event(app: &TestApp, endpoint: &str, secret: &str, body: &str) -> String {
    let reply = signed(app, endpoint, secret, body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["received"], true);
    assert_eq!(reply.body["duplicate"], false, "{}", reply.text);
    reply.body["event_id"].as_str().unwrap().to_owned()
}

/// Runs every `webhook.deliver` job due within `ahead` seconds, as the
/// delivery worker would; returns how many ran.
async fn deliver_due(app: &TestApp, ahead: i64) -> usize {
    let at = add_seconds(now(), ahead);
    let claimed = app
        .state
        .store
        .system_claim_jobs(&ClaimRequest {
            owner: "test".into(),
            now: at,
            lease_until: add_seconds(at, 60),
            limit: 100,
            kinds: KindFilter::Only(kinds::WEBHOOK_DELIVER),
        })
        .await
        .unwrap();
    let ran = claimed.len();
    for c in claimed {
        assert_eq!(c.job.kind, kinds::WEBHOOK_DELIVER);
        patchbay_api::services::deliveries::run(&app.state, &c.job, c.lease_token).await;
    }
    ran
}

/// Runs due deliveries until none is left (at most `rounds` rounds).
async fn deliver_all(app: &TestApp, rounds: usize) -> usize {
    let mut total = 0;
    for _ in 0..rounds {
        let ran = deliver_due(app, 3600).await;
        if ran == 0 {
            break;
        }
        total += ran;
    }
    total
}

/// A receiver; its `/hook` URL.
async fn receiver() -> (MockServer, String) {
    let server = MockServer::start().await;
    let url = format!("{}/hook", server.uri());
    (server, url)
}

/// A subscription; returns (id, secret).
async fn subscribe(app: &TestApp, token: &str, body: Value) -> (String, String) {
    let reply = app.post("/api/v1/event-subscriptions", token, body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let secret = reply.body["secret"].as_str().unwrap().to_owned();
    (reply.id(), secret)
}

/// An event's deliveries.
async fn deliveries(app: &TestApp, token: &str, event: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("/api/v1/events/{event}/deliveries"), token)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["object"], "list");
    reply.body["data"].as_array().unwrap().clone()
}

/// The requests the receiver got.
async fn received(server: &MockServer) -> Vec<wiremock::Request> {
    server.received_requests().await.unwrap()
}

fn header<'a>(request: &'a wiremock::Request, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Verifies a delivery with the `standardwebhooks` crate (as a tenant would)
/// and with Patchbay's own verifier.
fn verifies(request: &wiremock::Request, secret: &str) -> bool {
    let by_library = standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&request.body, &request.headers)
        .is_ok();
    let by_vault = patchbay_vault::standard_webhooks::verify(
        &SecretString::from(secret.to_owned()),
        header(request, "webhook-id"),
        header(request, "webhook-timestamp").parse().unwrap(),
        &request.body,
        header(request, "webhook-signature"),
    );
    assert_eq!(by_library, by_vault, "the library and Patchbay agree");
    by_library
}

fn rfc3339(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a time: {value}")),
    )
    .unwrap()
    .with_timezone(&Utc)
}

fn ids(reply: &Reply) -> Vec<String> {
    reply.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", reply.text))
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn stored_events(app: &TestApp, token: &str, query: &str) -> Reply {
    let reply = app.get(&format!("/api/v1/events{query}"), token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply
}

/// The tenant's Stripe events (not Patchbay's own).
async fn stripe_event_count(app: &TestApp, token: &str) -> usize {
    stored_events(app, token, "?limit=100").await.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "stripe")
        .count()
}

// ---------------------------------------------------------------- endpoints

#[tokio::test]
async fn endpoints_are_created_listed_changed_and_deleted() {
    let app = webhook_app().await;
    let (tenant, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let mut texts = Vec::new();

    let created = app
        .post(
            &format!("/api/v1/connections/{conn}/webhook-endpoints"),
            &token,
            json!({"signing_secret": WHSEC, "events": ["invoice.paid", "invoice.paid", "charge.refunded"], "description": "Billing"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.id();
    let e = &created.body;
    assert!(id.starts_with("we_") && id.len() == 3 + 26, "{id}");
    assert_eq!(e["object"], "webhook_endpoint");
    assert_eq!(e["scope"], "connection");
    assert_eq!(e["connection_id"], conn.as_str());
    assert_eq!(e["livemode"], false);
    assert!(
        e["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/v1/webhooks/stripe/{id}")),
        "{}",
        e["url"]
    );
    assert_eq!(e["events"], json!(["invoice.paid", "charge.refunded"]));
    assert_eq!(e["description"], "Billing");
    assert_eq!(e["secret_hint"], "whsec_…tOne");
    assert!(e["previous_secret_expires_at"].is_null());
    rfc3339(&e["created_at"]);
    rfc3339(&e["updated_at"]);
    assert!(e.get("signing_secret").is_none() && e.get("secret").is_none());
    texts.push(created.text.clone());

    // The request's host names the URL when no public URL is configured.
    let hosted = app
        .send(
            Request::builder()
                .method(Method::GET)
                .uri(format!("/api/v1/webhook-endpoints/{id}"))
                .header("x-api-key", &token)
                .header("host", "patchbay.example.com")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        hosted.body["url"],
        format!("https://patchbay.example.com/api/v1/webhooks/stripe/{id}")
    );

    // The platform's endpoint: every connected account, no connection.
    let platform = app
        .post(
            "/api/v1/integrations/stripe/webhook-endpoints",
            &token,
            json!({"signing_secret": WHSEC2, "mode": "test"}),
        )
        .await;
    assert_eq!(platform.status, 201, "{}", platform.text);
    assert_eq!(platform.body["scope"], "platform");
    assert!(platform.body["connection_id"].is_null());
    assert_eq!(platform.body["events"], json!(["*"]));
    assert_eq!(platform.body["livemode"], false);
    let platform_id = platform.id();
    texts.push(platform.text.clone());
    let live = app
        .post(
            "/api/v1/integrations/stripe/webhook-endpoints",
            &token,
            json!({"signing_secret": WHSEC3, "mode": "live"}),
        )
        .await;
    assert_eq!(live.status, 201, "{}", live.text);
    assert_eq!(live.body["livemode"], true);
    texts.push(live.text.clone());

    // Not a Stripe signing secret: 422 naming the field, never echoing it.
    for bad in [
        "sk_test_51HabcDEF0123456789xyzXYZ4242",
        "whsec_",
        "whsec_short",
        "0123456789abcdef0123456789",
    ] {
        let reply = app
            .post(
                &format!("/api/v1/connections/{conn}/webhook-endpoints"),
                &token,
                json!({"signing_secret": bad}),
            )
            .await;
        assert_eq!(reply.status, 422, "{bad}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), "invalid_signing_secret");
        assert_eq!(reply.body["error"]["param"], "signing_secret");
        // Never echoed (the bare prefix is in the message's own advice).
        assert!(
            bad == "whsec_" || !reply.text.contains(bad),
            "{}",
            reply.text
        );
        let reply = app
            .post(
                "/api/v1/integrations/stripe/webhook-endpoints",
                &token,
                json!({"signing_secret": bad}),
            )
            .await;
        assert_eq!(reply.status, 422, "{bad}: {}", reply.text);
        assert_eq!(reply.body["error"]["param"], "signing_secret");
    }
    let bad_events = app
        .post(
            &format!("/api/v1/connections/{conn}/webhook-endpoints"),
            &token,
            json!({"signing_secret": WHSEC, "events": ["Invoice Paid"]}),
        )
        .await;
    assert_eq!(bad_events.status, 422, "{}", bad_events.text);
    assert_eq!(bad_events.body["error"]["param"], "events[0]");

    // Another tenant's connection and endpoints do not exist for this one.
    let (_, other) = app.tenant(&["admin"]).await;
    let foreign = app
        .post(
            &format!("/api/v1/connections/{conn}/webhook-endpoints"),
            &other,
            json!({"signing_secret": WHSEC}),
        )
        .await;
    assert_eq!(foreign.status, 404, "{}", foreign.text);
    assert_eq!(assert_envelope(&foreign), "resource_missing");
    for reply in [
        app.get(&format!("/api/v1/webhook-endpoints/{id}"), &other)
            .await,
        app.patch(
            &format!("/api/v1/webhook-endpoints/{id}"),
            &other,
            json!({"events": ["*"]}),
        )
        .await,
        app.post(
            &format!("/api/v1/webhook-endpoints/{id}/roll-secret"),
            &other,
            json!({"signing_secret": WHSEC2}),
        )
        .await,
        app.delete(&format!("/api/v1/webhook-endpoints/{id}"), &other)
            .await,
        app.get(
            &format!("/api/v1/connections/{conn}/webhook-endpoints"),
            &other,
        )
        .await,
    ] {
        assert_eq!(reply.status, 404, "{}", reply.text);
    }
    let theirs = app.get("/api/v1/webhook-endpoints", &other).await;
    assert_eq!(ids(&theirs), Vec::<String>::new());

    // A read-only key reads but does not create.
    let reader = app.key(&tenant, &["connections:read"]).await;
    let refused = app
        .post(
            &format!("/api/v1/connections/{conn}/webhook-endpoints"),
            &reader,
            json!({"signing_secret": WHSEC}),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);

    // Lists: all, by connection, and the connection's own path.
    let all = app.get("/api/v1/webhook-endpoints", &reader).await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(all.body["object"], "list");
    assert_eq!(ids(&all).len(), 3);
    assert!(ids(&all).contains(&platform_id));
    texts.push(all.text.clone());
    let by_conn = app
        .get(
            &format!("/api/v1/webhook-endpoints?connection_id={conn}"),
            &token,
        )
        .await;
    assert_eq!(ids(&by_conn), vec![id.clone()]);
    let nested = app
        .get(
            &format!("/api/v1/connections/{conn}/webhook-endpoints"),
            &token,
        )
        .await;
    assert_eq!(ids(&nested), vec![id.clone()]);
    let paged = app.get("/api/v1/webhook-endpoints?limit=2", &token).await;
    assert_eq!(ids(&paged).len(), 2);
    assert_eq!(paged.body["has_more"], true);
    let rest = app
        .get(
            &format!(
                "/api/v1/webhook-endpoints?limit=2&starting_after={}",
                ids(&paged)[1]
            ),
            &token,
        )
        .await;
    assert_eq!(ids(&rest).len(), 1);
    assert_eq!(rest.body["has_more"], false);

    // PATCH: events and description (null clears it).
    let patched = app
        .patch(
            &format!("/api/v1/webhook-endpoints/{id}"),
            &token,
            json!({"events": ["*"], "description": null}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["events"], json!(["*"]));
    assert!(patched.body["description"].is_null());
    assert!(rfc3339(&patched.body["updated_at"]) >= rfc3339(&e["updated_at"]));
    texts.push(patched.text.clone());
    let got = app
        .get(&format!("/api/v1/webhook-endpoints/{id}"), &reader)
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["events"], json!(["*"]));
    texts.push(got.text.clone());
    let empty = app
        .patch(
            &format!("/api/v1/webhook-endpoints/{id}"),
            &token,
            json!({"events": []}),
        )
        .await;
    assert_eq!(empty.status, 422, "{}", empty.text);
    // The secret changes only by rolling it.
    let sneaky = app
        .patch(
            &format!("/api/v1/webhook-endpoints/{id}"),
            &token,
            json!({"signing_secret": WHSEC2}),
        )
        .await;
    assert_eq!(sneaky.status, 400, "{}", sneaky.text);
    assert_envelope(&sneaky);
    assert!(!sneaky.text.contains(WHSEC2));
    let mode = app
        .post(
            "/api/v1/integrations/stripe/webhook-endpoints",
            &token,
            json!({"signing_secret": WHSEC, "mode": "sandbox"}),
        )
        .await;
    assert_eq!(mode.status, 422, "{}", mode.text);
    assert_eq!(mode.body["error"]["param"], "mode");

    // DELETE: the object's id, and Stripe's posts are refused from now on.
    let body = stripe_event("evt_before_delete", "invoice.paid", unix_now(), None);
    post_event(&app, &id, WHSEC, &body).await;
    let deleted = app
        .delete(&format!("/api/v1/webhook-endpoints/{id}"), &token)
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(
        deleted.body,
        json!({"id": id, "object": "webhook_endpoint", "deleted": true})
    );
    let gone = app
        .get(&format!("/api/v1/webhook-endpoints/{id}"), &token)
        .await;
    assert_eq!(gone.status, 404);
    let again = app
        .delete(&format!("/api/v1/webhook-endpoints/{id}"), &token)
        .await;
    assert_eq!(again.status, 404);
    let after = signed(
        &app,
        &id,
        WHSEC,
        &stripe_event("evt_after_delete", "invoice.paid", unix_now(), None),
    )
    .await;
    assert_eq!(after.status, 404, "{}", after.text);
    // Its stored event stays.
    assert_eq!(stripe_event_count(&app, &token).await, 1);

    for text in texts {
        for secret in [WHSEC, WHSEC2, WHSEC3] {
            assert!(!text.contains(secret), "a signing secret in {text}");
        }
    }
}

#[tokio::test]
async fn a_public_url_names_the_endpoint_url() {
    let app = TestApp::with(|c| {
        tweak(c);
        c.webhooks.public_url = Some("https://hooks.patchbay.example/".into());
    })
    .await;
    let (_, token) = app.tenant(&["admin"]).await;
    let reply = app
        .post(
            "/api/v1/integrations/stripe/webhook-endpoints",
            &token,
            json!({"signing_secret": WHSEC}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(
        reply.body["url"],
        format!(
            "https://hooks.patchbay.example/api/v1/webhooks/stripe/{}",
            reply.id()
        )
    );
}

#[tokio::test]
async fn a_rolled_endpoint_secret_keeps_the_old_one_for_the_grace_period_only() {
    let app = webhook_app().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let id = connection_endpoint(&app, &token, &conn, WHSEC, None).await;
    let mut n = 0;
    let mut next = || {
        n += 1;
        stripe_event(&format!("evt_roll_{n}"), "invoice.paid", unix_now(), None)
    };
    post_event(&app, &id, WHSEC, &next()).await;

    let rolled = app
        .post(
            &format!("/api/v1/webhook-endpoints/{id}/roll-secret"),
            &token,
            json!({"signing_secret": WHSEC2, "expire_previous_in_seconds": 3600}),
        )
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text);
    assert_eq!(rolled.body["secret_hint"], "whsec_…tTwo");
    let expires = rfc3339(&rolled.body["previous_secret_expires_at"]);
    let in_an_hour = Utc::now() + chrono::TimeDelta::seconds(3600);
    assert!((expires - in_an_hour).num_seconds().abs() <= 5, "{expires}");
    assert!(!rolled.text.contains(WHSEC) && !rolled.text.contains(WHSEC2));

    // Within the grace period both secrets verify, and a header carrying a
    // v1 of each (as Stripe sends while rolling) too.
    post_event(&app, &id, WHSEC, &next()).await;
    post_event(&app, &id, WHSEC2, &next()).await;
    let body = next();
    let t = unix_now();
    let old = sign_header(WHSEC, t, body.as_bytes());
    let new = sign_header(WHSEC2, t, body.as_bytes());
    let both = format!("{old},{}", new.split_once(',').unwrap().1);
    let reply = intake(&app, &id, Some(&both), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["duplicate"], false);
    // Only the new one's v1 among junk v1s and a v0.
    let body = next();
    let new = sign_header(WHSEC2, t, body.as_bytes());
    let mixed = format!(
        "t={t},v0={},v1={},{}",
        "ab".repeat(32),
        "00".repeat(32),
        new.split_once(',').unwrap().1
    );
    let reply = intake(&app, &id, Some(&mixed), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    // A roll without grace drops the current secret at once.
    let rolled = app
        .post(
            &format!("/api/v1/webhook-endpoints/{id}/roll-secret"),
            &token,
            json!({"signing_secret": WHSEC3, "expire_previous_in_seconds": 0}),
        )
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text);
    assert!(rolled.body["previous_secret_expires_at"].is_null());
    for stale in [WHSEC, WHSEC2] {
        let reply = signed(&app, &id, stale, &next()).await;
        assert_eq!(reply.status, 400, "{}", reply.text);
        assert_eq!(assert_envelope(&reply), "webhook_signature_invalid");
    }
    post_event(&app, &id, WHSEC3, &next()).await;

    // The grace is bounded, and the new secret must be Stripe's.
    for (body, param) in [
        (
            json!({"signing_secret": WHSEC, "expire_previous_in_seconds": 604_801}),
            "expire_previous_in_seconds",
        ),
        (
            json!({"signing_secret": "sk_test_nope_123456"}),
            "signing_secret",
        ),
    ] {
        let reply = app
            .post(
                &format!("/api/v1/webhook-endpoints/{id}/roll-secret"),
                &token,
                body,
            )
            .await;
        assert_eq!(reply.status, 422, "{}", reply.text);
        assert_eq!(reply.body["error"]["param"], param);
    }
    post_event(&app, &id, WHSEC3, &next()).await;
}

// ------------------------------------------------------------------- intake

#[tokio::test]
async fn only_correctly_signed_posts_are_stored() {
    let app = TestApp::with(|c| {
        tweak(c);
        c.webhooks.max_body_bytes = 16 * 1024;
    })
    .await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let id = connection_endpoint(&app, &token, &conn, WHSEC, Some(&["invoice.paid"])).await;
    let body = stripe_event("evt_sig", "invoice.paid", unix_now(), None);
    let t = unix_now();
    let good = sign_header(WHSEC, t, body.as_bytes());
    let tampered = body.replace("4200", "4201");
    assert_ne!(tampered, body);

    let cases: Vec<(&str, Option<String>, String, &str)> = vec![
        (
            "wrong secret",
            Some(sign_header(
                "whsec_NotTheEndpointSecret000",
                t,
                body.as_bytes(),
            )),
            body.clone(),
            "No signature matches",
        ),
        (
            "tampered body",
            Some(good.clone()),
            tampered,
            "No signature matches",
        ),
        (
            "old timestamp",
            Some(sign_header(WHSEC, t - 301 - 5, body.as_bytes())),
            body.clone(),
            "old",
        ),
        (
            "future timestamp",
            Some(sign_header(WHSEC, t + 301 + 5, body.as_bytes())),
            body.clone(),
            "future",
        ),
        ("missing header", None, body.clone(), "missing"),
        ("empty header", Some(String::new()), body.clone(), "missing"),
        (
            "not a header",
            Some("garbage".into()),
            body.clone(),
            "malformed",
        ),
        (
            "no timestamp",
            Some(good.split_once(',').unwrap().1.to_owned()),
            body.clone(),
            "malformed",
        ),
        (
            "no v1",
            Some(format!("t={t},v0={}", "ab".repeat(32))),
            body.clone(),
            "malformed",
        ),
        (
            "timestamp not a number",
            Some(good.replace(&format!("t={t}"), "t=yesterday")),
            body.clone(),
            "malformed",
        ),
        (
            "v1 not hex",
            Some(format!("t={t},v1=zz{}", "0".repeat(62))),
            body.clone(),
            "No signature matches",
        ),
        (
            "signature of another timestamp",
            Some(good.replace(&format!("t={t}"), &format!("t={}", t - 1))),
            body.clone(),
            "No signature matches",
        ),
    ];
    for (what, header, sent, says) in &cases {
        let reply = intake(&app, &id, header.as_deref(), sent).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text);
        assert_eq!(
            assert_envelope(&reply),
            "webhook_signature_invalid",
            "{what}"
        );
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(
            message.to_lowercase().contains(&says.to_lowercase()),
            "{what}: the message says why: {message}"
        );
        assert!(!reply.text.contains(WHSEC), "{what}");
    }
    assert_eq!(stripe_event_count(&app, &token).await, 0, "nothing stored");

    // Unknown endpoints: 404, whatever the signature.
    for unknown in [
        "we_0000000000000000000000000a".to_owned(),
        "nope".to_owned(),
        conn.clone(),
    ] {
        let reply = intake(&app, &unknown, Some(&good), &body).await;
        assert_eq!(reply.status, 404, "{unknown}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), "resource_missing");
    }

    // Signed, but not an event.
    for not_event in [
        "not json at all".to_owned(),
        "[1,2,3]".to_owned(),
        json!({"id": "evt_x"}).to_string(),
        json!({"type": "invoice.paid"}).to_string(),
        json!({"id": "", "type": "invoice.paid"}).to_string(),
    ] {
        let reply = signed(&app, &id, WHSEC, &not_event).await;
        assert_eq!(reply.status, 400, "{not_event}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), "webhook_payload_invalid");
    }
    // Larger than the intake's limit.
    let big =
        json!({"id": "evt_big", "type": "invoice.paid", "pad": "x".repeat(20 * 1024)}).to_string();
    let reply = signed(&app, &id, WHSEC, &big).await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert_eq!(assert_envelope(&reply), "body_too_large");
    // A type the endpoint does not keep: acknowledged, not stored.
    let other_type = stripe_event("evt_refund", "charge.refunded", unix_now(), None);
    let reply = signed(&app, &id, WHSEC, &other_type).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body, json!({"received": true, "ignored": true}));
    assert_eq!(stripe_event_count(&app, &token).await, 0);

    // The good one: stored once, a repeat acknowledged as a duplicate.
    let reply = intake(&app, &id, Some(&good), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let event = reply.body["event_id"].as_str().unwrap().to_owned();
    assert!(event.starts_with("ev_"), "{event}");
    assert_eq!(
        reply.body,
        json!({"received": true, "event_id": event, "duplicate": false})
    );
    let repeat = intake(&app, &id, Some(&good), &body).await;
    assert_eq!(repeat.status, 200);
    assert_eq!(
        repeat.body,
        json!({"received": true, "event_id": event, "duplicate": true})
    );
    assert_eq!(stripe_event_count(&app, &token).await, 1);
    // The tolerance is exactly 300 s: a signature 290 s old still passes.
    let late = stripe_event("evt_late", "invoice.paid", unix_now(), None);
    let header = sign_header(WHSEC, unix_now() - 290, late.as_bytes());
    let reply = intake(&app, &id, Some(&header), &late).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn a_configured_tolerance_is_used() {
    let app = TestApp::with(|c| {
        tweak(c);
        c.webhooks.tolerance = Duration::from_secs(30);
    })
    .await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let id = connection_endpoint(&app, &token, &conn, WHSEC, None).await;
    let body = stripe_event("evt_tol", "invoice.paid", unix_now(), None);
    let header = sign_header(WHSEC, unix_now() - 60, body.as_bytes());
    let reply = intake(&app, &id, Some(&header), &body).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(assert_envelope(&reply), "webhook_signature_invalid");
    post_event(&app, &id, WHSEC, &body).await;
}

/// Posts the same signed event five times at once.
async fn five_at_once(app: &TestApp, endpoint: &str, body: &str) -> Vec<Value> {
    let header = sign_header(WHSEC, unix_now(), body.as_bytes());
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let router = app.router.clone();
            let request = intake_request(endpoint, Some(&header), body);
            tokio::spawn(async move {
                let response = router.oneshot(request).await.unwrap();
                let status = response.status();
                let bytes = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
                serde_json::from_slice::<Value>(&bytes).unwrap()
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in futures::future::join_all(tasks).await {
        out.push(task.unwrap());
    }
    out
}

async fn concurrent_posts(app: &TestApp) {
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(app, &token, SK, "acct_1Acme").await;
    let id = connection_endpoint(app, &token, &conn, WHSEC, None).await;
    let (server, url) = receiver().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    subscribe(app, &token, json!({"url": url, "events": ["invoice.paid"]})).await;

    let body = stripe_event("evt_concurrent", "invoice.paid", unix_now(), None);
    let answers = five_at_once(app, &id, &body).await;
    let first: Vec<_> = answers.iter().filter(|a| a["duplicate"] == false).collect();
    assert_eq!(first.len(), 1, "exactly one stored: {answers:?}");
    let event = first[0]["event_id"].as_str().unwrap();
    for a in &answers {
        assert_eq!(a["received"], true);
        assert_eq!(
            a["event_id"], event,
            "duplicates name the first: {answers:?}"
        );
    }
    assert_eq!(stripe_event_count(app, &token).await, 1);
    let queued = deliveries(app, &token, event).await;
    assert_eq!(queued.len(), 1, "one delivery: {queued:?}");
    assert_eq!(queued[0]["status"], "pending");
    let dlv: patchbay_core::DeliveryId = queued[0]["id"].as_str().unwrap().parse().unwrap();
    let jobs = app
        .state
        .store
        .system_jobs_for_subject(kinds::WEBHOOK_DELIVER, dlv.uuid())
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "one job for the delivery");

    // Made once.
    assert_eq!(deliver_all(app, 5).await, 1);
    let got = received(&server).await;
    assert_eq!(got.len(), 1);
    assert_eq!(header(&got[0], "webhook-id"), event);
    // Later repeats change nothing.
    let again = five_at_once(app, &id, &body).await;
    assert!(
        again
            .iter()
            .all(|a| a["duplicate"] == true && a["event_id"] == event)
    );
    assert_eq!(deliver_all(app, 5).await, 0);
    assert_eq!(deliveries(app, &token, event).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_event_posted_five_times_at_once_is_stored_and_delivered_once() {
    concurrent_posts(&webhook_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_event_posted_five_times_at_once_is_stored_once_on_postgres() {
    let Some(app) = TestApp::on_postgres(tweak).await else {
        return;
    };
    concurrent_posts(&app).await;
}

// ------------------------------------------------------------------ routing

#[tokio::test]
async fn platform_events_are_attributed_by_account_and_deauthorization_revokes() {
    let app = webhook_app().await;
    let token = crate::oauth::platform(&app).await;
    let conn = crate::oauth::connect(&app, &token, "user-1").await;
    let connected = crate::oauth::CONNECTED;
    let platform = app
        .post(
            "/api/v1/integrations/stripe/webhook-endpoints",
            &token,
            json!({"signing_secret": WHSEC}),
        )
        .await;
    assert_eq!(platform.status, 201, "{}", platform.text);
    let endpoint = platform.id();
    let (server, url) = receiver().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    subscribe(
        &app,
        &token,
        json!({"url": url, "events": ["connection.status_changed"], "connection_id": conn}),
    )
    .await;

    // An event of the connected account is the connection's.
    let paid = post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_acct_paid", "invoice.paid", unix_now(), Some(connected)),
    )
    .await;
    let got = app.get(&format!("/api/v1/events/{paid}"), &token).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.body["connection_id"], conn.as_str());
    assert_eq!(got.body["account"], connected);
    assert_eq!(got.body["endpoint_id"], endpoint.as_str());
    let listed = app
        .get(
            &format!("/api/v1/connections/{conn}/events?type=invoice.paid"),
            &token,
        )
        .await;
    assert_eq!(ids(&listed), vec![paid.clone()]);

    // An account the tenant has no connection to: stored, unattributed.
    let stray = post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event(
            "evt_stray",
            "invoice.paid",
            unix_now(),
            Some("acct_1Unknown"),
        ),
    )
    .await;
    let got = app.get(&format!("/api/v1/events/{stray}"), &token).await;
    assert!(got.body["connection_id"].is_null(), "{}", got.text);
    assert_eq!(got.body["account"], "acct_1Unknown");
    // The same account in live mode is not this test-mode connection's.
    let mut live: Value = serde_json::from_str(&stripe_event(
        "evt_live",
        "invoice.paid",
        unix_now(),
        Some(connected),
    ))
    .unwrap();
    live["livemode"] = json!(true);
    let live = post_event(&app, &endpoint, WHSEC, &live.to_string()).await;
    let got = app.get(&format!("/api/v1/events/{live}"), &token).await;
    assert!(got.body["connection_id"].is_null(), "{}", got.text);
    assert_eq!(got.body["livemode"], true);

    // The account leaves the platform: the connection is revoked, and says why.
    let deauth = post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event(
            "evt_deauth",
            "account.application.deauthorized",
            unix_now(),
            Some(connected),
        ),
    )
    .await;
    let c = app
        .get(&format!("/api/v1/connections/{conn}"), &token)
        .await;
    assert_eq!(c.body["status"], "revoked", "{}", c.text);
    assert_eq!(c.body["last_error"]["code"], "stripe_access_revoked");
    let got = app.get(&format!("/api/v1/events/{deauth}"), &token).await;
    assert_eq!(got.body["connection_id"], conn.as_str());

    // …and emits connection.status_changed, delivered to the subscription.
    let changed = app
        .get(
            &format!("/api/v1/connections/{conn}/events?type=connection.status_changed"),
            &token,
        )
        .await;
    assert_eq!(ids(&changed).len(), 1, "{}", changed.text);
    let change = &changed.body["data"][0];
    assert_eq!(change["source"], "patchbay");
    assert_eq!(change["connection_id"], conn.as_str());
    assert_eq!(change["data"]["type"], "connection.status_changed");
    assert_eq!(change["data"]["data"]["previous_status"], "active");
    assert_eq!(change["data"]["data"]["status"], "revoked");
    assert_eq!(change["data"]["data"]["reason"], "stripe_access_revoked");
    assert_eq!(change["data"]["data"]["object"]["id"], conn.as_str());
    assert_eq!(deliver_all(&app, 5).await, 1);
    let got = received(&server).await;
    assert_eq!(got.len(), 1);
    let delivered: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(delivered["type"], "connection.status_changed");
    assert_eq!(delivered["id"], change["id"]);
    assert_eq!(delivered["connection_id"], conn.as_str());

    // A repeat of the deauthorization changes nothing more.
    let repeat = signed(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event(
            "evt_deauth",
            "account.application.deauthorized",
            unix_now(),
            Some(connected),
        ),
    )
    .await;
    assert_eq!(repeat.body["duplicate"], true);
    let changed = app
        .get(
            &format!("/api/v1/connections/{conn}/events?type=connection.status_changed"),
            &token,
        )
        .await;
    assert_eq!(ids(&changed).len(), 1);
}

#[tokio::test]
async fn a_key_connection_with_the_account_is_used_when_there_is_no_oauth_one() {
    let app = webhook_app().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let platform = app
        .post(
            "/api/v1/integrations/stripe/webhook-endpoints",
            &token,
            json!({"signing_secret": WHSEC}),
        )
        .await;
    let endpoint = platform.id();
    let event = post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_key", "invoice.paid", unix_now(), Some("acct_1Acme")),
    )
    .await;
    let got = app.get(&format!("/api/v1/events/{event}"), &token).await;
    assert_eq!(got.body["connection_id"], conn.as_str(), "{}", got.text);
    // Another tenant's connection to the same account is never picked.
    let (_, other) = app.tenant(&["admin"]).await;
    let other_platform = app
        .post(
            "/api/v1/integrations/stripe/webhook-endpoints",
            &other,
            json!({"signing_secret": WHSEC2}),
        )
        .await
        .id();
    let theirs = post_event(
        &app,
        &other_platform,
        WHSEC2,
        &stripe_event("evt_key", "invoice.paid", unix_now(), Some("acct_1Acme")),
    )
    .await;
    let got = app.get(&format!("/api/v1/events/{theirs}"), &other).await;
    assert!(got.body["connection_id"].is_null(), "{}", got.text);
}

// ------------------------------------------------------------------- events

#[tokio::test]
async fn events_are_filtered_paged_and_kept_to_their_tenant() {
    let app = webhook_app().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let conn2 = key_connection(&app, &token, SK2, "acct_1Other").await;
    let endpoint = connection_endpoint(&app, &token, &conn, WHSEC, None).await;
    let endpoint2 = connection_endpoint(&app, &token, &conn2, WHSEC2, None).await;
    let base = unix_now() - 100_000;
    let mut posted = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..5 {
        let t = if i % 2 == 0 {
            "invoice.paid"
        } else {
            "charge.refunded"
        };
        let body = stripe_event(&format!("evt_list_{i}"), t, base + i * 100, None);
        posted.push(post_event(&app, &endpoint, WHSEC, &body).await);
        bodies.push(body);
    }
    let elsewhere = post_event(
        &app,
        &endpoint2,
        WHSEC2,
        &stripe_event("evt_other_conn", "invoice.paid", base + 50, None),
    )
    .await;
    let newest_first =
        |idx: &[usize]| -> Vec<String> { idx.iter().rev().map(|i| posted[*i].clone()).collect() };
    let conn_events = |query: String| {
        let app = &app;
        let token = &token;
        let conn = &conn;
        async move {
            let reply = app
                .get(&format!("/api/v1/connections/{conn}/events{query}"), token)
                .await;
            assert_eq!(reply.status, 200, "{query}: {}", reply.text);
            reply
        }
    };

    // Type, created range, and both; the connection's own events only.
    let lte = format!("created_lte={}", base + 1000);
    let r = conn_events(format!("?type=invoice.paid&{lte}")).await;
    assert_eq!(ids(&r), newest_first(&[0, 2, 4]));
    let r = conn_events(format!(
        "?created_gte={}&created_lte={}",
        base + 100,
        base + 300
    ))
    .await;
    assert_eq!(ids(&r), newest_first(&[1, 2, 3]));
    let r = conn_events(format!(
        "?type=invoice.paid&created_gte={}&{lte}",
        base + 100
    ))
    .await;
    assert_eq!(ids(&r), newest_first(&[2, 4]));
    let r = conn_events(format!("?type=customer.created&{lte}")).await;
    assert!(ids(&r).is_empty());
    // Patchbay's own connection.created is the connection's too.
    let r = conn_events("?type=connection.created".into()).await;
    assert_eq!(ids(&r).len(), 1);
    assert_eq!(r.body["data"][0]["source"], "patchbay");
    // The tenant-wide list has the other connection's event; connection_id narrows it.
    let r = stored_events(&app, &token, &format!("?type=invoice.paid&{lte}")).await;
    assert_eq!(ids(&r).len(), 4);
    assert!(ids(&r).contains(&elsewhere));
    let r = stored_events(
        &app,
        &token,
        &format!("?connection_id={conn2}&type=invoice.paid"),
    )
    .await;
    assert_eq!(ids(&r), vec![elsewhere.clone()]);

    // Keyset pages, newest first, both ways.
    let r = conn_events(format!("?limit=2&{lte}")).await;
    assert_eq!(ids(&r), newest_first(&[3, 4]));
    assert_eq!(r.body["has_more"], true);
    let r = conn_events(format!("?limit=2&{lte}&starting_after={}", posted[3])).await;
    assert_eq!(ids(&r), newest_first(&[1, 2]));
    assert_eq!(r.body["has_more"], true);
    let r = conn_events(format!("?limit=2&{lte}&starting_after={}", posted[1])).await;
    assert_eq!(ids(&r), newest_first(&[0]));
    assert_eq!(r.body["has_more"], false);
    let r = conn_events(format!("?limit=2&{lte}&ending_before={}", posted[1])).await;
    assert_eq!(ids(&r), newest_first(&[2, 3]));
    // Bad parameters.
    for query in [
        "?limit=0",
        "?limit=101",
        "?created_gte=soon",
        "?starting_after=nope",
        "?color=red",
    ] {
        let reply = app
            .get(&format!("/api/v1/connections/{conn}/events{query}"), &token)
            .await;
        assert!(reply.status.is_client_error(), "{query}: {}", reply.text);
        assert_envelope(&reply);
    }
    let reply = app
        .get(
            &format!("/api/v1/connections/{conn}/events?connection_id={conn2}"),
            &token,
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);

    // One event: Stripe's, verbatim.
    let got = app
        .get(&format!("/api/v1/events/{}", posted[2]), &token)
        .await;
    assert_eq!(got.status, 200, "{}", got.text);
    let e = &got.body;
    assert_eq!(e["id"], posted[2].as_str());
    assert_eq!(e["object"], "event");
    assert_eq!(e["source"], "stripe");
    assert_eq!(e["type"], "invoice.paid");
    assert_eq!(e["stripe_event_id"], "evt_list_2");
    assert_eq!(e["endpoint_id"], endpoint.as_str());
    assert_eq!(e["connection_id"], conn.as_str());
    assert!(e["account"].is_null());
    assert_eq!(e["livemode"], false);
    assert_eq!(e["created"], base + 200);
    assert!(
        (rfc3339(&e["received_at"]) - Utc::now())
            .num_seconds()
            .abs()
            < 60
    );
    assert_eq!(
        e["data"],
        serde_json::from_str::<Value>(&bodies[2]).unwrap()
    );

    // Another tenant sees nothing of it.
    let (_, other) = app.tenant(&["admin"]).await;
    for path in [
        format!("/api/v1/events/{}", posted[2]),
        format!("/api/v1/events/{}/deliveries", posted[2]),
        format!("/api/v1/connections/{conn}/events"),
        format!("/api/v1/events?connection_id={conn}"),
    ] {
        let reply = app.get(&path, &other).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.text);
        assert_envelope(&reply);
    }
    let redeliver = app
        .post(
            &format!("/api/v1/events/{}/redeliver", posted[2]),
            &other,
            json!({}),
        )
        .await;
    assert_eq!(redeliver.status, 404, "{}", redeliver.text);
    let theirs = stored_events(&app, &other, "").await;
    assert!(ids(&theirs).is_empty());
}

// ------------------------------------------------------------ subscriptions

#[tokio::test]
async fn subscriptions_show_their_secret_once_and_refuse_unsafe_urls() {
    let app = webhook_app().await;
    let (tenant, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;

    let created = app
        .post(
            "/api/v1/event-subscriptions",
            &token,
            json!({"url": "https://app.example.com/hooks/patchbay", "events": ["invoice.paid", "connection.status_changed"], "connection_id": conn, "description": "Workflows"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.id();
    let s = &created.body;
    assert!(id.starts_with("esub_"), "{id}");
    assert_eq!(s["object"], "event_subscription");
    assert_eq!(s["url"], "https://app.example.com/hooks/patchbay");
    assert_eq!(
        s["events"],
        json!(["invoice.paid", "connection.status_changed"])
    );
    assert_eq!(s["connection_id"], conn.as_str());
    assert_eq!(s["status"], "enabled");
    assert!(s["disabled_reason"].is_null());
    let secret = s["secret"].as_str().unwrap().to_owned();
    let raw = secret.strip_prefix("whsec_").expect("whsec_ secret");
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        s["secret_hint"],
        format!("whsec_…{}", &secret[secret.len() - 4..])
    );
    rfc3339(&s["created_at"]);

    // Never again.
    let got = app
        .get(&format!("/api/v1/event-subscriptions/{id}"), &token)
        .await;
    assert_eq!(got.status, 200);
    assert!(got.body.get("secret").is_none(), "{}", got.text);
    assert!(!got.text.contains(raw));
    let list = app.get("/api/v1/event-subscriptions", &token).await;
    assert_eq!(ids(&list), vec![id.clone()]);
    assert!(!list.text.contains(raw));
    let patched = app
        .patch(
            &format!("/api/v1/event-subscriptions/{id}"),
            &token,
            json!({"events": ["*"], "description": null}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["events"], json!(["*"]));
    assert!(patched.body["description"].is_null());
    assert!(!patched.text.contains(raw));

    // Unsafe or unusable receivers are refused when saved.
    for url in [
        "http://10.0.0.1/",
        "https://10.0.0.1/hook",
        "http://169.254.169.254/",
        "https://169.254.169.254/latest/meta-data/",
        "https://192.168.1.10/hook",
        "https://172.16.0.5/hook",
        "https://100.64.0.1/hook",
        "https://[fd00:ec2::254]/",
        "https://[fe80::1]/",
        "https://0.0.0.0/",
        "http://app.example.com/hooks",
        "ftp://app.example.com/hooks",
        "https://user:pass@app.example.com/hooks",
        "not a url",
    ] {
        let reply = app
            .post(
                "/api/v1/event-subscriptions",
                &token,
                json!({"url": url, "events": ["*"]}),
            )
            .await;
        assert_eq!(reply.status, 422, "{url}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), "url_not_allowed", "{url}");
        assert_eq!(reply.body["error"]["param"], "url", "{url}");
        let reply = app
            .patch(
                &format!("/api/v1/event-subscriptions/{id}"),
                &token,
                json!({"url": url}),
            )
            .await;
        assert_eq!(reply.status, 422, "{url}: {}", reply.text);
        assert_eq!(reply.body["error"]["param"], "url", "{url}");
    }
    // Events are required; another tenant's connection does not exist.
    for (body, status, param) in [
        (json!({"url": "https://app.example.com/h"}), 422, "events"),
        (
            json!({"url": "https://app.example.com/h", "events": []}),
            422,
            "events",
        ),
        (
            json!({"url": "https://app.example.com/h", "events": ["invoice"]}),
            422,
            "events[0]",
        ),
    ] {
        let reply = app.post("/api/v1/event-subscriptions", &token, body).await;
        assert_eq!(reply.status, status, "{}", reply.text);
        assert_eq!(reply.body["error"]["param"], param);
    }
    let (_, other) = app.tenant(&["admin"]).await;
    let foreign = app
        .post(
            "/api/v1/event-subscriptions",
            &other,
            json!({"url": "https://app.example.com/h", "events": ["*"], "connection_id": conn}),
        )
        .await;
    assert_eq!(foreign.status, 404, "{}", foreign.text);
    for reply in [
        app.get(&format!("/api/v1/event-subscriptions/{id}"), &other)
            .await,
        app.patch(
            &format!("/api/v1/event-subscriptions/{id}"),
            &other,
            json!({"enabled": false}),
        )
        .await,
        app.post(
            &format!("/api/v1/event-subscriptions/{id}/roll-secret"),
            &other,
            json!({}),
        )
        .await,
        app.delete(&format!("/api/v1/event-subscriptions/{id}"), &other)
            .await,
    ] {
        assert_eq!(reply.status, 404, "{}", reply.text);
    }
    // A read-only key lists but does not create.
    let reader = app.key(&tenant, &["connections:read"]).await;
    assert_eq!(
        app.get("/api/v1/event-subscriptions", &reader).await.status,
        200
    );
    let refused = app
        .post(
            "/api/v1/event-subscriptions",
            &reader,
            json!({"url": "https://app.example.com/h", "events": ["*"]}),
        )
        .await;
    assert_eq!(refused.status, 403);

    // Disabled by the tenant, then deleted.
    let off = app
        .patch(
            &format!("/api/v1/event-subscriptions/{id}"),
            &token,
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(off.body["status"], "disabled");
    assert!(off.body["disabled_reason"].is_string());
    let deleted = app
        .delete(&format!("/api/v1/event-subscriptions/{id}"), &token)
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(
        deleted.body,
        json!({"id": id, "object": "event_subscription", "deleted": true})
    );
    assert_eq!(
        app.get(&format!("/api/v1/event-subscriptions/{id}"), &token)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn loopback_receivers_are_refused_unless_allowed() {
    let app = TestApp::new().await; // the default policy: no loopback
    let (_, token) = app.tenant(&["admin"]).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1:9/hook",
        "http://localhost/hook",
        "https://[::1]/hook",
    ] {
        let reply = app
            .post(
                "/api/v1/event-subscriptions",
                &token,
                json!({"url": url, "events": ["*"]}),
            )
            .await;
        assert_eq!(reply.status, 422, "{url}: {}", reply.text);
        assert_eq!(reply.body["error"]["param"], "url");
    }
}

#[tokio::test]
async fn a_delivery_is_retried_until_accepted_and_verifies_with_standardwebhooks() {
    let app = webhook_app().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let endpoint = connection_endpoint(&app, &token, &conn, WHSEC, None).await;
    let (server, url) = receiver().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(500).set_body_string("receiver down"))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_body_string("thanks"))
        .mount(&server)
        .await;
    let (sub, secret) = subscribe(
        &app,
        &token,
        json!({"url": url, "events": ["invoice.paid"]}),
    )
    .await;
    let body = stripe_event("evt_retry", "invoice.paid", unix_now() - 5, None);
    let event = post_event(&app, &endpoint, WHSEC, &body).await;

    // Attempt by attempt.
    assert_eq!(deliver_due(&app, 3600).await, 1);
    let d = &deliveries(&app, &token, &event).await[0];
    assert_eq!(d["status"], "pending");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["last_status_code"], 500);
    assert!(d["next_attempt_at"].is_string());
    assert_eq!(deliver_all(&app, 10).await, 2, "two more attempts");
    assert_eq!(deliver_due(&app, 100 * 3600).await, 0, "nothing left");

    let got = received(&server).await;
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(
            header(r, "webhook-id"),
            event,
            "the same id on each attempt"
        );
        assert_eq!(header(r, "content-type"), "application/json");
        assert!(header(r, "user-agent").starts_with("Patchbay-Webhooks/"));
        let ts: i64 = header(r, "webhook-timestamp").parse().unwrap();
        assert!((ts - unix_now()).abs() < 60);
        let signature = header(r, "webhook-signature");
        assert!(signature.starts_with("v1,") && !signature.contains(' '));
        assert!(
            verifies(r, &secret),
            "verifies with the subscription's secret"
        );
        let stranger = patchbay_vault::standard_webhooks::generate_secret();
        assert!(!verifies(r, stranger.expose_secret()));
        let payload: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(payload["id"], event.as_str());
        assert_eq!(payload["type"], "invoice.paid");
        assert_eq!(payload["source"], "stripe");
        assert_eq!(payload["connection_id"], conn.as_str());
        assert_eq!(payload["endpoint_id"], endpoint.as_str());
        assert_eq!(payload["livemode"], false);
        assert_eq!(payload["created"], unix_now_of(&body));
        rfc3339(&payload["timestamp"]);
        assert_eq!(
            payload["data"],
            serde_json::from_str::<Value>(&body).unwrap()
        );
        assert!(
            String::from_utf8_lossy(&r.body).ends_with(&format!(",\"data\":{body}}}")),
            "Stripe's event byte for byte"
        );
    }
    // A tampered body or another secret does not verify.
    let mut tampered = got[0].clone();
    tampered.body = tampered
        .body
        .iter()
        .map(|b| if *b == b'4' { b'5' } else { *b })
        .collect();
    assert!(!verifies(&tampered, &secret));

    // The attempt log.
    let log = deliveries(&app, &token, &event).await;
    assert_eq!(log.len(), 1, "exactly one delivery");
    let d = &log[0];
    assert!(d["id"].as_str().unwrap().starts_with("dlv_"));
    assert_eq!(d["object"], "event_delivery");
    assert_eq!(d["event_id"], event.as_str());
    assert_eq!(d["subscription_id"], sub.as_str());
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["last_status_code"], 200);
    assert!(d["next_attempt_at"].is_null());
    let attempts = d["attempt_log"].as_array().unwrap();
    let codes: Vec<_> = attempts.iter().map(|a| a["status_code"].clone()).collect();
    assert_eq!(codes, vec![json!(500), json!(500), json!(200)]);
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["attempt"], i + 1);
        rfc3339(&a["attempted_at"]);
        assert!(a["duration_ms"].is_u64());
        assert!(a["error"].is_null());
    }
    assert_eq!(attempts[0]["response_snippet"], "receiver down");
    assert_eq!(attempts[2]["response_snippet"], "thanks");
    assert!(rfc3339(&attempts[0]["attempted_at"]) <= rfc3339(&attempts[2]["attempted_at"]));
}

/// The `created` of a posted Stripe event.
fn unix_now_of(body: &str) -> i64 {
    serde_json::from_str::<Value>(body).unwrap()["created"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn a_retry_after_is_honoured() {
    let app = webhook_app().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let endpoint = connection_endpoint(&app, &token, &conn, WHSEC, None).await;
    let (server, url) = receiver().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "120"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(503).insert_header(
            "Retry-After",
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(600)),
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    subscribe(&app, &token, json!({"url": url, "events": ["*"]})).await;
    let event = post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_429", "invoice.paid", unix_now(), None),
    )
    .await;

    assert_eq!(deliver_due(&app, 0).await, 1);
    let d = &deliveries(&app, &token, &event).await[0];
    assert_eq!(d["status"], "pending");
    assert_eq!(d["last_status_code"], 429);
    let attempted = rfc3339(&d["attempt_log"][0]["attempted_at"]);
    let next = rfc3339(&d["next_attempt_at"]);
    assert!(
        next - attempted >= chrono::TimeDelta::seconds(120),
        "{attempted} → {next}"
    );
    // The job waits as long: not due within the next 100 s.
    assert_eq!(deliver_due(&app, 100).await, 0);
    assert_eq!(received(&server).await.len(), 1);

    // An HTTP-date Retry-After on a 503 too.
    assert_eq!(deliver_due(&app, 130).await, 1);
    let d = &deliveries(&app, &token, &event).await[0];
    assert_eq!(d["last_status_code"], 503);
    let attempted = rfc3339(&d["attempt_log"][1]["attempted_at"]);
    let next = rfc3339(&d["next_attempt_at"]);
    assert!(
        next - attempted >= chrono::TimeDelta::seconds(590),
        "{attempted} → {next}"
    );
    assert_eq!(deliver_due(&app, 500).await, 0);
    assert_eq!(deliver_due(&app, 700).await, 1);
    let d = &deliveries(&app, &token, &event).await[0];
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["attempts"], 3);
}

#[tokio::test]
async fn a_failing_subscription_is_disabled_then_re_enabled_and_redelivered() {
    let app = TestApp::with(|c| {
        tweak(c);
        c.webhooks.disable_after = Duration::ZERO;
    })
    .await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let endpoint = connection_endpoint(&app, &token, &conn, WHSEC, None).await;
    let (server, url) = receiver().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let (sub, secret) = subscribe(
        &app,
        &token,
        json!({"url": url, "events": ["invoice.paid"]}),
    )
    .await;
    let event = post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_disable", "invoice.paid", unix_now(), None),
    )
    .await;

    // Every attempt fails; with no allowance the subscription is disabled,
    // and its pending delivery ends failed.
    deliver_all(&app, 10).await;
    let s = app
        .get(&format!("/api/v1/event-subscriptions/{sub}"), &token)
        .await;
    assert_eq!(s.body["status"], "disabled", "{}", s.text);
    let reason = s.body["disabled_reason"].as_str().unwrap();
    assert!(
        reason.contains(&url) && reason.contains("HTTP 500"),
        "{reason}"
    );
    let d = &deliveries(&app, &token, &event).await[0];
    assert_eq!(d["status"], "failed", "{d}");
    assert!(d["next_attempt_at"].is_null());
    let sent = received(&server).await.len();
    assert!(sent >= 1);
    assert_eq!(
        deliver_due(&app, 100 * 3600).await,
        0,
        "nothing left to try"
    );

    // While disabled, new events get no delivery, and a named redelivery is refused.
    let quiet = post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_while_disabled", "invoice.paid", unix_now(), None),
    )
    .await;
    assert!(deliveries(&app, &token, &quiet).await.is_empty());
    let refused = app
        .post(
            &format!("/api/v1/events/{event}/redeliver"),
            &token,
            json!({"subscription_id": sub}),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert_eq!(assert_envelope(&refused), "subscription_disabled");
    let none = app
        .post(
            &format!("/api/v1/events/{event}/redeliver"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(none.status, 202, "{}", none.text);
    assert!(ids(&none).is_empty());
    assert_eq!(received(&server).await.len(), sent);

    // Re-enabled by the tenant: the reason goes.
    let on = app
        .patch(
            &format!("/api/v1/event-subscriptions/{sub}"),
            &token,
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(on.status, 200, "{}", on.text);
    assert_eq!(on.body["status"], "enabled");
    assert!(on.body["disabled_reason"].is_null());

    // The receiver is fixed; what it missed is redelivered, same webhook-id.
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let again = app
        .post(
            &format!("/api/v1/events/{event}/redeliver"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(again.status, 202, "{}", again.text);
    assert_eq!(again.body["object"], "list");
    let new = again.body["data"].as_array().unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["status"], "pending");
    assert_eq!(new[0]["subscription_id"], sub.as_str());
    assert_eq!(new[0]["event_id"], event.as_str());
    assert_eq!(new[0]["attempts"], 0);
    let named = app
        .post(
            &format!("/api/v1/events/{quiet}/redeliver"),
            &token,
            json!({"subscription_id": sub}),
        )
        .await;
    assert_eq!(named.status, 202, "{}", named.text);
    assert_eq!(ids(&named).len(), 1);
    assert_eq!(deliver_all(&app, 5).await, 2);
    let got = received(&server).await;
    assert_eq!(got.len(), 2);
    let mut ids_sent: Vec<_> = got
        .iter()
        .map(|r| header(r, "webhook-id").to_owned())
        .collect();
    ids_sent.sort();
    let mut expected = vec![event.clone(), quiet.clone()];
    expected.sort();
    assert_eq!(ids_sent, expected);
    assert!(got.iter().all(|r| verifies(r, &secret)));
    let log = deliveries(&app, &token, &event).await;
    assert_eq!(log.len(), 2, "the failed one and the redelivery");
    assert_eq!(log[0]["status"], "failed");
    assert_eq!(log[1]["status"], "succeeded");
    let s = app
        .get(&format!("/api/v1/event-subscriptions/{sub}"), &token)
        .await;
    assert_eq!(s.body["status"], "enabled");
    // A redelivery of an unknown event, or to an unknown subscription: 404.
    let unknown = app
        .post(
            "/api/v1/events/ev_0000000000000000000000000a/redeliver",
            &token,
            json!({}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let unknown = app
        .post(
            &format!("/api/v1/events/{event}/redeliver"),
            &token,
            json!({"subscription_id": "esub_0000000000000000000000000a"}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
}

#[tokio::test]
async fn a_rolled_subscription_secret_signs_beside_the_old_one() {
    let app = webhook_app().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let endpoint = connection_endpoint(&app, &token, &conn, WHSEC, None).await;
    let (server, url) = receiver().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let (sub, first) = subscribe(&app, &token, json!({"url": url, "events": ["*"]})).await;

    let rolled = app
        .post(
            &format!("/api/v1/event-subscriptions/{sub}/roll-secret"),
            &token,
            json!({"expire_previous_in_seconds": 3600}),
        )
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text);
    let second = rolled.body["secret"].as_str().unwrap().to_owned();
    assert!(second.starts_with("whsec_") && second != first);
    assert!(rolled.body["previous_secret_expires_at"].is_string());
    let got = app
        .get(&format!("/api/v1/event-subscriptions/{sub}"), &token)
        .await;
    assert!(got.body.get("secret").is_none());
    assert!(!got.text.contains(&second[6..]) && !got.text.contains(&first[6..]));

    post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_roll_a", "invoice.paid", unix_now(), None),
    )
    .await;
    assert_eq!(deliver_all(&app, 5).await, 1);
    let got = received(&server).await;
    let signature = header(&got[0], "webhook-signature");
    let parts: Vec<_> = signature.split(' ').collect();
    assert_eq!(parts.len(), 2, "{signature}");
    assert!(parts.iter().all(|p| p.starts_with("v1,")));
    assert!(verifies(&got[0], &first), "the old secret still verifies");
    assert!(verifies(&got[0], &second), "the new one too");

    // Without grace only the new secret signs.
    let rolled = app
        .post(
            &format!("/api/v1/event-subscriptions/{sub}/roll-secret"),
            &token,
            json!({"expire_previous_in_seconds": 0}),
        )
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text);
    let third = rolled.body["secret"].as_str().unwrap().to_owned();
    assert!(rolled.body["previous_secret_expires_at"].is_null());
    // The default grace (no body) is a day.
    post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_roll_b", "invoice.paid", unix_now(), None),
    )
    .await;
    assert_eq!(deliver_all(&app, 5).await, 1);
    let got = received(&server).await;
    let last = got.last().unwrap();
    assert_eq!(header(last, "webhook-signature").split(' ').count(), 1);
    assert!(verifies(last, &third));
    assert!(!verifies(last, &second) && !verifies(last, &first));
    let bad = app
        .post(
            &format!("/api/v1/event-subscriptions/{sub}/roll-secret"),
            &token,
            json!({"expire_previous_in_seconds": 604_801}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert_eq!(bad.body["error"]["param"], "expire_previous_in_seconds");
    let default = app
        .call(
            Method::POST,
            &format!("/api/v1/event-subscriptions/{sub}/roll-secret"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(default.status, 200, "{}", default.text);
    let expires = rfc3339(&default.body["previous_secret_expires_at"]);
    let in_a_day = Utc::now() + chrono::TimeDelta::seconds(86_400);
    assert!((expires - in_a_day).num_seconds().abs() <= 5, "{expires}");
}

#[tokio::test]
async fn connection_created_and_deleted_reach_a_star_subscription() {
    let app = webhook_app().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let (server, url) = receiver().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let (_, secret) = subscribe(&app, &token, json!({"url": url, "events": ["*"]})).await;

    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    // A subscription narrowed to the connection, for its deletion only.
    let (narrow, narrow_secret) = subscribe(
        &app,
        &token,
        json!({"url": url, "events": ["connection.deleted"], "connection_id": conn}),
    )
    .await;
    assert_eq!(deliver_all(&app, 5).await, 1);
    let got = received(&server).await;
    assert_eq!(got.len(), 1);
    let created: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(created["type"], "connection.created");
    assert_eq!(created["source"], "patchbay");
    assert_eq!(created["connection_id"], conn.as_str());
    assert!(created["endpoint_id"].is_null());
    assert_eq!(created["account"], "acct_1Acme");
    assert_eq!(created["data"]["type"], "connection.created");
    assert_eq!(created["data"]["data"]["object"]["id"], conn.as_str());
    assert_eq!(created["data"]["data"]["object"]["status"], "active");
    assert!(verifies(&got[0], &secret));
    let text = String::from_utf8_lossy(&got[0].body).into_owned();
    assert!(
        !text.contains(SK) && !text.contains(&SK[8..]),
        "no key in events"
    );

    // The connection's endpoint and a Stripe event through it.
    let endpoint = connection_endpoint(&app, &token, &conn, WHSEC, None).await;
    let stripe = post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_before_conn_delete", "invoice.paid", unix_now(), None),
    )
    .await;
    assert_eq!(
        deliver_all(&app, 5).await,
        1,
        "the invoice to the * subscription"
    );
    let got = received(&server).await;
    assert_eq!(got.len(), 2);

    let deleted = app
        .delete(&format!("/api/v1/connections/{conn}"), &token)
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    // Its endpoint goes with it; its events stay, detached.
    let gone = app
        .get(&format!("/api/v1/webhook-endpoints/{endpoint}"), &token)
        .await;
    assert_eq!(gone.status, 404, "{}", gone.text);
    let kept = app.get(&format!("/api/v1/events/{stripe}"), &token).await;
    assert_eq!(kept.status, 200, "{}", kept.text);
    assert!(kept.body["connection_id"].is_null(), "{}", kept.text);
    let refused = signed(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_after_conn_delete", "invoice.paid", unix_now(), None),
    )
    .await;
    assert_eq!(refused.status, 404, "{}", refused.text);
    assert_eq!(deliver_all(&app, 5).await, 2, "to both subscriptions");
    let got = received(&server).await;
    assert_eq!(got.len(), 4);
    for r in &got[2..] {
        let e: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(e["type"], "connection.deleted");
        // Stored detached, but the delivery still names its connection.
        assert_eq!(e["connection_id"], conn.as_str(), "{e}");
        assert_eq!(e["data"]["data"]["object"]["id"], conn.as_str());
        assert!(verifies(r, &secret) || verifies(r, &narrow_secret));
    }
    // Its event is listed, detached.
    let listed = stored_events(&app, &token, "?type=connection.deleted").await;
    assert_eq!(ids(&listed).len(), 1);
    assert!(listed.body["data"][0]["connection_id"].is_null());
    let event = ids(&listed)[0].clone();
    let subs: Vec<_> = deliveries(&app, &token, &event)
        .await
        .iter()
        .map(|d| d["subscription_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(subs.contains(&narrow), "{subs:?}");
}

// ------------------------------------------------------------------ secrets

#[tokio::test(flavor = "current_thread")]
async fn endpoint_secrets_reach_no_response_log_or_database_in_clear() {
    let capture = crate::secrets::Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = webhook_app().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let (server, url) = receiver().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let mut replies = Vec::new();
    let created = app
        .post(
            &format!("/api/v1/connections/{conn}/webhook-endpoints"),
            &token,
            json!({"signing_secret": WHSEC}),
        )
        .await;
    let id = created.id();
    replies.push(created);
    replies.push(
        app.post(
            "/api/v1/integrations/stripe/webhook-endpoints",
            &token,
            json!({"signing_secret": WHSEC3}),
        )
        .await,
    );
    let sub = app
        .post(
            "/api/v1/event-subscriptions",
            &token,
            json!({"url": url, "events": ["*"]}),
        )
        .await;
    let sub_secret = sub.body["secret"].as_str().unwrap().to_owned();
    let sub_id = sub.id();
    let body = stripe_event("evt_secret", "invoice.paid", unix_now(), None);
    let receipt = signed(&app, &id, WHSEC, &body).await;
    let event = receipt.body["event_id"].as_str().unwrap().to_owned();
    replies.push(receipt);
    replies.push(signed(&app, &id, "whsec_WrongSecretForThisOne00", &body).await);
    replies.push(intake(&app, &id, Some("t=1,v1=00"), &body).await);
    replies.push(
        app.post(
            &format!("/api/v1/webhook-endpoints/{id}/roll-secret"),
            &token,
            json!({"signing_secret": WHSEC2}),
        )
        .await,
    );
    replies.push(
        signed(
            &app,
            &id,
            WHSEC,
            &stripe_event("evt_s2", "invoice.paid", unix_now(), None),
        )
        .await,
    );
    deliver_all(&app, 5).await;
    for path in [
        "/api/v1/webhook-endpoints".to_owned(),
        format!("/api/v1/webhook-endpoints/{id}"),
        format!("/api/v1/connections/{conn}/webhook-endpoints"),
        "/api/v1/events".to_owned(),
        format!("/api/v1/events/{event}"),
        format!("/api/v1/events/{event}/deliveries"),
        format!("/api/v1/event-subscriptions/{sub_id}"),
        "/api/v1/event-subscriptions".to_owned(),
        "/api/v1/audit-events?limit=100".to_owned(),
    ] {
        let reply = app.get(&path, &token).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        replies.push(reply);
    }
    replies.push(
        app.patch(
            &format!("/api/v1/webhook-endpoints/{id}"),
            &token,
            json!({"description": "x"}),
        )
        .await,
    );
    replies.push(
        app.delete(&format!("/api/v1/webhook-endpoints/{id}"), &token)
            .await,
    );

    let endpoint_secrets = [WHSEC, WHSEC2, WHSEC3];
    for reply in &replies {
        for secret in endpoint_secrets {
            assert!(
                !reply.text.contains(&secret[6..]),
                "an endpoint secret in a response: {}",
                reply.text
            );
        }
        assert!(
            !reply.text.contains(&sub_secret[6..]),
            "the subscription secret after its creation: {}",
            reply.text
        );
    }
    for r in received(&server).await {
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert!(endpoint_secrets.iter().all(|s| !text.contains(&s[6..])));
        assert!(!text.contains(&sub_secret[6..]));
    }
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(!logs.is_empty(), "the capture works");
    for secret in endpoint_secrets
        .iter()
        .copied()
        .chain([sub_secret.as_str()])
    {
        assert!(!logs.contains(&secret[6..]), "a secret in the logs");
    }
    // Sealed at rest.
    for file in ["patchbay.db", "patchbay.db-wal"] {
        if let Ok(bytes) = std::fs::read(app.dir.path().join(file)) {
            let text = String::from_utf8_lossy(&bytes);
            for secret in endpoint_secrets
                .iter()
                .copied()
                .chain([sub_secret.as_str()])
            {
                assert!(!text.contains(&secret[6..]), "{secret} in clear in {file}");
            }
        }
    }
}

// ------------------------------------------------------- ends and refusals

#[tokio::test]
async fn deliveries_end_without_sending_when_their_subscription_is_gone() {
    let app = webhook_app().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let endpoint = connection_endpoint(&app, &token, &conn, WHSEC, None).await;
    let (server, url) = receiver().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let (sub, _) = subscribe(&app, &token, json!({"url": url, "events": ["*"]})).await;
    let event = post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_gone", "invoice.paid", unix_now(), None),
    )
    .await;
    let dlv: patchbay_core::DeliveryId = deliveries(&app, &token, &event).await[0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let deleted = app
        .delete(&format!("/api/v1/event-subscriptions/{sub}"), &token)
        .await;
    assert_eq!(deleted.status, 200);
    assert!(deliveries(&app, &token, &event).await.is_empty());
    // Its job runs once more, finds nothing to do, and ends.
    assert_eq!(deliver_all(&app, 5).await, 1);
    assert!(received(&server).await.is_empty());
    assert!(
        app.state
            .store
            .system_jobs_for_subject(kinds::WEBHOOK_DELIVER, dlv.uuid())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_delivery_past_its_retry_window_fails_for_good() {
    let app = TestApp::with(|c| {
        tweak(c);
        c.webhooks.retry_window = Duration::ZERO;
    })
    .await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let endpoint = connection_endpoint(&app, &token, &conn, WHSEC, None).await;
    let (server, url) = receiver().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let (sub, _) = subscribe(&app, &token, json!({"url": url, "events": ["*"]})).await;
    let event = post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_window", "invoice.paid", unix_now(), None),
    )
    .await;
    assert_eq!(deliver_all(&app, 5).await, 1, "one attempt, no retry");
    let d = &deliveries(&app, &token, &event).await[0];
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["last_status_code"], 502);
    assert!(d["next_attempt_at"].is_null());
    assert_eq!(received(&server).await.len(), 1);
    // The subscription itself stays enabled (the default allowance is 72 h).
    let s = app
        .get(&format!("/api/v1/event-subscriptions/{sub}"), &token)
        .await;
    assert_eq!(s.body["status"], "enabled");
}

#[tokio::test]
async fn a_refused_address_is_never_contacted_even_if_stored() {
    let app = webhook_app().await;
    let (tenant, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let endpoint = connection_endpoint(&app, &token, &conn, WHSEC, None).await;
    let (sub, _) = subscribe(
        &app,
        &token,
        json!({"url": "https://app.example.com/hook", "events": ["*"]}),
    )
    .await;
    // A URL that bypassed the check on save (an older row, a policy change):
    // the sender checks again at delivery.
    let tenant: patchbay_core::TenantId = tenant.parse().unwrap();
    let id: patchbay_core::SubscriptionId = sub.parse().unwrap();
    let mut s = app
        .state
        .store
        .get_subscription(tenant, id)
        .await
        .unwrap()
        .unwrap();
    s.url = "https://169.254.169.254/latest/meta-data/".into();
    let audit = patchbay_core::audit::AuditEvent::new(
        Some(tenant),
        patchbay_core::audit::Actor::System,
        "test.url_changed",
        Some(sub.clone()),
        json!({}),
        None,
    );
    app.state
        .store
        .update_subscription(&s, &audit)
        .await
        .unwrap()
        .unwrap();
    let event = post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_ssrf", "invoice.paid", unix_now(), None),
    )
    .await;
    assert_eq!(deliver_due(&app, 3600).await, 1);
    let d = &deliveries(&app, &token, &event).await[0];
    assert_eq!(d["status"], "pending", "{d}");
    assert!(d["last_status_code"].is_null());
    let error = d["attempt_log"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("refused"), "{error}");
    assert!(error.contains("169.254.169.254"), "{error}");
}

#[tokio::test]
async fn the_purge_job_deletes_events_past_their_retention_with_their_deliveries() {
    let app = TestApp::with(|c| {
        tweak(c);
        c.webhooks.retention = Duration::ZERO;
    })
    .await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let endpoint = connection_endpoint(&app, &token, &conn, WHSEC, None).await;
    let (server, url) = receiver().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    subscribe(
        &app,
        &token,
        json!({"url": url, "events": ["invoice.paid"]}),
    )
    .await;
    let event = post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_purge", "invoice.paid", unix_now(), None),
    )
    .await;
    assert_eq!(deliveries(&app, &token, &event).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(5)).await;

    patchbay_api::services::jobs::ensure_recurring(&app.state).await;
    let at = add_seconds(now(), 1);
    let claimed = app
        .state
        .store
        .system_claim_jobs(&ClaimRequest {
            owner: "test".into(),
            now: at,
            lease_until: add_seconds(at, 60),
            limit: 10,
            kinds: KindFilter::Only(kinds::EVENTS_PURGE),
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the recurring purge is scheduled");
    let outcome = patchbay_api::services::jobs::dispatch(&app.state, &claimed[0].job).await;
    assert!(
        matches!(outcome, patchbay_core::job::JobOutcome::Reschedule { .. }),
        "{outcome:?}"
    );
    app.state
        .store
        .finish_job(claimed[0].job.id, claimed[0].lease_token, &outcome, now())
        .await
        .unwrap();

    let gone = app.get(&format!("/api/v1/events/{event}"), &token).await;
    assert_eq!(gone.status, 404, "{}", gone.text);
    assert_eq!(stripe_event_count(&app, &token).await, 0);
    // The pending delivery went with it: its job ends without sending.
    assert_eq!(deliver_all(&app, 5).await, 1);
    assert!(received(&server).await.is_empty());
    // Stripe may send the event again: it is stored anew.
    post_event(
        &app,
        &endpoint,
        WHSEC,
        &stripe_event("evt_purge", "invoice.paid", unix_now(), None),
    )
    .await;
}

#[tokio::test]
async fn the_intake_has_its_own_body_limit() {
    // The API's limit is 64 KiB here; the intake keeps its own (1 MiB).
    let app = webhook_app().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let conn = key_connection(&app, &token, SK, "acct_1Acme").await;
    let id = connection_endpoint(&app, &token, &conn, WHSEC, None).await;
    let mut event: Value =
        serde_json::from_str(&stripe_event("evt_large", "invoice.paid", unix_now(), None)).unwrap();
    event["data"]["object"]["description"] = json!("x".repeat(200 * 1024));
    let event = post_event(&app, &id, WHSEC, &event.to_string()).await;
    let got = app.get(&format!("/api/v1/events/{event}"), &token).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.body["data"]["data"]["object"]["description"]
            .as_str()
            .unwrap()
            .len(),
        200 * 1024
    );
}

#[tokio::test]
async fn the_endpoint_url_follows_the_request_host() {
    let app = webhook_app().await;
    let (_, token) = app.tenant(&["admin"]).await;
    let id = app
        .post(
            "/api/v1/integrations/stripe/webhook-endpoints",
            &token,
            json!({"signing_secret": WHSEC}),
        )
        .await
        .id();
    for (host, base) in [
        ("patchbay.example.com", "https://patchbay.example.com"),
        (
            "patchbay.example.com:8443",
            "https://patchbay.example.com:8443",
        ),
        ("localhost:8080", "http://localhost:8080"),
        ("localhost", "http://localhost"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("[::1]", "http://[::1]"),
    ] {
        let reply = app
            .send(
                Request::builder()
                    .method(Method::GET)
                    .uri(format!("/api/v1/webhook-endpoints/{id}"))
                    .header("x-api-key", &token)
                    .header("host", host)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, 200, "{host}: {}", reply.text);
        assert_eq!(
            reply.body["url"],
            format!("{base}/api/v1/webhooks/stripe/{id}"),
            "Host: {host}"
        );
    }
}
