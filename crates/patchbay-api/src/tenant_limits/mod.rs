//! A noisy tenant cannot starve the others: each tenant's requests to
//! Patchbay's API are rate-limited (GCRA, in process, per replica), and its
//! concurrent Stripe calls made on a request are bounded. The server's
//! defaults (`PATCHBAY_TENANT_RATE_LIMIT`, `PATCHBAY_TENANT_RATE_BURST`,
//! `PATCHBAY_TENANT_MAX_CONCURRENT_UPSTREAM`) apply unless the platform admin
//! set the tenant's own (`PATCH /api/v1/tenants/{id}` with `limits`).
//!
//! A tenant's limits are read from the store when it is first seen and again
//! after the key-cache lifetime; an admin update on this replica applies at
//! once. Tenants idle long enough that their state equals a fresh one are
//! forgotten, so memory follows the tenants active in the last minute.
//! Background jobs go through no route and are never counted.

mod gcra;
mod layers;
mod openapi;

use crate::services::invalidation::{Invalidation, InvalidationHandler};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use patchbay_core::tenant_limits::TenantLimits;
use patchbay_core::{Store, TenantId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

pub use gcra::{Decision, Rate};
pub use layers::{rate_limit, upstream_bound};
pub use openapi::TooManyRequests;

use crate::clock::Clock;
use crate::services::error::{ErrorKind, ServiceError};

/// The server's defaults and how the limiter behaves.
#[derive(Debug, Clone)]
pub struct TenantLimitSettings {
    /// Requests per second a tenant may send on average.
    pub requests_per_second: u32,
    /// Requests a tenant may send at once above that rate.
    pub burst: u32,
    /// Stripe calls a tenant's requests may make at once.
    pub max_concurrent_upstream: u32,
    /// How long a request waits for one of its tenant's Stripe slots before
    /// it is refused.
    pub upstream_wait: Duration,
}

impl Default for TenantLimitSettings {
    fn default() -> Self {
        Self {
            requests_per_second: 200,
            burst: 400,
            max_concurrent_upstream: 32,
            upstream_wait: Duration::from_secs(1),
        }
    }
}

/// A tenant's limits with the defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    /// The request rate.
    pub rate: Rate,
    /// Concurrent Stripe calls.
    pub max_concurrent_upstream: u32,
}

impl TenantLimitSettings {
    /// `limits` with every unset value taken from these defaults.
    pub fn effective(&self, limits: &TenantLimits) -> Effective {
        Effective {
            rate: Rate {
                per_second: limits
                    .requests_per_second
                    .unwrap_or(self.requests_per_second),
                burst: limits.burst.unwrap_or(self.burst),
            },
            max_concurrent_upstream: limits
                .max_concurrent_upstream
                .unwrap_or(self.max_concurrent_upstream),
        }
    }
}

/// How long a tenant stays tracked after its last request (at least; its
/// state must also equal a fresh one and no Stripe call may be running).
const IDLE: Duration = Duration::from_secs(60);
/// How often idle tenants are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

struct Entry {
    limits: Effective,
    /// When the limits were read; `None`: read them again.
    loaded_at: Option<Instant>,
    last_seen: Instant,
    gcra: gcra::Gcra,
    upstream: Arc<Semaphore>,
}

impl Entry {
    fn new(limits: Effective, now: Instant) -> Self {
        Self {
            limits,
            loaded_at: Some(now),
            last_seen: now,
            gcra: gcra::Gcra::new(now),
            upstream: Arc::new(Semaphore::new(slots(limits))),
        }
    }

    /// New limits keep the rate state; a new concurrency bound gets a new
    /// semaphore (calls holding the old one finish on it).
    fn reload(&mut self, limits: Effective, now: Instant) {
        if limits.max_concurrent_upstream != self.limits.max_concurrent_upstream {
            self.upstream = Arc::new(Semaphore::new(slots(limits)));
        }
        self.limits = limits;
        self.loaded_at = Some(now);
        self.last_seen = now;
    }

    fn idle(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) >= IDLE
            && self.gcra.is_full(now)
            && self.upstream.available_permits() == slots(self.limits)
    }
}

fn slots(limits: Effective) -> usize {
    usize::try_from(limits.max_concurrent_upstream).unwrap_or(usize::MAX)
}

struct Tracked {
    tenants: HashMap<TenantId, Entry>,
    last_sweep: Instant,
}

/// The request-rate verdict for one request, with what the headers say.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    /// The tenant's rate.
    pub rate: Rate,
    /// The decision.
    pub decision: Decision,
}

/// See the module documentation.
pub struct TenantLimiter {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: TenantLimitSettings,
    /// How long limits read from the store are used before reading again.
    ttl: Duration,
    tracked: Mutex<Tracked>,
}

impl std::fmt::Debug for TenantLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantLimiter")
            .field("settings", &self.settings)
            .field("tracked", &self.tracked.lock().tenants.len())
            .finish_non_exhaustive()
    }
}

