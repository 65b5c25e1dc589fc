//! The batched audit log: events recorded off the request path all reach the
//! store, `record` never waits for a database write (only for room in a full
//! queue), failed writes are retried, and closing writes what is queued.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use patchbay_api::services::audit_log::{AuditLog, AuditLogSettings, Flushed};
use patchbay_core::audit::{Actor, AuditEvent};
use patchbay_core::store::{AuditFilter, AuditStore, StoreResult};
use patchbay_core::{AuditEventId, Page, PageRequest, Store, StoreError, TenantId};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::time::timeout;

use crate::support::TestApp;

fn event(n: usize) -> AuditEvent {
    AuditEvent::new(
        None,
        Actor::System,
        "proxy.call",
        Some(format!("call_{n}")),
        json!({"n": n}),
        Some(format!("req_{n}")),
    )
}

/// Settings that retry and linger briefly, so the tests run fast.
fn quick(capacity: usize, max_batch: usize) -> AuditLogSettings {
    AuditLogSettings {
        capacity,
        max_batch,
        linger: Duration::from_millis(20),
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(40),
        refused_retry: Duration::from_secs(60),
    }
}

/// The ids of every stored audit event, read page by page.
async fn stored_ids(store: &dyn AuditStore) -> HashSet<AuditEventId> {
    let mut ids = HashSet::new();
    let mut after = None;
    loop {
        let page = store
            .list_audit_events(
                None,
                &AuditFilter::default(),
                &PageRequest::new(Some(100), after, None).unwrap(),
            )
            .await
            .unwrap();
        after = page.data.last().map(|e| e.id);
        ids.extend(page.data.iter().map(|e| e.id));
        if !page.has_more {
            return ids;
        }
    }
}

fn ids(events: &[AuditEvent]) -> HashSet<AuditEventId> {
    events.iter().map(|e| e.id).collect()
}

/// A store whose batch writes wait at a gate (closed at first), fail while
/// told to, and refuse any batch holding an event whose action is `refused`.
struct TestStore {
    inner: Arc<dyn Store>,
    gate: Semaphore,
    unavailable_for: AtomicUsize,
    batch_writes: AtomicUsize,
}

impl TestStore {
    fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            gate: Semaphore::new(0),
            unavailable_for: AtomicUsize::new(0),
            batch_writes: AtomicUsize::new(0),
        })
    }

    fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

#[async_trait]
impl AuditStore for TestStore {
    async fn insert_audit_event(&self, event: &AuditEvent) -> StoreResult<()> {
        self.insert_audit_events(std::slice::from_ref(event)).await
    }

    async fn insert_audit_events(&self, events: &[AuditEvent]) -> StoreResult<()> {
        let _pass = self.gate.acquire().await.unwrap();
        self.batch_writes.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .unavailable_for
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(StoreError::Unavailable("connection refused".into()));
        }
        if events.iter().any(|e| e.action == "refused") {
            return Err(StoreError::Internal("value refused".into()));
        }
        self.inner.insert_audit_events(events).await
    }

    async fn list_audit_events(
        &self,
        tenant: Option<TenantId>,
        filter: &AuditFilter,
        page: &PageRequest<AuditEventId>,
    ) -> StoreResult<Page<AuditEvent>> {
        self.inner.list_audit_events(tenant, filter, page).await
    }
}

