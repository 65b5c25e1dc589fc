//! Master-key rotation: re-wrap every data key that is not under the primary key.
//!
//! Safe to run while servers serve (they hold every configured key, so a data
//! key opens before and after its re-wrap), from several processes at once (each
//! re-wrap is a compare-and-swap on the old wrapping), and again after a crash
//! (progress is the data itself: whatever is still under an old key is found
//! again). Each batch commits in one transaction.

use patchbay_core::DataKeyId;
use patchbay_core::store::KeyringStore;

use crate::{Keyring, VaultError};

/// How many records each master key id protects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    /// Master key id.
    pub key_id: String,
    /// Data keys it wraps.
    pub data_keys: u64,
    /// Whether the keyring has it.
    pub configured: bool,
    /// Whether it is the primary.
    pub primary: bool,
}

/// Per key id usage, configured keys first (primary first), then unknown ids.
pub async fn key_usage(
    keyring: &Keyring,
    store: &dyn KeyringStore,
) -> Result<Vec<KeyUsage>, patchbay_core::StoreError> {
    let counts = store.data_key_counts().await?;
    let count_of = |id: &str| counts.iter().find(|(k, _)| k == id).map_or(0, |(_, n)| *n);
    let mut usage: Vec<KeyUsage> = keyring
        .key_ids()
        .into_iter()
        .enumerate()
        .map(|(i, id)| KeyUsage {
            key_id: id.to_owned(),
            data_keys: count_of(id),
            configured: true,
            primary: i == 0,
        })
        .collect();
    for (id, n) in &counts {
        if !keyring.has_key(id) {
            usage.push(KeyUsage {
                key_id: id.clone(),
                data_keys: *n,
                configured: false,
                primary: false,
            });
        }
    }
    Ok(usage)
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Records examined.
    pub examined: u64,
    /// Records re-wrapped by this batch (the rest were done concurrently by someone else).
    pub rewrapped: u64,
}

/// Passes over the data keys before giving up on records that keep appearing
/// under old keys (a replica still configured with an old primary keeps writing them).
const MAX_PASSES: u32 = 20;

/// A rotation in progress. Call [`Rotation::next_batch`] until it returns `None`.
pub struct Rotation<'a> {
    keyring: &'a Keyring,
    store: &'a dyn KeyringStore,
    batch_size: u32,
    after: Option<DataKeyId>,
    found_in_pass: bool,
    passes: u32,
}

impl std::fmt::Debug for Rotation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation")
            .field("primary", &self.keyring.primary_id())
            .field("batch_size", &self.batch_size)
            .field("after", &self.after)
            .field("passes", &self.passes)
            .finish()
    }
}

/// Why a rotation stopped.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// A record could not be opened with the configured keys.
    #[error("cannot re-wrap data key {id}: {source}")]
    Vault {
        /// The data key.
        id: DataKeyId,
        /// Why.
        source: VaultError,
    },
    /// The database failed; rerunning resumes where this stopped.
    #[error(transparent)]
    Store(#[from] patchbay_core::StoreError),
    /// Records under old keys kept appearing.
    #[error(
        "data keys under old master keys keep appearing after {MAX_PASSES} passes: a server still runs with an old primary key; \
         give every server the new PATCHBAY_MASTER_KEYS and run the rotation again"
    )]
    NotConverging,
}

impl<'a> Rotation<'a> {
    /// Prepares a rotation to `keyring`'s primary key.
    pub fn new(keyring: &'a Keyring, store: &'a dyn KeyringStore, batch_size: u32) -> Self {
        Self {
            keyring,
            store,
            batch_size: batch_size.max(1),
            after: None,
            found_in_pass: false,
            passes: 0,
        }
    }

    /// How many records are not yet under the primary key.
    pub async fn remaining(&self) -> Result<u64, patchbay_core::StoreError> {
        let primary = self.keyring.primary_id();
        Ok(self
            .store
            .data_key_counts()
            .await?
            .into_iter()
            .filter(|(id, _)| id != primary)
            .map(|(_, n)| n)
            .sum())
    }