impl TenantLimiter {
    /// A limiter reading tenants' limits from `store`, trusting them for `ttl`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: TenantLimitSettings,
        ttl: Duration,
    ) -> Self {
        let now = clock.instant();
        Self {
            store,
            clock,
            settings,
            ttl,
            tracked: Mutex::new(Tracked {
                tenants: HashMap::new(),
                last_sweep: now,
            }),
        }
    }

    /// How many tenants are tracked now.
    pub fn tracked(&self) -> usize {
        self.tracked.lock().tenants.len()
    }

    /// Forgets what was read of a tenant's limits (after an admin changed
    /// them): its next request reads them again. The rate state stays.
    pub fn invalidate(&self, tenant: TenantId) {
        if let Some(entry) = self.tracked.lock().tenants.get_mut(&tenant) {
            entry.loaded_at = None;
        }
    }

    /// Forgets what was read of every tenant's limits.
    fn invalidate_every_tenant(&self) {
        for entry in self.tracked.lock().tenants.values_mut() {
            entry.loaded_at = None;
        }
    }

    /// Decides one request of `tenant` and counts it if allowed.
    pub async fn check(&self, tenant: TenantId) -> Verdict {
        self.sweep();
        self.ensure_loaded(tenant).await;
        let now = self.clock.instant();
        let mut tracked = self.tracked.lock();
        let entry = tracked
            .tenants
            .entry(tenant)
            .or_insert_with(|| Entry::new(self.settings.effective(&TenantLimits::default()), now));
        entry.last_seen = now;
        let rate = entry.limits.rate;
        Verdict {
            rate,
            decision: entry.gcra.check(rate, now),
        }
    }

    /// One of the tenant's Stripe slots, held until the returned permit is
    /// dropped; refused with 429 `upstream_concurrency_exceeded` when none
    /// frees up within the configured wait.
    pub async fn upstream_slot(
        &self,
        tenant: TenantId,
    ) -> Result<OwnedSemaphorePermit, ServiceError> {
        self.ensure_loaded(tenant).await;
        let (semaphore, bound) = {
            let now = self.clock.instant();
            let mut tracked = self.tracked.lock();
            let entry = tracked.tenants.entry(tenant).or_insert_with(|| {
                Entry::new(self.settings.effective(&TenantLimits::default()), now)
            });
            entry.last_seen = now;
            (entry.upstream.clone(), entry.limits.max_concurrent_upstream)
        };
        if let Ok(permit) = semaphore.clone().try_acquire_owned() {
            return Ok(permit);
        }
        match tokio::time::timeout(self.settings.upstream_wait, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out (a closed semaphore cannot happen: none is ever closed).
            _ => Err(ServiceError::new(
                ErrorKind::RateLimited,
                "upstream_concurrency_exceeded",
                format!(
                    "This tenant already has {bound} Stripe calls in progress, its most at once; retry when some have finished."
                ),
            )
            .with_retry_after(1)),
        }
    }

    /// Reads the tenant's limits from the store unless they are fresh. A
    /// store that fails keeps what was read before (or the defaults): the
    /// limiter never fails a request itself.
    async fn ensure_loaded(&self, tenant: TenantId) {
        let now = self.clock.instant();
        if let Some(entry) = self.tracked.lock().tenants.get_mut(&tenant) {
            if entry
                .loaded_at
                .is_some_and(|at| now.saturating_duration_since(at) < self.ttl)
            {
                return;
            }
            // This request reads them; concurrent ones keep the limits they
            // have until it is done, instead of all reading at once.
            entry.loaded_at = Some(now);
        }
        let limits = match self.store.get_tenant(tenant).await {
            Ok(found) => found.map(|t| t.limits).unwrap_or_default(),
            Err(e) => {
                warn!(error = %e, %tenant, "tenant limits could not be read; keeping the last known");
                let mut tracked = self.tracked.lock();
                if let Some(entry) = tracked.tenants.get_mut(&tenant) {
                    entry.loaded_at = Some(now);
                }
                return;
            }
        };
        let limits = self.settings.effective(&limits);
        let now = self.clock.instant();
        let mut tracked = self.tracked.lock();
        match tracked.tenants.get_mut(&tenant) {
            Some(entry) => entry.reload(limits, now),
            None => {
                tracked.tenants.insert(tenant, Entry::new(limits, now));
            }
        }
    }

    /// Forgets idle tenants, at most every [`SWEEP_EVERY`].
    fn sweep(&self) {
        let now = self.clock.instant();
        let mut tracked = self.tracked.lock();
        if now.saturating_duration_since(tracked.last_sweep) < SWEEP_EVERY {
            return;
        }
        tracked.last_sweep = now;
        tracked.tenants.retain(|_, entry| !entry.idle(now));
    }
}

/// A tenant changed on some replica (its limits among what may have): read
/// its limits again. Fed by the invalidation bus.
impl InvalidationHandler for TenantLimiter {
    fn invalidate(&self, what: &Invalidation) {
        if let Invalidation::Tenant { tenant_id } = what {
            TenantLimiter::invalidate(self, *tenant_id);
        }
    }

    fn invalidate_all(&self) {
        self.invalidate_every_tenant();
    }
}
