//! Two real replicas on one PostgreSQL, as a scaled-out deployment runs them,
//! through the two events an operator fears most:
//!
//! - one replica killed with `kill -9` in the middle of a steady stream of
//!   writes: every request that got a 2xx is in the database, intact, read back
//!   through the survivor and through the killed replica once restarted; the
//!   requests the dead replica never answered failed as transport errors; the
//!   survivor answered every request; and the jobs the dead replica held (a
//!   re-validation and a webhook delivery) are finished once, after their lease;
//! - a master-key rotation done with both replicas serving, in the order the
//!   README gives: the new key added everywhere as a secondary, then promoted
//!   everywhere, then `patchbay keys rotate` under load, then the old key
//!   removed; not one call fails along the way.
//!
//! Audit events are batched off the request path and flushed on graceful
//! shutdown only, so those a replica held in memory when killed are lost; this
//! file does not count them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use patchbay_stripe::webhook::sign_header;
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{ADMIN, Client, Env, PgSchema, Server, data_dir, master_key, wait_until};

/// The key whose first test call hangs at the fake: its validation job is in
/// flight at the replica that gets killed.
const HANG_KEY: &str = "sk_test_51HfailoverHANGxyz0123456789";
const WHSEC: &str = "whsec_failover_0123456789abcdef";

/// A stateful fake of Stripe: accounts for test calls, customers created
/// (by email), lists for the proxy. It notes the key each call presented.
#[derive(Clone, Default)]
struct FakeStripe(Arc<FakeState>);

#[derive(Default)]
struct FakeState {
    /// The key presented by each `GET /v1/account`, in order.
    account_calls: Mutex<Vec<String>>,
    /// The email of each `POST /v1/customers`, in order.
    creates: Mutex<Vec<String>>,
    /// The key presented by every call but the test call.
    other_calls: Mutex<Vec<String>>,
    hung: AtomicBool,
}

fn bearer(request: &Request) -> String {
    request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned()
}

/// One form field, decoded.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Respond for FakeStripe {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = bearer(request);
        let state = &self.0;
        match (request.method.as_str(), request.url.path()) {
            ("GET", "/v1/account") => {
                state.account_calls.lock().unwrap().push(key.clone());
                let answer = ResponseTemplate::new(200).set_body_json(json!({
                    "id": "acct_1Failover", "object": "account", "country": "US",
                    "default_currency": "usd", "business_profile": {"name": "Acme"}
                }));
                if key == HANG_KEY && !state.hung.swap(true, Ordering::SeqCst) {
                    // Never answered: the replica holding it is killed first.
                    answer.set_delay(Duration::from_secs(600))
                } else {
                    answer
                }
            }
            ("POST", "/v1/customers") => {
                state.other_calls.lock().unwrap().push(key);
                let email = form_field(&request.body, "email").unwrap_or_default();
                let mut creates = state.creates.lock().unwrap();
                creates.push(email.clone());
                let id = format!("cus_F{:06}", creates.len());
                ResponseTemplate::new(200).set_body_json(
                    json!({"id": id, "object": "customer", "email": email, "livemode": false}),
                )
            }
            ("GET", "/v1/customers") => {
                state.other_calls.lock().unwrap().push(key);
                ResponseTemplate::new(200).set_body_json(
                    json!({"object": "list", "data": [], "has_more": false, "url": "/v1/customers"}),
                )
            }
            _ => ResponseTemplate::new(404).set_body_json(json!({
                "error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}
            })),
        }
    }
}

impl FakeStripe {
    async fn start() -> (MockServer, Self) {
        let server = MockServer::start().await;
        let fake = Self::default();
        Mock::given(wiremock::matchers::any())
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        (server, fake)
    }

    fn account_calls_with(&self, key: &str) -> usize {
        self.0
            .account_calls
            .lock()
            .unwrap()
            .iter()
            .filter(|k| *k == key)
            .count()
    }
}

/// A request's result: an HTTP answer, or a transport error.
type Reply = Result<(u16, Value), String>;

