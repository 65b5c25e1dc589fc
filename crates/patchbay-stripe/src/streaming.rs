//! The raw proxy's outbound HTTP client: hyper's pooled client directly
//! (keep-alive, HTTP/2 where Stripe offers it through ALPN, rustls on aws-lc-rs
//! with the platform's roots, as the buffered reqwest client), without
//! reqwest's per-request URL handling and redirect machinery, which the proxy
//! does not need (it never follows redirects and builds its URL once).
//!
//! No whole-request timeout: a long body streams for as long as it keeps
//! coming. Instead the answer's head must arrive within the client's timeout,
//! and after it each read of the body must make progress within the same time
//! ([`IdleTimeout`]).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Sleep;

/// Errors of bodies in and out.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body for the proxy's client.
pub type OutgoingBody = UnsyncBoxBody<Bytes, BoxError>;

/// The client.
pub type StreamingClient = Client<HttpsConnector<HttpConnector>, OutgoingBody>;

/// Builds the client: `connect_timeout` to open a connection, up to 256 idle
/// connections kept 90 s.
pub fn client(connect_timeout: Duration) -> Result<StreamingClient, std::io::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(rustls::crypto::aws_lc_rs::default_provider())?
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector))
}

/// No body.
pub fn empty() -> OutgoingBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body in memory.
pub fn full(bytes: Bytes) -> OutgoingBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body streamed from the caller.
pub fn streamed<S>(stream: S) -> OutgoingBody
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    use futures::TryStreamExt;
    StreamBody::new(
        stream
            .map_ok(Frame::data)
            .map_err(|e| -> BoxError { Box::new(e) }),
    )
    .boxed_unsync()
}

/// Stripe's answer body, failing when a read makes no progress for `idle`.
/// A timer is armed only while a read is waiting, so a body that is already
/// there (most of Stripe's answers) costs none; a long stream reuses one timer,
/// re-armed at each wait.
#[derive(Debug)]
pub struct IdleTimeout<B = Incoming> {
    inner: B,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the timer counts the current wait.
    armed: bool,
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            timer: None,
            armed: false,
        }
    }
}

/// The error of a body read that made no progress in time.
#[derive(Debug, thiserror::Error)]
#[error("Stripe's answer stalled: no data for {0:?}")]
pub struct Stalled(pub Duration);

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = match (&mut this.timer, this.armed) {
                    (Some(timer), true) => timer,
                    (Some(timer), false) => {
                        timer.as_mut().reset(tokio::time::Instant::now() + idle);
                        timer
                    }
                    (None, _) => this.timer.insert(Box::pin(tokio::time::sleep(idle))),
                };
                this.armed = true;
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.armed = false;
                        Poll::Ready(Some(Err(Box::new(Stalled(idle)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that never yields.
    struct Silent;

    impl Body for Silent {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_silent_body_fails_after_the_idle_time_and_a_flowing_one_does_not() {
        let stalled = IdleTimeout::new(Silent, Duration::from_millis(50))
            .collect()
            .await
            .unwrap_err();
        assert!(stalled.is::<Stalled>(), "{stalled}");

        let whole = IdleTimeout::new(Full::new(Bytes::from_static(b"{}")), Duration::from_secs(5))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(whole, Bytes::from_static(b"{}"));
    }

    #[tokio::test]
    async fn each_wait_gets_the_whole_idle_time_and_a_later_stall_still_fails() {
        // Three chunks each 60 ms apart (under the 150 ms idle time, 180 ms in
        // all: more than one idle time), then silence.
        let chunks = futures::stream::unfold(0u8, |n| async move {
            if n < 3 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                Some((
                    Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'x']))),
                    n + 1,
                ))
            } else {
                futures::future::pending().await
            }
        });
        let mut body = IdleTimeout::new(
            StreamBody::new(Box::pin(chunks)),
            Duration::from_millis(150),
        );
        for _ in 0..3 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"x"));
        }
        let stalled = body.frame().await.unwrap().unwrap_err();
        assert!(stalled.is::<Stalled>(), "{stalled}");
    }
}
