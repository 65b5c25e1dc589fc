//! The command line explains itself and prints the committed OpenAPI document.

use crate::support::BIN;

#[test]
fn help_names_every_command_and_variable() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "serve",
        "migrate",
        "openapi",
        "keys",
        "PATCHBAY_LISTEN",
        "PATCHBAY_DATABASE_URL",
        "PATCHBAY_MASTER_KEYS",
        "PATCHBAY_ADMIN_TOKEN",
        "PATCHBAY_LOG_FORMAT",
        "PATCHBAY_STRIPE_API_BASE",
        "PATCHBAY_STRIPE_CONNECT_BASE",
        "PATCHBAY_REVALIDATE_EVERY",
        "PATCHBAY_KEY_CACHE_TTL",
        "PATCHBAY_HEADER_READ_TIMEOUT",
        "PATCHBAY_IDLE_TIMEOUT",
        "PATCHBAY_MAX_CONNECTIONS",
        "_FILE",
    ] {
        assert!(help.contains(word), "--help lacks {word}");
    }
    let keys = std::process::Command::new(BIN)
        .args(["keys", "--help"])
        .output()
        .unwrap();
    let keys = String::from_utf8_lossy(&keys.stdout);
    for word in ["status", "rotate", "generate"] {
        assert!(keys.contains(word));
    }
}

#[test]
fn openapi_prints_the_committed_document() {
    let out = std::process::Command::new(BIN)
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openapi/openapi.json"
    ))
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), committed);
}

#[test]
fn generated_master_keys_are_well_formed_and_distinct() {
    let a = crate::support::master_key("k9");
    let b = crate::support::master_key("k9");
    assert!(a.starts_with("k9:") && a.len() == 3 + 44);
    assert_ne!(a, b);
}
