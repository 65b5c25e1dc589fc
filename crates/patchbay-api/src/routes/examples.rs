//! Request and response examples of the OpenAPI document, one function per
//! shape, referenced from the routes' `#[utoipa::path]` attributes
//! (`example = super::examples::tenant`). They show what the API really
//! sends: ids with their prefixes, hints instead of secrets, RFC 3339 times
//! in UTC. A test checks every operation has them.

use serde_json::{Value, json};

const TENANT: &str = "ten_01jq3v6k8e9r0f7t5b2n4m6p8s";
const CONNECTION: &str = "conn_01jq3v7a2b3c4d5e6f7g8h9j0k";
const API_KEY: &str = "key_01jq3v7c9d8e7f6g5h4j3k2m1n";
const ENDPOINT: &str = "we_01jq3v8d2e3f4g5h6j7k8m9n0p";
const SUBSCRIPTION: &str = "esub_01jq3v8f5g6h7j8k9m0n1p2q3r";
const EVENT: &str = "ev_01jq3v9a1b2c3d4e5f6g7h8j9k";
const DELIVERY: &str = "dlv_01jq3v9b2c3d4e5f6g7h8j9k0m";
const AUDIT_EVENT: &str = "aud_01jq3v9c3d4e5f6g7h8j9k0m1n";
const CREATED: &str = "2026-12-07T10:00:00Z";
const UPDATED: &str = "2026-12-07T10:05:00Z";

fn list(data: Vec<Value>, url: &str) -> Value {
    json!({"object": "list", "data": data, "has_more": false, "url": url})
}

/// `GET /healthz`.
pub fn health() -> Value {
    json!({"status": "ok"})
}

/// `GET /readyz`.
pub fn ready() -> Value {
    json!({"status": "ready", "database": "postgres"})
}

/// `GET /metrics`.
pub fn metrics() -> Value {
    Value::String(
        "# HELP patchbay_http_requests_total HTTP requests answered.\n\
         # TYPE patchbay_http_requests_total counter\n\
         patchbay_http_requests_total{method=\"GET\",route=\"/api/v1/connections\",status=\"200\"} 42\n"
            .into(),
    )
}

/// A tenant to create.
pub fn create_tenant() -> Value {
    json!({"name": "Acme Corp", "metadata": {"plan": "enterprise"}})
}

/// Changes to a tenant.
pub fn update_tenant() -> Value {
    json!({"status": "disabled", "metadata": {"plan": null}, "limits": {"requests_per_second": 50, "burst": 100}})
}

/// A tenant.
pub fn tenant() -> Value {
    json!({
        "id": TENANT, "object": "tenant", "name": "Acme Corp", "status": "active",
        "metadata": {"plan": "enterprise"},
        "limits": {"requests_per_second": 50, "burst": 100, "max_concurrent_upstream": null},
        "created_at": CREATED, "updated_at": UPDATED
    })
}

/// A page of tenants.
pub fn tenant_list() -> Value {
    list(vec![tenant()], "/api/v1/tenants")
}

/// A deleted tenant.
pub fn tenant_deleted() -> Value {
    json!({"id": TENANT, "object": "tenant", "deleted": true})
}

/// An API key to create.
pub fn create_api_key() -> Value {
    json!({"name": "production backend", "scopes": ["connections:write", "proxy"], "expires_at": "2027-12-07T00:00:00Z"})
}

fn api_key_object(key: Option<&str>, status: &str, revoked_at: Option<&str>) -> Value {
    json!({
        "id": API_KEY, "object": "api_key", "tenant_id": TENANT, "name": "production backend",
        "scopes": ["connections:write", "proxy"], "status": status, "hint": "pbk_…x9Qa",
        "key": key, "expires_at": "2027-12-07T00:00:00Z", "revoked_at": revoked_at,
        "last_used_at": UPDATED, "connection_id": null, "created_at": CREATED
    })
}

/// A new API key: the only response that carries the key.
pub fn api_key_created() -> Value {
    let mut key = api_key_object(
        Some("pbk_01jq3v7c9d8e7f6g5h4j3k2m1n_Xk3v9Qa7Lm2Pz8Rt4Wy6Bc1Nd5Fg0Hj2Ks7Vx9Qa"),
        "active",
        None,
    );
    key["last_used_at"] = Value::Null;
    key
}

