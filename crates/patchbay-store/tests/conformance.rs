//! One conformance suite for every `Store` backend: each test runs as
//! `<name>::sqlite` against a fresh SQLite file and as `<name>::postgres`
//! against a fresh PostgreSQL schema (`TEST_DATABASE_URL`; under `CI=true` a
//! missing or silent PostgreSQL fails the test, elsewhere it is skipped).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use patchbay_core::api_key::{ApiKey, Scope, Scopes};
use patchbay_core::audit::{Actor, AuditEvent};
use patchbay_core::connection::{
    AccountDetails, AuthMethod, Connection, ConnectionDetails, ConnectionFilter, ConnectionStatus,
    LastError, Provider, ValidationRecord,
};
use patchbay_core::job::{ClaimRequest, JobOutcome, JobStatus, NewJob, kinds};
use patchbay_core::sealed::{DataKeyRecord, MasterKeyCheck, Rewrap, SealedSecret};
use patchbay_core::store::{AuditFilter, NewConnection, SecretRotation, Updated};
use patchbay_core::tenant::{Tenant, TenantStatus};
use patchbay_core::time::{add_seconds, now};
use patchbay_core::{
    ApiKeyId, ConnectionId, DataKeyId, Metadata, PageRequest, Store, StoreError, TenantId,
    Timestamp,
};
use patchbay_store::PoolSettings;

mod support {
    use super::*;

    /// A store under test and what to clean up afterwards.
    pub struct Backend {
        pub store: Arc<dyn Store>,
        _dir: Option<tempfile::TempDir>,
        pg: Option<(sqlx::PgPool, String)>,
    }

    impl Backend {
        pub async fn cleanup(self) {
            self.store.close().await;
            if let Some((admin, schema)) = self.pg {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&admin)
                    .await;
            }
        }
    }

    /// The PostgreSQL under test, checked once for this binary. Under `CI=true`
    /// an unset `TEST_DATABASE_URL` panics; a set one that does not answer
    /// panics everywhere; otherwise the PostgreSQL tests skip with one line.
    async fn postgres_url() -> Option<String> {
        static CHECKED: tokio::sync::OnceCell<Option<String>> = tokio::sync::OnceCell::const_new();
        CHECKED
            .get_or_init(|| async {
                let Some(url) = std::env::var("TEST_DATABASE_URL")
                    .ok()
                    .filter(|u| !u.is_empty())
                else {
                    assert!(
                        std::env::var("CI").as_deref() != Ok("true"),
                        "CI=true but TEST_DATABASE_URL is unset: the PostgreSQL tests must run"
                    );
                    // Straight to stderr: libtest would swallow eprintln! of a passing test.
                    let _ = writeln!(
                        std::io::stderr(),
                        "TEST_DATABASE_URL unset: skipping the PostgreSQL conformance tests"
                    );
                    return None;
                };
                let answer = tokio::time::timeout(Duration::from_secs(10), async {
                    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
                    sqlx::query("SELECT 1").execute(&mut conn).await?;
                    sqlx::Connection::close(conn).await
                })
                .await;
                match answer {
                    Ok(Ok(())) => Some(url),
                    Ok(Err(e)) => panic!("TEST_DATABASE_URL is set but PostgreSQL refused: {e}"),
                    Err(_) => {
                        panic!("TEST_DATABASE_URL is set but PostgreSQL did not answer in 10 s")
                    }
                }
            })
            .await
            .clone()
    }

    /// The PostgreSQL URL for tests that manage their own schema.
    pub async fn postgres_url_for_schema_test() -> Option<String> {
        postgres_url().await
    }

    /// The two engines of the suite.
    #[derive(Debug, Clone, Copy)]
    pub enum Engine {
        Sqlite,
        Postgres,
    }

    /// A fresh store of `engine`, or `None` when PostgreSQL is skipped here.
    pub async fn backend(engine: Engine) -> Option<Backend> {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                let store = patchbay_store::open(&url, &PoolSettings::default(), true)
                    .await
                    .expect("SQLite store opens");
                Some(Backend {
                    store,
                    _dir: Some(dir),
                    pg: None,
                })
            }
            Engine::Postgres => {
                let base = postgres_url().await?;
                let admin = sqlx::PgPool::connect(&base)
                    .await
                    .expect("TEST_DATABASE_URL is reachable");
                let schema = format!("conformance_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&admin)
                    .await
                    .unwrap();
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
                let store = patchbay_store::open(&url, &PoolSettings::default(), true)
                    .await
                    .expect("PostgreSQL store opens");
                Some(Backend {
                    store,
                    _dir: None,
                    pg: Some((admin, schema)),
                })
            }
        }
    }

    pub fn revalidation(tenant: TenantId, connection: ConnectionId, run_at: Timestamp) -> NewJob {
        NewJob::new(kinds::CONNECTION_REVALIDATE, connection.uuid(), run_at).for_tenant(tenant)
    }

    pub fn audit(tenant: Option<TenantId>, action: &str, target: &str) -> AuditEvent {
        AuditEvent::new(
            tenant,
            Actor::System,
            action,
            Some(target.to_owned()),
            serde_json::json!({"test": true}),
            Some("req_test".into()),
        )
    }

    pub fn data_key(tenant: TenantId, master: &str) -> DataKeyRecord {
        DataKeyRecord {
            id: DataKeyId::new(),
            tenant_id: tenant,
            master_key_id: master.into(),
            wrapped: uuid::Uuid::new_v4().as_bytes().to_vec(),
            created_at: now(),
        }
    }

    /// A tenant with its data key, stored.
    pub async fn tenant(store: &dyn Store, name: &str) -> (Tenant, DataKeyRecord) {
        let at = now();
        let t = Tenant {
            id: TenantId::new(),
            name: name.into(),
            status: TenantStatus::Active,
            metadata: Metadata::default(),
            created_at: at,
            updated_at: at,
        };
        let dk = data_key(t.id, "k1");
        store
            .create_tenant(
                &t,
                &dk,
                &audit(Some(t.id), "tenant.created", &t.id.to_string()),
            )
            .await
            .unwrap();
        (t, dk)
    }

    pub fn connection(tenant: TenantId, external_id: Option<&str>) -> Connection {
        let at = now();
        Connection {
            id: ConnectionId::new(),
            tenant_id: tenant,
            provider: Provider::Stripe,
            auth_method: AuthMethod::SecretKey,
            livemode: false,
            status: ConnectionStatus::Active,
            account: AccountDetails {
                stripe_account_id: Some("acct_1".into()),
                account_name: Some("Acme".into()),
                country: Some("US".into()),
                default_currency: Some("usd".into()),
            },
            key_hint: "sk_test_…4242".into(),
            external_id: external_id.map(Into::into),
            name: Some("Main".into()),
            metadata: Metadata::default(),
            stripe_version: None,
            missing_permissions: vec![],
            last_validated_at: Some(at),
            last_error: None,
            previous_key_hint: None,
            previous_key_expires_at: None,
            created_at: at,
            updated_at: at,
        }
    }

    pub async fn add_connection(
        store: &dyn Store,
        tenant: TenantId,
        dk: &DataKeyRecord,
        external_id: Option<&str>,
    ) -> Result<Connection, StoreError> {
        let c = connection(tenant, external_id);
        let new = NewConnection {
            connection: c.clone(),
            data_key_id: dk.id,
            secret: SealedSecret(vec![1, 2, 3]),
            jobs: vec![revalidation(tenant, c.id, add_seconds(now(), 3600))],
        };
        store
            .create_connection(
                &new,
                &audit(Some(tenant), "connection.created", &c.id.to_string()),
            )
            .await?;
        Ok(c)
    }

    pub fn api_key(tenant: TenantId, scopes: &[Scope]) -> ApiKey {
        ApiKey {
            id: ApiKeyId::new(),
            tenant_id: tenant,
            name: Some("k".into()),
            scopes: Scopes::new(scopes.to_vec()).unwrap(),
            hint: "pbk_0123…".into(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            created_at: now(),
        }
    }
}

