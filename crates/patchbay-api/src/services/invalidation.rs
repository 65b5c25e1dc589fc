//! The invalidation bus: when a key is revoked, a tenant disabled or a
//! connection's secrets change, every replica's caches forget it within about
//! a second, not only the replica that made the change.
//!
//! A change is applied to this replica's caches at once, then published on the
//! [`ChangeFeed`] (PostgreSQL `LISTEN/NOTIFY`, or Redis pub/sub) when there is
//! one; a listener task applies what the other replicas publish. Delivery is
//! at most once, so each cache keeps its TTL as the fallback, and after the
//! listener (re)connects every cache is cleared: messages may have been missed
//! while it was away. A replica also receives its own messages; applying one
//! twice is harmless.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use patchbay_core::change_feed::{ChangeFeed, FeedSubscription};
use patchbay_core::{ApiKeyId, ConnectionId, TenantId};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

/// Something cached elsewhere that is no longer true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Invalidation {
    /// A tenant API key was revoked, rotated or deleted.
    ApiKey {
        /// Its tenant.
        tenant_id: TenantId,
        /// The key.
        key_id: ApiKeyId,
    },
    /// A tenant was disabled or deleted: all of its keys and connections.
    Tenant {
        /// The tenant.
        tenant_id: TenantId,
    },
    /// A connection's secrets or status changed (rotated, deleted, refreshed, revoked).
    Connection {
        /// Its tenant.
        tenant_id: TenantId,
        /// The connection.
        connection_id: ConnectionId,
    },
}

/// A cache that the bus keeps honest.
pub trait InvalidationHandler: Send + Sync {
    /// Forgets what `what` names (and ignores what it does not cache).
    fn invalidate(&self, what: &Invalidation);
    /// Forgets everything: messages may have been missed.
    fn invalidate_all(&self);
}

/// The channel name the bus uses under a prefix (`patchbay` → `patchbay:invalidation`).
pub fn channel_name(prefix: &str) -> String {
    format!("{prefix}:invalidation")
}

/// Longest a publish may hold up the request that changed something; past
/// it the other replicas fall back on their caches' TTL.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// First and longest wait before the listener reconnects.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What the bus has done, for tests and metrics.
#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    resyncs: AtomicU64,
}

/// See the module documentation.
pub struct InvalidationBus {
    handlers: RwLock<Vec<Arc<dyn InvalidationHandler>>>,
    feed: Option<Arc<dyn ChangeFeed>>,
    channel: String,
    listening: AtomicBool,
    counters: Counters,
    listener: Mutex<Option<tokio::task::AbortHandle>>,
    /// First wait before the listener reconnects (doubling up to [`BACKOFF_MAX`]).
    backoff_first: Duration,
}

impl std::fmt::Debug for InvalidationBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvalidationBus")
            .field("transport", &self.transport())
            .field("channel", &self.channel)
            .field("handlers", &self.handlers.read().len())
            .field("listening", &self.is_listening())
            .finish_non_exhaustive()
    }
}

impl InvalidationBus {
    /// A bus for this process alone (one replica: SQLite, or tests).
    pub fn local() -> Arc<Self> {
        Self::new(None, "patchbay:invalidation".into())
    }

    /// A bus publishing on `feed` (when given) under `channel`. Call
    /// [`Self::start`] inside a tokio runtime to hear the other replicas.
    pub fn new(feed: Option<Arc<dyn ChangeFeed>>, channel: String) -> Arc<Self> {
        Arc::new(Self {
            handlers: RwLock::new(Vec::new()),
            feed,
            channel,
            listening: AtomicBool::new(false),
            counters: Counters::default(),
            listener: Mutex::new(None),
            backoff_first: BACKOFF_FIRST,
        })
    }

