//! `last_used_at` without a write per request: uses are collected in memory and
//! written in one batch every few seconds (and once more at shutdown).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use patchbay_core::{ApiKeyId, Store, StoreError, TenantId, Timestamp};

/// Pending last-use times.
pub struct UsageRecorder {
    store: Arc<dyn Store>,
    pending: Mutex<HashMap<ApiKeyId, (TenantId, Timestamp)>>,
}

impl std::fmt::Debug for UsageRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageRecorder")
            .field("pending", &self.pending.lock().len())
            .finish()
    }
}

impl UsageRecorder {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Notes a use; cheap.
    pub fn record(&self, tenant: TenantId, key: ApiKeyId, at: Timestamp) {
        self.pending.lock().insert(key, (tenant, at));
    }

    /// Writes what was noted since the last flush.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let batch: Vec<(TenantId, ApiKeyId, Timestamp)> = {
            let mut pending = self.pending.lock();
            pending.drain().map(|(k, (t, at))| (t, k, at)).collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        self.store.touch_api_keys(&batch).await?;
        Ok(batch.len())
    }
}
