//! Bad input gets a 4xx in the envelope naming the problem; never a 500.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::support::{ADMIN, TestApp, assert_envelope};

#[tokio::test]
async fn malformed_bodies_name_the_problem() {
    let app = TestApp::new().await;
    let raw = |body: &'static str, content_type: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/tenants")
            .header("x-api-key", ADMIN)
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap()
    };
    let cases = [
        (
            raw("{\"name\":", "application/json"),
            400,
            "body_invalid_json",
            None,
        ),
        (
            raw("not json", "application/json"),
            400,
            "body_not_object",
            None,
        ),
        (
            raw("{not json", "application/json"),
            400,
            "body_invalid_json",
            None,
        ),
        (raw("", "application/json"), 400, "body_missing", None),
        (
            raw("{}", "application/json"),
            400,
            "parameter_missing",
            Some("name"),
        ),
        (
            raw("{\"name\":5}", "application/json"),
            400,
            "parameter_invalid",
            Some("name"),
        ),
        (
            raw("{\"name\":\"a\",\"nmae\":1}", "application/json"),
            400,
            "parameter_unknown",
            Some("nmae"),
        ),
        (
            raw(
                "{\"name\":\"a\",\"metadata\":{\"k\":1}}",
                "application/json",
            ),
            400,
            "parameter_invalid",
            Some("metadata.k"),
        ),
        (
            raw("{\"name\":\"a\"} trailing", "application/json"),
            400,
            "body_invalid_json",
            None,
        ),
        (
            raw("[1,2]", "application/json"),
            400,
            "body_not_object",
            None,
        ),
        (
            raw("{\"name\":\"a\"}", "text/plain"),
            415,
            "content_type_invalid",
            None,
        ),
        (
            raw("{\"name\":\"\"}", "application/json"),
            422,
            "parameter_invalid",
            Some("name"),
        ),
        (
            raw("{\"name\":\"   \"}", "application/json"),
            422,
            "parameter_invalid",
            Some("name"),
        ),
    ];
    for (request, status, code, param) in cases {
        let reply = app.send(request).await;
        assert_eq!(reply.status.as_u16(), status, "{}", reply.text);
        assert_eq!(assert_envelope(&reply), code, "{}", reply.text);
        assert_eq!(
            reply.body["error"]["param"].as_str(),
            param,
            "{}",
            reply.text
        );
    }
    // Nothing was created by any of them.
    let list = app.get("/api/v1/tenants", ADMIN).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn oversize_bodies_are_413() {
    let app = TestApp::new().await;
    let huge = json!({"name": "x".repeat(70 * 1024)});
    let reply = app.post("/api/v1/tenants", ADMIN, huge).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text
    );
    assert_eq!(assert_envelope(&reply), "body_too_large");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_envelope() {
    let app = TestApp::new().await;
    let reply = app.get("/api/v1/nope", ADMIN).await;
    assert_eq!(reply.status, 404);
    assert_eq!(assert_envelope(&reply), "route_not_found");
    let reply = app
        .call(Method::PUT, "/api/v1/tenants", Some(ADMIN), Some(json!({})))
        .await;
    assert_eq!(reply.status, 405);
    assert_eq!(assert_envelope(&reply), "method_not_allowed");
}

