//! Master-key rotation of 100,000 sealed records while a reader keeps opening
//! secrets and checking them against what was written.
//! `cargo bench -p patchbay --bench rotation` (set TEST_DATABASE_URL for PostgreSQL;
//! BENCH_RECORDS to change the count).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use patchbay_core::audit::{Actor, AuditEvent};
use patchbay_core::connect::{ConnectionSecret, SecretRole};
use patchbay_core::connection::{
    AccountDetails, AuthMethod, Connection, ConnectionStatus, Provider,
};
use patchbay_core::store::NewConnection;
use patchbay_core::tenant::{Tenant, TenantStatus};
use patchbay_core::time::now;
use patchbay_core::{ConnectionId, Metadata, Store, TenantId};
use patchbay_vault::rotation::Rotation;
use patchbay_vault::{Keyring, SecretContext, generate_master_key, verify_keyring_against_store};
use secrecy::{ExposeSecret, SecretString};

fn secret_of(i: usize) -> String {
    format!("sk_test_51Hbench{i:08}abcdefghijklmnopqrstuv")
}

async fn seed(
    store: &Arc<dyn Store>,
    keyring: &Arc<Keyring>,
    n: usize,
) -> Vec<(TenantId, ConnectionId)> {
    let ids: Vec<(TenantId, ConnectionId)> = (0..n)
        .map(|_| (TenantId::new(), ConnectionId::new()))
        .collect();
    let ids = Arc::new(ids);
    common::run_concurrently(n, 16, |i| {
        let store = store.clone();
        let keyring = keyring.clone();
        let ids = ids.clone();
        async move {
            let (tenant_id, conn_id) = ids[i];
            let at = now();
            let tenant = Tenant {
                id: tenant_id,
                name: format!("t{i}"),
                status: TenantStatus::Active,
                metadata: Metadata::default(),
                limits: Default::default(),
                created_at: at,
                updated_at: at,
            };
            let (record, key) = keyring.new_data_key(tenant_id).unwrap();
            let audit = AuditEvent::new(
                Some(tenant_id),
                Actor::System,
                "tenant.created",
                None,
                serde_json::json!({}),
                None,
            );
            store.create_tenant(&tenant, &record, &audit).await.unwrap();
            let id_text = conn_id.to_string();
            let ctx = SecretContext {
                tenant: tenant_id,
                record: &id_text,
                field: "api_key",
            };
            let sealed = key.seal(ctx, &SecretString::from(secret_of(i))).unwrap();
            let connection = Connection {
                id: conn_id,
                tenant_id,
                provider: Provider::Stripe,
                auth_method: AuthMethod::SecretKey,
                livemode: false,
                status: ConnectionStatus::Pending,
                account: AccountDetails::default(),
                key_hint: "sk_test_…".into(),
                external_id: None,
                name: None,
                metadata: Metadata::default(),
                stripe_version: None,
                missing_permissions: vec![],
                last_validated_at: None,
                last_error: None,
                previous_key_hint: None,
                previous_key_expires_at: None,
                grant: None,
                created_at: at,
                updated_at: at,
            };
            let new = NewConnection {
                connection,
                data_key_id: record.id,
                secrets: vec![ConnectionSecret::new(SecretRole::ApiKey, sealed)],
                jobs: Vec::new(),
                session: None,
            };
            let audit = AuditEvent::new(
                Some(tenant_id),
                Actor::System,
                "connection.created",
                None,
                serde_json::json!({}),
                None,
            );
            store.create_connection(&new, &audit).await.unwrap();
        }
    })
    .await;
    Arc::try_unwrap(ids).unwrap()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!("rotation of {n} sealed records (one tenant data key + one sealed key each)");
    for backend in common::Backend::all().await {
        let store = backend.store.clone();
        let k1 = generate_master_key("k1").unwrap();
        let k2 = generate_master_key("k2").unwrap();
        let old = Arc::new(Keyring::parse(&k1).unwrap());
        verify_keyring_against_store(&old, store.as_ref())
            .await
            .unwrap();
        let t = Instant::now();
        let ids = Arc::new(seed(&store, &old, n).await);
        println!(
            "[{}] seeded in {:.1}s",
            backend.name,
            t.elapsed().as_secs_f64()
        );

        let both = Arc::new(
            Keyring::parse(&SecretString::from(format!(
                "{},{}",
                k2.expose_secret(),
                k1.expose_secret()
            )))
            .unwrap(),
        );
        verify_keyring_against_store(&both, store.as_ref())
            .await
            .unwrap();

        // The reader: open random secrets and compare them with what was written.
        let stop = Arc::new(AtomicBool::new(false));
        let (reads, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let reader = tokio::spawn({
            let (store, both, ids, stop, reads, errors) = (
                store.clone(),
                both.clone(),
                ids.clone(),
                stop.clone(),
                reads.clone(),
                errors.clone(),
            );
            async move {
                let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x % ids.len() as u64) as usize;
                    let (tenant, conn) = ids[i];
                    let ok = match store.get_connection_secrets(tenant, conn).await {
                        Ok(Some(s)) => both
                            .open_data_key(&s.data_key)
                            .ok()
                            .and_then(|k| {
                                let id = conn.to_string();
                                k.open(
                                    SecretContext {
                                        tenant,
                                        record: &id,
                                        field: "api_key",
                                    },
                                    s.secret(SecretRole::ApiKey)?,
                                )
                                .ok()
                            })
                            .is_some_and(|secret| secret.expose_secret() == secret_of(i)),
                        _ => false,
                    };
                    reads.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });

        let started = Instant::now();
        let mut rotation = Rotation::new(&both, store.as_ref(), 500);
        let mut rewrapped = 0;
        while let Some(batch) = rotation.next_batch().await.unwrap() {
            rewrapped += batch.rewrapped;
        }
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        reader.await.unwrap();
        let remaining = rotation.remaining().await.unwrap();
        println!(
            "[{}] rotated {rewrapped} data keys in {:.2}s ({:.0}/s); {remaining} left under k1; concurrent reader: {} reads, {} errors",
            backend.name,
            elapsed.as_secs_f64(),
            rewrapped as f64 / elapsed.as_secs_f64(),
            reads.load(Ordering::Relaxed),
            errors.load(Ordering::Relaxed),
        );
        assert_eq!(
            errors.load(Ordering::Relaxed),
            0,
            "the reader saw a wrong or unreadable secret"
        );
        assert_eq!(remaining, 0);
        backend.finish().await;
    }
}