    /// Re-wraps the next batch in one transaction. `None` when a whole pass found
    /// nothing left to do.
    pub async fn next_batch(&mut self) -> Result<Option<BatchOutcome>, RotationError> {
        loop {
            let batch = self
                .store
                .system_data_keys_not_under(self.keyring.primary_id(), self.after, self.batch_size)
                .await?;
            let Some(last) = batch.last() else {
                // End of a pass. Done if it found nothing; otherwise look again for
                // records written meanwhile.
                if !self.found_in_pass {
                    return Ok(None);
                }
                self.passes += 1;
                if self.passes >= MAX_PASSES {
                    return Err(RotationError::NotConverging);
                }
                self.after = None;
                self.found_in_pass = false;
                continue;
            };
            self.after = Some(last.id);
            self.found_in_pass = true;
            let rewraps = batch
                .iter()
                .map(|record| {
                    self.keyring
                        .rewrap(record)
                        .map_err(|source| RotationError::Vault {
                            id: record.id,
                            source,
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let rewrapped = self.store.rewrap_data_keys(&rewraps).await?;
            return Ok(Some(BatchOutcome {
                examined: batch.len() as u64,
                rewrapped,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The rotation invariant, checked by proptest against an in-memory store: after
    //! any interleaving of writes (from replicas with the old or the new primary)
    //! and rotation batches, every secret opens and equals what was written, and a
    //! finished rotation leaves nothing under an old key.

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use patchbay_core::sealed::{DataKeyRecord, MasterKeyCheck, Rewrap, SealedSecret};
    use patchbay_core::store::{KeyringStore, StoreResult};
    use patchbay_core::{DataKeyId, TenantId};
    use proptest::prelude::*;
    use secrecy::{ExposeSecret, SecretString};

    use super::*;
    use crate::{SecretContext, generate_master_key};

    #[derive(Default)]
    struct MemoryStore {
        keys: Mutex<BTreeMap<DataKeyId, DataKeyRecord>>,
    }

    #[async_trait]
    impl KeyringStore for MemoryStore {
        async fn master_key_checks(&self) -> StoreResult<Vec<MasterKeyCheck>> {
            Ok(vec![])
        }
        async fn insert_master_key_check(&self, _: &MasterKeyCheck) -> StoreResult<()> {
            Ok(())
        }
        async fn data_key_counts(&self) -> StoreResult<Vec<(String, u64)>> {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for r in self.keys.lock().unwrap().values() {
                *counts.entry(r.master_key_id.clone()).or_default() += 1;
            }
            Ok(counts.into_iter().collect())
        }
        async fn sample_data_key(&self, id: &str) -> StoreResult<Option<DataKeyRecord>> {
            let keys = self.keys.lock().unwrap();
            Ok(keys.values().find(|r| r.master_key_id == id).cloned())
        }
        async fn system_data_keys_not_under(
            &self,
            primary: &str,
            after: Option<DataKeyId>,
            limit: u32,
        ) -> StoreResult<Vec<DataKeyRecord>> {
            let keys = self.keys.lock().unwrap();
            Ok(keys
                .values()
                .filter(|r| r.master_key_id != primary && after.is_none_or(|a| r.id > a))
                .take(limit as usize)
                .cloned()
                .collect())
        }
        async fn rewrap_data_keys(&self, rewraps: &[Rewrap]) -> StoreResult<u64> {
            let mut keys = self.keys.lock().unwrap();
            let mut applied = 0;
            for rw in rewraps {
                if let Some(r) = keys.get_mut(&rw.id)
                    && r.wrapped == rw.old_wrapped
                    && r.tenant_id == rw.tenant_id
                {
                    r.wrapped = rw.new_wrapped.clone();
                    r.master_key_id = rw.new_master_key_id.clone();
                    applied += 1;
                }
            }
            Ok(applied)
        }
    }

    /// Drives a future whose store never waits (the in-memory store is synchronous).
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A write by a replica still configured with the old primary.
        WriteOld(Vec<u8>),
        /// A write by a replica with the new keyring.
        WriteNew(Vec<u8>),
        /// One rotation batch.
        Batch,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Op::WriteOld),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Op::WriteNew),
            Just(Op::Batch),
        ]
    }

    fn spec(a: &SecretString, b: &SecretString) -> SecretString {
        SecretString::from(format!("{},{}", a.expose_secret(), b.expose_secret()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn seal_open_round_trip(
            plaintext in proptest::collection::vec(any::<u8>(), 0..512),
            record in "[a-z_0-9]{1,40}",
            field in "[a-z_]{1,20}",
        ) {
            let ring = Keyring::parse(&generate_master_key("k1").unwrap()).unwrap();
            let tenant = TenantId::new();
            let (_, key) = ring.new_data_key(tenant).unwrap();
            let ctx = SecretContext { tenant, record: &record, field: &field };
            let sealed = key.seal_bytes(ctx, &plaintext).unwrap();
            prop_assert_eq!(&key.open_bytes(ctx, &sealed).unwrap()[..], &plaintext[..]);
        }

        #[test]
        fn rotation_keeps_every_secret(ops in proptest::collection::vec(op(), 1..60), batch in 1u32..5) {
            let k1 = generate_master_key("k1").unwrap();
            let k2 = generate_master_key("k2").unwrap();
            let old = Keyring::parse(&k1).unwrap();
            let new = Keyring::parse(&spec(&k2, &k1)).unwrap();
            let store = MemoryStore::default();
            let mut written: Vec<(TenantId, SealedSecret, Vec<u8>)> = Vec::new();
            let mut rotation = Rotation::new(&new, &store, batch);

            let write = |ring: &Keyring, plaintext: &[u8], written: &mut Vec<_>| {
                let tenant = TenantId::new();
                let (record, key) = ring.new_data_key(tenant).unwrap();
                let ctx = SecretContext { tenant, record: "conn_x", field: "api_key" };
                let sealed = key.seal_bytes(ctx, plaintext).unwrap();
                store.keys.lock().unwrap().insert(record.id, record);
                written.push((tenant, sealed, plaintext.to_vec()));
            };

            for op in &ops {
                match op {
                    Op::WriteOld(p) => write(&old, p, &mut written),
                    Op::WriteNew(p) => write(&new, p, &mut written),
                    Op::Batch => { block_on(rotation.next_batch()).unwrap(); }
                }
                // Readers hold both keys: every secret opens at every step.
                for (tenant, sealed, plaintext) in &written {
                    let keys = store.keys.lock().unwrap();
                    let record = keys.values().find(|r| r.tenant_id == *tenant).unwrap();
                    let key = new.open_data_key(record).unwrap();
                    let ctx = SecretContext { tenant: *tenant, record: "conn_x", field: "api_key" };
                    prop_assert_eq!(&key.open_bytes(ctx, sealed).unwrap()[..], &plaintext[..]);
                }
            }

            // Finish the rotation, then drop the old key entirely.
            let mut finish = Rotation::new(&new, &store, batch);
            while block_on(finish.next_batch()).unwrap().is_some() {}
            prop_assert_eq!(block_on(finish.remaining()).unwrap(), 0);
            let only_new = Keyring::parse(&k2).unwrap();
            for (tenant, sealed, plaintext) in &written {
                let keys = store.keys.lock().unwrap();
                let record = keys.values().find(|r| r.tenant_id == *tenant).unwrap();
                prop_assert_eq!(&record.master_key_id, "k2");
                let key = only_new.open_data_key(record).unwrap();
                let ctx = SecretContext { tenant: *tenant, record: "conn_x", field: "api_key" };
                prop_assert_eq!(&key.open_bytes(ctx, sealed).unwrap()[..], &plaintext[..]);
            }
        }
    }

    #[test]
    fn two_rotations_at_once_never_clobber_each_other() {
        let k1 = generate_master_key("k1").unwrap();
        let k2 = generate_master_key("k2").unwrap();
        let old = Keyring::parse(&k1).unwrap();
        let new = Keyring::parse(&spec(&k2, &k1)).unwrap();
        let store = MemoryStore::default();
        for _ in 0..10 {
            let (record, _) = old.new_data_key(TenantId::new()).unwrap();
            store.keys.lock().unwrap().insert(record.id, record);
        }
        let mut a = Rotation::new(&new, &store, 3);
        let mut b = Rotation::new(&new, &store, 3);
        let mut applied = 0;
        loop {
            let x = block_on(a.next_batch()).unwrap();
            let y = block_on(b.next_batch()).unwrap();
            applied += x.map_or(0, |o| o.rewrapped) + y.map_or(0, |o| o.rewrapped);
            if x.is_none() && y.is_none() {
                break;
            }
        }
        assert_eq!(applied, 10, "each record re-wrapped exactly once");
        assert_eq!(block_on(a.remaining()).unwrap(), 0);
    }
}