/// An API key (without its secret).
pub fn api_key() -> Value {
    api_key_object(None, "active", None)
}

/// A revoked API key.
pub fn api_key_revoked() -> Value {
    api_key_object(None, "revoked", Some(UPDATED))
}

/// A page of a tenant's API keys.
pub fn api_key_list() -> Value {
    list(vec![api_key()], "/api/v1/api-keys")
}

/// A page of a tenant's API keys, as the admin lists them.
pub fn admin_api_key_list() -> Value {
    list(
        vec![api_key()],
        &format!("/api/v1/tenants/{TENANT}/api-keys"),
    )
}

/// A Stripe key to store.
pub fn create_connection() -> Value {
    json!({
        "provider": "stripe", "api_key": "sk_test_51HabcDEF0123456789xyzXYZ4242",
        "external_id": "customer-42", "name": "Acme (test)", "metadata": {"crm_id": "7781"}
    })
}

/// A connection.
pub fn connection() -> Value {
    json!({
        "id": CONNECTION, "object": "connection", "tenant_id": TENANT, "provider": "stripe",
        "auth_method": "secret_key", "livemode": false, "status": "active",
        "stripe_account_id": "acct_1Nv0FGQ9RKHgCVdK", "account_name": "Acme Inc.",
        "account_country": "US", "default_currency": "usd", "key_hint": "sk_test_…4242",
        "external_id": "customer-42", "name": "Acme (test)", "metadata": {"crm_id": "7781"},
        "stripe_version": null, "missing_permissions": [], "last_validated_at": UPDATED,
        "last_error": null, "previous_key_hint": null, "previous_key_expires_at": null,
        "scope": null, "client_id": null, "refreshed_at": null,
        "created_at": CREATED, "updated_at": UPDATED
    })
}

/// A connection whose Stripe key was just rotated, the old one kept for a day.
pub fn connection_rotated() -> Value {
    let mut c = connection();
    c["key_hint"] = json!("sk_test_…9999");
    c["previous_key_hint"] = json!("sk_test_…4242");
    c["previous_key_expires_at"] = json!("2026-12-08T10:05:00Z");
    c
}

/// A Connect OAuth connection.
pub fn connection_oauth() -> Value {
    let mut c = connection();
    c["auth_method"] = json!("oauth");
    c["key_hint"] = json!("sk_test_…PLAT");
    c["scope"] = json!("read_write");
    c["client_id"] = json!("ca_FkyHCg7X8mlvCUdMDao4mMxagUfhIwXb");
    c["refreshed_at"] = json!(UPDATED);
    c
}

/// A Connect connection being deauthorized (Stripe not reached yet).
pub fn connection_revoking() -> Value {
    let mut c = connection_oauth();
    c["status"] = json!("revoking");
    c
}

/// A page of connections.
pub fn connection_list() -> Value {
    list(vec![connection()], "/api/v1/connections")
}

/// A deleted connection.
pub fn connection_deleted() -> Value {
    json!({"id": CONNECTION, "object": "connection", "deleted": true})
}

/// Changes to a connection.
pub fn update_connection() -> Value {
    json!({"name": "Acme (live)", "metadata": {"crm_id": "7782"}, "stripe_version": "2026-10-28.endive"})
}

/// A new Stripe key for a connection.
pub fn rotate_connection() -> Value {
    json!({"api_key": "sk_test_51HabcDEF0123456789xyzXYZ9999", "keep_previous_for_seconds": 86400})
}

/// A Stripe action to run.
pub fn call_action() -> Value {
    json!({"action": "stripe.createCustomer", "config": {"email": "jane@example.com", "metadata": {"source": "workflow"}}})
}

/// A Stripe object, as Stripe answered.
pub fn stripe_customer() -> Value {
    json!({
        "id": "cus_RkT3nL0xG5m2Qa", "object": "customer", "email": "jane@example.com",
        "livemode": false, "created": 1796205600, "metadata": {"source": "workflow"}
    })
}