use support::*;

/// One test per engine, each on a fresh database: `conformance! { async fn
/// name(b) { … } }` defines `name::sqlite` and `name::postgres` (the suffix is
/// what `.ci/run` counts), with `b: &Backend`.
macro_rules! conformance {
    (async fn $name:ident($b:ident) $body:block) => {
        mod $name {
            use super::*;

            async fn body($b: &Backend) $body

            async fn on(engine: Engine) {
                if let Some(b) = backend(engine).await {
                    body(&b).await;
                    b.cleanup().await;
                }
            }

            #[tokio::test]
            async fn sqlite() {
                on(Engine::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                on(Engine::Postgres).await;
            }
        }
    };
}

conformance! {
    async fn tenants_round_trip_and_page_both_ways(b) {
        let s = b.store.as_ref();
        let mut ids = Vec::new();
        for i in 0..25 {
            ids.push(tenant(s, &format!("t{i}")).await.0.id);
        }
        let newest_first: Vec<TenantId> = ids.iter().rev().copied().collect();

        let first = s
            .list_tenants(&PageRequest::new(Some(10), None, None).unwrap())
            .await
            .unwrap();
        assert_eq!(
            first.data.iter().map(|t| t.id).collect::<Vec<_>>(),
            newest_first[..10]
        );
        assert!(first.has_more);
        let last_id = first.data.last().unwrap().id;
        let second = s
            .list_tenants(&PageRequest::new(Some(10), Some(last_id), None).unwrap())
            .await
            .unwrap();
        assert_eq!(
            second.data.iter().map(|t| t.id).collect::<Vec<_>>(),
            newest_first[10..20]
        );
        let third = s
            .list_tenants(&PageRequest::new(Some(10), Some(second.data[9].id), None).unwrap())
            .await
            .unwrap();
        assert_eq!(third.data.len(), 5);
        assert!(!third.has_more);
        // Back from the third page: the ten before it, still newest first.
        let back = s
            .list_tenants(&PageRequest::new(Some(10), None, Some(third.data[0].id)).unwrap())
            .await
            .unwrap();
        assert_eq!(
            back.data.iter().map(|t| t.id).collect::<Vec<_>>(),
            newest_first[10..20]
        );
        assert!(back.has_more);

        let got = s.get_tenant(ids[3]).await.unwrap().unwrap();
        assert_eq!(got.name, "t3");
        assert!(s.get_tenant(TenantId::new()).await.unwrap().is_none());
    }
}

conformance! {
    async fn tenant_updates_are_compare_and_swap(b) {
        let s = b.store.as_ref();
        let (t, _) = tenant(s, "before").await;
        let mut changed = t.clone();
        changed.name = "after".into();
        changed.status = TenantStatus::Disabled;
        changed.metadata =
            Metadata::new([("plan".to_string(), "pro".to_string())].into(), "metadata").unwrap();
        changed.updated_at = add_seconds(t.updated_at, 1);
        let ev = audit(Some(t.id), "tenant.updated", &t.id.to_string());
        let Updated::Applied(stored) = s.update_tenant(&changed, t.updated_at, &ev).await.unwrap()
        else {
            panic!("update should apply");
        };
        assert_eq!(stored, changed);
        // A second writer that read the old version loses.
        let ev2 = audit(Some(t.id), "tenant.updated", &t.id.to_string());
        assert_eq!(
            s.update_tenant(&changed, t.updated_at, &ev2).await.unwrap(),
            Updated::Stale
        );
        let mut ghost = changed.clone();
        ghost.id = TenantId::new();
        assert_eq!(
            s.update_tenant(&ghost, t.updated_at, &ev2).await.unwrap(),
            Updated::NotFound
        );
        // Only the applied update was audited.
        let events = s
            .list_audit_events(
                Some(t.id),
                &AuditFilter {
                    action: Some("tenant.updated".into()),
                    target_id: None,
                },
                &PageRequest::first(10),
            )
            .await
            .unwrap();
        assert_eq!(events.data.len(), 1);
        assert_eq!(events.data[0].id, ev.id);
    }
}

conformance! {
    async fn deleting_a_tenant_shreds_its_data_key_and_everything_it_owns(b) {
        let s = b.store.as_ref();
        let (t, dk) = tenant(s, "doomed").await;
        let (other, other_dk) = tenant(s, "bystander").await;
        let c = add_connection(s, t.id, &dk, Some("x")).await.unwrap();
        let keep = add_connection(s, other.id, &other_dk, Some("x"))
            .await
            .unwrap();
        let key = api_key(t.id, &[Scope::Admin]);
        s.create_api_key(
            &key,
            "$argon2id$fake",
            &audit(Some(t.id), "api_key.created", "k"),
        )
        .await
        .unwrap();

        assert!(
            s.delete_tenant(t.id, &audit(None, "tenant.deleted", &t.id.to_string()))
                .await
                .unwrap()
        );
        assert!(s.get_tenant(t.id).await.unwrap().is_none());
        assert!(s.tenant_data_key(t.id).await.unwrap().is_none());
        assert!(s.get_connection(t.id, c.id).await.unwrap().is_none());
        assert!(s.find_api_key_credential(key.id).await.unwrap().is_none());
        let counts = s.data_key_counts().await.unwrap();
        assert_eq!(counts, vec![("k1".to_string(), 1)]);
        // The other tenant is untouched; the audit trail survives.
        assert!(s.get_connection(other.id, keep.id).await.unwrap().is_some());
        let trail = s
            .list_audit_events(Some(t.id), &AuditFilter::default(), &PageRequest::first(10))
            .await
            .unwrap();
        assert!(trail.data.iter().any(|e| e.action == "connection.created"));
        assert!(
            !s.delete_tenant(t.id, &audit(None, "tenant.deleted", "x"))
                .await
                .unwrap()
        );
    }
}

conformance! {
    async fn api_keys_are_scoped_to_their_tenant(b) {
        let s = b.store.as_ref();
        let (a, _) = tenant(s, "a").await;
        let (other, _) = tenant(s, "b").await;
        let key = api_key(a.id, &[Scope::ConnectionsRead, Scope::Proxy]);
        s.create_api_key(
            &key,
            "$argon2id$hash",
            &audit(Some(a.id), "api_key.created", "k"),
        )
        .await
        .unwrap();

        assert_eq!(s.get_api_key(a.id, key.id).await.unwrap().unwrap(), key);
        assert!(s.get_api_key(other.id, key.id).await.unwrap().is_none());
        assert!(
            s.list_api_keys(other.id, &PageRequest::first(10))
                .await
                .unwrap()
                .data
                .is_empty()
        );
        assert_eq!(
            s.list_api_keys(a.id, &PageRequest::first(10))
                .await
                .unwrap()
                .data,
            vec![key.clone()]
        );
        assert!(
            s.revoke_api_key(
                other.id,
                key.id,
                now(),
                &audit(Some(other.id), "api_key.revoked", "k")
            )
            .await
            .unwrap()
            .is_none()
        );

        let cred = s.find_api_key_credential(key.id).await.unwrap().unwrap();
        assert_eq!(cred.hash, "$argon2id$hash");
        assert_eq!(cred.tenant_status, TenantStatus::Active);

        // last_used_at only moves forward.
        let t1 = now();
        let t0 = add_seconds(t1, -60);
        s.touch_api_keys(&[(a.id, key.id, t1)]).await.unwrap();
        s.touch_api_keys(&[(a.id, key.id, t0), (other.id, key.id, add_seconds(t1, 60))])
            .await
            .unwrap();
        assert_eq!(
            s.get_api_key(a.id, key.id)
                .await
                .unwrap()
                .unwrap()
                .last_used_at,
            Some(t1)
        );

        let first = now();
        let revoked = s
            .revoke_api_key(
                a.id,
                key.id,
                first,
                &audit(Some(a.id), "api_key.revoked", "k"),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_at, Some(first));
        let again = s
            .revoke_api_key(
                a.id,
                key.id,
                add_seconds(first, 5),
                &audit(Some(a.id), "api_key.revoked", "k"),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            again.revoked_at,
            Some(first),
            "the first revocation time stays"
        );

        let mut disabled = a.clone();
        disabled.status = TenantStatus::Disabled;
        disabled.updated_at = add_seconds(a.updated_at, 1);
        s.update_tenant(
            &disabled,
            a.updated_at,
            &audit(Some(a.id), "tenant.updated", "t"),
        )
        .await
        .unwrap();
        let cred = s.find_api_key_credential(key.id).await.unwrap().unwrap();
        assert_eq!(cred.tenant_status, TenantStatus::Disabled);
    }
}

conformance! {
    async fn connections_are_isolated_filtered_and_paged(b) {
        let s = b.store.as_ref();
        let (a, dka) = tenant(s, "a").await;
        let (other, dkb) = tenant(s, "b").await;
        let mut created = Vec::new();
        for i in 0..12 {
            created.push(
                add_connection(s, a.id, &dka, Some(&format!("ext-{i}")))
                    .await
                    .unwrap(),
            );
        }
        let foreign = add_connection(s, other.id, &dkb, Some("ext-0"))
            .await
            .unwrap();

        let got = s
            .get_connection(a.id, created[0].id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, created[0]);
        assert!(
            s.get_connection(other.id, created[0].id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            s.get_connection_secrets(other.id, created[0].id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(s.get_connection(a.id, foreign.id).await.unwrap().is_none());
        assert_eq!(
            s.find_connection_by_external_id(a.id, "ext-3")
                .await
                .unwrap()
                .unwrap()
                .id,
            created[3].id
        );
        assert_eq!(
            s.find_connection_by_external_id(other.id, "ext-0")
                .await
                .unwrap()
                .unwrap()
                .id,
            foreign.id
        );

        let secrets = s
            .get_connection_secrets(a.id, created[1].id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(secrets.secret, SealedSecret(vec![1, 2, 3]));
        assert_eq!(secrets.data_key.id, dka.id);
        assert_eq!(secrets.data_key.wrapped, dka.wrapped);
        assert!(secrets.previous_secret.is_none());

        let page = s
            .list_connections(a.id, &ConnectionFilter::default(), &PageRequest::first(5))
            .await
            .unwrap();
        assert_eq!(page.data.len(), 5);
        assert!(page.has_more);
        assert_eq!(page.data[0].id, created[11].id);
        let by_ext = ConnectionFilter {
            external_id: Some("ext-4".into()),
            ..Default::default()
        };
        let page = s
            .list_connections(a.id, &by_ext, &PageRequest::first(10))
            .await
            .unwrap();
        assert_eq!(
            page.data.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![created[4].id]
        );
        let live = ConnectionFilter {
            livemode: Some(true),
            ..Default::default()
        };
        assert!(
            s.list_connections(a.id, &live, &PageRequest::first(10))
                .await
                .unwrap()
                .data
                .is_empty()
        );
        let invalid = ConnectionFilter {
            status: Some(ConnectionStatus::Invalid),
            ..Default::default()
        };
        assert!(
            s.list_connections(a.id, &invalid, &PageRequest::first(10))
                .await
                .unwrap()
                .data
                .is_empty()
        );
        let all_b = s
            .list_connections(
                other.id,
                &ConnectionFilter::default(),
                &PageRequest::first(100),
            )
            .await
            .unwrap();
        assert_eq!(all_b.data.len(), 1);

        assert!(
            !s.delete_connection(
                other.id,
                created[0].id,
                &audit(Some(other.id), "connection.deleted", "c")
            )
            .await
            .unwrap()
        );
        assert!(
            s.delete_connection(
                a.id,
                created[0].id,
                &audit(Some(a.id), "connection.deleted", "c")
            )
            .await
            .unwrap()
        );
        assert!(
            s.get_connection(a.id, created[0].id)
                .await
                .unwrap()
                .is_none()
        );
    }
}

conformance! {
    async fn duplicate_external_id_conflicts_and_leaves_nothing_behind(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        add_connection(s, a.id, &dk, Some("same")).await.unwrap();
        let err = add_connection(s, a.id, &dk, Some("same"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Conflict {
                    field: "external_id"
                }
            ),
            "{err:?}"
        );
        // Several connections without an external id are fine.
        add_connection(s, a.id, &dk, None).await.unwrap();
        add_connection(s, a.id, &dk, None).await.unwrap();
        let all = s
            .list_connections(a.id, &ConnectionFilter::default(), &PageRequest::first(100))
            .await
            .unwrap();
        assert_eq!(all.data.len(), 3);
        let created = s
            .list_audit_events(
                Some(a.id),
                &AuditFilter {
                    action: Some("connection.created".into()),
                    target_id: None,
                },
                &PageRequest::first(100),
            )
            .await
            .unwrap();
        assert_eq!(
            created.data.len(),
            3,
            "the failed insert wrote no audit event"
        );
    }
}

conformance! {
    async fn connection_details_validation_and_rotation(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        let (other, _) = tenant(s, "b").await;
        let c = add_connection(s, a.id, &dk, Some("one")).await.unwrap();
        let c2 = add_connection(s, a.id, &dk, Some("two")).await.unwrap();

        let details = ConnectionDetails {
            name: Some("Renamed".into()),
            metadata: Metadata::new([("k".to_string(), "v".to_string())].into(), "metadata")
                .unwrap(),
            external_id: Some("uno".into()),
            stripe_version: Some("2026-10-28.endive".into()),
        };
        let later = add_seconds(c.updated_at, 1);
        let ev = audit(Some(a.id), "connection.updated", "c");
        let Updated::Applied(updated) = s
            .update_connection_details(a.id, c.id, &details, c.updated_at, later, &ev)
            .await
            .unwrap()
        else {
            panic!("should apply")
        };
        assert_eq!(updated.details(), details);
        assert_eq!(updated.updated_at, later);
        assert_eq!(
            s.update_connection_details(a.id, c.id, &details, c.updated_at, later, &ev)
                .await
                .unwrap(),
            Updated::Stale
        );
        assert_eq!(
            s.update_connection_details(other.id, c.id, &details, later, later, &ev)
                .await
                .unwrap(),
            Updated::NotFound
        );
        let clash = ConnectionDetails {
            external_id: Some("two".into()),
            ..details.clone()
        };
        let err = s
            .update_connection_details(a.id, c.id, &clash, later, add_seconds(later, 1), &ev)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::Conflict {
                field: "external_id"
            }
        ));
        let _ = c2;

        // A test call that could not see the account keeps the stored details.
        let at = now();
        let record = ValidationRecord {
            status: ConnectionStatus::Invalid,
            account: None,
            missing_permissions: vec!["rak_balance_read".into()],
            validated_at: at,
            last_error: Some(LastError {
                code: "stripe_key_invalid".into(),
                message: "rejected".into(),
                stripe_request_id: Some("req_1".into()),
            }),
        };
        let v = s
            .record_validation(a.id, c.id, &record, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.status, ConnectionStatus::Invalid);
        assert_eq!(v.account.stripe_account_id.as_deref(), Some("acct_1"));
        assert_eq!(v.missing_permissions, vec!["rak_balance_read".to_string()]);
        assert_eq!(v.last_error, record.last_error);
        assert_eq!(v.last_validated_at, Some(at));
        assert!(
            s.record_validation(other.id, c.id, &record, None)
                .await
                .unwrap()
                .is_none()
        );
        let with_account = ValidationRecord {
            status: ConnectionStatus::Active,
            account: Some(AccountDetails {
                stripe_account_id: Some("acct_1".into()),
                account_name: None,
                country: None,
                default_currency: Some("eur".into()),
            }),
            last_error: None,
            ..record.clone()
        };
        let v = s
            .record_validation(a.id, c.id, &with_account, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.account, with_account.account.clone().unwrap());
        assert!(v.last_error.is_none());

        // Rotation keeping the previous key, then one destroying it.
        let expires = add_seconds(now(), 3600);
        let rotation = SecretRotation {
            auth_method: AuthMethod::RestrictedKey,
            key_hint: "rk_test_…9999".into(),
            data_key_id: dk.id,
            secret: SealedSecret(vec![9, 9, 9]),
            previous: Some((
                SealedSecret(vec![1, 2, 3, 4]),
                "sk_test_…4242".into(),
                expires,
            )),
            validation: with_account.clone(),
            updated_at: add_seconds(later, 5),
        };
        let ev = audit(Some(a.id), "connection.rotated", "c");
        assert!(
            s.rotate_connection_secret(other.id, c.id, &rotation, &ev)
                .await
                .unwrap()
                .is_none()
        );
        let r = s
            .rotate_connection_secret(a.id, c.id, &rotation, &ev)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.auth_method, AuthMethod::RestrictedKey);
        assert_eq!(r.key_hint, "rk_test_…9999");
        assert_eq!(r.previous_key_hint.as_deref(), Some("sk_test_…4242"));
        assert_eq!(r.previous_key_expires_at, Some(expires));
        let secrets = s.get_connection_secrets(a.id, c.id).await.unwrap().unwrap();
        assert_eq!(secrets.secret, SealedSecret(vec![9, 9, 9]));
        assert_eq!(
            secrets.previous_secret,
            Some(SealedSecret(vec![1, 2, 3, 4]))
        );

        // Expired previous keys are purged; unexpired ones stay.
        assert_eq!(
            s.system_purge_expired_previous_keys(now()).await.unwrap(),
            0
        );
        assert_eq!(
            s.system_purge_expired_previous_keys(add_seconds(expires, 1))
                .await
                .unwrap(),
            1
        );
        let secrets = s.get_connection_secrets(a.id, c.id).await.unwrap().unwrap();
        assert!(secrets.previous_secret.is_none());
        assert!(secrets.connection.previous_key_hint.is_none());

        let no_keep = SecretRotation {
            previous: None,
            ..rotation
        };
        let ev = audit(Some(a.id), "connection.rotated", "c");
        let r = s
            .rotate_connection_secret(a.id, c.id, &no_keep, &ev)
            .await
            .unwrap()
            .unwrap();
        assert!(r.previous_key_hint.is_none());
    }
}

conformance! {
    async fn keyring_material_checks_counts_and_rewraps(b) {
        let s = b.store.as_ref();
        let check = MasterKeyCheck {
            key_id: "k1".into(),
            check_value: vec![1, 2],
            created_at: now(),
        };
        s.insert_master_key_check(&check).await.unwrap();
        let again = MasterKeyCheck {
            check_value: vec![3, 4],
            ..check.clone()
        };
        s.insert_master_key_check(&again).await.unwrap();
        assert_eq!(s.master_key_checks().await.unwrap(), vec![check]);

        let mut keys = Vec::new();
        for _ in 0..7 {
            keys.push(tenant(s, "t").await.1);
        }
        assert_eq!(
            s.data_key_counts().await.unwrap(),
            vec![("k1".to_string(), 7)]
        );
        assert!(s.sample_data_key("k1").await.unwrap().is_some());
        assert!(s.sample_data_key("k9").await.unwrap().is_none());

        let first = s.system_data_keys_not_under("k2", None, 3).await.unwrap();
        assert_eq!(
            first.iter().map(|k| k.id).collect::<Vec<_>>(),
            keys[..3].iter().map(|k| k.id).collect::<Vec<_>>()
        );
        let next = s
            .system_data_keys_not_under("k2", Some(first[2].id), 100)
            .await
            .unwrap();
        assert_eq!(next.len(), 4);
        assert!(
            s.system_data_keys_not_under("k1", None, 100)
                .await
                .unwrap()
                .is_empty()
        );

        let rewraps: Vec<Rewrap> = first
            .iter()
            .map(|k| Rewrap {
                id: k.id,
                tenant_id: k.tenant_id,
                old_wrapped: k.wrapped.clone(),
                new_master_key_id: "k2".into(),
                new_wrapped: vec![7; 60],
            })
            .collect();
        assert_eq!(s.rewrap_data_keys(&rewraps).await.unwrap(), 3);
        // Applying the same re-wraps again changes nothing: the old wrapping is gone.
        assert_eq!(s.rewrap_data_keys(&rewraps).await.unwrap(), 0);
        // A re-wrap naming the wrong tenant is not applied.
        let wrong = Rewrap {
            tenant_id: TenantId::new(),
            old_wrapped: next[0].wrapped.clone(),
            ..rewraps[0].clone()
        };
        let wrong = Rewrap {
            id: next[0].id,
            ..wrong
        };
        assert_eq!(s.rewrap_data_keys(&[wrong]).await.unwrap(), 0);
        let mut counts = s.data_key_counts().await.unwrap();
        counts.sort();
        assert_eq!(counts, vec![("k1".to_string(), 4), ("k2".to_string(), 3)]);
        let moved = s
            .tenant_data_key(first[0].tenant_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(moved.master_key_id, "k2");
        assert_eq!(moved.wrapped, vec![7; 60]);
    }
}

conformance! {
    async fn audit_log_filters_and_scopes(b) {
        let s = b.store.as_ref();
        let (a, _) = tenant(s, "a").await;
        let (other, _) = tenant(s, "b").await;
        s.insert_audit_event(&audit(Some(a.id), "connection.validated", "conn_x"))
            .await
            .unwrap();
        s.insert_audit_event(&audit(None, "platform.thing", "x"))
            .await
            .unwrap();

        let mine = s
            .list_audit_events(
                Some(a.id),
                &AuditFilter::default(),
                &PageRequest::first(100),
            )
            .await
            .unwrap();
        assert_eq!(mine.data.len(), 2);
        assert_eq!(mine.data[0].action, "connection.validated", "newest first");
        assert!(mine.data.iter().all(|e| e.tenant_id == Some(a.id)));
        let theirs = s
            .list_audit_events(
                Some(other.id),
                &AuditFilter::default(),
                &PageRequest::first(100),
            )
            .await
            .unwrap();
        assert_eq!(theirs.data.len(), 1);
        let all = s
            .list_audit_events(None, &AuditFilter::default(), &PageRequest::first(100))
            .await
            .unwrap();
        assert_eq!(all.data.len(), 4);
        let by_target = AuditFilter {
            action: None,
            target_id: Some("conn_x".into()),
        };
        let hit = s
            .list_audit_events(Some(a.id), &by_target, &PageRequest::first(100))
            .await
            .unwrap();
        assert_eq!(hit.data.len(), 1);
        assert_eq!(hit.data[0].actor, Actor::System);
        assert_eq!(hit.data[0].request_id.as_deref(), Some("req_test"));
        assert_eq!(hit.data[0].details, serde_json::json!({"test": true}));
    }
}

conformance! {
    async fn ping_and_migrations_are_idempotent(b) {
        b.store.ping().await.unwrap();
        b.store.migrate().await.unwrap();
        b.store.migrate().await.unwrap();
    }
}

fn claim_at(owner: &str, at: Timestamp, lease_secs: i64, limit: u32) -> ClaimRequest {
    ClaimRequest {
        owner: owner.into(),
        now: at,
        lease_until: add_seconds(at, lease_secs),
        limit,
    }
}

conformance! {
    async fn jobs_are_claimed_under_a_lease_and_finished_only_by_its_holder(b) {
        let s = b.store.as_ref();
        let (a, _) = tenant(s, "a").await;
        let subject = uuid::Uuid::now_v7();
        let t = now();
        let job = NewJob::new("test.work", subject, add_seconds(t, 60))
            .for_tenant(a.id)
            .with_payload(serde_json::json!({"n": 1}));
        assert!(s.enqueue_job(&job).await.unwrap());
        // One pending job per kind and subject: a second enqueue is a no-op.
        let again = NewJob::new("test.work", subject, t);
        assert!(!s.enqueue_job(&again).await.unwrap());
        // Another kind about the same subject is its own job.
        assert!(
            s.enqueue_job(&NewJob::new("test.other", subject, add_seconds(t, 3600)))
                .await
                .unwrap()
        );

        // Not due yet.
        assert!(
            s.system_claim_jobs(&claim_at("w1", t, 30, 10))
                .await
                .unwrap()
                .is_empty()
        );
        let due = add_seconds(t, 61);
        let first = s
            .system_claim_jobs(&claim_at("w1", due, 30, 10))
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        let first = &first[0];
        assert_eq!(first.job.id, job.id);
        assert_eq!(first.job.kind, "test.work");
        assert_eq!(first.job.tenant_id, Some(a.id));
        assert_eq!(first.job.payload, serde_json::json!({"n": 1}));
        assert_eq!(first.job.status, JobStatus::Running);
        assert_eq!(first.job.attempts, 1);
        assert_eq!(first.job.lease_owner.as_deref(), Some("w1"));
        // Leased: another worker finds nothing until the lease expires.
        assert!(
            s.system_claim_jobs(&claim_at("w2", due, 30, 10))
                .await
                .unwrap()
                .is_empty()
        );

        // The lease expires (w1 died): w2 takes the job over with a new token.
        let expired = add_seconds(due, 31);
        let second = s
            .system_claim_jobs(&claim_at("w2", expired, 30, 10))
            .await
            .unwrap();
        assert_eq!(second.len(), 1);
        let second = &second[0];
        assert_eq!(second.job.id, job.id);
        assert_eq!(second.job.attempts, 2);
        assert_ne!(second.lease_token, first.lease_token);

        // w1 comes back late: its old token changes nothing.
        assert!(
            !s.finish_job(job.id, first.lease_token, &JobOutcome::Done, expired)
                .await
                .unwrap()
        );
        let stored = s
            .system_jobs_for_subject("test.work", subject)
            .await
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].status, JobStatus::Running);
        assert_eq!(stored[0].lease_owner.as_deref(), Some("w2"));

        // w2 fails: the job is queued again for later, with the error kept.
        let retry_at = add_seconds(expired, 120);
        let retry = JobOutcome::Retry {
            run_at: retry_at,
            error: "upstream down".into(),
        };
        assert!(
            s.finish_job(job.id, second.lease_token, &retry, expired)
                .await
                .unwrap()
        );
        // Finishing twice with the same token does nothing more.
        assert!(
            !s.finish_job(job.id, second.lease_token, &JobOutcome::Done, expired)
                .await
                .unwrap()
        );
        let stored = &s
            .system_jobs_for_subject("test.work", subject)
            .await
            .unwrap()[0];
        assert_eq!(stored.status, JobStatus::Queued);
        assert_eq!(stored.run_at, retry_at);
        assert_eq!(stored.last_error.as_deref(), Some("upstream down"));
        assert_eq!(stored.lease_owner, None);
        assert!(
            s.system_claim_jobs(&claim_at("w1", add_seconds(retry_at, -1), 30, 10))
                .await
                .unwrap()
                .is_empty()
        );

        // A recurring job is rescheduled with a fresh attempt count.
        let third = s
            .system_claim_jobs(&claim_at("w1", retry_at, 30, 10))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(third.job.attempts, 3);
        let next = add_seconds(retry_at, 86_400);
        assert!(
            s.finish_job(
                job.id,
                third.lease_token,
                &JobOutcome::Reschedule { run_at: next },
                retry_at
            )
            .await
            .unwrap()
        );
        let stored = &s
            .system_jobs_for_subject("test.work", subject)
            .await
            .unwrap()[0];
        assert_eq!(
            (stored.status, stored.attempts, stored.run_at),
            (JobStatus::Queued, 0, next)
        );
        assert_eq!(stored.last_error, None);

        // Done removes the job; the subject may then get a new one.
        // Claims take the oldest run_at first: the other kind's job, due earlier.
        let other = s
            .system_claim_jobs(&claim_at("w1", next, 30, 1))
            .await
            .unwrap();
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].job.kind, "test.other");
        let fourth = s
            .system_claim_jobs(&claim_at("w1", next, 30, 1))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(fourth.job.id, job.id);
        // Released unstarted (its worker is stopping): queued again at once,
        // the attempt not counted; the old token is then worthless.
        assert!(s.release_job(job.id, fourth.lease_token, next).await.unwrap());
        assert!(!s.release_job(job.id, fourth.lease_token, next).await.unwrap());
        let stored = &s.system_jobs_for_subject("test.work", subject).await.unwrap()[0];
        assert_eq!((stored.status, stored.attempts), (JobStatus::Queued, 0));
        let fourth = s
            .system_claim_jobs(&claim_at("w1", next, 30, 1))
            .await
            .unwrap()
            .remove(0);
        assert_eq!((fourth.job.id, fourth.job.attempts), (job.id, 1));
        assert!(
            s.finish_job(job.id, fourth.lease_token, &JobOutcome::Done, next)
                .await
                .unwrap()
        );
        assert!(
            s.system_jobs_for_subject("test.work", subject)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            s.enqueue_job(&NewJob::new("test.work", subject, next))
                .await
                .unwrap()
        );
    }
}

