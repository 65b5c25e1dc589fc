//! Secrets never leave in plaintext: not in responses, not in the database
//! files (SQLite and its WAL, a PostgreSQL dump), not in logs at any level.

use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::connections::{SK, account, account_for};
use crate::support::{ADMIN, TestApp};

const SECRETS: [&str; 3] = [
    "sk_test_51HplainTEXTsecretONE000000001",
    "sk_live_51HplainTEXTsecretTWO000000002",
    "rk_test_51HplainTEXTsecretTHREE0000003",
];

#[tokio::test]
async fn the_sqlite_file_and_wal_hold_no_plaintext_secret() {
    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    for key in SECRETS {
        let reply = app
            .post(
                "/api/v1/connections",
                &token,
                json!({"provider": "stripe", "api_key": key, "validate": false}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        assert!(!reply.text.contains(key));
    }
    let mut bytes = Vec::new();
    for file in ["patchbay.db", "patchbay.db-wal"] {
        if let Ok(b) = std::fs::read(app.dir.path().join(file)) {
            bytes.extend(b);
        }
    }
    assert!(bytes.len() > 4096, "the database was written");
    for needle in SECRETS.iter().copied().chain([token.as_str(), ADMIN]) {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "plaintext found in the database files"
        );
    }
    // The hints are there (they are meant to be), so the scan would have found text.
    assert!(bytes.windows(10).any(|w| w == b"sk_test_\xe2\x80"));
}

#[tokio::test]
async fn a_dump_holds_no_plaintext_secret_on_postgres() {
    let Some(base) = crate::postgres::postgres_url().await else {
        return;
    };
    let schema = format!("secrets_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    let store = patchbay_store::open(&url, &Default::default(), true)
        .await
        .unwrap();
    let keyring =
        patchbay_vault::Keyring::parse(&patchbay_vault::generate_master_key("k1").unwrap())
            .unwrap();
    patchbay_vault::verify_keyring_against_store(&keyring, store.as_ref())
        .await
        .unwrap();
    let app = TestApp::new().await;
    let state = patchbay_api::AppState::new(
        store.clone(),
        Arc::new(keyring),
        app.state.stripe.clone(),
        Some(&secrecy::SecretString::from(ADMIN)),
        patchbay_api::ApiConfig::default(),
        None,
    );
    let pg_app = TestApp {
        router: patchbay_api::app(state.clone()),
        state,
        ..app
    };
    let (_, token) = pg_app.tenant(&["admin"]).await;
    for key in SECRETS {
        let r = pg_app
            .post(
                "/api/v1/connections",
                &token,
                json!({"provider": "stripe", "api_key": key, "validate": false}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    store.close().await;
    let output = std::process::Command::new("pg_dump")
        .args([
            "--dbname",
            &base,
            "--schema",
            &schema,
            "--data-only",
            "--inserts",
        ])
        .output()
        .expect("pg_dump is installed where PostgreSQL tests run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump = String::from_utf8_lossy(&output.stdout);
    assert!(dump.contains("connections"), "the dump covers the tables");
    // The hints are there (they are meant to be), so the scan would have found text.
    assert!(dump.contains("sk_test_\u{2026}"), "the rows were dumped");
    for needle in SECRETS.iter().copied().chain([token.as_str()]) {
        assert!(
            !dump.contains(needle),
            "plaintext found in the PostgreSQL dump"
        );
    }
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await;
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn trace_logs_of_authenticated_requests_hold_no_secret() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::new().await;
    let (_, token) = app.tenant(&["admin"]).await;
    account_for(&app, SK, account("acct_1Acme")).await;
    let created = app
        .post(
            "/api/v1/connections",
            &token,
            json!({"provider": "stripe", "api_key": SK}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.id();
    app.post(
        &format!("/api/v1/connections/{id}/validate"),
        &token,
        json!({}),
    )
    .await;
    app.post(
        "/api/v1/connections",
        &token,
        json!({"provider": "stripe", "api_key": "pk_test_51HabcDEF0123456789xyzXYZ4242"}),
    )
    .await;
    app.get("/api/v1/connections", "pbk_wrong").await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("request"),
        "the capture saw the requests:\n{logs}"
    );
    for needle in [
        SK,
        token.as_str(),
        ADMIN,
        "pk_test_51HabcDEF0123456789xyzXYZ4242",
        &SK["sk_test_".len()..],
    ] {
        assert!(!logs.contains(needle), "a secret reached the log");
    }
}

#[tokio::test]
async fn debug_output_of_the_state_redacts() {
    let app = TestApp::new().await;
    let shown = format!("{:?}", app.state);
    assert!(!shown.contains(ADMIN));
    assert!(shown.contains("[set]"));
}