fn action(name: &str, description: &str, method: &str, path: &str, permission: &str) -> Value {
    json!({
        "object": "action", "name": name, "description": description, "method": method,
        "path": path, "kind": "create", "permission": permission,
        "config_schema": {
            "type": "object",
            "properties": {"email": {"type": "string"}, "metadata": {"type": "object"}},
            "additionalProperties": false
        },
        "examples": [{"email": "jane@example.com"}]
    })
}

/// One action of the catalogue.
pub fn action_object() -> Value {
    action(
        "stripe.createCustomer",
        "Creates a customer.",
        "POST",
        "/v1/customers",
        "rak_customer_write",
    )
}

/// The action catalogue.
pub fn action_list() -> Value {
    json!({"object": "list", "data": [action_object()]})
}

/// What a connection may run.
pub fn capability_list() -> Value {
    json!({"object": "list", "data": [
        {"action": "stripe.createCustomer", "status": "available", "permission": "rak_customer_write", "reason": null},
        {"action": "stripe.createRefund", "status": "missing_permission", "permission": "rak_refund_write",
         "reason": "Stripe refused this key the 'rak_refund_write' permission."}
    ]})
}

/// The Connect OAuth authorize URL.
pub fn auth_url() -> Value {
    json!({
        "object": "oauth_authorize_url",
        "url": "https://connect.stripe.com/oauth/authorize?response_type=code&client_id=ca_FkyHCg7X8mlvCUdMDao4mMxagUfhIwXb&scope=read_write&state=st_4pQx9Lm2Rz7Vb3Nc8Kd1&redirect_uri=https%3A%2F%2Fpb.example.com%2Fapi%2Fv1%2Foauth%2Fstripe%2Fcallback",
        "state": "st_4pQx9Lm2Rz7Vb3Nc8Kd1",
        "expires_at": "2026-12-07T10:10:00Z"
    })
}

/// A connect session to mint.
pub fn create_connect_session() -> Value {
    json!({"external_id": "user-42", "allowed": ["oauth", "api_key"], "return_to": "https://app.example.com/connected", "expires_in_seconds": 900})
}

/// A connect session with its token.
pub fn connect_session() -> Value {
    json!({
        "id": "cs_01jq3v9d4e5f6g7h8j9k0m1n2p", "object": "connect_session",
        "token": "eyJhbGciOiJIUzI1NiJ9.eyJzaWQiOiJjc18wMWpxM3Y5ZDRlNWY2ZzdoOGo5azBtMW4ycCJ9.Qm9vZ3VzU2lnbmF0dXJl",
        "expires_at": "2026-12-07T10:15:00Z", "external_id": "user-42",
        "allowed": ["oauth", "api_key"], "return_to": "https://app.example.com/connected"
    })
}

/// A Connect platform to configure.
pub fn put_integration() -> Value {
    json!({
        "client_id": "ca_FkyHCg7X8mlvCUdMDao4mMxagUfhIwXb",
        "secret_key": "sk_test_51PlatformKey0123456789abcdEFGH",
        "redirect_uris": ["https://pb.example.com/api/v1/oauth/stripe/callback"],
        "scope": "read_write"
    })
}

/// The tenant's Connect platforms.
pub fn integration() -> Value {
    json!({
        "object": "stripe_integration",
        "test": {
            "livemode": false, "client_id": "ca_FkyHCg7X8mlvCUdMDao4mMxagUfhIwXb",
            "key_hint": "sk_test_…EFGH", "platform_account_id": "acct_1PlatFGQ9RKHgCVd",
            "redirect_uris": ["https://pb.example.com/api/v1/oauth/stripe/callback"],
            "scope": "read_write", "created_at": CREATED, "updated_at": UPDATED
        },
        "live": null
    })
}

/// Settings to store.
pub fn put_settings() -> Value {
    json!({"allowed_origins": ["https://app.example.com"]})
}

/// The tenant's settings.
pub fn settings() -> Value {
    json!({"object": "tenant_settings", "allowed_origins": ["https://app.example.com"]})
}

