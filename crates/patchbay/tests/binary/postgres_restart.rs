//! PostgreSQL stopped and started again under load, through the real binary.
//! The machine's shared PostgreSQL is never touched: the test runs a private
//! instance of its own (initdb into a temporary directory, a free port), as
//! the `postgres` user when the test runs as root, since PostgreSQL refuses
//! to run as root.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::fault_stripe::{FaultStripe, Plan};
use crate::support::{ADMIN, Client, Env, Server, data_dir, free_port, master_key};

/// The newest PostgreSQL server's binaries, if installed.
fn server_binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists()
                && bin.join("pg_ctl").exists()
                && bin.join("postgres").exists())
            .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A private PostgreSQL instance; stopped (immediately) when dropped.
struct PrivatePostgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    fn tool(&self, name: &str, args: &[&str]) -> Output {
        let path = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args).output().unwrap()
    }

    fn create(bin: PathBuf) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of the instance's directory");
        }
        let pg = Self {
            data: dir.path().join("data"),
            log: dir.path().join("postgres.log"),
            _dir: dir,
            bin,
            port: free_port(),
            as_postgres,
        };
        let data = pg.data.display().to_string();
        let out = pg.tool(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"],
        );
        assert!(out.status.success(), "initdb: {}", text(&out));
        pg
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.data.parent().unwrap().display()
        );
        let out = self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-l",
                &self.log.display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            text(&out),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn stop(&self, mode: &str) -> Output {
        self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                mode,
                "-w",
                "-t",
                "60",
                "stop",
            ],
        )
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop("immediate");
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The phases of the run.
const UP: u8 = 0;
/// `pg_ctl stop` under way.
const STOPPING: u8 = 1;
/// `pg_ctl stop` returned: the server is gone.
const DOWN: u8 = 2;
/// `pg_ctl start` under way, or returned but `/readyz` not yet 200.
const BACK: u8 = 3;
/// `/readyz` answered 200 again.
const RECOVERED: u8 = 4;

/// One answer under load: the phase it began in, its status and error code.
#[derive(Debug, Clone)]
struct Answer {
    began: u8,
    ended: u8,
    status: u16,
    code: Option<String>,
    /// The `Retry-After` header, in seconds.
    retry_after: Option<u64>,
    took: Duration,
    /// A read of the connection record (always the database), not an action.
    record_read: bool,
}

