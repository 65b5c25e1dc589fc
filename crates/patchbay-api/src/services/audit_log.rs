//! The audit log of high-volume calls (the raw proxy, typed actions), written
//! off the request path. [`AuditLog::record`] puts the event in a bounded
//! in-memory queue and returns; one writer task takes events out in batches
//! and stores each batch in one transaction
//! ([`AuditStore::insert_audit_events`]).
//!
//! Nothing is dropped while the process lives:
//! - a full queue makes `record` wait for room (backpressure), never drop;
//! - a batch the database cannot take (unreachable, locked) is retried with
//!   backoff until it is written;
//! - a batch it refuses for another reason is halved until the refused events
//!   are found; those are kept aside and retried later, so one bad event
//!   never holds up the rest;
//! - [`AuditLog::close`], on graceful shutdown, stops taking events and
//!   writes everything queued before it returns (within the caller's timeout).
//!
//! Only a killed process loses what is queued. Logs carry counts and database
//! errors, never an event's contents.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge};
use patchbay_core::StoreError;
use patchbay_core::audit::AuditEvent;
use patchbay_core::store::AuditStore;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, warn};

/// How the audit log queues and writes.
#[derive(Debug, Clone)]
pub struct AuditLogSettings {
    /// Events queued before `record` waits for room.
    pub capacity: usize,
    /// Most events written in one transaction.
    pub max_batch: usize,
    /// How long the writer gathers events after the first of a batch.
    pub linger: Duration,
    /// The first wait before a batch is retried; it doubles on each failure.
    pub initial_backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
    /// How often events the database refused are tried again.
    pub refused_retry: Duration,
}

impl Default for AuditLogSettings {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            max_batch: 500,
            linger: Duration::from_millis(100),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            refused_retry: Duration::from_secs(30),
        }
    }
}

/// What [`AuditLog::close`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Events written while closing.
    pub written: u64,
    /// Events still unwritten when it returned: the timeout passed, or the
    /// database refused them.
    pub unwritten: usize,
}

/// The audit log's handle; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

struct Shared {
    queue: mpsc::Sender<AuditEvent>,
    /// Writes events recorded after the writer stopped.
    store: Arc<dyn AuditStore>,
    counts: Arc<Counts>,
    closing: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

/// Events accepted and not yet written, and events written, with their metrics.
struct Counts {
    pending: AtomicUsize,
    written: AtomicU64,
    pending_gauge: Gauge,
    written_counter: Counter,
}

impl Counts {
    fn accepted(&self) {
        let now = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
        self.pending_gauge.set(now as f64);
    }

    /// `n` accepted events that left the log, written or not.
    fn left(&self, n: usize) {
        let now = self.pending.fetch_sub(n, Ordering::Relaxed) - n;
        self.pending_gauge.set(now as f64);
    }

    fn written(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        self.written_counter.increment(n as u64);
        self.left(n);
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer task on the current tokio runtime (panics outside one).
    pub fn spawn(store: Arc<dyn AuditStore>, settings: AuditLogSettings) -> Self {
        let settings = AuditLogSettings {
            capacity: settings.capacity.max(1),
            max_batch: settings.max_batch.max(1),
            ..settings
        };
        let (queue, received) = mpsc::channel(settings.capacity);
        let (closing, closing_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        let counts = Arc::new(Counts {
            pending: AtomicUsize::new(0),
            written: AtomicU64::new(0),
            pending_gauge: metrics::gauge!("patchbay_audit_pending"),
            written_counter: metrics::counter!("patchbay_audit_written_total"),
        });
        let writer = Writer {
            store: store.clone(),
            settings,
            counts: counts.clone(),
            refused: Vec::new(),
            retry_refused_at: None,
        };
        tokio::spawn(writer.run(received, closing_rx, done_tx));
        Self {
            shared: Arc::new(Shared {
                queue,
                store,
                counts,
                closing,
                done,
            }),
        }
    }

    /// Queues `event` for writing; never touches the database while the log
    /// is open. Waits only while the queue is full. A caller dropped while
    /// waiting (a client that hung up) does not lose the event: it waits in a
    /// task of its own. Once the log is closed, the event is written directly.
    pub async fn record(&self, event: AuditEvent) {
        self.shared.counts.accepted();
        match self.shared.queue.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                let shared = self.shared.clone();
                let _ = tokio::spawn(async move { shared.send(event).await }).await;
            }
            Err(mpsc::error::TrySendError::Closed(event)) => self.shared.write_now(event).await,
        }
    }

    /// Events accepted and not yet written.
    pub fn pending(&self) -> usize {
        self.shared.counts.pending.load(Ordering::Relaxed)
    }

