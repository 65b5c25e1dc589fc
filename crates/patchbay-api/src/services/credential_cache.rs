//! Opened connections kept for a moment, so the hot paths (the proxy and
//! actions) do not read and decrypt a connection on every call.
//!
//! An entry lives at most the TTL (`PATCHBAY_CONNECTION_CACHE_TTL`, 2 s by
//! default; zero turns the cache off). Every change to a connection, to a
//! tenant's Connect platform or to a tenant is published on the invalidation
//! bus, which drops the entries it touches on this replica at once and on the
//! others as soon as they hear it (the TTL bounds it if they do not).
//!
//! A read racing a change must not put the old value back: each invalidation
//! bumps a generation, and a value read before the bump is not stored.
//! The cache holds at most `capacity` entries; when full, expired entries are
//! swept, and if none were, the whole map is dropped (a cold start, never
//! unbounded growth). Cached credentials are secrets held in memory for at
//! most the TTL, as they are during a call; a grant's refresh token is not
//! kept.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use patchbay_core::connection::Connection;
use patchbay_core::{ConnectionId, TenantId};

use super::credentials::{Credential, Grant, OpenedConnection, OpenedPlatform};
use super::invalidation::{Invalidation, InvalidationHandler};

/// What a call through a connection needs: the record (status, mode, version
/// pin) and the credential.
#[derive(Debug)]
pub struct HotConnection {
    /// The record as read.
    pub connection: Connection,
    /// What calls use.
    pub credential: Credential,
}

impl From<OpenedConnection> for HotConnection {
    fn from(opened: OpenedConnection) -> Self {
        let credential = match opened.credential {
            Credential::ApiKey(key) => Credential::ApiKey(key),
            Credential::ConnectGrant(grant) => Credential::ConnectGrant(Grant {
                platform: OpenedPlatform {
                    platform: grant.platform.platform,
                    key: grant.platform.key,
                },
                account: grant.account,
                refresh_token: None,
            }),
        };
        Self {
            connection: opened.connection,
            credential,
        }
    }
}

struct Entry {
    value: Arc<HotConnection>,
    until: Instant,
}

/// The cache. Cheap to share.
pub struct CredentialCache {
    ttl: Duration,
    capacity: usize,
    generation: AtomicU64,
    entries: RwLock<HashMap<(TenantId, ConnectionId), Entry>>,
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache")
            .field("ttl", &self.ttl)
            .field("entries", &self.entries.read().len())
            .finish()
    }
}

