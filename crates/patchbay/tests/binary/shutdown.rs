//! SIGTERM lets in-flight requests finish, then the process exits cleanly.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{ADMIN, Client, Env, Server, data_dir, master_key, terminate, wait_timeout};

/// A Stripe that holds its one answer until released: reports when the test
/// call has arrived, then answers an account once `release` gets a message.
fn held_stripe() -> (String, tokio::sync::oneshot::Receiver<()>, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (arrived_tx, arrived_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "the test call was cut short");
            head.extend_from_slice(&buf[..n]);
        }
        let _ = arrived_tx.send(());
        // Bounded, so a failed test does not leave this thread behind forever.
        if release_rx.recv_timeout(Duration::from_secs(60)).is_ok() {
            let body = json!({"id": "acct_1Slow", "object": "account"}).to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).unwrap();
        }
    });
    (base, arrived_rx, release_tx)
}

#[tokio::test]
async fn in_flight_requests_finish_after_sigterm() {
    let (stripe, arrived, release) = held_stripe();
    let (_tmp, data) = data_dir();
    let env = Env::new(&data)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_MASTER_KEYS", master_key("k1"))
        .set("PATCHBAY_STRIPE_API_BASE", stripe);
    let mut server = Server::start(&env).await;
    let client = Client::new(&server);
    let (_, token) = client.tenant().await;
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .post(
                    "/api/v1/connections",
                    &token,
                    json!({"provider": "stripe", "api_key": "sk_test_51HslowREQUEST0123456789ab"}),
                )
                .await
        }
    });
    // SIGTERM only once the request is in flight: Stripe (held) has it.
    tokio::time::timeout(Duration::from_secs(20), arrived)
        .await
        .expect("the request reached Stripe")
        .unwrap();
    terminate(&server.child);
    // The server has begun shutting down once it stops accepting connections.
    let address = server.base.trim_start_matches("http://").to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&address).is_ok() {
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not stop the listener"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!slow.is_finished(), "the request is still in flight");
    release.send(()).unwrap();
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 201, "the in-flight request completed: {body}");
    let exit = wait_timeout(&mut server.child, Duration::from_secs(20)).expect("exits");
    assert!(exit.success(), "{exit}");
}
