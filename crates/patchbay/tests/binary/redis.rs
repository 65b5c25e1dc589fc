//! Whether the Redis tests run, decided once: `TEST_REDIS_URL`, and Redis
//! answering `PING` there. Under `CI=true` an unset URL panics, and a set URL
//! that does not answer panics everywhere; on a machine without Redis the
//! tests skip with one line on stderr. Redis tests also need PostgreSQL
//! (several replicas), so they are named `…_redis_postgres`.

use std::io::Write;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The Redis to test against, or `None` to skip (never under `CI=true`).
pub async fn redis_url() -> Option<String> {
    static CHECKED: tokio::sync::OnceCell<Option<String>> = tokio::sync::OnceCell::const_new();
    CHECKED.get_or_init(check).await.clone()
}

async fn check() -> Option<String> {
    let Some(url) = std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but TEST_REDIS_URL is unset: the Redis tests must run"
        );
        let _ = writeln!(
            std::io::stderr(),
            "TEST_REDIS_URL unset: skipping the Redis tests of {}",
            env!("CARGO_CRATE_NAME")
        );
        return None;
    };
    let address = url
        .trim_start_matches("redis://")
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_owned();
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = tokio::net::TcpStream::connect(&address).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    })
    .await;
    match answer {
        Ok(Ok(reply)) if &reply == b"+PONG\r\n" => Some(url),
        Ok(Ok(reply)) => panic!(
            "TEST_REDIS_URL is set but {address} answered {:?} to PING",
            String::from_utf8_lossy(&reply)
        ),
        Ok(Err(e)) => panic!("TEST_REDIS_URL is set but Redis at {address} refused: {e}"),
        Err(_) => panic!("TEST_REDIS_URL is set but Redis at {address} did not answer in 10 s"),
    }
}