async fn send(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = http
        .request(method, format!("{base}{path}"))
        .header("x-api-key", token)
        .timeout(Duration::from_secs(30));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    // A body cut off by the kill is a transport error too.
    let bytes = response.bytes().await.map_err(|e| format!("{e:?}"))?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Who holds the lease of the running re-validation of `connection` and of
/// the running delivery (there is one delivery in this test): the
/// `HOSTNAME` part of each `lease_owner` (`host:pid`), `None` when not running.
async fn holders(pg: &str, connection: &str) -> (Option<String>, Option<String>) {
    let subject = connection
        .parse::<patchbay_core::ConnectionId>()
        .unwrap()
        .uuid();
    let pool = sqlx::PgPool::connect(pg).await.unwrap();
    let owner = |rows: Vec<(Option<String>,)>| {
        rows.into_iter()
            .find_map(|(o,)| o)
            .map(|o| o.split(':').next().unwrap().to_owned())
    };
    let validation = owner(
        sqlx::query_as(
            "SELECT lease_owner FROM jobs WHERE status = 'running' \
             AND kind = 'connection.revalidate' AND subject_id = $1",
        )
        .bind(subject)
        .fetch_all(&pool)
        .await
        .unwrap(),
    );
    let delivery = owner(
        sqlx::query_as(
            "SELECT lease_owner FROM jobs WHERE status = 'running' AND kind = 'webhook.deliver'",
        )
        .fetch_all(&pool)
        .await
        .unwrap(),
    );
    pool.close().await;
    (validation, delivery)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Posts a signed Stripe event to a webhook endpoint; returns the status and receipt.
async fn post_event(base: &str, endpoint: &str, secret: &str, event_id: &str) -> Reply {
    let body = json!({"id": event_id, "object": "event", "type": "invoice.paid",
        "created": 1_763_900_000, "livemode": false, "data": {"object": {"id": "in_1"}}})
    .to_string();
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/webhooks/stripe/{endpoint}"))
        .header(
            "Stripe-Signature",
            sign_header(secret, now_secs(), body.as_bytes()),
        )
        .header("Content-Type", "application/json")
        .timeout(Duration::from_secs(30))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

// ---------------------------------------------------------------------------
// A replica killed mid-load.

/// Replica A or B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Replica {
    A,
    B,
}

/// What a load request did, for reading back when acknowledged.
#[derive(Debug, Clone)]
enum Write {
    /// A connection created and validated: its id, key and name.
    Connection {
        id: String,
        key: String,
        name: String,
    },
    /// A connection created `pending`: its validation is a job.
    Pending { id: String, key: String },
    /// `stripe.createCustomer`: the email and the id Stripe gave.
    Customer { email: String, customer: String },
    /// An API key: its id and token.
    ApiKey { id: String, token: String },
    /// The task's own connection renamed to `name` (the task's `seq`-th rename).
    Rename { seq: usize },
}

#[derive(Debug, Clone)]
struct Outcome {
    task: usize,
    replica: Replica,
    began: Instant,
    ended: Instant,
    reply: Reply,
    /// What an acknowledged answer means.
    write: Option<Write>,
    /// For a rename: its sequence number, acknowledged or not.
    rename: Option<usize>,
}

/// One load task's tenant and own connection.
#[derive(Debug, Clone)]
struct Task {
    token: String,
    conn: String,
}

fn rename_of(task: usize, seq: usize) -> String {
    format!("task {task} rename {seq}")
}

/// One request of the mix, by `n`: the answer and what it wrote.
async fn one_write(
    http: &reqwest::Client,
    base: &str,
    w: usize,
    n: usize,
    task: &Task,
) -> (Reply, Option<Write>, Option<usize>) {
    let token = &task.token;
    match n % 5 {
        0 => {
            let key = format!("sk_test_51HfailoverC{w:02}x{n:06}abcdefgh");
            let name = format!("conn {w}/{n}");
            let reply = send(
                http,
                base,
                Method::POST,
                "/api/v1/connections",
                token,
                Some(json!({"provider": "stripe", "api_key": key, "name": name, "metadata": {"n": n.to_string()}})),
            )
            .await;
            let write = match &reply {
                Ok((201, c)) => Some(Write::Connection {
                    id: c["id"].as_str().unwrap().to_owned(),
                    key,
                    name,
                }),
                _ => None,
            };
            (reply, write, None)
        }
        1 => {
            let email = format!("f{w:02}n{n:06}@example.com");
            let reply = send(
                http,
                base,
                Method::POST,
                &format!("/api/v1/connections/{}/actions", task.conn),
                token,
                Some(json!({"action": "stripe.createCustomer", "config": {"email": email}})),
            )
            .await;
            let write = match &reply {
                Ok((200, c)) => Some(Write::Customer {
                    email,
                    customer: c["id"].as_str().unwrap_or_default().to_owned(),
                }),
                _ => None,
            };
            (reply, write, None)
        }
        2 => {
            let reply = send(
                http,
                base,
                Method::POST,
                "/api/v1/api-keys",
                token,
                Some(json!({"name": format!("key {w}/{n}"), "scopes": ["connections:read"]})),
            )
            .await;
            let write = match &reply {
                Ok((201, k)) => Some(Write::ApiKey {
                    id: k["id"].as_str().unwrap().to_owned(),
                    token: k["key"].as_str().unwrap().to_owned(),
                }),
                _ => None,
            };
            (reply, write, None)
        }
        3 => {
            let reply = send(
                http,
                base,
                Method::PATCH,
                &format!("/api/v1/connections/{}", task.conn),
                token,
                Some(json!({"name": rename_of(w, n), "metadata": {"seq": n.to_string()}})),
            )
            .await;
            let write = match &reply {
                Ok((200, _)) => Some(Write::Rename { seq: n }),
                _ => None,
            };
            (reply, write, Some(n))
        }
        _ => {
            let key = format!("sk_test_51HfailoverP{w:02}x{n:06}abcdefgh");
            let reply = send(
                http,
                base,
                Method::POST,
                "/api/v1/connections",
                token,
                Some(json!({"provider": "stripe", "api_key": key, "validate": false})),
            )
            .await;
            let write = match &reply {
                Ok((201, c)) => Some(Write::Pending {
                    id: c["id"].as_str().unwrap().to_owned(),
                    key,
                }),
                _ => None,
            };
            (reply, write, None)
        }
    }
}

/// Reads every acknowledged write back through `client` and checks it.
async fn read_back(
    client: &Client,
    tasks: &[Task],
    outcomes: &[Outcome],
    fake: &FakeStripe,
) -> BTreeMap<&'static str, usize> {
    let mut checked = BTreeMap::new();
    let creates: Vec<String> = fake.0.creates.lock().unwrap().clone();
    for o in outcomes {
        let Some(write) = &o.write else { continue };
        let token = &tasks[o.task].token;
        let kind = match write {
            Write::Connection { id, key, name } => {
                let (s, c) = client
                    .get(&format!("/api/v1/connections/{id}"), token)
                    .await;
                assert_eq!(s, 200, "{c}");
                assert_eq!(c["status"], "active", "{c}");
                assert_eq!(c["name"], name.as_str(), "{c}");
                assert_eq!(c["stripe_account_id"], "acct_1Failover", "{c}");
                assert!(fake.account_calls_with(key) >= 1);
                "connection"
            }
            Write::Pending { id, key } => {
                // Its validation job ran (wherever it was when B died).
                wait_until(
                    "a pending connection's validation job",
                    Duration::from_secs(60),
                    || async {
                        client
                            .get(&format!("/api/v1/connections/{id}"), token)
                            .await
                            .1["status"]
                            == "active"
                    },
                )
                .await;
                let calls = fake.account_calls_with(key);
                // Once, or twice when B died between the call and recording it.
                assert!((1..=2).contains(&calls), "{calls} test calls for {id}");
                "pending connection"
            }
            Write::Customer { email, customer } => {
                let made = creates.iter().filter(|e| *e == email).count();
                assert_eq!(
                    made, 1,
                    "customer {email} ({customer}) created {made} times"
                );
                assert!(customer.starts_with("cus_F"), "{customer}");
                "customer"
            }
            Write::ApiKey { id, token: key } => {
                let (s, k) = client.get(&format!("/api/v1/api-keys/{id}"), token).await;
                assert_eq!(s, 200, "{k}");
                assert!(k["revoked_at"].is_null(), "{k}");
                // The key itself works.
                let (s, body) = client.get("/api/v1/connections", key).await;
                assert_eq!(s, 200, "{body}");
                "api key"
            }
            Write::Rename { .. } => continue,
        };
        *checked.entry(kind).or_default() += 1;
    }
    // Each task's own connection bears its last applied rename: at least the
    // last acknowledged one (a later one may have been applied by B just
    // before it died, without an answer), and one that was sent.
    for (w, task) in tasks.iter().enumerate() {
        let acked = outcomes
            .iter()
            .filter(|o| o.task == w)
            .filter_map(|o| match o.write {
                Some(Write::Rename { seq }) => Some(seq),
                _ => None,
            })
            .max();
        let sent: BTreeSet<usize> = outcomes
            .iter()
            .filter(|o| o.task == w)
            .filter_map(|o| o.rename)
            .collect();
        let (s, c) = client
            .get(&format!("/api/v1/connections/{}", task.conn), &task.token)
            .await;
        assert_eq!(s, 200, "{c}");
        let seq: usize = c["metadata"]["seq"]
            .as_str()
            .map_or(0, |v| v.parse().unwrap());
        let acked = acked.expect("every task had a rename acknowledged");
        assert!(sent.contains(&seq), "task {w}: {c}");
        assert!(seq >= acked, "task {w}: {c}, last acknowledged {acked}");
        assert_eq!(c["name"], rename_of(w, seq).as_str(), "{c}");
        *checked.entry("rename").or_default() += 1;
    }
    // No customer was ever created twice, acknowledged or not.
    let mut seen = HashMap::new();
    for e in &creates {
        *seen.entry(e).or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "duplicate creates");
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_load_loses_no_acknowledged_request_postgres() {
    const TASKS: usize = 6;
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    let (stripe, fake) = FakeStripe::start().await;
    let receiver = MockServer::start().await;
    // The first delivery hangs: B is killed while it waits.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(600)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let (_tmp, data) = data_dir();
    let env = Env::new(&data)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_MASTER_KEYS", master_key("k1"))
        .set("PATCHBAY_DATABASE_URL", &pg.url)
        .set("PATCHBAY_STRIPE_API_BASE", stripe.uri())
        .set("PATCHBAY_STRIPE_MAX_RETRIES", "0")
        .set("PATCHBAY_STRIPE_RATE_LIMIT_TEST", "10000")
        .set("PATCHBAY_MAX_API_KEYS_PER_TENANT", "100000")
        .set("PATCHBAY_MAX_CONNECTIONS_PER_TENANT", "100000")
        // Longer than B holds its jobs before it dies (no lease is renewed).
        .set("PATCHBAY_JOB_LEASE", "10s")
        .set("PATCHBAY_JOB_POLL", "100ms")
        .set("PATCHBAY_WEBHOOK_TIMEOUT", "10m")
        .set("PATCHBAY_WEBHOOK_ALLOW_INSECURE_LOOPBACK", "true")
        .set(
            "PATCHBAY_REDIS_PREFIX",
            format!("pbtest_{}", uuid::Uuid::new_v4().simple()),
        )
        .set("PATCHBAY_LOG", "warn");
    let env_a = env.clone().set("HOSTNAME", "replica-a");
    let env_b = env.clone().set("HOSTNAME", "replica-b");

    // B alone first, so that the jobs it is given are its own: a validation
    // stuck in its test call and a webhook delivery stuck at the receiver.
    let mut b = Server::start(&env_b).await;
    let cb = Client::new(&b);
    let (_, owner) = cb.tenant().await;
    let (s, c) = cb
        .post(
            "/api/v1/connections",
            &owner,
            json!({"provider": "stripe", "api_key": HANG_KEY, "validate": false}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let hang_conn = c["id"].as_str().unwrap().to_owned();
    cb.subscribe_invoice_paid(&owner, &format!("{}/hook", receiver.uri()))
        .await;
    let endpoint = cb.webhook_endpoint(&owner, &hang_conn, WHSEC).await;
    let (s, receipt) = post_event(&b.base, &endpoint, WHSEC, "evt_1Failover")
        .await
        .unwrap();
    assert_eq!(s, 200, "{receipt}");
    let event = receipt["event_id"].as_str().unwrap().to_owned();
    wait_until(
        "B's two jobs to be stuck",
        Duration::from_secs(20),
        || async {
            fake.account_calls_with(HANG_KEY) == 1
                && receiver.received_requests().await.unwrap_or_default().len() == 1
        },
    )
    .await;
    let b_holds_both = (Some("replica-b".to_owned()), Some("replica-b".to_owned()));
    assert_eq!(holders(&pg.url, &hang_conn).await, b_holds_both);

    let a = Server::start(&env_a).await;
    let ca = Client::new(&a);
    let mut tasks = Vec::new();
    for w in 0..TASKS {
        let (_, token) = ca.tenant().await;
        let (s, c) = ca
            .post(
                "/api/v1/connections",
                &token,
                json!({"provider": "stripe", "api_key": format!("sk_test_51HfailoverOWN{w:02}abcdefgh")}),
            )
            .await;
        assert_eq!(s, 201, "{c}");
        tasks.push(Task {
            token,
            conn: c["id"].as_str().unwrap().to_owned(),
        });
    }

    // The load: each task alternates between A and B, one request at a time.
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let http = reqwest::Client::new();
    let mut workers = Vec::new();
    for (w, task) in tasks.iter().cloned().enumerate() {
        let (stop, outcomes, http) = (Arc::clone(&stop), Arc::clone(&outcomes), http.clone());
        let bases = [a.base.clone(), b.base.clone()];
        workers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let replica = if (w + n).is_multiple_of(2) {
                    Replica::A
                } else {
                    Replica::B
                };
                let base = &bases[replica as usize];
                let began = Instant::now();
                let (reply, write, rename) = one_write(&http, base, w, n, &task).await;
                outcomes.lock().unwrap().push(Outcome {
                    task: w,
                    replica,
                    began,
                    ended: Instant::now(),
                    write: write.filter(|_| matches!(reply, Ok((200..=299, _)))),
                    reply,
                    rename,
                });
            }
        }));
    }
    let answered_by = |who: Replica, after: Option<Instant>| {
        outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.replica == who && o.reply.is_ok() && after.is_none_or(|t| o.ended > t))
            .count()
    };
    wait_until(
        "B to answer 150 requests",
        Duration::from_secs(60),
        || async { answered_by(Replica::B, None) >= 150 },
    )
    .await;
    // B still holds both jobs (their lease has not run out) when it dies.
    assert_eq!(holders(&pg.url, &hang_conn).await, b_holds_both);
    let killed = Instant::now();
    b.child.kill().unwrap(); // SIGKILL: nothing is flushed, nothing handed over.
    b.child.wait().unwrap();
    wait_until(
        "A to answer 300 more requests",
        Duration::from_secs(60),
        || async { answered_by(Replica::A, Some(killed)) >= 300 },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let outcomes = outcomes.lock().unwrap().clone();

    // A answered every request, with success.
    let from_a: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.replica == Replica::A)
        .collect();
    for o in &from_a {
        assert!(
            matches!(o.reply, Ok((200..=299, _))),
            "A failed a request: {:?}",
            o.reply
        );
    }
    // B answered with success, or not at all: every failure is a transport
    // error that ended after the kill (cut mid-request or refused after).
    let from_b: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.replica == Replica::B)
        .collect();
    let (mut cut, mut in_flight) = (0, 0);
    for o in &from_b {
        match &o.reply {
            Ok((200..=299, _)) => {}
            Ok((status, body)) => panic!("B answered {status}: {body}"),
            Err(e) => {
                assert!(o.ended >= killed, "B failed before it was killed: {e}");
                cut += 1;
                if o.began < killed {
                    in_flight += 1;
                }
            }
        }
    }
    let acked_b = from_b.len() - cut;
    assert!(
        acked_b >= 150 && cut > 0,
        "{acked_b} acknowledged by B, {cut} failed"
    );
    let acked = outcomes.iter().filter(|o| o.write.is_some()).count();

    // Every acknowledged write is there through A.
    let checked = read_back(&ca, &tasks, &outcomes, &fake).await;

    // The jobs B held are finished after their lease, once each.
    wait_until(
        "the stuck validation to be retried",
        Duration::from_secs(60),
        || async {
            ca.get(&format!("/api/v1/connections/{hang_conn}"), &owner)
                .await
                .1["status"]
                == "active"
        },
    )
    .await;
    assert_eq!(
        fake.account_calls_with(HANG_KEY),
        2,
        "one stuck test call, one retry"
    );
    wait_until(
        "the stuck delivery to be made",
        Duration::from_secs(60),
        || async {
            let (_, d) = ca
                .get(&format!("/api/v1/events/{event}/deliveries"), &owner)
                .await;
            d["data"][0]["status"] == "succeeded"
        },
    )
    .await;
    let (_, d) = ca
        .get(&format!("/api/v1/events/{event}/deliveries"), &owner)
        .await;
    assert_eq!(d["data"].as_array().unwrap().len(), 1, "{d}");
    let ids: Vec<String> = receiver
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| Some(r.headers.get("webhook-id")?.to_str().ok()?.to_owned()))
        .collect();
    assert_eq!(ids, [event.clone(), event.clone()], "one stuck, one made");
    assert_eq!(holders(&pg.url, &hang_conn).await, (None, None));

    // B comes back serving the same data.
    let b = Server::start(&env_b).await;
    let cb = Client::new(&b);
    let again = read_back(&cb, &tasks, &outcomes, &fake).await;
    assert_eq!(again, checked);
    let (s, c) = cb
        .get(&format!("/api/v1/connections/{hang_conn}"), &owner)
        .await;
    assert_eq!((s, &c["status"]), (200, &json!("active")), "{c}");

    eprintln!(
        "failover: {} requests ({} to A, {} to B); B acknowledged {acked_b}; {cut} transport errors from B \
         ({in_flight} in flight at the kill, the rest refused after it); \
         {acked} acknowledged writes read back through A and the restarted B: {checked:?}",
        outcomes.len(),
        from_a.len(),
        from_b.len(),
    );
    for server in [a, b] {
        let (status, log) = server.stop();
        assert!(status.success(), "{log}");
    }
    pg.drop_schema().await;
}

