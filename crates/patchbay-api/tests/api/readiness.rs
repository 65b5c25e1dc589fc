//! `/readyz` follows the database: PostgreSQL reached through a TCP relay the
//! test controls. When the relay cuts every connection and then accepts new
//! ones without ever answering (a database host gone from the network),
//! readiness answers 503 promptly, not after the pool's acquire timeout; when
//! the relay forwards again, readiness returns with no restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::support::TestApp;

/// Forwards to `target` while up; while down, holds new connections open
/// without a byte in either direction.
struct Relay {
    port: u16,
    up: Arc<Mutex<bool>>,
    forwarding: Arc<Mutex<Vec<AbortHandle>>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    accept: AbortHandle,
}

impl Relay {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(Mutex::new(true));
        let forwarding = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (u, f, h) = (up.clone(), forwarding.clone(), held.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*u.lock() {
                    h.lock().push(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                f.lock().push(task.abort_handle());
            }
        })
        .abort_handle();
        Self {
            port,
            up,
            forwarding,
            held,
            accept,
        }
    }

    /// Cuts every forwarded connection; new ones hang.
    fn down(&self) {
        *self.up.lock() = false;
        for task in self.forwarding.lock().drain(..) {
            task.abort();
        }
    }

    /// Forwards new connections again (the hanging ones are closed).
    fn up(&self) {
        *self.up.lock() = true;
        self.held.lock().clear();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.down();
        self.held.lock().clear();
    }
}

async fn readyz(app: &TestApp) -> (StatusCode, String) {
    let reply = app
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    (reply.status, reply.text)
}

#[tokio::test]
async fn readiness_fails_fast_while_the_database_is_unreachable_and_recovers_on_postgres() {
    let Some(base) = crate::postgres::postgres_url().await else {
        return;
    };
    let schema = format!("ready_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    let target = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    let relay = Relay::start(target).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(relay.port)).unwrap();
    let sep = if url.query().is_some() { '&' } else { '?' };
    let url = format!("{url}{sep}options=-csearch_path%3D{schema}");
    // An acquire timeout far longer than readiness may take, as an operator
    // may configure it: readiness must not wait for it.
    let pool = patchbay_store::PoolSettings {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(30),
    };
    let app = TestApp::on_store(&url, &pool).await;
    assert_eq!(readyz(&app).await.0, StatusCode::OK);

    relay.down();
    // Twice: first the pooled connection is found broken, then a new one hangs.
    for round in 0..2 {
        let asked = Instant::now();
        let (status, body) = readyz(&app).await;
        let took = asked.elapsed();
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "round {round}: {body}"
        );
        assert!(body.contains("database_unavailable"), "{body}");
        // The readiness timeout is 2 s; 10 s leaves room for a loaded machine
        // and is still far below the 30 s acquire timeout.
        assert!(
            took < Duration::from_secs(10),
            "round {round}: 503 after {took:?}"
        );
    }

    relay.up();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = readyz(&app).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready 30 s after the database came back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.state.store.close().await;
    drop(relay);
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&admin)
    .await;
    admin.close().await;
}
