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
