//! The committed OpenAPI document is what the code generates. Regenerate with
//! `cargo run -- openapi --write openapi/openapi.json` (or UPDATE_OPENAPI=1).

use serde_json::Value;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/openapi.json");

#[test]
fn committed_openapi_matches_the_code() {
    let generated = patchbay_api::openapi_json();
    // Regenerating makes this test pass by construction: never in CI.
    if std::env::var("UPDATE_OPENAPI").as_deref() == Ok("1")
        && std::env::var("CI").as_deref() != Ok("true")
    {
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date: run `cargo run -- openapi --write openapi/openapi.json`"
    );
}

#[test]
fn every_operation_is_described_and_secured() {
    let doc: Value = serde_json::from_str(&patchbay_api::openapi_json()).unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert!(schemes["api_key"].is_object() && schemes["bearer"].is_object());
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "patch", "delete", "put"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            assert!(
                op["summary"].is_string() || op["description"].is_string(),
                "{method} {path}"
            );
            assert!(
                op["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .any(|s| s.starts_with('2')),
                "{method} {path}"
            );
            if path.starts_with("/api/v1/oauth/") || path.starts_with("/api/v1/webhooks/") {
                // Public callbacks say so explicitly: an empty requirement.
                assert_eq!(op["security"], serde_json::json!([{}]), "{method} {path}");
            } else if path.starts_with("/api/") {
                assert!(op["security"].is_array(), "{method} {path} has no security");
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path} documents no 401"
                );
            }
        }
    }
    assert!(operations >= 21, "{operations} operations");
}

/// `media` (a content map) shows an example of each of its media types.
fn has_examples(media: &Value) -> bool {
    media.as_object().is_some_and(|m| {
        !m.is_empty()
            && m.values()
                .all(|c| c.get("example").is_some() || c.get("examples").is_some())
    })
}

/// What `/docs` shows a developer: every operation has a one-line summary and
/// a description, an example of its request body and of each success answer
/// that has a body, and the error envelope on every error answer.
#[test]
fn every_operation_has_summary_description_examples_and_the_error_envelope() {
    let doc: Value = serde_json::from_str(&patchbay_api::openapi_json()).unwrap();
    let envelope = serde_json::json!({"$ref": "#/components/schemas/ErrorResponse"});
    // Operations that relay Stripe's answers document its error bodies too.
    let relayed = serde_json::json!({"$ref": "#/components/schemas/RelayedError"});
    let mut problems = Vec::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "patch", "delete", "put"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let name = format!("{} {path}", method.to_uppercase());
            match op["summary"].as_str() {
                Some(s) if !s.trim().is_empty() && !s.contains('\n') => {}
                _ => problems.push(format!("{name}: no one-line summary")),
            }
            if op["description"]
                .as_str()
                .is_none_or(|d| d.trim().is_empty())
            {
                problems.push(format!("{name}: no description"));
            }
            if let Some(body) = op.get("requestBody")
                && !has_examples(&body["content"])
            {
                problems.push(format!("{name}: no request example"));
            }
            let responses = op["responses"].as_object().unwrap();
            let mut success_with_body = false;
            for (status, response) in responses {
                let content = response.get("content");
                if status.starts_with('2') {
                    if let Some(content) = content {
                        success_with_body = true;
                        if !has_examples(content) {
                            problems.push(format!("{name}: no example for {status}"));
                        }
                    }
                } else if status.starts_with('4') || status.starts_with('5') {
                    let schema = content
                        .and_then(|c| c.get("application/json"))
                        .map(|j| &j["schema"]);
                    let relays = op["tags"][0] == "actions" || op["tags"][0] == "proxy";
                    if schema != Some(&envelope) && !(relays && schema == Some(&relayed)) {
                        problems.push(format!("{name}: {status} is not the error envelope"));
                    }
                }
            }
            // Only a 204 or a redirect may answer without a body.
            let bodiless = responses.keys().all(|s| !s.starts_with('2') || s == "204");
            if !success_with_body && !bodiless {
                problems.push(format!("{name}: no success response with a body"));
            }
        }
    }
    assert!(operations >= 59, "{operations} operations");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