/// Records 5,000 events from 50 tasks at once, closes, and finds every one.
async fn concurrent_records_all_arrive(app: &TestApp) {
    let log = app.state.audit_log.clone();
    let tasks: Vec<_> = (0..50)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let events: Vec<AuditEvent> = (0..100).map(|i| event(t * 100 + i)).collect();
                for e in &events {
                    log.record(e.clone()).await;
                }
                events
            })
        })
        .collect();
    let mut recorded = HashSet::new();
    for task in tasks {
        recorded.extend(ids(&task.await.unwrap()));
    }
    assert_eq!(recorded.len(), 5_000);

    let flushed = log.close(Duration::from_secs(30)).await;
    assert_eq!(flushed.unwritten, 0);
    assert_eq!(log.pending(), 0);
    let stored = stored_ids(app.state.store.as_ref()).await;
    assert!(
        recorded.is_subset(&stored),
        "every recorded event was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_recorded_from_many_tasks_are_all_stored() {
    concurrent_records_all_arrive(&TestApp::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_recorded_from_many_tasks_are_all_stored_on_postgres() {
    if let Some(app) = TestApp::on_postgres(|_| {}).await {
        concurrent_records_all_arrive(&app).await;
    }
}

#[tokio::test]
async fn record_does_not_wait_for_the_database() {
    let app = TestApp::new().await;
    let store = TestStore::new(app.state.store.clone());
    let log = AuditLog::spawn(store.clone(), quick(1_000, 100));

    // The gate is shut: any record that waited for a write would never return.
    let events: Vec<AuditEvent> = (0..600).map(event).collect();
    timeout(Duration::from_secs(2), async {
        for e in &events {
            log.record(e.clone()).await;
        }
    })
    .await
    .expect("record returned without a database write");
    assert_eq!(log.pending(), 600);
    assert!(
        stored_ids(app.state.store.as_ref())
            .await
            .is_disjoint(&ids(&events))
    );

    store.open();
    let flushed = log.close(Duration::from_secs(10)).await;
    assert_eq!(
        flushed,
        Flushed {
            written: 600,
            unwritten: 0
        }
    );
    assert!(ids(&events).is_subset(&stored_ids(app.state.store.as_ref()).await));
}

#[tokio::test]
async fn a_full_queue_makes_record_wait_and_drops_nothing() {
    let app = TestApp::new().await;
    let store = TestStore::new(app.state.store.clone());
    // Room for 10 queued events, plus the 5 of the batch stuck at the gate.
    let log = AuditLog::spawn(store.clone(), quick(10, 5));
    let events: Vec<AuditEvent> = (0..17).map(event).collect();
    timeout(Duration::from_secs(2), async {
        for e in &events[..15] {
            log.record(e.clone()).await;
        }
    })
    .await
    .expect("15 events fit");

    let waiting = tokio::spawn({
        let (log, e) = (log.clone(), events[15].clone());
        async move { log.record(e).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the 16th event waits for room");
    // A caller that gives up waiting (a client that hung up) loses nothing.
    let gave_up = timeout(Duration::from_millis(50), log.record(events[16].clone())).await;
    assert!(gave_up.is_err(), "the 17th event waits too");
    assert_eq!(log.pending(), 17);

    store.open();
    timeout(Duration::from_secs(5), waiting)
        .await
        .expect("room was made")
        .unwrap();
    let flushed = log.close(Duration::from_secs(10)).await;
    assert_eq!(flushed.unwritten, 0);
    assert!(ids(&events).is_subset(&stored_ids(app.state.store.as_ref()).await));
}

#[tokio::test]
async fn a_batch_is_retried_until_the_database_takes_it() {
    let app = TestApp::new().await;
    let store = TestStore::new(app.state.store.clone());
    store.open();
    store.unavailable_for.store(3, Ordering::SeqCst);
    let log = AuditLog::spawn(store.clone(), quick(100, 100));
    let events: Vec<AuditEvent> = (0..50).map(event).collect();
    for e in &events {
        log.record(e.clone()).await;
    }
    let flushed = log.close(Duration::from_secs(10)).await;
    assert_eq!(flushed.unwritten, 0);
    assert!(
        store.batch_writes.load(Ordering::SeqCst) >= 4,
        "three failures, then a write"
    );
    assert!(ids(&events).is_subset(&stored_ids(app.state.store.as_ref()).await));
}

#[tokio::test]
async fn an_event_the_database_refuses_does_not_hold_up_the_others() {
    let app = TestApp::new().await;
    let store = TestStore::new(app.state.store.clone());
    store.open();
    let log = AuditLog::spawn(store.clone(), quick(100, 100));
    let good: Vec<AuditEvent> = (0..80).map(event).collect();
    let mut bad = event(999);
    bad.action = "refused".into();
    for e in &good[..40] {
        log.record(e.clone()).await;
    }
    log.record(bad.clone()).await;
    for e in &good[40..] {
        log.record(e.clone()).await;
    }

    // Written while the log is still open, without the refused one.
    let written = timeout(Duration::from_secs(5), async {
        loop {
            let stored = stored_ids(app.state.store.as_ref()).await;
            if ids(&good).is_subset(&stored) {
                return stored;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the good events were written");
    assert!(!written.contains(&bad.id));
    assert_eq!(log.pending(), 1, "the refused event is kept");

    let flushed = log.close(Duration::from_secs(5)).await;
    assert_eq!(
        flushed.unwritten, 1,
        "still refused at shutdown, and counted"
    );
}

#[tokio::test]
async fn events_recorded_right_before_close_are_not_lost() {
    // The app's own log, with its default (100 ms) linger.
    let app = TestApp::new().await;
    let log = &app.state.audit_log;
    let events: Vec<AuditEvent> = (0..1_000).map(event).collect();
    for e in &events {
        log.record(e.clone()).await;
    }
    let flushed = log.close(Duration::from_secs(10)).await;
    assert_eq!(
        flushed,
        Flushed {
            written: 1_000,
            unwritten: 0
        }
    );
    assert!(ids(&events).is_subset(&stored_ids(app.state.store.as_ref()).await));

    // After closing, an event is written directly.
    let late = event(1_000);
    log.record(late.clone()).await;
    assert!(
        stored_ids(app.state.store.as_ref())
            .await
            .contains(&late.id)
    );
    assert_eq!(log.pending(), 0);
}