/// The generation a read started at; pass it back to [`CredentialCache::insert`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl CredentialCache {
    /// A cache keeping entries for `ttl` (zero: never), at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            generation: AtomicU64::new(0),
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// Whether the cache keeps anything.
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// A live entry, if any.
    pub fn get(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        now: Instant,
    ) -> Option<Arc<HotConnection>> {
        if !self.enabled() {
            return None;
        }
        let entries = self.entries.read();
        let entry = entries.get(&(tenant, id))?;
        (entry.until > now).then(|| entry.value.clone())
    }

    /// Taken before reading the connection.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    /// Keeps `value`, unless an invalidation happened since `ticket` was taken.
    pub fn insert(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        value: Arc<HotConnection>,
        ticket: Ticket,
        now: Instant,
    ) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.write();
        // Checked under the write lock: invalidations bump the generation
        // while holding it too, so a stale value can never slip in after one.
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&(tenant, id)) {
            entries.retain(|_, e| e.until > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(
            (tenant, id),
            Entry {
                value,
                until: now + self.ttl,
            },
        );
    }

    /// Drops one connection's entry.
    pub fn invalidate(&self, tenant: TenantId, id: ConnectionId) {
        let mut entries = self.entries.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(&(tenant, id));
    }

    /// Drops every entry of a tenant (its platform or the tenant changed).
    pub fn invalidate_tenant(&self, tenant: TenantId) {
        let mut entries = self.entries.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.retain(|(t, _), _| *t != tenant);
    }

    /// Drops everything (the invalidation feed was interrupted).
    pub fn clear(&self) {
        let mut entries = self.entries.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// Entries held, live or not.
    pub fn len(&self) -> usize {
        self.entries.read().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl InvalidationHandler for CredentialCache {
    fn invalidate(&self, what: &Invalidation) {
        match *what {
            Invalidation::Connection {
                tenant_id,
                connection_id,
            } => CredentialCache::invalidate(self, tenant_id, connection_id),
            Invalidation::Tenant { tenant_id } => self.invalidate_tenant(tenant_id),
            Invalidation::ApiKey { .. } => {}
        }
    }

    fn invalidate_all(&self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use patchbay_core::connection::{AccountDetails, AuthMethod, ConnectionStatus, Provider};
    use patchbay_core::time::now;
    use patchbay_stripe::StripeKey;
    use secrecy::SecretString;

    use super::*;

    fn hot(tenant: TenantId, id: ConnectionId) -> Arc<HotConnection> {
        let key = StripeKey::parse(SecretString::from("sk_test_cachecachecache1234")).unwrap();
        let at = now();
        Arc::new(HotConnection {
            connection: Connection {
                id,
                tenant_id: tenant,
                provider: Provider::Stripe,
                auth_method: AuthMethod::SecretKey,
                livemode: false,
                status: ConnectionStatus::Active,
                account: AccountDetails::default(),
                key_hint: "sk_test_…1234".into(),
                external_id: None,
                name: None,
                metadata: Default::default(),
                stripe_version: None,
                missing_permissions: Vec::new(),
                last_validated_at: None,
                last_error: None,
                previous_key_hint: None,
                previous_key_expires_at: None,
                grant: None,
                created_at: at,
                updated_at: at,
            },
            credential: Credential::ApiKey(key),
        })
    }

    #[test]
    fn keeps_for_the_ttl_then_forgets() {
        let cache = CredentialCache::new(Duration::from_secs(2), 10);
        let (t, c) = (TenantId::new(), ConnectionId::new());
        let now = Instant::now();
        cache.insert(t, c, hot(t, c), cache.ticket(), now);
        assert!(cache.get(t, c, now + Duration::from_millis(1999)).is_some());
        assert!(cache.get(t, c, now + Duration::from_secs(2)).is_none());
        assert!(
            cache.get(TenantId::new(), c, now).is_none(),
            "keyed by tenant too"
        );
    }

    #[test]
    fn a_read_older_than_an_invalidation_is_not_stored() {
        let cache = CredentialCache::new(Duration::from_secs(2), 10);
        let (t, c) = (TenantId::new(), ConnectionId::new());
        let now = Instant::now();
        let ticket = cache.ticket();
        cache.invalidate(t, c); // the connection changed while it was being read
        cache.insert(t, c, hot(t, c), ticket, now);
        assert!(cache.get(t, c, now).is_none());
        cache.insert(t, c, hot(t, c), cache.ticket(), now);
        assert!(cache.get(t, c, now).is_some());
    }

    #[test]
    fn invalidation_drops_one_or_a_whole_tenant() {
        let cache = CredentialCache::new(Duration::from_secs(2), 10);
        let (t, u) = (TenantId::new(), TenantId::new());
        let (a, b, x) = (
            ConnectionId::new(),
            ConnectionId::new(),
            ConnectionId::new(),
        );
        let now = Instant::now();
        for (tenant, id) in [(t, a), (t, b), (u, x)] {
            cache.insert(tenant, id, hot(tenant, id), cache.ticket(), now);
        }
        cache.invalidate(t, a);
        assert!(cache.get(t, a, now).is_none());
        assert!(cache.get(t, b, now).is_some());
        cache.invalidate_tenant(t);
        assert!(cache.get(t, b, now).is_none());
        assert!(cache.get(u, x, now).is_some(), "other tenants keep theirs");
    }

    #[test]
    fn bounded_and_off_when_the_ttl_is_zero() {
        let cache = CredentialCache::new(Duration::from_secs(2), 3);
        let t = TenantId::new();
        let now = Instant::now();
        for _ in 0..10 {
            let c = ConnectionId::new();
            cache.insert(t, c, hot(t, c), cache.ticket(), now);
            assert!(cache.len() <= 3);
        }
        let off = CredentialCache::new(Duration::ZERO, 3);
        let c = ConnectionId::new();
        off.insert(t, c, hot(t, c), off.ticket(), now);
        assert!(off.get(t, c, now).is_none() && off.is_empty());
    }
}
