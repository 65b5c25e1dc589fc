//! Group commit for delivery attempts: the deliveries running at once hand
//! their outcomes to one writer task, which records whatever has queued in
//! one transaction and answers each. A burst of deliveries then costs one
//! commit per batch instead of one per delivery (SQLite has a single writer;
//! PostgreSQL pays a round trip per statement and a flush per commit).

use std::sync::Arc;

use patchbay_core::Store;
use patchbay_core::StoreError;
use patchbay_core::time::now;
use patchbay_core::webhook::AttemptWrite;
use tokio::sync::{mpsc, oneshot};

/// Most attempts recorded in one transaction.
const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<Result<bool, StoreError>>;

/// Hands attempts to the writer task.
#[derive(Debug, Clone)]
pub struct DeliveryRecorder(mpsc::Sender<(AttemptWrite, Reply)>);

impl DeliveryRecorder {
    /// Starts the writer task (inside a tokio runtime). It ends when every
    /// handle is dropped, after answering what was queued.
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(AttemptWrite, Reply)>(MAX_BATCH * 4);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (writes, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                match store.record_delivery_attempts(&writes, now()).await {
                    Ok(applied) => {
                        for (reply, ok) in replies.into_iter().zip(applied) {
                            let _ = reply.send(Ok(ok));
                        }
                    }
                    Err(e) => {
                        let message = e.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
                        }
                    }
                }
            }
        });
        Self(tx)
    }

    /// Records one attempt with its job's outcome; true if the lease still
    /// held (see [`patchbay_core::store::EventStore::record_delivery_attempts`]).
    pub async fn record(&self, write: AttemptWrite) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send((write, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the delivery recorder has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the delivery recorder has stopped".into()))?
    }
}
