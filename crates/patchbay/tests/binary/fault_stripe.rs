//! A local fake of Stripe that fails on purpose: it drops connections before
//! answering (before or after doing the work), answers 500, answers 429 with
//! and without Stripe's headers, answers slowly, and resets a connection in
//! the middle of a body, by a schedule drawn per logical request.
//!
//! It keeps Stripe's idempotency rules (STRIPE.md): a POST's result is stored
//! under its `Idempotency-Key` once the endpoint ran, and a replay returns the
//! stored answer (with `Idempotent-Replayed: true`) and creates nothing; the
//! same key while the first request still runs gets 409; the same key with
//! other parameters gets 400 `idempotency_error`. Failures before the endpoint
//! runs (the 500s and 429s here, a drop before reading on) store nothing, as
//! on Stripe. It counts, per key, how many objects it really created.
//!
//! Raw HTTP/1.1 over a TCP listener (keep-alive, `Content-Length` bodies), so
//! a drop and a reset are exactly that on the wire.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one attempt suffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Answered normally.
    None,
    /// The connection is closed once the request is read; nothing is done.
    DropBefore,
    /// The work is done (a POST creates its object), then the connection is
    /// closed without an answer: the answer is lost.
    DropAfter,
    /// 500 `api_error` with a `Request-Id`; nothing is done.
    Status500,
    /// 429 as Stripe sends it: `Request-Id`, `Stripe-Should-Retry: true`,
    /// `Stripe-Rate-Limited-Reason` and a `rate_limit` error body.
    Status429Stripe,
    /// A bare 429: no header, no body.
    Status429Bare,
    /// The work is done, then the answer waits this long (a POST's key is
    /// "in flight" meanwhile, so a retry under it gets 409).
    Slow(Duration),
    /// The work is done; the head and half the body are sent, then the
    /// connection is reset (RST).
    ResetMidBody,
}

/// Which attempts fail, and how.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Every attempt answers normally.
    Healthy,
    /// Every attempt on a faulted path suffers this.
    Always(Fault),
    /// Per logical request (a POST's `Idempotency-Key`, a GET's method, path
    /// and query): the number of failing attempts before it answers is drawn
    /// from `failures` (weights of 0, 1, 2, … failures), and each failing
    /// attempt's fault from `faults` (weights), by a hash of `seed` and the
    /// request, so a run repeats exactly.
    Schedule {
        seed: u64,
        failures: Vec<u32>,
        faults: Vec<(Fault, u32)>,
    },
}

/// One attempt as the fake saw it.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// `POST /v1/customers key=…` or `GET /v1/customers/cus_1?…`.
    pub logical: String,
    /// Sent by the raw proxy (its User-Agent says so).
    pub proxy: bool,
    pub fault: Fault,
    /// What happened: `created`, `replayed`, `conflict`, `read`, `failed`.
    pub outcome: &'static str,
}

/// An object the fake created.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub idempotency_key: Option<String>,
}

enum KeyState {
    InFlight {
        params: String,
    },
    Done {
        params: String,
        status: u16,
        body: String,
    },
}

#[derive(Default)]
struct State {
    plan: Mutex<Option<Plan>>,
    keys: Mutex<HashMap<String, KeyState>>,
    log: Mutex<Vec<Attempt>>,
    /// Attempts per logical request so far.
    seen: Mutex<HashMap<String, u32>>,
    created: Mutex<Vec<Created>>,
    next: AtomicU64,
}

/// The running fake. Only paths under `/v1/customers` suffer faults, so
/// creating and validating connections (`/v1/account`) always works.
pub struct FaultStripe {
    pub base: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultStripe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultStripe {
    pub async fn start(plan: Plan) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        *state.plan.lock() = Some(plan);
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move { serve(stream, state).await });
            }
        });
        Self { base, state, task }
    }

    /// Changes the plan for attempts from now on.
    pub fn set_plan(&self, plan: Plan) {
        *self.state.plan.lock() = Some(plan);
    }

    /// Every attempt so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.state.log.lock().clone()
    }

    /// Every object created so far.
    pub fn created(&self) -> Vec<Created> {
        self.state.created.lock().clone()
    }
}