// ---------------------------------------------------------------------------
// Master-key rotation with both replicas up.

/// One tenant's secrets: its token, a connection (and its Stripe key) and a
/// webhook endpoint (and its signing secret).
#[derive(Debug, Clone)]
struct Sealed {
    token: String,
    conn: String,
    key: String,
    endpoint: String,
    whsec: String,
}

/// A tenant with a validated connection and a webhook endpoint, made through `client`.
async fn sealed_tenant(client: &Client, n: usize) -> Sealed {
    let (_, token) = client.tenant().await;
    let key = format!("sk_test_51HrollingK{n:04}abcdefghijk");
    let (s, c) = client
        .post(
            "/api/v1/connections",
            &token,
            json!({"provider": "stripe", "api_key": key}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let conn = c["id"].as_str().unwrap().to_owned();
    let whsec = format!("whsec_rolling_{n:04}_0123456789abcdef");
    let endpoint = client.webhook_endpoint(&token, &conn, &whsec).await;
    Sealed {
        token,
        conn,
        key,
        endpoint,
        whsec,
    }
}

/// One use of every secret of `t` through `base`, picked by `n`: the proxy,
/// an action, a re-validation (each opens the connection's key) or a signed
/// webhook (opens the endpoint's secret). `Ok` when it succeeded.
async fn use_secret(
    http: &reqwest::Client,
    base: &str,
    t: &Sealed,
    op: usize,
) -> Result<(), String> {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let conn = &t.conn;
    let (what, reply) = match op % 4 {
        0 => (
            "proxy",
            send(http, base, Method::GET, &format!("/api/v1/connections/{conn}/proxy/v1/customers"), &t.token, None).await,
        ),
        1 => (
            "action",
            send(
                http,
                base,
                Method::POST,
                &format!("/api/v1/connections/{conn}/actions"),
                &t.token,
                Some(json!({"action": "stripe.createCustomer", "config": {"email": format!("r{n}@example.com")}})),
            )
            .await,
        ),
        2 => (
            "validate",
            send(http, base, Method::POST, &format!("/api/v1/connections/{conn}/validate"), &t.token, Some(json!({}))).await,
        ),
        _ => (
            "webhook",
            post_event(base, &t.endpoint, &t.whsec, &format!("evt_1Roll{n}")).await,
        ),
    };
    match reply {
        Ok((200 | 201, body)) if what != "validate" || body["status"] == "active" => Ok(()),
        other => Err(format!("{what} through {base} for {conn}: {other:?}")),
    }
}

/// Every secret of every tenant, used through every replica.
async fn every_secret_works(bases: &[&str], tenants: &[Sealed]) {
    let http = reqwest::Client::new();
    for base in bases {
        for (i, t) in tenants.iter().enumerate() {
            for op in 0..4 {
                use_secret(&http, base, t, op + i).await.unwrap();
            }
        }
    }
}

/// `GET /api/v1/admin/keys` through `client`: (primary, data keys per id).
async fn key_status(client: &Client) -> (String, BTreeMap<String, u64>) {
    let (s, k) = client.get("/api/v1/admin/keys", ADMIN).await;
    assert_eq!(s, 200, "{k}");
    let counts = k["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["id"].as_str().unwrap().to_owned(),
                u["data_keys"].as_u64().unwrap(),
            )
        })
        .collect();
    (k["primary"].as_str().unwrap().to_owned(), counts)
}

