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
use patchbay_core::sealed::{DataKeyRecord, MasterKeyCheck, Rewrap, SealedSecret};
use patchbay_core::store::{AuditFilter, NewConnection, SecretRotation, Updated};
use patchbay_core::tenant::{Tenant, TenantStatus};
use patchbay_core::time::{add_seconds, now};
use patchbay_core::{
    ApiKeyId, ConnectionId, DataKeyId, Metadata, PageRequest, Store, StoreError, TenantId,
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
            next_validation_at: add_seconds(now(), 3600),
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
            next_validation_at: add_seconds(at, 60),
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
    async fn due_validations_are_leased_once(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        let c = add_connection(s, a.id, &dk, None).await.unwrap();
        let t = now();
        // next_validation_at is an hour away: nothing is due now.
        assert!(
            s.system_claim_due_validations(t, add_seconds(t, 60), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let later = add_seconds(t, 7200);
        let claimed = s
            .system_claim_due_validations(later, add_seconds(later, 300), 10)
            .await
            .unwrap();
        assert_eq!(claimed, vec![(a.id, c.id)]);
        // Leased: another replica finds nothing until the lease ends.
        assert!(
            s.system_claim_due_validations(later, add_seconds(later, 300), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let after_lease = add_seconds(later, 301);
        assert_eq!(
            s.system_claim_due_validations(after_lease, add_seconds(after_lease, 300), 10)
                .await
                .unwrap()
                .len(),
            1
        );
        // Recording the outcome releases the lease and schedules the next look.
        let record = ValidationRecord {
            status: ConnectionStatus::Active,
            account: None,
            missing_permissions: vec![],
            validated_at: after_lease,
            last_error: None,
            next_validation_at: add_seconds(after_lease, 86_400),
        };
        s.record_validation(a.id, c.id, &record, None)
            .await
            .unwrap()
            .unwrap();
        assert!(
            s.system_claim_due_validations(
                add_seconds(after_lease, 400),
                add_seconds(after_lease, 700),
                10
            )
            .await
            .unwrap()
            .is_empty()
        );
    }
}

conformance! {
    async fn concurrent_claims_never_hand_out_a_connection_twice(b) {
        let s = b.store.clone();
        let (a, dk) = tenant(s.as_ref(), "a").await;
        for _ in 0..40 {
            add_connection(s.as_ref(), a.id, &dk, None).await.unwrap();
        }
        let at = add_seconds(now(), 7200);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = s
                        .system_claim_due_validations(at, add_seconds(at, 300), 3)
                        .await
                        .unwrap();
                    if got.is_empty() {
                        break mine;
                    }
                    mine.extend(got);
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