/// A request as read off the wire.
struct Request {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// Reads one request; `None` when the peer closed or sent garbage.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    buf.drain(..head_end + 4);
    while buf.len() < length {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf.drain(..length).collect();
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

/// One answer to write.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Answer {
    fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    fn bytes(&self, request_id: &str) -> (Vec<u8>, Vec<u8>) {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            409 => "Conflict",
            429 => "Too Many Requests",
            _ => "Internal Server Error",
        };
        let mut head = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        if !self.body.is_empty() {
            head.push_str("content-type: application/json\r\n");
        }
        head.push_str(&format!("content-length: {}\r\n", self.body.len()));
        if !request_id.is_empty() {
            head.push_str(&format!("request-id: {request_id}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        (head.into_bytes(), self.body.clone().into_bytes())
    }
}

/// A well-mixed 64-bit hash (FNV-1a, then a finaliser).
fn hash(seed: u64, text: &str, salt: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

fn pick<T: Copy>(weights: &[(T, u32)], roll: u64) -> T {
    let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut at = roll % total.max(1);
    for (item, w) in weights {
        if at < u64::from(*w) {
            return *item;
        }
        at -= u64::from(*w);
    }
    weights[0].0
}

impl State {
    /// The fault for attempt `n` (1-based) of `logical`.
    fn fault(&self, logical: &str, n: u32) -> Fault {
        match self.plan.lock().clone().unwrap_or(Plan::Healthy) {
            Plan::Healthy => Fault::None,
            Plan::Always(f) => f,
            Plan::Schedule {
                seed,
                failures,
                faults,
            } => {
                let counts: Vec<(u32, u32)> = failures
                    .iter()
                    .enumerate()
                    .map(|(i, w)| (i as u32, *w))
                    .collect();
                let failing = pick(&counts, hash(seed, logical, 0));
                if n > failing {
                    Fault::None
                } else {
                    pick(&faults, hash(seed, logical, u64::from(n)))
                }
            }
        }
    }

    fn record(&self, logical: &str, proxy: bool, fault: Fault, outcome: &'static str) {
        self.log.lock().push(Attempt {
            logical: logical.to_owned(),
            proxy,
            fault,
            outcome,
        });
    }
}

fn stripe_error(kind: &str, code: Option<&str>, message: &str) -> Value {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    json!({ "error": error })
}

async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buf).await {
        if !answer(&mut stream, &state, request).await {
            return;
        }
    }
}

/// Answers one request; false when the connection is gone (dropped or reset).
async fn answer(stream: &mut TcpStream, state: &State, request: Request) -> bool {
    let request_id = format!("req_fault{:08}", state.next.fetch_add(1, Ordering::Relaxed));
    let path = request.target.split('?').next().unwrap_or("").to_owned();
    let write = |answer: Answer| answer.bytes(&request_id);
    if !path.starts_with("/v1/customers") {
        let answer = if path == "/v1/account" {
            Answer::json(200, &json!({"id": "acct_1Fault", "object": "account"}))
        } else {
            Answer::json(
                404,
                &stripe_error("invalid_request_error", None, "Unrecognized request URL"),
            )
        };
        let (head, body) = write(answer);
        return send_all(stream, &head, &body).await;
    }
    let key = request.headers.get("idempotency-key").cloned();
    let logical = match (&request.method[..], &key) {
        ("POST", Some(k)) => format!("POST {path} key={k}"),
        _ => format!("{} {}", request.method, request.target),
    };
    let proxy = request
        .headers
        .get("user-agent")
        .is_some_and(|ua| ua.ends_with(" proxy"));
    let n = {
        let mut seen = state.seen.lock();
        let n = seen.entry(logical.clone()).or_default();
        *n += 1;
        *n
    };
    let fault = state.fault(&logical, n);

    // Failures before the endpoint runs: nothing is done or stored.
    let early = match fault {
        Fault::DropBefore => {
            state.record(&logical, proxy, fault, "failed");
            return false;
        }
        Fault::Status500 => Some(Answer::json(
            500,
            &stripe_error(
                "api_error",
                None,
                "An unknown error occurred (injected by the fault fake).",
            ),
        )),
        Fault::Status429Stripe => Some(Answer {
            headers: vec![
                ("stripe-should-retry", "true".into()),
                ("stripe-rate-limited-reason", "global-rate".into()),
            ],
            ..Answer::json(
                429,
                &stripe_error(
                    "invalid_request_error",
                    Some("rate_limit"),
                    "Request rate limit exceeded (injected by the fault fake).",
                ),
            )
        }),
        Fault::Status429Bare => {
            state.record(&logical, proxy, fault, "failed");
            let (head, body) = Answer {
                status: 429,
                headers: Vec::new(),
                body: String::new(),
            }
            .bytes("");
            return send_all(stream, &head, &body).await;
        }
        _ => None,
    };
    if let Some(early) = early {
        state.record(&logical, proxy, fault, "failed");
        let (head, body) = write(early);
        return send_all(stream, &head, &body).await;
    }

    // The endpoint runs.
    let params = String::from_utf8_lossy(&request.body).into_owned();
    let (answer, outcome) = match (&request.method[..], &key) {
        ("POST", Some(key)) => {
            let mut keys = state.keys.lock();
            match keys.get(key) {
                Some(KeyState::InFlight { .. }) => (
                    Answer::json(
                        409,
                        &stripe_error(
                            "idempotency_error",
                            None,
                            "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): retry later.",
                        ),
                    ),
                    "conflict",
                ),
                Some(KeyState::Done { params: p, .. }) if *p != params => (
                    Answer::json(
                        400,
                        &stripe_error(
                            "idempotency_error",
                            None,
                            "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                        ),
                    ),
                    "conflict",
                ),
                Some(KeyState::Done { status, body, .. }) => (
                    Answer {
                        status: *status,
                        headers: vec![
                            ("idempotent-replayed", "true".into()),
                            ("idempotency-key", key.clone()),
                        ],
                        body: body.clone(),
                    },
                    "replayed",
                ),
                None => {
                    let id = format!("cus_F{:010}", state.next.fetch_add(1, Ordering::Relaxed));
                    state.created.lock().push(Created {
                        id: id.clone(),
                        idempotency_key: Some(key.clone()),
                    });
                    let body =
                        json!({"id": id, "object": "customer", "params": params}).to_string();
                    let done = KeyState::Done {
                        params: params.clone(),
                        status: 200,
                        body: body.clone(),
                    };
                    let stored = if matches!(fault, Fault::Slow(_)) {
                        KeyState::InFlight { params }
                    } else {
                        done
                    };
                    keys.insert(key.clone(), stored);
                    (
                        Answer {
                            status: 200,
                            headers: vec![("idempotency-key", key.clone())],
                            body,
                        },
                        "created",
                    )
                }
            }
        }
        ("POST", None) => {
            // Without a key nothing protects against duplicates: counted all the same.
            let id = format!("cus_F{:010}", state.next.fetch_add(1, Ordering::Relaxed));
            state.created.lock().push(Created {
                id: id.clone(),
                idempotency_key: None,
            });
            (
                Answer::json(200, &json!({"id": id, "object": "customer"})),
                "created",
            )
        }
        _ => {
            let id = path.rsplit('/').next().unwrap_or("");
            let body = if id.starts_with("cus_") {
                json!({"id": id, "object": "customer", "email": format!("{id}@example.com")})
            } else {
                json!({"object": "list", "data": [], "has_more": false, "url": "/v1/customers"})
            };
            (Answer::json(200, &body), "read")
        }
    };
    state.record(&logical, proxy, fault, outcome);
    let (head, body) = write(answer);
    match fault {
        Fault::DropAfter => false,
        Fault::Slow(wait) => {
            tokio::time::sleep(wait).await;
            if let Some(key) = &key {
                let mut keys = state.keys.lock();
                if let Some(KeyState::InFlight { params }) = keys.get(key) {
                    let params = params.clone();
                    let body = String::from_utf8_lossy(&body).into_owned();
                    keys.insert(
                        key.clone(),
                        KeyState::Done {
                            params,
                            status: 200,
                            body,
                        },
                    );
                }
            }
            send_all(stream, &head, &body).await
        }
        Fault::ResetMidBody => {
            let half = body.len() / 2;
            let _ = stream.write_all(&head).await;
            let _ = stream.write_all(&body[..half]).await;
            let _ = stream.flush().await;
            // Give the half a moment to leave, then reset rather than close.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = stream.set_zero_linger();
            false
        }
        _ => send_all(stream, &head, &body).await,
    }
}

async fn send_all(stream: &mut TcpStream, head: &[u8], body: &[u8]) -> bool {
    stream.write_all(head).await.is_ok()
        && stream.write_all(body).await.is_ok()
        && stream.flush().await.is_ok()
}
