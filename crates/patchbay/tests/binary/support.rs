//! Starting the binary and talking to it.

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_patchbay");
pub const ADMIN: &str = "pba_binary_tests_admin_token_0123456789abcdef";

/// A free local port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Environment for one server: its data directory, database and keys.
#[derive(Clone, Debug)]
pub struct Env {
    pub vars: HashMap<String, String>,
}

impl Env {
    pub fn new(data_dir: &Path) -> Self {
        let mut vars = HashMap::new();
        vars.insert("PATCHBAY_DATA_DIR".into(), data_dir.display().to_string());
        vars.insert("PATCHBAY_LOG".into(), "info".into());
        // PostgreSQL requires a session signing key; SQLite would generate one.
        vars.insert(
            "PATCHBAY_SESSION_SIGNING_KEY".into(),
            "test-session-signing-key-of-at-least-32-bytes".into(),
        );
        Self { vars }
    }

    pub fn unset(mut self, key: &str) -> Self {
        self.vars.remove(key);
        self
    }

    pub fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.vars.insert(key.into(), value.into());
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        // A clean environment: nothing of the developer's PATCHBAY_* leaks in.
        for (k, _) in std::env::vars() {
            if k.starts_with("PATCHBAY_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(&self.vars);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

/// A running server.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// Standard output and error as read so far: drained by threads from
    /// the start, so a chatty server (trace logs) never blocks on a full pipe.
    output: [Arc<Mutex<Vec<u8>>>; 2],
    drains: Vec<std::thread::JoinHandle<()>>,
}

/// Reads `from` to its end into `into`.
fn drain(
    mut from: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

impl Server {
    /// Starts `patchbay serve` and waits for `/readyz`.
    pub async fn start(env: &Env) -> Self {
        let port = free_port();
        let mut child = env
            .clone()
            .set("PATCHBAY_LISTEN", format!("127.0.0.1:{port}"))
            .command(&["serve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = [Arc::default(), Arc::default()];
        let drains = vec![
            drain(child.stdout.take().unwrap(), Arc::clone(&output[0])),
            drain(child.stderr.take().unwrap(), Arc::clone(&output[1])),
        ];
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                let err = String::from_utf8_lossy(&output[1].lock().unwrap()).into_owned();
                panic!("server exited with {status}: {err}");
            }
            if let Ok(r) = reqwest::get(format!("{base}/readyz")).await
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "server did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            base,
            output,
            drains,
        }
    }

    /// Waits for the process to end (after a signal) and returns its status
    /// with everything it printed.
    pub fn wait_apart(&mut self, limit: Duration) -> (std::process::ExitStatus, String, String) {
        let status = wait_timeout(&mut self.child, limit).expect("server stops in time");
        for d in self.drains.drain(..) {
            let _ = d.join();
        }
        let text = |i: usize| String::from_utf8_lossy(&self.output[i].lock().unwrap()).into_owned();
        (status, text(0), text(1))
    }

    /// Sends SIGTERM and returns the exit status with everything printed.
    pub fn stop(self) -> (std::process::ExitStatus, String) {
        let (status, stdout, stderr) = self.stop_apart();
        (status, stdout + &stderr)
    }

    /// Sends SIGTERM and returns the exit status, standard output and standard error.
    pub fn stop_apart(mut self) -> (std::process::ExitStatus, String, String) {
        terminate(&self.child);
        self.wait_apart(Duration::from_secs(30))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// An HTTP client for a server.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &Server) -> Self {
        Self {
            base: server.base.clone(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    /// Subscribes the tenant to `invoice.paid` events, delivered to `url`.
    pub async fn subscribe_invoice_paid(&self, token: &str, url: &str) {
        let (s, sub) = self
            .post(
                "/api/v1/event-subscriptions",
                token,
                json!({"url": url, "events": ["invoice.paid"]}),
            )
            .await;
        assert_eq!(s, 201, "{sub}");
    }

    /// A Stripe webhook endpoint for connection `conn`, signed with `whsec`: its id.
    pub async fn webhook_endpoint(&self, token: &str, conn: &str, whsec: &str) -> String {
        let (s, endpoint) = self
            .post(
                &format!("/api/v1/connections/{conn}/webhook-endpoints"),
                token,
                json!({"signing_secret": whsec}),
            )
            .await;
        assert_eq!(s, 201, "{endpoint}");
        endpoint["id"].as_str().unwrap().to_owned()
    }

    /// A tenant with an admin-scoped key: (tenant id, token).
    pub async fn tenant(&self) -> (String, String) {
        let (s, t) = self
            .post("/api/v1/tenants", ADMIN, json!({"name": "t"}))
            .await;
        assert_eq!(s, 201, "{t}");
        let id = t["id"].as_str().unwrap().to_owned();
        let (s, k) = self
            .post(
                &format!("/api/v1/tenants/{id}/api-keys"),
                ADMIN,
                json!({"scopes": ["admin"]}),
            )
            .await;
        assert_eq!(s, 201, "{k}");
        (id, k["key"].as_str().unwrap().to_owned())
    }
}

/// A PostgreSQL schema of its own, when PostgreSQL is tested here (see `postgres`).
pub struct PgSchema {
    pub url: String,
    base: String,
    schema: String,
}

impl PgSchema {
    pub async fn create() -> Option<Self> {
        let base = crate::postgres::postgres_url().await?;
        let schema = format!("binary_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(&base)
            .await
            .expect("TEST_DATABASE_URL reachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
        Some(Self { url, base, schema })
    }
}

impl PgSchema {
    /// Drops the schema.
    pub async fn drop_schema(self) {
        if let Ok(pool) = sqlx::PgPool::connect(&self.base).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                self.schema
            )))
            .execute(&pool)
            .await;
            pool.close().await;
        }
    }
}

/// A master key entry for PATCHBAY_MASTER_KEYS.
pub fn master_key(id: &str) -> String {
    let out = Command::new(BIN)
        .args(["keys", "generate", "--id", id])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    (dir, path)
}

/// Waits until `check` holds, polling every 50 ms; fails the test naming
/// `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