conformance! {
    async fn jobs_die_after_their_last_attempt_and_stay_for_inspection(b) {
        let s = b.store.as_ref();
        let t = now();
        let subject = uuid::Uuid::now_v7();
        let job = NewJob::new("test.flaky", subject, t).max_attempts(2);
        assert!(s.enqueue_job(&job).await.unwrap());
        let c1 = s
            .system_claim_jobs(&claim_at("w", t, 30, 10))
            .await
            .unwrap()
            .remove(0);
        let retry = JobOutcome::Retry {
            run_at: t,
            error: "no".into(),
        };
        assert!(
            s.finish_job(job.id, c1.lease_token, &retry, t)
                .await
                .unwrap()
        );
        let c2 = s
            .system_claim_jobs(&claim_at("w", t, 30, 10))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(c2.job.attempts, 2);
        assert!(
            s.finish_job(job.id, c2.lease_token, &retry, t)
                .await
                .unwrap()
        );
        let stored = &s
            .system_jobs_for_subject("test.flaky", subject)
            .await
            .unwrap()[0];
        assert_eq!(stored.status, JobStatus::Dead);
        assert_eq!(stored.last_error.as_deref(), Some("no"));
        assert!(
            s.system_claim_jobs(&claim_at("w", add_seconds(t, 9999), 30, 10))
                .await
                .unwrap()
                .is_empty()
        );
        // A dead job does not block a new one for the same subject.
        assert!(
            s.enqueue_job(&NewJob::new("test.flaky", subject, t))
                .await
                .unwrap()
        );

        // A job whose worker keeps dying on the last attempt is buried, not
        // claimed forever.
        let crashy = NewJob::new("test.crashy", subject, t).max_attempts(1);
        assert!(s.enqueue_job(&crashy).await.unwrap());
        let claimed = s
            .system_claim_jobs(&claim_at("w", t, 30, 10))
            .await
            .unwrap();
        assert!(claimed.iter().any(|c| c.job.id == crashy.id));
        let after = add_seconds(t, 31);
        let reclaimed = s
            .system_claim_jobs(&claim_at("w", after, 30, 10))
            .await
            .unwrap();
        assert!(reclaimed.iter().all(|c| c.job.id != crashy.id));
        let stored = &s
            .system_jobs_for_subject("test.crashy", subject)
            .await
            .unwrap()[0];
        assert_eq!(stored.status, JobStatus::Dead);
        assert!(
            stored
                .last_error
                .as_deref()
                .unwrap()
                .contains("lease expired")
        );
    }
}

