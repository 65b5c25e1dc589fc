//! Whether this binary's PostgreSQL tests run, decided once: `TEST_DATABASE_URL`,
//! and PostgreSQL answering it. Under `CI=true` an unset URL panics, and a set
//! URL that does not answer panics everywhere, before the test does anything;
//! on a machine without PostgreSQL the tests skip with one line on stderr.
//! PostgreSQL tests are named `…postgres` (`.ci/run` counts them).

use std::io::Write;
use std::time::Duration;

use sqlx::Connection;

/// The PostgreSQL to test against, or `None` to skip (never under `CI=true`).
pub async fn postgres_url() -> Option<String> {
    static CHECKED: tokio::sync::OnceCell<Option<String>> = tokio::sync::OnceCell::const_new();
    CHECKED.get_or_init(check).await.clone()
}

async fn check() -> Option<String> {
    let Some(url) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but TEST_DATABASE_URL is unset: the PostgreSQL tests must run"
        );
        // Straight to stderr: libtest swallows eprintln! of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "TEST_DATABASE_URL unset: skipping the PostgreSQL tests of {}",
            env!("CARGO_CRATE_NAME")
        );
        return None;
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        conn.close().await
    })
    .await;
    match answer {
        Ok(Ok(())) => Some(url),
        Ok(Err(e)) => panic!("TEST_DATABASE_URL is set but PostgreSQL refused: {e}"),
        Err(_) => panic!("TEST_DATABASE_URL is set but PostgreSQL did not answer in 10 s"),
    }
}
