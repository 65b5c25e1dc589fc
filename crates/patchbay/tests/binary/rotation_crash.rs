//! Master-key rotation killed with SIGKILL at many points, on both databases,
//! while a server keeps serving: every run resumes, and in the end every
//! secret opens (proven by Stripe receiving exactly the key written) and every
//! record is under the new key, so the old one can be removed.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::json;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{ADMIN, Client, Env, PgSchema, Server, data_dir, master_key};

const TENANTS: usize = 60;

/// Answers every test call and remembers which key each connection presented.
#[derive(Clone, Default)]
struct KeyLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Respond for KeyLog {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let auth = request
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        self.0.lock().unwrap().push(auth);
        ResponseTemplate::new(200).set_body_json(json!({"id": "acct_1Rotate"}))
    }
}

fn remaining_under(env: &Env, key_id: &str) -> u64 {
    let out = env.run(&["keys", "status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(key_id))
        .and_then(|l| l.split_whitespace().last())
        .map_or(0, |n| n.parse().unwrap())
}

/// Runs rotations, killing each with SIGKILL soon after its first committed
/// batch; returns the number of kills and the distinct progress points left behind.
fn kill_loop(env: &Env) -> (usize, BTreeSet<u64>) {
    use std::io::BufRead;
    let mut crash_points = BTreeSet::new();
    let mut kills = 0;
    for i in 0..200u64 {
        if remaining_under(env, "k1") == 0 {
            break;
        }
        let mut child = env
            .command(&["keys", "rotate", "--batch-size", "1", "--pause-ms", "20"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut progressed = false;
        for line in stderr.lines() {
            if line.unwrap().starts_with("re-wrapped") {
                progressed = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis((i * 7) % 30));
        if progressed && child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        let left = remaining_under(env, "k1");
        if left > 0 {
            crash_points.insert(left);
        }
    }
    (kills, crash_points)
}

async fn crash_and_resume(database_url: Option<&str>) {
    let stripe = MockServer::start().await;
    let log = KeyLog::default();
    Mock::given(wiremock::matchers::path("/v1/account"))
        .respond_with(log.clone())
        .mount(&stripe)
        .await;
    let (_tmp, data) = data_dir();
    let k1 = master_key("k1");
    let k2 = master_key("k2");
    let mut old = Env::new(&data)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_MASTER_KEYS", &k1)
        .set("PATCHBAY_STRIPE_API_BASE", stripe.uri())
        .set("PATCHBAY_LOG", "warn");
    if let Some(url) = database_url {
        old = old.set("PATCHBAY_DATABASE_URL", url);
    }

    // Write secrets under k1.
    let server = Server::start(&old).await;
    let client = Client::new(&server);
    let mut written: HashMap<String, (String, String)> = HashMap::new();
    for i in 0..TENANTS {
        let (_, token) = client.tenant().await;
        let key = format!("sk_test_51Hrotation{i:04}abcdefghijklmno");
        let (s, c) = client
            .post(
                "/api/v1/connections",
                &token,
                json!({"provider": "stripe", "api_key": key, "validate": false}),
            )
            .await;
        assert_eq!(s, 201, "{c}");
        written.insert(c["id"].as_str().unwrap().to_owned(), (token, key));
    }
    server.stop();

    // Every server gets k2 as primary, k1 to read; one keeps serving throughout.
    let both = old
        .clone()
        .set("PATCHBAY_MASTER_KEYS", format!("{k2},{k1}"));
    let server = Server::start(&both).await;
    let client = Client::new(&server);
    assert_eq!(remaining_under(&both, "k1"), TENANTS as u64);

    // Kill rotations right after a batch commits, plus a varying delay, so the
    // kills land in pauses and in open transactions alike. A server keeps
    // validating connections meanwhile; none of those calls may fail.
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn({
        let client = client.clone();
        let sample: Vec<(String, String)> = written
            .iter()
            .take(5)
            .map(|(id, (t, _))| (id.clone(), t.clone()))
            .collect();
        async move {
            let mut calls = 0;
            while !*done_rx.borrow_and_update() {
                for (id, token) in &sample {
                    let (s, c) = client
                        .post(
                            &format!("/api/v1/connections/{id}/validate"),
                            token,
                            json!({}),
                        )
                        .await;
                    assert_eq!((s, c["status"].as_str()), (200, Some("active")), "{c}");
                    calls += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            calls
        }
    });
    let crash_env = both.clone();
    let (kills, crash_points) = tokio::task::spawn_blocking(move || kill_loop(&crash_env))
        .await
        .unwrap();
    done_tx.send(true).unwrap();
    let reads = reader.await.unwrap();
    assert!(reads > 0);
    assert!(kills >= 20, "only {kills} rotations were killed");
    assert!(
        crash_points.len() >= 20,
        "only {} distinct crash points: {crash_points:?}",
        crash_points.len()
    );

    // A last, uninterrupted run finishes; a second one has nothing to do.
    for _ in 0..2 {
        let out = both.run(&["keys", "rotate", "--quiet"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(remaining_under(&both, "k1"), 0);
    server.stop();

    // k1 can go: the server starts with k2 alone and every secret is intact.
    let only_k2 = old.clone().set("PATCHBAY_MASTER_KEYS", &k2);
    let server = Server::start(&only_k2).await;
    let client = Client::new(&server);
    log.0.lock().unwrap().clear();
    for (id, (token, _)) in &written {
        let (s, c) = client
            .post(
                &format!("/api/v1/connections/{id}/validate"),
                token,
                json!({}),
            )
            .await;
        assert_eq!(s, 200, "{c}");
        assert_eq!(c["status"], "active", "{c}");
    }
    let presented: BTreeSet<String> = log.0.lock().unwrap().iter().cloned().collect();
    let expected: BTreeSet<String> = written
        .values()
        .map(|(_, key)| format!("Bearer {key}"))
        .collect();
    assert_eq!(
        presented, expected,
        "each connection presented exactly the key written"
    );
    server.stop();
}

#[tokio::test]
async fn rotation_survives_kill_9_on_sqlite() {
    crash_and_resume(None).await;
}

#[tokio::test]
async fn rotation_survives_kill_9_on_postgres() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    crash_and_resume(Some(&pg.url)).await;
    pg.drop_schema().await;
}