/// A webhook endpoint for a connection.
pub fn create_endpoint() -> Value {
    json!({
        "signing_secret": "whsec_8f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c",
        "events": ["invoice.paid", "customer.subscription.updated"],
        "description": "billing events"
    })
}

/// A webhook endpoint for a Connect platform.
pub fn create_platform_endpoint() -> Value {
    json!({
        "signing_secret": "whsec_8f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c",
        "events": ["account.application.deauthorized", "invoice.paid"],
        "mode": "test", "description": "Connect events"
    })
}

/// A webhook endpoint.
pub fn endpoint() -> Value {
    json!({
        "id": ENDPOINT, "object": "webhook_endpoint", "scope": "connection",
        "connection_id": CONNECTION, "livemode": false,
        "url": format!("https://pb.example.com/api/v1/webhooks/stripe/{ENDPOINT}"),
        "events": ["invoice.paid", "customer.subscription.updated"],
        "description": "billing events", "secret_hint": "whsec_…0b9c",
        "previous_secret_expires_at": null, "created_at": CREATED, "updated_at": UPDATED
    })
}

/// A webhook endpoint whose secret was rolled, the previous one still valid.
pub fn endpoint_rolled() -> Value {
    let mut e = endpoint();
    e["secret_hint"] = json!("whsec_…e8f9");
    e["previous_secret_expires_at"] = json!("2026-12-08T10:05:00Z");
    e
}

/// A platform webhook endpoint.
pub fn platform_endpoint() -> Value {
    let mut e = endpoint();
    e["scope"] = json!("platform");
    e["connection_id"] = Value::Null;
    e["events"] = json!(["account.application.deauthorized", "invoice.paid"]);
    e["description"] = json!("Connect events");
    e
}

/// A page of webhook endpoints.
pub fn endpoint_list() -> Value {
    list(vec![endpoint()], "/api/v1/webhook-endpoints")
}

/// A page of a connection's webhook endpoints.
pub fn connection_endpoint_list() -> Value {
    list(
        vec![endpoint()],
        &format!("/api/v1/connections/{CONNECTION}/webhook-endpoints"),
    )
}

/// Changes to a webhook endpoint.
pub fn update_endpoint() -> Value {
    json!({"events": ["invoice.paid"], "description": "paid invoices only"})
}

/// The new signing secret of an endpoint.
pub fn roll_endpoint_secret() -> Value {
    json!({"signing_secret": "whsec_0a1b2c3d4e5f60718293a4b5c6d7e8f9", "expire_previous_in_seconds": 86400})
}

/// A deleted webhook endpoint.
pub fn endpoint_deleted() -> Value {
    json!({"id": ENDPOINT, "object": "webhook_endpoint", "deleted": true})
}

/// A Stripe event, as Stripe posts it.
pub fn stripe_event() -> Value {
    json!({
        "id": "evt_1QxYz2FGQ9RKHgCVdKa1b2c3", "object": "event", "api_version": "2026-10-28.endive",
        "created": 1796205600, "livemode": false, "type": "invoice.paid",
        "data": {"object": {"id": "in_1QxYz1FGQ9RKHgCV", "object": "invoice", "amount_paid": 2000, "currency": "usd"}}
    })
}

/// Stripe's event acknowledged.
pub fn receipt() -> Value {
    json!({"received": true, "event_id": EVENT, "duplicate": false, "ignored": false})
}

/// A stored event.
pub fn event() -> Value {
    json!({
        "id": EVENT, "object": "event", "source": "stripe", "type": "invoice.paid",
        "stripe_event_id": "evt_1QxYz2FGQ9RKHgCVdKa1b2c3", "endpoint_id": ENDPOINT,
        "connection_id": CONNECTION, "account": null, "livemode": false,
        "created": 1796205600, "received_at": CREATED, "data": stripe_event()
    })
}

/// A page of events.
pub fn event_list() -> Value {
    list(vec![event()], "/api/v1/events")
}

/// A page of a connection's events.
pub fn connection_event_list() -> Value {
    list(
        vec![event()],
        &format!("/api/v1/connections/{CONNECTION}/events"),
    )
}

