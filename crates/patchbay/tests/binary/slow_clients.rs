//! Slow and idle clients cannot hold connections: a request head that is late
//! (nothing sent, half a request line, headers trickled a byte at a time) or a
//! connection idle after its response is closed on time, and connections over
//! the cap wait in the backlog while the server keeps answering.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{ADMIN, Env, Server, data_dir, master_key};

/// Far above every timeout used here: reaching it means the server never closed.
const NEVER: Duration = Duration::from_secs(15);

fn env(data: &std::path::Path) -> Env {
    Env::new(data)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_MASTER_KEYS", master_key("k1"))
        .set("PATCHBAY_HEADER_READ_TIMEOUT", "1s")
        .set("PATCHBAY_IDLE_TIMEOUT", "2s")
}

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection; returns what it sent and
/// how long that took. Fails if the server keeps it open for `NEVER`.
async fn until_closed(
    stream: &mut (impl AsyncReadExt + Unpin),
    opened: Instant,
) -> (String, Duration) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(NEVER, stream.read(&mut buf)).await {
            Err(_) => panic!("the server kept a slow connection open for {NEVER:?}"),
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        opened.elapsed(),
    )
}

async fn healthz(http: &reqwest::Client, server: &Server) {
    let reply = http
        .get(format!("{}/healthz", server.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("the server answers while slow clients wait");
    assert_eq!(reply.status(), 200);
}

#[tokio::test]
async fn late_request_heads_and_idle_connections_are_closed_on_time() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&env(&data)).await;

    let silent = {
        let mut stream = connect(&server).await;
        let opened = Instant::now();
        tokio::spawn(async move { until_closed(&mut stream, opened).await })
    };
    let half_line = {
        let mut stream = connect(&server).await;
        let opened = Instant::now();
        stream.write_all(b"GET /heal").await.unwrap();
        tokio::spawn(async move { until_closed(&mut stream, opened).await })
    };
    let trickled = {
        let stream = connect(&server).await;
        let opened = Instant::now();
        let (mut read, mut write) = stream.into_split();
        tokio::spawn(async move {
            // A client pacing its bytes, as a slowloris does: 100 bytes over 10 s.
            let head = format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
                "p".repeat(60)
            );
            for byte in head.bytes() {
                if write.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        tokio::spawn(async move { until_closed(&mut read, opened).await })
    };
    let idle = {
        let mut stream = connect(&server).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        let answered = Instant::now();
        tokio::spawn(async move { until_closed(&mut stream, answered).await })
    };

    // Meanwhile, ordinary requests are served, each on a new connection.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    while !(silent.is_finished()
        && half_line.is_finished()
        && trickled.is_finished()
        && idle.is_finished())
    {
        healthz(&http, &server).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (name, task, timeout) in [
        ("silent", silent, Duration::from_secs(1)),
        ("half a request line", half_line, Duration::from_secs(1)),
        ("trickled headers", trickled, Duration::from_secs(1)),
        ("idle after a response", idle, Duration::from_secs(2)),
    ] {
        let (received, after) = task.await.unwrap();
        assert!(
            name.starts_with("idle") || received.is_empty(),
            "{name}: closed without an answer: {received}"
        );
        assert!(
            // Not at once (it is the timeout that closes it), and not much later.
            after >= timeout / 2 && after < timeout + Duration::from_secs(3),
            "{name}: closed after {after:?}, the timeout is {timeout:?}"
        );
    }
    healthz(&http, &server).await;
    let (status, _) = server.stop();
    assert!(status.success());
}

#[tokio::test]
async fn connections_over_the_cap_wait_while_the_server_keeps_answering() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&env(&data).set("PATCHBAY_MAX_CONNECTIONS", "4")).await;
    // Eight silent clients: four hold every slot for a second, then four more.
    let mut silent = Vec::new();
    for _ in 0..8 {
        let mut stream = connect(&server).await;
        let opened = Instant::now();
        silent.push(tokio::spawn(async move {
            until_closed(&mut stream, opened).await
        }));
    }
    let started = Instant::now();
    let http = reqwest::Client::new();
    let reply = http
        .get(format!("{}/healthz", server.base))
        .timeout(NEVER)
        .send()
        .await
        .expect("a waiting connection is served once a slot frees");
    assert_eq!(reply.status(), 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900),
        "served after {waited:?}: it should have waited for two rounds of four silent clients"
    );
    for task in silent {
        let (received, _) = task.await.unwrap();
        assert!(received.is_empty());
    }
    // Slots are free again: answers come at once.
    let started = Instant::now();
    for _ in 0..10 {
        healthz(&reqwest::Client::new(), &server).await;
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let (status, out) = server.stop();
    assert!(status.success());
    assert!(
        out.contains("connection limit reached"),
        "the operator is told"
    );
}