    /// What carries messages between replicas (`in-process` when nothing does).
    pub fn transport(&self) -> &'static str {
        self.feed.as_ref().map_or("in-process", |f| f.transport())
    }

    /// Adds a cache to keep honest.
    pub fn register(&self, handler: Arc<dyn InvalidationHandler>) {
        self.handlers.write().push(handler);
    }

    /// Whether the listener is connected (always true without a feed: there
    /// is nobody else to hear).
    pub fn is_listening(&self) -> bool {
        self.feed.is_none() || self.listening.load(Ordering::Acquire)
    }

    /// Messages published by this replica.
    pub fn published(&self) -> u64 {
        self.counters.published.load(Ordering::Relaxed)
    }

    /// Messages received from the feed (this replica's own included).
    pub fn received(&self) -> u64 {
        self.counters.received.load(Ordering::Relaxed)
    }

    /// Times every cache was cleared because the listener (re)connected.
    pub fn resyncs(&self) -> u64 {
        self.counters.resyncs.load(Ordering::Relaxed)
    }

    /// Applies `what` here at once, then tells the other replicas. A feed that
    /// cannot be reached is logged, not returned: the change itself is done,
    /// and the other replicas' TTLs bound how long they may still trust it.
    pub async fn publish(&self, what: Invalidation) {
        self.apply(&what);
        let Some(feed) = &self.feed else {
            return;
        };
        let payload = match serde_json::to_string(&what) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "could not encode an invalidation");
                return;
            }
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, feed.publish(&self.channel, &payload)).await {
            Ok(Ok(())) => {
                self.counters.published.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("patchbay_invalidations_total", "direction" => "published")
                    .increment(1);
            }
            Ok(Err(e)) => warn!(
                transport = feed.transport(), error = %e, ?what,
                "could not tell the other replicas about a change; they notice within their cache TTL"
            ),
            Err(_) => warn!(
                transport = feed.transport(),
                ?what,
                "telling the other replicas about a change timed out; they notice within their cache TTL"
            ),
        }
    }

    /// Applies `what` to this replica's caches.
    pub fn apply(&self, what: &Invalidation) {
        for handler in self.handlers.read().iter() {
            handler.invalidate(what);
        }
    }

    /// Clears this replica's caches.
    pub fn apply_all(&self) {
        for handler in self.handlers.read().iter() {
            handler.invalidate_all();
        }
    }

    /// Starts listening to the other replicas (when there is a feed); the
    /// listener stops when the bus is dropped.
    pub fn start(self: &Arc<Self>) {
        let Some(feed) = self.feed.clone() else {
            return;
        };
        let mut slot = self.listener.lock();
        if slot.is_some() {
            return;
        }
        metrics::gauge!("patchbay_invalidation_listening").set(0.0);
        let task = tokio::spawn(listen(
            Arc::downgrade(self),
            feed,
            self.channel.clone(),
            self.backoff_first,
        ));
        *slot = Some(task.abort_handle());
    }

    /// Handles one message from the feed.
    fn receive(&self, payload: &str) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("patchbay_invalidations_total", "direction" => "received").increment(1);
        match serde_json::from_str::<Invalidation>(payload) {
            Ok(what) => {
                debug!(?what, "invalidation received");
                self.apply(&what);
            }
            // A newer replica may send kinds this one does not know yet.
            Err(e) => debug!(error = %e, "ignoring an invalidation message not understood"),
        }
    }
}

impl Drop for InvalidationBus {
    fn drop(&mut self) {
        if let Some(task) = self.listener.get_mut().take() {
            task.abort();
        }
    }
}