fn delivery(status: &str) -> Value {
    json!({
        "id": DELIVERY, "object": "event_delivery", "event_id": EVENT,
        "subscription_id": SUBSCRIPTION, "status": status, "attempts": 1,
        "last_status_code": 500, "last_error": "the receiver answered 500",
        "next_attempt_at": "2026-12-07T10:00:30Z", "created_at": CREATED, "updated_at": CREATED,
        "attempt_log": [{
            "attempt": 1, "attempted_at": CREATED, "status_code": 500, "duration_ms": 87,
            "error": null, "response_snippet": "internal error"
        }]
    })
}

/// A page of an event's deliveries.
pub fn delivery_list() -> Value {
    list(
        vec![delivery("pending")],
        &format!("/api/v1/events/{EVENT}/deliveries"),
    )
}

/// A redelivery to one subscription.
pub fn redeliver() -> Value {
    json!({"subscription_id": SUBSCRIPTION})
}

/// The deliveries a redelivery queued.
pub fn redelivered() -> Value {
    let mut d = delivery("pending");
    d["attempts"] = json!(0);
    d["last_status_code"] = Value::Null;
    d["last_error"] = Value::Null;
    d["next_attempt_at"] = json!(UPDATED);
    d["attempt_log"] = json!([]);
    list(vec![d], &format!("/api/v1/events/{EVENT}/deliveries"))
}

/// A subscription to create.
pub fn create_subscription() -> Value {
    json!({
        "url": "https://app.example.com/hooks/patchbay",
        "events": ["invoice.paid", "connection.status_changed"],
        "description": "billing worker"
    })
}

fn subscription_object(secret: Option<&str>) -> Value {
    json!({
        "id": SUBSCRIPTION, "object": "event_subscription",
        "url": "https://app.example.com/hooks/patchbay",
        "events": ["invoice.paid", "connection.status_changed"], "connection_id": null,
        "description": "billing worker", "status": "enabled", "disabled_reason": null,
        "secret_hint": "whsec_…Zm9v", "previous_secret_expires_at": null, "secret": secret,
        "created_at": CREATED, "updated_at": UPDATED
    })
}

/// A new subscription with its secret (shown here and on roll-secret only).
pub fn subscription_created() -> Value {
    subscription_object(Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaZm9v"))
}

/// A subscription.
pub fn subscription() -> Value {
    subscription_object(None)
}

/// A subscription with a new secret, the previous one still signing.
pub fn subscription_rolled() -> Value {
    let mut s = subscription_object(Some("whsec_Q2hhbmdlZFNlY3JldEZvclN1YnNjcmlwdGlvbg"));
    s["secret_hint"] = json!("whsec_…aW9u");
    s["previous_secret_expires_at"] = json!("2026-12-08T10:05:00Z");
    s
}

/// A page of subscriptions.
pub fn subscription_list() -> Value {
    list(vec![subscription()], "/api/v1/event-subscriptions")
}

/// Changes to a subscription.
pub fn update_subscription() -> Value {
    json!({"events": ["*"], "enabled": true})
}

/// How long the previous subscription secret keeps signing.
pub fn roll_subscription_secret() -> Value {
    json!({"expire_previous_in_seconds": 86400})
}

/// A deleted subscription.
pub fn subscription_deleted() -> Value {
    json!({"id": SUBSCRIPTION, "object": "event_subscription", "deleted": true})
}

/// A page of audit events.
pub fn audit_event_list() -> Value {
    list(
        vec![json!({
            "id": AUDIT_EVENT, "object": "audit_event", "tenant_id": TENANT, "actor": API_KEY,
            "action": "connection.rotated", "target_id": CONNECTION,
            "details": {"key_hint": "sk_test_…9999", "previous_key_hint": "sk_test_…4242"},
            "request_id": "req_7Hq2cX9mWn4pLk8vR3tY6b1z", "client_request_id": null,
            "created_at": UPDATED
        })],
        "/api/v1/audit-events",
    )
}

/// Master-key usage.
pub fn key_status() -> Value {
    json!({
        "primary": "k2",
        "keys": [
            {"id": "k2", "primary": true, "configured": true, "data_keys": 118},
            {"id": "k1", "primary": false, "configured": true, "data_keys": 2}
        ],
        "pending_rotation": 2
    })
}