conformance! {
    async fn concurrent_claims_never_hand_out_a_job_twice(b) {
        let s = b.store.clone();
        let t = now();
        for _ in 0..40 {
            s.enqueue_job(&NewJob::new("test.parallel", uuid::Uuid::now_v7(), t))
                .await
                .unwrap();
        }
        let mut tasks = Vec::new();
        for w in 0..4 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = s
                        .system_claim_jobs(&claim_at(&format!("w{w}"), t, 300, 3))
                        .await
                        .unwrap();
                    if got.is_empty() {
                        break mine;
                    }
                    mine.extend(got.into_iter().map(|c| c.job.id));
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(n, 40);
        assert_eq!(all.len(), 40);
    }
}

conformance! {
    async fn a_connection_and_its_revalidation_job_are_written_together(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        let c = add_connection(s, a.id, &dk, Some("ext-1")).await.unwrap();
        let jobs = s
            .system_jobs_for_subject(kinds::CONNECTION_REVALIDATE, c.id.uuid())
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].tenant_id, Some(a.id));
        // A creation that fails (external id taken) leaves no job behind.
        let clash = connection(a.id, Some("ext-1"));
        let new = NewConnection {
            connection: clash.clone(),
            data_key_id: dk.id,
            secret: SealedSecret(vec![1]),
            jobs: vec![revalidation(a.id, clash.id, now())],
        };
        let err = s
            .create_connection(&new, &audit(Some(a.id), "connection.created", "x"))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::Conflict {
                field: "external_id"
            }
        ));
        assert!(
            s.system_jobs_for_subject(kinds::CONNECTION_REVALIDATE, clash.id.uuid())
                .await
                .unwrap()
                .is_empty()
        );
        // Deleting the tenant takes its jobs with it.
        s.delete_tenant(a.id, &audit(None, "tenant.deleted", "a"))
            .await
            .unwrap();
        assert!(
            s.system_jobs_for_subject(kinds::CONNECTION_REVALIDATE, c.id.uuid())
                .await
                .unwrap()
                .is_empty()
        );
    }
}