/// Stops `server` gracefully and starts it again with `keys`.
async fn restart_with(server: Server, env: &Env, keys: &str) -> Server {
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    Server::start(&env.clone().set("PATCHBAY_MASTER_KEYS", keys)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_with_two_replicas_up_postgres() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    let (stripe, fake) = FakeStripe::start().await;
    let (_tmp, data) = data_dir();
    let (k1, k2) = (master_key("k1"), master_key("k2"));
    let env = Env::new(&data)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set("PATCHBAY_DATABASE_URL", &pg.url)
        .set("PATCHBAY_STRIPE_API_BASE", stripe.uri())
        .set("PATCHBAY_STRIPE_MAX_RETRIES", "0")
        .set("PATCHBAY_STRIPE_RATE_LIMIT_TEST", "10000")
        // Every call opens the tenant's data key afresh: no cached credential
        // hides a key that cannot be unwrapped.
        .set("PATCHBAY_CONNECTION_CACHE_TTL", "0")
        .set(
            "PATCHBAY_REDIS_PREFIX",
            format!("pbtest_{}", uuid::Uuid::new_v4().simple()),
        )
        .set("PATCHBAY_LOG", "warn");
    let (only_k1, k1_then_k2, k2_then_k1) =
        (k1.clone(), format!("{k1},{k2}"), format!("{k2},{k1}"));

    // Both replicas on k1, with secrets sealed under it.
    let a = Server::start(&env.clone().set("PATCHBAY_MASTER_KEYS", &only_k1)).await;
    let b = Server::start(&env.clone().set("PATCHBAY_MASTER_KEYS", &only_k1)).await;
    let mut tenants = Vec::new();
    for n in 0..24usize {
        let via = if n.is_multiple_of(2) { &a } else { &b };
        tenants.push(sealed_tenant(&Client::new(via), n).await);
    }

    // Step 1: k2 added as a secondary key, one replica at a time. A runs
    // "k1,k2" while B still runs k1 alone: A keeps wrapping under k1, so
    // whatever A writes B can read.
    let a = restart_with(a, &env, &k1_then_k2).await;
    assert_eq!(
        key_status(&Client::new(&a)).await,
        (
            "k1".into(),
            BTreeMap::from([("k1".into(), 24), ("k2".into(), 0)])
        )
    );
    for n in 24..27 {
        tenants.push(sealed_tenant(&Client::new(&a), n).await);
    }
    every_secret_works(&[&a.base, &b.base], &tenants).await;
    let b = restart_with(b, &env, &k1_then_k2).await;

    // Step 2: k2 promoted, one replica at a time. While A runs "k2,k1" and B
    // "k1,k2", each wraps new tenants' keys under its own primary; both read both.
    let a = restart_with(a, &env, &k2_then_k1).await;
    for n in 27..33usize {
        let via = if n.is_multiple_of(2) { &a } else { &b };
        tenants.push(sealed_tenant(&Client::new(via), n).await);
    }
    every_secret_works(&[&a.base, &b.base], &tenants).await;
    let b = restart_with(b, &env, &k2_then_k1).await;
    let (primary, counts) = key_status(&Client::new(&b)).await;
    assert_eq!(primary, "k2");
    assert_eq!(counts["k1"] + counts["k2"], tenants.len() as u64);
    assert_eq!(
        counts["k2"], 3,
        "the tenants A made while B still wrapped under k1"
    );

    // Step 3: the rotation, while both replicas use every secret without a pause.
    let stop = Arc::new(AtomicBool::new(false));
    let tenants = Arc::new(tenants);
    let mut workers = Vec::new();
    for w in 0..4usize {
        let (stop, tenants) = (Arc::clone(&stop), Arc::clone(&tenants));
        let bases = [a.base.clone(), b.base.clone()];
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut calls, mut failures) = (0usize, Vec::new());
            // Each worker walks the tenants from its own place; each tenant
            // gets the four uses, through one replica then the other.
            let mut k = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let t = &tenants[(k / 8 + w * tenants.len() / 4) % tenants.len()];
                let base = &bases[(k / 4 + w) % 2];
                if let Err(e) = use_secret(&http, base, t, k).await {
                    failures.push(e);
                }
                calls += 1;
                k += 1;
            }
            (calls, failures)
        }));
    }
    let rotate_env = env.clone().set("PATCHBAY_MASTER_KEYS", &k2_then_k1);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        // A pause before the first batch: the load is running by then.
        std::thread::sleep(Duration::from_millis(300));
        rotate_env.run(&["keys", "rotate", "--batch-size", "1", "--pause-ms", "30"])
    })
    .await
    .unwrap();
    let rotation_took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A little more load after the last re-wrap.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut calls, mut failures) = (0, Vec::new());
    for w in workers {
        let (c, f) = w.await.unwrap();
        calls += c;
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {failures:#?}",
        failures.len()
    );
    assert!(calls >= 100, "only {calls} calls during the rotation");

    // k1 protects nothing now: the CLI and both replicas say so.
    let status = env
        .clone()
        .set("PATCHBAY_MASTER_KEYS", &k2_then_k1)
        .run(&["keys", "status"]);
    assert!(status.status.success());
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    let k1_line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("k1"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(k1_line.split_whitespace().last(), Some("0"), "{text}");
    for server in [&a, &b] {
        let (primary, counts) = key_status(&Client::new(server)).await;
        assert_eq!(primary, "k2");
        assert_eq!(counts["k1"], 0);
        assert_eq!(counts["k2"], tenants.len() as u64);
    }

    // Step 4: k1 removed, one replica at a time; every secret still opens,
    // and Stripe saw exactly the keys written.
    let a = restart_with(a, &env, &k2).await;
    every_secret_works(&[&a.base, &b.base], &tenants).await;
    let b = restart_with(b, &env, &k2).await;
    fake.0.account_calls.lock().unwrap().clear();
    fake.0.other_calls.lock().unwrap().clear();
    every_secret_works(&[&a.base, &b.base], &tenants).await;
    let presented: BTreeSet<String> = fake
        .0
        .account_calls
        .lock()
        .unwrap()
        .iter()
        .chain(fake.0.other_calls.lock().unwrap().iter())
        .cloned()
        .collect();
    let written: BTreeSet<String> = tenants.iter().map(|t| t.key.clone()).collect();
    assert_eq!(presented, written);

    eprintln!(
        "rolling rotation: {} tenants; {calls} proxy/action/validate/webhook calls through both \
         replicas during a {rotation_took:?} rotation, 0 failed",
        tenants.len()
    );
    for server in [a, b] {
        let (status, log) = server.stop();
        assert!(status.success(), "{log}");
    }
    pg.drop_schema().await;
}
