//! `/metrics` cannot be grown by callers: thousands of made-up methods and
//! paths, sent over raw TCP, add no series; the log shows methods cut short.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{ADMIN, Env, Server, data_dir, master_key};

/// Sends `requests` pipelined on one connection (the last one closes it) and
/// returns how many responses came back.
async fn pipelined(server: &Server, requests: Vec<String>) -> usize {
    let stream = TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    let count = requests.len();
    let writer = tokio::spawn(async move {
        for (i, line) in requests.into_iter().enumerate() {
            let close = if i + 1 == count {
                "Connection: close\r\n"
            } else {
                ""
            };
            let request = format!("{line} HTTP/1.1\r\nHost: x\r\n{close}\r\n");
            write.write_all(request.as_bytes()).await.unwrap();
        }
        // Dropping the write half would half-close the socket before the server has read it all.
        write
    });
    let mut received = Vec::new();
    read.read_to_end(&mut received).await.unwrap();
    drop(writer.await.unwrap());
    String::from_utf8_lossy(&received)
        .matches("HTTP/1.1 ")
        .count()
}

fn junk(i: usize, len: usize) -> String {
    // Letters only: a valid method token, different for every request.
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'A' + (x % 26) as u8)
        })
        .collect()
}

async fn series(http: &reqwest::Client, server: &Server) -> (usize, String) {
    let text = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    (count, text)
}

#[tokio::test]
async fn junk_methods_and_paths_add_no_metric_series() {
    let (_tmp, data) = data_dir();
    let env = Env::new(&data)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_MASTER_KEYS", master_key("k1"));
    let server = Server::start(&env).await;
    let http = reqwest::Client::new();

    // One of each kind first, so every series they may create exists.
    let first = vec![
        format!("M{} /healthz", junk(0, 999)),
        format!("GET /{}", junk(1, 200)),
        format!("POST /api/v1/{}/{}", junk(2, 30), junk(3, 30)),
        format!("{} /api/v1/{}", junk(4, 20), junk(5, 40)),
    ];
    assert_eq!(pipelined(&server, first).await, 4);
    // Series that come on their own shortly after start-up: the gauges read
    // from the store and the first runs of the recurring jobs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, text) = series(&http, &server).await;
        if ["patchbay_db_pool_connections{", "patchbay_jobs{"]
            .iter()
            .chain(&[
                "patchbay_jobs_finished_total{kind=\"keys.purge_previous\"",
                "patchbay_jobs_finished_total{kind=\"events.purge\"",
            ])
            .all(|family| text.contains(family))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "start-up series missing:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (before, _) = series(&http, &server).await;

    for batch in 0..8 {
        let requests = (0..500)
            .map(|i| {
                let n = 10 + batch * 500 + i;
                match batch % 3 {
                    0 => format!("M{} /healthz", junk(n, 999)),
                    1 => format!("GET /{}", junk(n, 200)),
                    _ => format!("{} /api/v1/{}", junk(n, 20), junk(n + 1, 40)),
                }
            })
            .collect();
        assert_eq!(pipelined(&server, requests).await, 500);
    }
    let (after, text) = series(&http, &server).await;
    assert_eq!(
        after, before,
        "4,000 made-up methods and paths added series"
    );
    assert!(
        text.contains("method=\"other\""),
        "junk methods count as other"
    );
    assert!(
        text.contains("route=\"unmatched\""),
        "junk paths count as unmatched"
    );
    assert!(text.len() < 200_000, "/metrics is {} bytes", text.len());

    let (status, _, log) = server.stop_apart();
    assert!(status.success());
    let longest = log
        .split(|c: char| !c.is_ascii_alphabetic())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(log.contains("request refused"), "405s and 404s are logged");
    assert!(longest <= 64, "a log line holds a {longest}-letter word");
}