#[tokio::test]
async fn authentication_failures_are_401_or_403_with_a_reason() {
    let app = TestApp::new().await;
    let (_, tenant_key) = app.tenant(&["connections:read"]).await;
    type Header<'a> = Option<(&'a str, String)>;
    let cases: Vec<(Header, u16, &str)> = vec![
        (None, 401, "api_key_missing"),
        (Some(("x-api-key", "wrong".into())), 401, "api_key_invalid"),
        (
            Some(("authorization", "Bearer wrong".into())),
            401,
            "api_key_invalid",
        ),
        (
            Some(("authorization", "Token abc".into())),
            401,
            "api_key_malformed",
        ),
        (
            Some(("authorization", "Basic !!!".into())),
            401,
            "api_key_malformed",
        ),
        (
            Some((
                "x-api-key",
                format!("{}x", &tenant_key[..tenant_key.len() - 1]),
            )),
            401,
            "api_key_invalid",
        ),
        (
            Some(("x-api-key", tenant_key.clone())),
            403,
            "admin_required",
        ),
    ];
    for (header, status, code) in cases {
        let mut builder = Request::builder().uri("/api/v1/tenants");
        if let Some((name, value)) = &header {
            builder = builder.header(*name, value.as_str());
        }
        let reply = app.send(builder.body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status.as_u16(), status, "{header:?}: {}", reply.text);
        assert_eq!(assert_envelope(&reply), code);
    }
    // The admin token is refused on tenant routes: it belongs to no tenant.
    let reply = app.get("/api/v1/connections", ADMIN).await;
    assert_eq!(reply.status, 403);
    assert_eq!(assert_envelope(&reply), "tenant_key_required");
    // Bearer and Basic (key as user name, as Stripe accepts) work too.
    for header in [
        format!("Bearer {tenant_key}"),
        format!("Basic {}", base64_encode(&format!("{tenant_key}:"))),
    ] {
        let reply = app
            .send(
                Request::builder()
                    .uri("/api/v1/connections")
                    .header("authorization", header)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
}

fn base64_encode(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn bad_ids_and_query_strings_are_400_naming_the_parameter() {
    let app = TestApp::new().await;
    let (_, key) = app.tenant(&["admin"]).await;
    for (path, param) in [
        ("/api/v1/connections/conn_nope", "id"),
        ("/api/v1/connections/ten_01jq3v6k8e9r0f7t5b2n4m6p8s", "id"),
        ("/api/v1/api-keys/%00", "key_id"),
        ("/api/v1/connections?limit=0", "limit"),
        ("/api/v1/connections?limit=1000", "limit"),
        ("/api/v1/connections?limit=x", "limit"),
        ("/api/v1/connections?livemode=maybe", "livemode"),
        ("/api/v1/connections?status=asleep", "status"),
        ("/api/v1/connections?starting_after=bad", "starting_after"),
        ("/api/v1/connections?bogus=1", "bogus"),
    ] {
        let reply = app.get(path, &key).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text);
        assert_envelope(&reply);
        assert_eq!(
            reply.body["error"]["param"], param,
            "{path}: {}",
            reply.text
        );
    }
    let both = format!(
        "/api/v1/connections?starting_after=conn_{0}&ending_before=conn_{0}",
        "01jq3v6k8e9r0f7t5b2n4m6p8s"
    );
    let reply = app.get(&both, &key).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.body["error"]["param"], "ending_before");
}

#[tokio::test]
async fn every_response_carries_the_servers_request_id_and_echoes_a_sane_client_one_apart() {
    let app = TestApp::new().await;
    let reply = app.get("/healthz", ADMIN).await;
    let id = reply.headers["x-request-id"].to_str().unwrap();
    assert!(id.starts_with("req_") && id.len() == 28, "{id}");
    assert!(reply.headers.get("x-client-request-id").is_none());
    let sent = app
        .send(
            Request::builder()
                .uri("/healthz")
                .header("x-request-id", "trace-123_abc")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let server_id = sent.headers["x-request-id"].to_str().unwrap();
    assert!(server_id.starts_with("req_"), "{server_id}");
    assert_eq!(sent.headers["x-client-request-id"], "trace-123_abc");
    for bad in ["bad id with spaces", &"x".repeat(65)] {
        let replaced = app
            .send(
                Request::builder()
                    .uri("/healthz")
                    .header("x-request-id", bad)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert!(
            replaced.headers["x-request-id"]
                .to_str()
                .unwrap()
                .starts_with("req_")
        );
        assert!(
            replaced.headers.get("x-client-request-id").is_none(),
            "{bad:?} is not echoed"
        );
    }
    let ready = app.get("/readyz", ADMIN).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["database"], "sqlite");
}

#[tokio::test]
async fn a_made_up_method_is_cut_short_in_the_error_message() {
    let app = TestApp::new().await;
    let method = format!("M{}", "X".repeat(999));
    let reply = app
        .send(
            Request::builder()
                .method(method.as_str())
                .uri("/healthz")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 405, "{}", reply.text);
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(!message.contains(&method[..65]), "{message}");
    assert!(message.contains(&method[..64]), "{message}");
    assert!(message.len() < 200, "{message}");
}