/// The listener: subscribe, clear the caches (what happened while away is
/// unknown), apply messages until the connection is lost, back off, repeat.
async fn listen(
    bus: Weak<InvalidationBus>,
    feed: Arc<dyn ChangeFeed>,
    channel: String,
    first: Duration,
) {
    let mut backoff = first;
    let mut outage_logged = false;
    loop {
        match feed.subscribe(&channel).await {
            Ok(subscription) => {
                let Some(strong) = bus.upgrade() else { return };
                strong.apply_all();
                strong.counters.resyncs.fetch_add(1, Ordering::Relaxed);
                strong.listening.store(true, Ordering::Release);
                metrics::gauge!("patchbay_invalidation_listening").set(1.0);
                info!(transport = feed.transport(), %channel, "listening for other replicas' changes");
                drop(strong);
                backoff = first;
                outage_logged = false;
                let lost = pump(&bus, subscription).await;
                let Some(strong) = bus.upgrade() else { return };
                strong.listening.store(false, Ordering::Release);
                metrics::gauge!("patchbay_invalidation_listening").set(0.0);
                drop(strong);
                warn!(
                    transport = feed.transport(), error = %lost,
                    "lost the connection that hears other replicas' changes; caches fall back on their TTL until it is back"
                );
            }
            Err(e) => {
                if !outage_logged {
                    warn!(
                        transport = feed.transport(), error = %e,
                        "cannot listen for other replicas' changes; retrying with backoff (caches fall back on their TTL)"
                    );
                    outage_logged = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Applies messages until the subscription fails; returns why it did.
async fn pump(
    bus: &Weak<InvalidationBus>,
    mut subscription: Box<dyn FeedSubscription>,
) -> patchbay_core::change_feed::FeedError {
    loop {
        match subscription.next().await {
            Ok(payload) => match bus.upgrade() {
                Some(bus) => bus.receive(&payload),
                None => return patchbay_core::change_feed::FeedError("the bus was dropped".into()),
            },
            Err(e) => return e,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use async_trait::async_trait;
    use patchbay_core::change_feed::FeedError;
    use tokio::sync::{Notify, broadcast};

    use super::*;

    /// Records what it was told.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<Option<Invalidation>>>,
        notify: Notify,
    }

    impl InvalidationHandler for Recorder {
        fn invalidate(&self, what: &Invalidation) {
            self.seen.lock().push(Some(*what));
            self.notify.notify_waiters();
        }
        fn invalidate_all(&self) {
            self.seen.lock().push(None);
            self.notify.notify_waiters();
        }
    }

    impl Recorder {
        /// Waits until `n` calls were recorded.
        async fn wait_for(&self, n: usize) -> Vec<Option<Invalidation>> {
            loop {
                let notified = self.notify.notified();
                if self.seen.lock().len() >= n {
                    return self.seen.lock().clone();
                }
                notified.await;
            }
        }
    }

    /// An in-memory feed shared by "replicas"; `cut` drops every subscription
    /// and makes the next `refusals` subscribe attempts fail.
    #[derive(Debug)]
    struct MemoryFeed {
        tx: broadcast::Sender<Option<String>>,
        refusals: Mutex<VecDeque<()>>,
    }

    impl MemoryFeed {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                tx: broadcast::channel(64).0,
                refusals: Mutex::new(VecDeque::new()),
            })
        }
        fn cut(&self, refusals: usize) {
            self.refusals
                .lock()
                .extend(std::iter::repeat_n((), refusals));
            let _ = self.tx.send(None);
        }
    }

    struct MemorySubscription(broadcast::Receiver<Option<String>>);

    #[async_trait]
    impl FeedSubscription for MemorySubscription {
        async fn next(&mut self) -> Result<String, FeedError> {
            match self.0.recv().await {
                Ok(Some(m)) => Ok(m),
                _ => Err(FeedError("cut".into())),
            }
        }
    }

    #[async_trait]
    impl ChangeFeed for MemoryFeed {
        fn transport(&self) -> &'static str {
            "memory"
        }
        async fn publish(&self, _channel: &str, payload: &str) -> Result<(), FeedError> {
            let _ = self.tx.send(Some(payload.to_owned()));
            Ok(())
        }
        async fn subscribe(&self, _channel: &str) -> Result<Box<dyn FeedSubscription>, FeedError> {
            if self.refusals.lock().pop_front().is_some() {
                return Err(FeedError("refused".into()));
            }
            Ok(Box::new(MemorySubscription(self.tx.subscribe())))
        }
    }

    fn replica(feed: &Arc<MemoryFeed>) -> (Arc<InvalidationBus>, Arc<Recorder>) {
        let feed: Arc<dyn ChangeFeed> = feed.clone();
        let mut bus = InvalidationBus::new(Some(feed), channel_name("test"));
        // Reconnects back off from 1 ms, so the tests wait for events, not seconds.
        Arc::get_mut(&mut bus).unwrap().backoff_first = Duration::from_millis(1);
        let recorder = Arc::new(Recorder::default());
        bus.register(recorder.clone());
        (bus, recorder)
    }

    async fn until_listening(bus: &InvalidationBus) {
        while !bus.is_listening() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_local_bus_applies_at_once() {
        let bus = InvalidationBus::local();
        let recorder = Arc::new(Recorder::default());
        bus.register(recorder.clone());
        let what = Invalidation::Tenant {
            tenant_id: TenantId::new(),
        };
        bus.publish(what).await;
        assert_eq!(*recorder.seen.lock(), vec![Some(what)]);
        assert!(bus.is_listening());
        assert_eq!(bus.transport(), "in-process");
    }

    #[tokio::test]
    async fn every_replica_hears_every_kind() {
        let feed = MemoryFeed::new();
        let (a, seen_a) = replica(&feed);
        let (b, seen_b) = replica(&feed);
        a.start();
        b.start();
        until_listening(&a).await;
        until_listening(&b).await;
        let tenant_id = TenantId::new();
        let sent = [
            Invalidation::ApiKey {
                tenant_id,
                key_id: ApiKeyId::new(),
            },
            Invalidation::Tenant { tenant_id },
            Invalidation::Connection {
                tenant_id,
                connection_id: ConnectionId::new(),
            },
        ];
        for what in sent {
            a.publish(what).await;
        }
        // B: the clear on connecting, then the three messages.
        let on_b = seen_b.wait_for(4).await;
        assert_eq!(on_b[0], None);
        assert_eq!(&on_b[1..], &sent.map(Some));
        // A applied each at once and again when it came back: harmless.
        let on_a = seen_a.wait_for(7).await;
        assert_eq!(on_a.iter().filter(|s| s.is_some()).count(), 6);
        assert_eq!(a.published(), 3);
        assert_eq!(b.received(), 3);
    }

    #[tokio::test]
    async fn a_lost_connection_is_resubscribed_and_clears_the_caches() {
        let feed = MemoryFeed::new();
        let (a, _) = replica(&feed);
        let (b, seen_b) = replica(&feed);
        b.start();
        until_listening(&b).await;
        assert_eq!(b.resyncs(), 1);
        // Cut, and refuse the next two attempts: B backs off and retries.
        feed.cut(2);
        let what = Invalidation::Tenant {
            tenant_id: TenantId::new(),
        };
        while b.resyncs() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(b.is_listening());
        a.publish(what).await;
        let on_b = seen_b.wait_for(3).await;
        // Cleared when first connected, cleared again after the outage, then the message.
        assert_eq!(on_b, vec![None, None, Some(what)]);
    }

    #[tokio::test]
    async fn unknown_messages_are_ignored() {
        let feed = MemoryFeed::new();
        let (b, seen_b) = replica(&feed);
        b.start();
        until_listening(&b).await;
        feed.publish("x", r#"{"kind":"something_new"}"#)
            .await
            .unwrap();
        feed.publish("x", "not json").await.unwrap();
        let what = Invalidation::Tenant {
            tenant_id: TenantId::new(),
        };
        feed.publish("x", &serde_json::to_string(&what).unwrap())
            .await
            .unwrap();
        assert_eq!(seen_b.wait_for(2).await, vec![None, Some(what)]);
        assert_eq!(b.received(), 3);
    }

    #[tokio::test]
    async fn the_listener_stops_with_the_bus() {
        let feed = MemoryFeed::new();
        let (b, _) = replica(&feed);
        b.start();
        until_listening(&b).await;
        assert_eq!(feed.tx.receiver_count(), 1);
        drop(b);
        while feed.tx.receiver_count() > 0 {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn messages_are_small_and_tagged() {
        let tenant_id = TenantId::new();
        let json = serde_json::to_value(Invalidation::Tenant { tenant_id }).unwrap();
        assert_eq!(json["kind"], "tenant");
        assert_eq!(json["tenant_id"], tenant_id.to_string());
    }
}