async fn readyz(http: &reqwest::Client, base: &str) -> u16 {
    http.get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Waits until `ready` holds, at most `limit`.
async fn until(limit: Duration, what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_private() {
    let Some(bin) = server_binaries() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: the PostgreSQL server binaries must be installed under /usr/lib/postgresql/*/bin"
        );
        eprintln!(
            "postgres_restart_private skipped: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
        );
        return;
    };
    let pg = PrivatePostgres::create(bin);
    pg.start();
    let stripe = FaultStripe::start(Plan::Healthy).await;
    let (_tmp, data) = data_dir();
    let env = Env::new(&data)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_MASTER_KEYS", master_key("k1"))
        .set("PATCHBAY_DATABASE_URL", pg.url())
        .set("PATCHBAY_STRIPE_API_BASE", stripe.base.clone())
        .set("PATCHBAY_LOG", "warn");
    let server = Server::start(&env).await;
    let client = Client::new(&server);
    let (token, conns) = crate::faults::connections(&client, 2).await;

    let phase = Arc::new(AtomicU8::new(UP));
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let http = reqwest::Client::new();
    let mut workers = Vec::new();
    for w in 0..8usize {
        let (phase, stop, answers, http) = (
            Arc::clone(&phase),
            Arc::clone(&stop),
            Arc::clone(&answers),
            http.clone(),
        );
        let base = server.base.clone();
        let token = token.clone();
        let conn = conns[w % conns.len()].clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let record_read = (w + n).is_multiple_of(3);
                let request = match (w + n) % 3 {
                    0 => http.get(format!("{base}/api/v1/connections/{conn}")),
                    1 => http
                        .post(format!("{base}/api/v1/connections/{conn}/actions"))
                        .json(&json!({"action": "stripe.getCustomer", "config": {"customerId": format!("cus_{w}_{n}")}})),
                    _ => http
                        .post(format!("{base}/api/v1/connections/{conn}/actions"))
                        .json(&json!({"action": "stripe.createCustomer", "config": {"email": format!("pg{w}_{n}@example.com")}})),
                };
                let began = phase.load(Ordering::SeqCst);
                let started = Instant::now();
                // A request that hangs fails the test here.
                let reply = request
                    .header("x-api-key", &token)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .expect("an answer within 30 s, database down or not");
                let status = reply.status().as_u16();
                let retry_after = reply
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let body: Value = reply.json().await.unwrap_or(Value::Null);
                if status != 200 {
                    // Every failure is in the envelope.
                    assert!(body["error"]["request_id"].is_string(), "{status}: {body}");
                }
                answers.lock().push(Answer {
                    began,
                    ended: phase.load(Ordering::SeqCst),
                    status,
                    code: body["error"]["code"].as_str().map(str::to_owned),
                    retry_after,
                    took: started.elapsed(),
                    record_read,
                });
            }
        }));
    }
    let count = |answers: &Arc<Mutex<Vec<Answer>>>, f: &dyn Fn(&Answer) -> bool| {
        answers.lock().iter().filter(|a| f(a)).count()
    };

    // Up: a first stretch of successful load.
    until(
        Duration::from_secs(60),
        "100 answers with the database up",
        async || count(&answers, &|a| a.began == UP) >= 100,
    )
    .await;

    // Down: PostgreSQL stopped (fast: sessions are terminated) under load.
    phase.store(STOPPING, Ordering::SeqCst);
    let stopped = Instant::now();
    let out = pg.stop("fast");
    assert!(out.status.success(), "pg_ctl stop: {}", text(&out));
    phase.store(DOWN, Ordering::SeqCst);
    until(Duration::from_secs(60), "/readyz failing", async || {
        readyz(&http, &server.base).await == 503
    })
    .await;
    until(
        Duration::from_secs(60),
        "24 answers begun with the database down",
        async || count(&answers, &|a| a.began == DOWN && a.ended == DOWN) >= 24,
    )
    .await;
    assert_eq!(readyz(&http, &server.base).await, 503);
    let down_for = stopped.elapsed();

    // Back: started again; nothing else is done to Patchbay.
    let restarted = Instant::now();
    phase.store(BACK, Ordering::SeqCst);
    pg.start();
    until(Duration::from_secs(60), "/readyz recovering", async || {
        readyz(&http, &server.base).await == 200
    })
    .await;
    let ready_after = restarted.elapsed();
    phase.store(RECOVERED, Ordering::SeqCst);
    until(
        Duration::from_secs(60),
        "100 answers after recovery",
        async || count(&answers, &|a| a.began == RECOVERED) >= 100,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    let answers = answers.lock().clone();
    let (_, log) = server.stop();
    for line in log.lines().filter(|l| l.contains("ERROR")) {
        eprintln!("server: {line}");
    }
    let up: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.began == UP && a.ended == UP)
        .collect();
    let down: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.began == DOWN && a.ended == DOWN)
        .collect();
    let after: Vec<&Answer> = answers.iter().filter(|a| a.began == RECOVERED).collect();
    let statuses = |set: &[&Answer]| {
        let mut s: Vec<(u16, Option<String>)> =
            set.iter().map(|a| (a.status, a.code.clone())).collect();
        s.sort();
        s.dedup();
        s
    };
    let slowest = |set: &[&Answer]| set.iter().map(|a| a.took).max().unwrap_or_default();
    eprintln!(
        "postgres restart: {} answers; up: {} (statuses {:?}); down for {down_for:?}: {} (statuses {:?}, slowest {:?}); \
         /readyz 200 {ready_after:?} after the start; after recovery: {} (statuses {:?}); 500s overall: {}",
        answers.len(),
        up.len(),
        statuses(&up),
        down.len(),
        statuses(&down),
        slowest(&down),
        after.len(),
        statuses(&after),
        answers.iter().filter(|a| a.status == 500).count(),
    );
    // No 500 at any point, around the stop and the start included.
    assert!(
        answers.iter().all(|a| a.status != 500),
        "{:?}",
        answers
            .iter()
            .filter(|a| a.status == 500)
            .collect::<Vec<_>>()
    );
    assert!(up.iter().all(|a| a.status == 200), "{:?}", statuses(&up));
    // While it is down: 503 database_unavailable asking to retry, nothing
    // else — except an action through a connection opened in the last
    // PATCHBAY_CONNECTION_CACHE_TTL (2 s): it needs no database (the key and
    // the credential are cached, the audit record waits in its queue) and
    // succeeds. A read of the record always needs the database.
    let unavailable = |a: &&Answer| {
        a.status == 503
            && a.code.as_deref() == Some("database_unavailable")
            && a.retry_after.is_some()
    };
    assert!(
        down.iter()
            .all(|a| unavailable(a) || (!a.record_read && a.status == 200)),
        "{:?}",
        statuses(&down)
    );
    assert!(
        down.iter().filter(|a| a.record_read).all(unavailable),
        "a read of the record while the database is down: {:?}",
        statuses(&down)
    );
    assert!(down.iter().any(unavailable), "{:?}", statuses(&down));
    // Around the transitions: success or that same 503.
    assert!(
        answers.iter().all(|a| a.status == 200
            || (a.status == 503 && a.code.as_deref() == Some("database_unavailable"))),
        "{:?}",
        statuses(&answers.iter().collect::<Vec<_>>())
    );
    // Recovered with no manual action.
    assert!(
        after.iter().all(|a| a.status == 200),
        "{:?}",
        statuses(&after)
    );
    drop(pg);
}
