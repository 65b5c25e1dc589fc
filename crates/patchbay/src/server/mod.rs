//! The HTTP server: an accept loop that holds at most `max_connections` client
//! connections (more wait in the listen backlog), closes connections whose
//! request head is late or that sit idle, and on shutdown stops accepting,
//! lets in-flight requests finish and returns when every connection is gone.
//! (`axum::serve` has no knobs for these; hyper-util's builder serves each
//! connection, HTTP/1.1 and HTTP/2.)

mod activity;
pub mod fd_limit;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;
use tracing::{debug, error, warn};

use activity::{Activity, Watched};

/// At most one "connection limit reached" warning in this time.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest a client may take to send a request's line and headers, counted
    /// from the connection's start or the request's first byte.
    pub header_read_timeout: Duration,
    /// Longest a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Most client connections open at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` completes and every connection
/// has closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Each connection holds a receiver: `stopping` tells it to finish, and
    // `open_tx.closed()` resolves once every connection has dropped its `open_rx`.
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let (open_tx, open_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let mut last_warned: Option<Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if last_warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait until one closes (PATCHBAY_MAX_CONNECTIONS)"
                    );
                    last_warned = Some(Instant::now());
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    () = &mut shutdown => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                debug!(%peer, "connection accepted");
                tokio::spawn(connection(
                    stream,
                    app.clone(),
                    limits,
                    slot,
                    stopping_rx.clone(),
                    open_rx.clone(),
                ));
            }
            Err(e) if is_per_connection(&e) => debug!(error = %e, "accept failed"),
            Err(e) => {
                // Out of file descriptors or memory: wait for connections to close.
                error!(error = %e, "cannot accept connections; retrying in 1s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = &mut shutdown => break,
                }
            }
        }
    }
    drop(listener);
    drop(open_rx);
    let _ = stopping_tx.send(true);
    open_tx.closed().await;
}

/// Errors that concern one connection only, not the listener.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    _slot: OwnedSemaphorePermit,
    mut stopping: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
) {
    metrics::gauge!("patchbay_http_connections_open").increment(1.0);
    let activity = Activity::new(limits.header_read_timeout, limits.idle_timeout);
    let io = TokioIo::new(Watched::new(stream, activity.clone()));
    let service = {
        let activity = activity.clone();
        service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = activity.request_started();
            let response = app.clone().oneshot(request.map(Body::new));
            async move {
                let response = response.await;
                drop(in_flight);
                response
            }
        })
    };
    let builder = Builder::new(TokioExecutor::new());
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut stopping_seen = false;
    loop {
        let deadline = activity.deadline();
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            changed = stopping.wait_for(|s| *s), if !stopping_seen => {
                stopping_seen = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = activity.changed() => {}
            () = sleep_until(deadline) => {
                if let Some((at, expiry)) = activity.deadline()
                    && at <= tokio::time::Instant::now()
                {
                    debug!(reason = expiry.label(), "closing a slow or idle connection");
                    metrics::counter!("patchbay_http_connections_closed_total", "reason" => expiry.label()).increment(1);
                    break;
                }
            }
        }
    }
    metrics::gauge!("patchbay_http_connections_open").decrement(1.0);
}

async fn sleep_until(deadline: Option<(tokio::time::Instant, activity::Expiry)>) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