/// The two migration folders define the same tables, columns and indexes
/// (names, columns, uniqueness), read back from the migrated databases.
#[tokio::test]
async fn the_migration_folders_define_the_same_schema_on_sqlite_and_postgres() {
    use std::collections::BTreeSet;
    type Schema = (
        BTreeSet<(String, String)>,
        BTreeSet<(String, String, String, bool)>,
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.db");
    let url = format!("sqlite://{}", path.display());
    patchbay_store::open(&url, &PoolSettings::default(), true)
        .await
        .unwrap()
        .close()
        .await;
    let lite = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut sqlite: Schema = Default::default();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&lite)
    .await
    .unwrap();
    for (table,) in &tables {
        let cols: Vec<(String,)> = sqlx::query_as("SELECT name FROM pragma_table_info($1)")
            .bind(table)
            .fetch_all(&lite)
            .await
            .unwrap();
        for (col,) in cols {
            sqlite.0.insert((table.clone(), col));
        }
        let indexes: Vec<(String, bool, String)> =
            sqlx::query_as("SELECT name, \"unique\", origin FROM pragma_index_list($1)")
                .bind(table)
                .fetch_all(&lite)
                .await
                .unwrap();
        for (index, unique, origin) in indexes {
            if origin == "pk" {
                continue;
            }
            let cols: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(&lite)
                    .await
                    .unwrap();
            let cols = cols.into_iter().map(|c| c.0).collect::<Vec<_>>().join(",");
            sqlite.1.insert((table.clone(), index, cols, unique));
        }
    }
    lite.close().await;
    assert!(
        sqlite
            .0
            .contains(&("jobs".to_string(), "lease_token".to_string()))
    );
    assert!(
        !sqlite
            .0
            .contains(&("connections".to_string(), "next_validation_at".to_string()))
    );

    let Some(base) = support::postgres_url_for_schema_test().await else {
        return;
    };
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    let schema = format!("schema_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    patchbay_store::open(
        &format!("{base}{sep}options=-csearch_path%3D{schema}"),
        &PoolSettings::default(),
        true,
    )
    .await
    .unwrap()
    .close()
    .await;
    let mut pg: Schema = Default::default();
    let cols: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name <> '_sqlx_migrations'",
    )
    .bind(&schema)
    .fetch_all(&admin)
    .await
    .unwrap();
    pg.0.extend(cols);
    let indexes: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT t.relname::text, i.relname::text, \
           array_to_string(ARRAY(SELECT a.attname::text FROM unnest(x.indkey) WITH ORDINALITY k(n, o) \
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n ORDER BY k.o), ','), \
           x.indisunique \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = $1 AND NOT x.indisprimary AND t.relname <> '_sqlx_migrations'",
    )
    .bind(&schema)
    .fetch_all(&admin)
    .await
    .unwrap();
    pg.1.extend(indexes);
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await;
    assert_eq!(
        sqlite.0, pg.0,
        "tables and columns differ between the dialects"
    );
    assert_eq!(sqlite.1, pg.1, "indexes differ between the dialects");
}
