//! The floor under the proxy benchmark (scripts/bench-proxy, scenario e):
//! the same stack as Patchbay (tokio, hyper via axum, reqwest with the same
//! pool settings) doing only what nginx does in (b): forward the request
//! with an added Authorization header and stream the answer back. No
//! authentication, limits, audit, metrics or logging: what is left is the
//! cost of the HTTP stack itself.
//!
//!   cargo run --release -p patchbay --example bare_proxy -- <listen> <upstream base> <authorization> [reqwest|hyper] [shared|per-core|per-core-one-client]
//!
//! The last two choose the client (reqwest, as Patchbay; or hyper's own
//! pooled client) and the runtime (tokio's work-stealing scheduler, as
//! Patchbay; or one single-threaded runtime per core, each accepting on its
//! own SO_REUSEPORT listener, as nginx's workers do).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::Response;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
enum Http {
    Reqwest(reqwest::Client),
    Hyper(Box<HyperClient<HttpConnector, Body>>),
}

#[derive(Clone)]
struct Upstream {
    http: Http,
    base: String,
    authorization: HeaderValue,
}

async fn forward(State(up): State<Upstream>, request: Request) -> Result<Response, StatusCode> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let url = format!("{}{path}", up.base);
    match &up.http {
        Http::Reqwest(http) => {
            let answer = http
                .request(request.method().clone(), url)
                .header("authorization", up.authorization.clone())
                .send()
                .await
                .map_err(|_| StatusCode::BAD_GATEWAY)?;
            let mut response = Response::builder().status(answer.status().as_u16());
            for name in ["content-type", "content-length", "request-id"] {
                if let Some(value) = answer.headers().get(name) {
                    response = response.header(name, value.as_bytes());
                }
            }
            response
                .body(Body::from_stream(answer.bytes_stream()))
                .map_err(|_| StatusCode::BAD_GATEWAY)
        }
        Http::Hyper(http) => {
            let uri: Uri = url.parse().map_err(|_| StatusCode::BAD_REQUEST)?;
            let outgoing = axum::http::Request::builder()
                .method(request.method().clone())
                .uri(uri)
                .header("authorization", up.authorization.clone())
                .body(Body::empty())
                .map_err(|_| StatusCode::BAD_REQUEST)?;
            let answer = http
                .request(outgoing)
                .await
                .map_err(|_| StatusCode::BAD_GATEWAY)?;
            let (parts, body) = answer.into_parts();
            let mut response = Response::builder().status(parts.status);
            for name in ["content-type", "content-length", "request-id"] {
                if let Some(value) = parts.headers.get(name) {
                    response = response.header(name, value);
                }
            }
            response
                .body(Body::new(body))
                .map_err(|_| StatusCode::BAD_GATEWAY)
        }
    }
}

fn app(base: &str, authorization: &str, client: &str) -> axum::Router {
    router(base, authorization, http(client))
}

fn http(client: &str) -> Http {
    match client {
        "hyper" => {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            Http::Hyper(Box::new(
                HyperClient::builder(TokioExecutor::new())
                    .pool_idle_timeout(std::time::Duration::from_secs(90))
                    .pool_max_idle_per_host(256)
                    .build(connector),
            ))
        }
        _ => Http::Reqwest(
            reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .tcp_nodelay(true)
                .build()
                .expect("client"),
        ),
    }
}

fn router(base: &str, authorization: &str, http: Http) -> axum::Router {
    let state = Upstream {
        http,
        base: base.trim_end_matches('/').to_owned(),
        authorization: HeaderValue::from_str(authorization).expect("header"),
    };
    axum::Router::new().fallback(forward).with_state(state)
}

/// Serves each router on a single-threaded runtime of its own, each
/// accepting on its own `SO_REUSEPORT` listener on `listen`.
fn serve_per_core(listen: &str, routers: Vec<axum::Router>) {
    let addr: std::net::SocketAddr = listen.parse().expect("address");
    let threads: Vec<_> = routers
        .into_iter()
        .map(|router| {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                    socket.set_reuseport(true).expect("reuseport");
                    socket.set_reuseaddr(true).expect("reuseaddr");
                    socket.bind(addr).expect("bind");
                    let listener = socket.listen(1024).expect("listen");
                    axum::serve(listener, router).await.expect("serve");
                });
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (listen, base, authorization) = match args.as_slice() {
        [_, l, b, a, ..] => (l.clone(), b.clone(), a.clone()),
        _ => {
            eprintln!(
                "usage: bare_proxy <listen> <upstream base> <authorization> [reqwest|hyper] [shared|per-core|per-core-one-client]"
            );
            std::process::exit(2);
        }
    };
    let client = args.get(4).cloned().unwrap_or_else(|| "reqwest".into());
    let runtime = args.get(5).cloned().unwrap_or_else(|| "shared".into());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    match runtime.as_str() {
        // A client (and pool of upstream connections) per runtime.
        "per-core" => serve_per_core(
            &listen,
            (0..cores)
                .map(|_| app(&base, &authorization, &client))
                .collect(),
        ),
        // One client shared by every runtime, as Patchbay's state would be.
        "per-core-one-client" => {
            let shared = http(&client);
            serve_per_core(
                &listen,
                (0..cores)
                    .map(|_| router(&base, &authorization, shared.clone()))
                    .collect(),
            );
        }
        _ => {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
                axum::serve(listener, app(&base, &authorization, &client))
                    .await
                    .expect("serve");
            });
        }
    }
}