    /// Stops taking events into the queue, writes every queued one and
    /// returns when done or when `timeout` passes (the writer then keeps
    /// trying for as long as the runtime runs). Events recorded afterwards are
    /// written directly. Calling it again waits again.
    pub async fn close(&self, timeout: Duration) -> Flushed {
        let written_before = self.shared.counts.written.load(Ordering::Relaxed);
        let _ = self.shared.closing.send(true);
        let mut done = self.shared.done.clone();
        // An error means the writer is gone: nothing more will be written.
        let _ = tokio::time::timeout(timeout, done.wait_for(|d| *d)).await;
        Flushed {
            written: self.shared.counts.written.load(Ordering::Relaxed) - written_before,
            unwritten: self.pending(),
        }
    }
}

impl Shared {
    async fn send(&self, event: AuditEvent) {
        if let Err(mpsc::error::SendError(event)) = self.queue.send(event).await {
            self.write_now(event).await;
        }
    }

    /// Writes an event that came after the writer stopped.
    async fn write_now(&self, event: AuditEvent) {
        match self
            .store
            .insert_audit_events(std::slice::from_ref(&event))
            .await
        {
            Ok(()) => self.counts.written(1),
            Err(e) => {
                self.counts.left(1);
                error!(error = %e, "an audit event recorded after the audit log closed was not written");
            }
        }
    }
}

/// The task that writes queued events.
struct Writer {
    store: Arc<dyn AuditStore>,
    settings: AuditLogSettings,
    counts: Arc<Counts>,
    /// Events the database refused on their own, tried again from time to time.
    refused: Vec<AuditEvent>,
    retry_refused_at: Option<Instant>,
}

impl Writer {
    async fn run(
        mut self,
        mut queue: mpsc::Receiver<AuditEvent>,
        mut closing: watch::Receiver<bool>,
        done: watch::Sender<bool>,
    ) {
        let max = self.settings.max_batch;
        let mut batch = Vec::with_capacity(max);
        loop {
            let retry_at = self.retry_refused_at;
            tokio::select! {
                biased;
                // Closing, or every handle is gone.
                () = closed(&mut closing) => break,
                received = queue.recv_many(&mut batch, max) => {
                    if received == 0 {
                        break; // every handle is gone
                    }
                }
                () = sleep_until(retry_at), if retry_at.is_some() => {
                    self.retry_refused().await;
                    continue;
                }
            }
            self.fill(&mut queue, &mut batch).await;
            self.write(std::mem::replace(&mut batch, Vec::with_capacity(max)))
                .await;
        }
        queue.close();
        while queue.recv_many(&mut batch, max).await > 0 {
            self.write(std::mem::take(&mut batch)).await;
        }
        self.retry_refused().await;
        if !self.refused.is_empty() {
            error!(
                events = self.refused.len(),
                "audit events the database refused were not written before shutdown"
            );
        }
        let _ = done.send(true);
    }

    /// Adds what arrives within the linger time, up to a full batch.
    async fn fill(&self, queue: &mut mpsc::Receiver<AuditEvent>, batch: &mut Vec<AuditEvent>) {
        let deadline = Instant::now() + self.settings.linger;
        while batch.len() < self.settings.max_batch {
            let room = self.settings.max_batch - batch.len();
            match tokio::time::timeout_at(deadline, queue.recv_many(batch, room)).await {
                Ok(received) if received > 0 => {}
                _ => break,
            }
        }
    }

    /// Writes `events`, retrying with backoff while the database is
    /// unavailable; a batch refused for another reason is halved, and an event
    /// refused on its own is set aside.
    async fn write(&mut self, events: Vec<AuditEvent>) {
        let mut parts = vec![events];
        let mut backoff = self.settings.initial_backoff;
        while let Some(mut part) = parts.pop() {
            match self.store.insert_audit_events(&part).await {
                Ok(()) => {
                    self.counts.written(part.len());
                    backoff = self.settings.initial_backoff;
                }
                Err(StoreError::Unavailable(reason)) => {
                    warn!(
                        events = part.len(),
                        error = %reason,
                        retry_in = ?backoff,
                        "audit events not written: database unavailable; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                    parts.push(part);
                }
                Err(e) if part.len() > 1 => {
                    warn!(
                        events = part.len(),
                        error = %e,
                        "audit batch refused; writing it in halves to find the events at fault"
                    );
                    let second = part.split_off(part.len() / 2);
                    parts.push(second);
                    parts.push(part);
                }
                Err(e) => {
                    error!(
                        error = %e,
                        retry_in = ?self.settings.refused_retry,
                        "the database refused an audit event; it is kept and tried again later"
                    );
                    self.refused.append(&mut part);
                    self.retry_refused_at
                        .get_or_insert_with(|| Instant::now() + self.settings.refused_retry);
                }
            }
        }
    }

    async fn retry_refused(&mut self) {
        self.retry_refused_at = None;
        let refused = std::mem::take(&mut self.refused);
        if !refused.is_empty() {
            self.write(refused).await;
        }
    }
}

/// Returns once closing is asked for, or every handle is gone.
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
