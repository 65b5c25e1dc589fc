//! One conformance suite for every `Store` backend: each test runs as
//! `<name>::sqlite` against a fresh SQLite file and as `<name>::postgres`
//! against a fresh PostgreSQL schema (`TEST_DATABASE_URL`; under `CI=true` a
//! missing or silent PostgreSQL fails the test, elsewhere it is skipped).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use patchbay_core::api_key::{ApiKey, Scope, Scopes};
use patchbay_core::audit::{Actor, AuditEvent};
use patchbay_core::connect::{
    ConnectionSecret, GrantInfo, GrantScope, OAuthState, PlatformDeletion, SecretRole, SessionUse,
    StripePlatform,
};
use patchbay_core::connection::{
    AccountDetails, AuthMethod, Connection, ConnectionDetails, ConnectionFilter, ConnectionStatus,
    LastError, Provider, ValidationRecord,
};
use patchbay_core::job::{ClaimRequest, JobOutcome, JobStatus, NewJob, kinds};
use patchbay_core::sealed::{DataKeyRecord, MasterKeyCheck, Rewrap, SealedSecret};
use patchbay_core::store::{
    AuditFilter, GrantUpdate, NewConnection, RefreshLease, SecretRotation, Updated,
};
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
        dir: Option<tempfile::TempDir>,
        pg: Option<(sqlx::PgPool, String)>,
    }

    impl Backend {
        /// How many rows of `table` have `column` = `id`, read straight from
        /// the database (what no port method can show: rows left behind).
        pub async fn rows(&self, table: &str, column: &str, id: uuid::Uuid) -> i64 {
            let (n,): (i64,) = if let Some((admin, schema)) = &self.pg {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM {schema}.{table} WHERE {column} = $1"
                )))
                .bind(id)
                .fetch_one(admin)
                .await
                .unwrap()
            } else {
                let path = self.dir.as_ref().unwrap().path().join("test.db");
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                let n = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM {table} WHERE {column} = $1"
                )))
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
                pool.close().await;
                n
            };
            n
        }

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
                    dir: Some(dir),
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
                    dir: None,
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
            limits: Default::default(),
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
            grant: None,
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
            secrets: vec![api_key_secret(&[1, 2, 3])],
            jobs: vec![revalidation(tenant, c.id, add_seconds(now(), 3600))],
            session: None,
        };
        store
            .create_connection(
                &new,
                &audit(Some(tenant), "connection.created", &c.id.to_string()),
            )
            .await?;
        Ok(c)
    }

    /// An API key secret, kept until replaced.
    pub fn api_key_secret(bytes: &[u8]) -> ConnectionSecret {
        ConnectionSecret::new(SecretRole::ApiKey, SealedSecret(bytes.to_vec()))
    }

    /// A sealed secret of `role`.
    pub fn sealed(role: SecretRole, bytes: &[u8]) -> ConnectionSecret {
        ConnectionSecret::new(role, SealedSecret(bytes.to_vec()))
    }

    /// A connect session's use, expiring at `expires_at`.
    pub fn session(expires_at: Timestamp) -> SessionUse {
        SessionUse {
            session_id: uuid::Uuid::new_v4(),
            expires_at,
        }
    }

    /// A Connect grant connection record (not stored).
    pub fn oauth_connection(
        tenant: TenantId,
        livemode: bool,
        client_id: &str,
        external_id: Option<&str>,
    ) -> Connection {
        Connection {
            auth_method: AuthMethod::Oauth,
            livemode,
            key_hint: "access_…aaaa".into(),
            account: AccountDetails {
                stripe_account_id: Some("acct_connected".into()),
                account_name: Some("Connected".into()),
                country: Some("FR".into()),
                default_currency: Some("eur".into()),
            },
            grant: Some(GrantInfo {
                client_id: client_id.into(),
                scope: GrantScope::ReadWrite,
                refreshed_at: None,
            }),
            ..connection(tenant, external_id)
        }
    }

    /// Stores a Connect grant connection with access token `[1]` and refresh token `[2]`.
    pub async fn add_oauth_connection(
        store: &dyn Store,
        tenant: TenantId,
        dk: &DataKeyRecord,
        livemode: bool,
        client_id: &str,
    ) -> Connection {
        let c = oauth_connection(tenant, livemode, client_id, None);
        let new = NewConnection {
            connection: c.clone(),
            data_key_id: dk.id,
            secrets: vec![
                sealed(SecretRole::AccessToken, &[1]),
                sealed(SecretRole::RefreshToken, &[2]),
            ],
            jobs: vec![],
            session: None,
        };
        store
            .create_connection(
                &new,
                &audit(Some(tenant), "connection.created", &c.id.to_string()),
            )
            .await
            .unwrap();
        c
    }

    /// A platform of `tenant` in one mode (not stored).
    pub fn platform(tenant: TenantId, livemode: bool, client_id: &str) -> StripePlatform {
        let at = now();
        StripePlatform {
            tenant_id: tenant,
            livemode,
            client_id: client_id.into(),
            key_hint: if livemode {
                "sk_live_…1111"
            } else {
                "sk_test_…1111"
            }
            .into(),
            platform_account_id: Some("acct_platform".into()),
            redirect_uris: vec!["https://app.example/callback".into()],
            scope: GrantScope::ReadWrite,
            created_at: at,
            updated_at: at,
        }
    }

    /// Stores `p` with the sealed key `bytes`.
    pub async fn put_platform(
        store: &dyn Store,
        p: &StripePlatform,
        dk: &DataKeyRecord,
        bytes: &[u8],
    ) -> Result<StripePlatform, StoreError> {
        store
            .put_stripe_platform(
                p,
                dk.id,
                &SealedSecret(bytes.to_vec()),
                &audit(Some(p.tenant_id), "stripe_platform.updated", "p"),
            )
            .await
    }

    /// A pending OAuth flow of `tenant`.
    pub fn oauth_state(
        tenant: TenantId,
        hash: &str,
        expires_at: Timestamp,
        session: Option<SessionUse>,
    ) -> OAuthState {
        OAuthState {
            state_hash: hash.into(),
            tenant_id: tenant,
            livemode: false,
            external_id: Some("end-user-1".into()),
            redirect_uri: "https://app.example/callback".into(),
            return_to: Some("https://app.example/done".into()),
            scope: GrantScope::ReadOnly,
            session,
            created_at: add_seconds(expires_at, -600),
            expires_at,
        }
    }

    /// How many audit events of `tenant` have `action`.
    pub async fn audited(store: &dyn Store, tenant: TenantId, action: &str) -> usize {
        store
            .list_audit_events(
                Some(tenant),
                &AuditFilter {
                    action: Some(action.into()),
                    target_id: None,
                },
                &PageRequest::first(100),
            )
            .await
            .unwrap()
            .data
            .len()
    }

    pub fn api_key(tenant: TenantId, scopes: &[Scope]) -> ApiKey {
        ApiKey {
            id: ApiKeyId::new(),
            tenant_id: tenant,
            name: Some("k".into()),
            scopes: Scopes::new(scopes.to_vec()).unwrap(),
            hint: "pbk_0123…".into(),
            connection_id: None,
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
        changed.limits = patchbay_core::tenant_limits::TenantLimits {
            requests_per_second: Some(7),
            burst: None,
            max_concurrent_upstream: Some(u32::MAX),
        };
        changed.updated_at = add_seconds(t.updated_at, 1);
        let ev = audit(Some(t.id), "tenant.updated", &t.id.to_string());
        let Updated::Applied(stored) = s.update_tenant(&changed, t.updated_at, &ev).await.unwrap()
        else {
            panic!("update should apply");
        };
        assert_eq!(stored, changed);
        assert_eq!(s.get_tenant(t.id).await.unwrap().unwrap().limits, changed.limits);
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
        assert_eq!(
            secrets.secret(SecretRole::ApiKey),
            Some(&SealedSecret(vec![1, 2, 3]))
        );
        assert_eq!(secrets.data_key.id, dka.id);
        assert_eq!(secrets.data_key.wrapped, dka.wrapped);
        assert_eq!(secrets.secrets, vec![api_key_secret(&[1, 2, 3])]);
        assert!(secrets.secret(SecretRole::PreviousApiKey).is_none());

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
        assert_eq!(
            secrets.secret(SecretRole::ApiKey),
            Some(&SealedSecret(vec![9, 9, 9]))
        );
        assert_eq!(
            secrets.secret(SecretRole::PreviousApiKey),
            Some(&SealedSecret(vec![1, 2, 3, 4]))
        );
        let previous = secrets
            .secrets
            .iter()
            .find(|s| s.role == SecretRole::PreviousApiKey)
            .unwrap();
        assert_eq!(previous.expires_at, Some(expires));
        assert_eq!(secrets.secrets.len(), 2);

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
        assert!(secrets.secret(SecretRole::PreviousApiKey).is_none());
        assert!(secrets.connection.previous_key_hint.is_none());
        assert!(secrets.connection.previous_key_expires_at.is_none());
        assert_eq!(
            secrets.secret(SecretRole::ApiKey),
            Some(&SealedSecret(vec![9, 9, 9])),
            "the purge leaves the current key alone"
        );

        // Keep a previous key again, then rotate without keeping: it is destroyed.
        let ev = audit(Some(a.id), "connection.rotated", "c");
        s.rotate_connection_secret(a.id, c.id, &rotation, &ev)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.rows("connection_secrets", "connection_id", c.id.uuid()).await, 2);
        let no_keep = SecretRotation {
            previous: None,
            secret: SealedSecret(vec![8, 8]),
            ..rotation
        };
        let ev = audit(Some(a.id), "connection.rotated", "c");
        let r = s
            .rotate_connection_secret(a.id, c.id, &no_keep, &ev)
            .await
            .unwrap()
            .unwrap();
        assert!(r.previous_key_hint.is_none());
        assert!(r.previous_key_expires_at.is_none());
        let secrets = s.get_connection_secrets(a.id, c.id).await.unwrap().unwrap();
        assert_eq!(secrets.secrets, vec![api_key_secret(&[8, 8])]);
        assert_eq!(b.rows("connection_secrets", "connection_id", c.id.uuid()).await, 1);
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
        kinds: patchbay_core::job::KindFilter::All,
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
            secrets: vec![api_key_secret(&[1])],
            jobs: vec![revalidation(a.id, clash.id, now())],
            session: None,
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
        assert_eq!(
            b.rows("connection_secrets", "connection_id", clash.id.uuid()).await,
            0,
            "nor any secret row"
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

/// A test call that proved the credential, with the account it saw.
fn proved(at: Timestamp, account: Option<AccountDetails>) -> ValidationRecord {
    ValidationRecord {
        status: ConnectionStatus::Active,
        account,
        missing_permissions: vec![],
        validated_at: at,
        last_error: None,
    }
}

/// A key rotation to `new`, keeping the replaced key `previous` until `expires` if given.
fn rotation(
    dk: &DataKeyRecord,
    new: &[u8],
    previous: Option<(&[u8], Timestamp)>,
    at: Timestamp,
) -> SecretRotation {
    SecretRotation {
        auth_method: AuthMethod::SecretKey,
        key_hint: "sk_test_…5555".into(),
        data_key_id: dk.id,
        secret: SealedSecret(new.to_vec()),
        previous: previous.map(|(bytes, expires)| {
            (
                SealedSecret(bytes.to_vec()),
                "sk_test_…4242".into(),
                expires,
            )
        }),
        validation: proved(at, None),
        updated_at: at,
    }
}

/// New grant tokens, applied at `at` under `lease` (or a re-link with `None`).
fn grant_update(
    dk: &DataKeyRecord,
    secrets: Vec<ConnectionSecret>,
    hint: &str,
    at: Timestamp,
    lease: Option<uuid::Uuid>,
) -> GrantUpdate {
    GrantUpdate {
        data_key_id: dk.id,
        secrets,
        key_hint: hint.into(),
        scope: GrantScope::ReadWrite,
        validation: None,
        refreshed_at: at,
        updated_at: at,
        lease_token: lease,
        session: None,
    }
}

/// A connection's secrets as (role, bytes, expiry), sorted by role.
async fn stored_secrets(
    s: &dyn Store,
    tenant: TenantId,
    id: ConnectionId,
) -> Vec<(&'static str, Vec<u8>, Option<Timestamp>)> {
    let mut all: Vec<_> = s
        .get_connection_secrets(tenant, id)
        .await
        .unwrap()
        .expect("the connection exists")
        .secrets
        .into_iter()
        .map(|s| (s.role.as_str(), s.sealed.0, s.expires_at))
        .collect();
    all.sort();
    all
}

conformance! {
    async fn connection_secrets_are_rows_read_back_by_role(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        // An API-key connection: one row, no grant.
        let k = add_connection(s, a.id, &dk, Some("key")).await.unwrap();
        let got = s.get_connection_secrets(a.id, k.id).await.unwrap().unwrap();
        assert_eq!(got.secrets, vec![api_key_secret(&[1, 2, 3])]);
        assert!(got.secret(SecretRole::AccessToken).is_none());
        assert_eq!(got.connection.grant, None);

        // A Connect grant: an access-token row and a refresh-token row, and the
        // grant (client id, scope) on the record.
        let g = add_oauth_connection(s, a.id, &dk, false, "ca_1").await;
        let got = s.get_connection_secrets(a.id, g.id).await.unwrap().unwrap();
        assert_eq!(got.connection, g);
        assert_eq!(got.data_key.id, dk.id);
        assert_eq!(
            got.secret(SecretRole::AccessToken),
            Some(&SealedSecret(vec![1]))
        );
        assert_eq!(
            got.secret(SecretRole::RefreshToken),
            Some(&SealedSecret(vec![2]))
        );
        assert!(got.secret(SecretRole::ApiKey).is_none());
        assert_eq!(got.secrets.len(), 2);
        assert_eq!(
            b.rows("connection_secrets", "connection_id", g.id.uuid()).await,
            2
        );
        let listed = s.get_connection(a.id, g.id).await.unwrap().unwrap();
        assert_eq!(listed.auth_method, AuthMethod::Oauth);
        assert_eq!(
            listed.grant,
            Some(GrantInfo {
                client_id: "ca_1".into(),
                scope: GrantScope::ReadWrite,
                refreshed_at: None,
            })
        );

        // A secret's expiry round-trips.
        let c = connection(a.id, Some("expiring"));
        let expires = add_seconds(now(), 60);
        let new = NewConnection {
            connection: c.clone(),
            data_key_id: dk.id,
            secrets: vec![
                api_key_secret(&[5]),
                ConnectionSecret {
                    role: SecretRole::PreviousApiKey,
                    sealed: SealedSecret(vec![4]),
                    expires_at: Some(expires),
                },
            ],
            jobs: vec![],
            session: None,
        };
        s.create_connection(&new, &audit(Some(a.id), "connection.created", "c"))
            .await
            .unwrap();
        assert_eq!(
            stored_secrets(s, a.id, c.id).await,
            vec![
                ("api_key", vec![5], None),
                ("previous_api_key", vec![4], Some(expires)),
            ]
        );

        // A grant is not rotated like a key: nothing changes.
        let r = rotation(&dk, &[9], None, now());
        assert!(
            s.rotate_connection_secret(a.id, g.id, &r, &audit(Some(a.id), "connection.rotated", "g"))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            stored_secrets(s, a.id, g.id).await,
            vec![("access_token", vec![1], None), ("refresh_token", vec![2], None)]
        );
        assert_eq!(audited(s, a.id, "connection.rotated").await, 0);

        // Deleting a connection deletes its secret rows, and only its own.
        assert!(
            s.delete_connection(a.id, g.id, &audit(Some(a.id), "connection.deleted", "g"))
                .await
                .unwrap()
        );
        assert!(s.get_connection_secrets(a.id, g.id).await.unwrap().is_none());
        assert_eq!(
            b.rows("connection_secrets", "connection_id", g.id.uuid()).await,
            0
        );
        assert_eq!(
            b.rows("connection_secrets", "connection_id", k.id.uuid()).await,
            1
        );
    }
}

conformance! {
    async fn purging_expired_previous_keys_deletes_their_rows_and_hints(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        let c1 = add_connection(s, a.id, &dk, Some("one")).await.unwrap();
        let c2 = add_connection(s, a.id, &dk, Some("two")).await.unwrap();
        let t = now();
        let (e1, e2) = (add_seconds(t, 60), add_seconds(t, 120));
        for (c, expires) in [(c1.id, e1), (c2.id, e2)] {
            s.rotate_connection_secret(
                a.id,
                c,
                &rotation(&dk, &[7], Some((&[1, 2, 3], expires)), t),
                &audit(Some(a.id), "connection.rotated", "c"),
            )
            .await
            .unwrap()
            .unwrap();
        }
        assert_eq!(
            stored_secrets(s, a.id, c1.id).await,
            vec![
                ("api_key", vec![7], None),
                ("previous_api_key", vec![1, 2, 3], Some(e1)),
            ]
        );

        assert_eq!(
            s.system_purge_expired_previous_keys(add_seconds(e1, -1))
                .await
                .unwrap(),
            0
        );
        // Expired at its expiry: the row goes, the hint and expiry are cleared.
        assert_eq!(s.system_purge_expired_previous_keys(e1).await.unwrap(), 1);
        assert_eq!(
            stored_secrets(s, a.id, c1.id).await,
            vec![("api_key", vec![7], None)]
        );
        let one = s.get_connection(a.id, c1.id).await.unwrap().unwrap();
        assert_eq!(one.previous_key_hint, None);
        assert_eq!(one.previous_key_expires_at, None);
        // The other connection's previous key is still in its grace period.
        let two = s.get_connection(a.id, c2.id).await.unwrap().unwrap();
        assert_eq!(two.previous_key_hint.as_deref(), Some("sk_test_…4242"));
        assert_eq!(two.previous_key_expires_at, Some(e2));
        assert_eq!(
            b.rows("connection_secrets", "connection_id", c2.id.uuid()).await,
            2
        );

        assert_eq!(s.system_purge_expired_previous_keys(e2).await.unwrap(), 1);
        assert_eq!(
            stored_secrets(s, a.id, c2.id).await,
            vec![("api_key", vec![7], None)]
        );
        assert_eq!(
            s.get_connection(a.id, c2.id)
                .await
                .unwrap()
                .unwrap()
                .previous_key_hint,
            None
        );
        // Nothing left to purge; the current keys never expire.
        assert_eq!(
            s.system_purge_expired_previous_keys(add_seconds(e2, 86_400))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            stored_secrets(s, a.id, c1.id).await,
            vec![("api_key", vec![7], None)]
        );
    }
}

conformance! {
    async fn a_connect_session_creates_one_connection_and_a_second_writes_nothing(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        let (other, _) = tenant(s, "b").await;
        let sess = session(add_seconds(now(), 600));
        let first = oauth_connection(a.id, false, "ca_1", Some("first"));
        let new = |c: &Connection| NewConnection {
            connection: c.clone(),
            data_key_id: dk.id,
            secrets: vec![
                sealed(SecretRole::AccessToken, &[1]),
                sealed(SecretRole::RefreshToken, &[2]),
            ],
            jobs: vec![revalidation(a.id, c.id, add_seconds(now(), 3600))],
            session: Some(sess),
        };
        assert!(!s.connect_session_used(a.id, sess.session_id).await.unwrap());
        s.create_connection(
            &new(&first),
            &audit(Some(a.id), "connection.created", &first.id.to_string()),
        )
        .await
        .unwrap();
        assert!(s.connect_session_used(a.id, sess.session_id).await.unwrap());
        assert!(
            !s.connect_session_used(other.id, sess.session_id)
                .await
                .unwrap(),
            "another tenant's session use is not visible"
        );
        assert!(
            !s.connect_session_used(a.id, uuid::Uuid::new_v4())
                .await
                .unwrap()
        );

        let second = oauth_connection(a.id, false, "ca_1", Some("second"));
        let err = s
            .create_connection(
                &new(&second),
                &audit(Some(a.id), "connection.created", &second.id.to_string()),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { field: "session" }),
            "{err:?}"
        );
        // Nothing of the second connection was written.
        assert!(s.get_connection(a.id, second.id).await.unwrap().is_none());
        assert!(
            s.find_connection_by_external_id(a.id, "second")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(b.rows("connections", "id", second.id.uuid()).await, 0);
        assert_eq!(
            b.rows("connection_secrets", "connection_id", second.id.uuid())
                .await,
            0
        );
        assert!(
            s.system_jobs_for_subject(kinds::CONNECTION_REVALIDATE, second.id.uuid())
                .await
                .unwrap()
                .is_empty()
        );
        let trail = s
            .list_audit_events(
                Some(a.id),
                &AuditFilter {
                    action: None,
                    target_id: Some(second.id.to_string()),
                },
                &PageRequest::first(10),
            )
            .await
            .unwrap();
        assert!(trail.data.is_empty(), "no audit event for the refused creation");
        assert_eq!(s.count_connections(a.id).await.unwrap(), 1);
        // The first connection is intact, and its session use still recorded.
        assert_eq!(
            stored_secrets(s, a.id, first.id).await,
            vec![("access_token", vec![1], None), ("refresh_token", vec![2], None)]
        );
        assert_eq!(b.rows("connect_session_uses", "session_id", sess.session_id).await, 1);
        assert_eq!(
            s.system_jobs_for_subject(kinds::CONNECTION_REVALIDATE, first.id.uuid())
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

conformance! {
    async fn platforms_are_upserted_per_mode_keeping_created_at(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        let (other, _) = tenant(s, "b").await;
        assert!(s.list_stripe_platforms(a.id).await.unwrap().is_empty());
        assert!(
            s.get_stripe_platform_secret(a.id, false)
                .await
                .unwrap()
                .is_none()
        );

        // Live first: the list order is by mode, not by insertion.
        let live = platform(a.id, true, "ca_live");
        assert_eq!(put_platform(s, &live, &dk, &[7]).await.unwrap(), live);
        let test = platform(a.id, false, "ca_test");
        assert_eq!(put_platform(s, &test, &dk, &[8]).await.unwrap(), test);
        assert_eq!(
            s.list_stripe_platforms(a.id).await.unwrap(),
            vec![test.clone(), live.clone()]
        );

        // Replacing the test platform: every field changes but created_at.
        let later = add_seconds(test.created_at, 30);
        let replaced = StripePlatform {
            client_id: "ca_test2".into(),
            key_hint: "sk_test_…2222".into(),
            platform_account_id: None,
            redirect_uris: vec![
                "https://a.example/cb".into(),
                "https://b.example/cb".into(),
            ],
            scope: GrantScope::ReadOnly,
            created_at: later,
            updated_at: later,
            ..test.clone()
        };
        let stored = put_platform(s, &replaced, &dk, &[9]).await.unwrap();
        assert_eq!(
            stored,
            StripePlatform {
                created_at: test.created_at,
                ..replaced.clone()
            }
        );
        assert_eq!(
            s.list_stripe_platforms(a.id).await.unwrap(),
            vec![stored.clone(), live.clone()],
            "one platform per mode, both kept"
        );

        let secret = s
            .get_stripe_platform_secret(a.id, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(secret.platform, stored);
        assert_eq!(secret.secret, SealedSecret(vec![9]));
        assert_eq!(secret.data_key.id, dk.id);
        assert_eq!(secret.data_key.wrapped, dk.wrapped);
        assert_eq!(secret.data_key.tenant_id, a.id);
        let secret = s
            .get_stripe_platform_secret(a.id, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(secret.platform, live);
        assert_eq!(secret.secret, SealedSecret(vec![7]));
        assert_eq!(audited(s, a.id, "stripe_platform.updated").await, 3);

        // Another tenant sees none of it.
        assert!(s.list_stripe_platforms(other.id).await.unwrap().is_empty());
        assert!(
            s.get_stripe_platform_secret(other.id, false)
                .await
                .unwrap()
                .is_none()
        );
    }
}

conformance! {
    async fn a_platforms_client_id_is_fixed_while_its_grants_exist(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        let (other, other_dk) = tenant(s, "b").await;
        let test = platform(a.id, false, "ca_1");
        let live = platform(a.id, true, "ca_live");
        put_platform(s, &test, &dk, &[1]).await.unwrap();
        put_platform(s, &live, &dk, &[2]).await.unwrap();
        // API-key connections do not depend on the platform.
        add_connection(s, a.id, &dk, Some("key")).await.unwrap();
        let test2 = StripePlatform {
            client_id: "ca_2".into(),
            ..test.clone()
        };
        put_platform(s, &test2, &dk, &[3]).await.unwrap();

        let g = add_oauth_connection(s, a.id, &dk, false, "ca_2").await;
        let before = audited(s, a.id, "stripe_platform.updated").await;
        let test3 = StripePlatform {
            client_id: "ca_3".into(),
            ..test.clone()
        };
        let err = put_platform(s, &test3, &dk, &[4]).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { field: "client_id" }),
            "{err:?}"
        );
        // Nothing changed, nothing audited.
        let kept = s
            .get_stripe_platform_secret(a.id, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.platform.client_id, "ca_2");
        assert_eq!(kept.secret, SealedSecret(vec![3]));
        assert_eq!(audited(s, a.id, "stripe_platform.updated").await, before);

        // The same client id with a new key is fine.
        let rekeyed = StripePlatform {
            key_hint: "sk_test_…3333".into(),
            ..test2.clone()
        };
        put_platform(s, &rekeyed, &dk, &[5]).await.unwrap();
        let kept = s
            .get_stripe_platform_secret(a.id, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.platform.key_hint, "sk_test_…3333");
        assert_eq!(kept.secret, SealedSecret(vec![5]));
        // The other mode has no grants: its client id may change.
        let live2 = StripePlatform {
            client_id: "ca_live2".into(),
            ..live.clone()
        };
        assert_eq!(
            put_platform(s, &live2, &dk, &[6]).await.unwrap().client_id,
            "ca_live2"
        );
        // Another tenant's platform is its own.
        put_platform(s, &platform(other.id, false, "ca_9"), &other_dk, &[7])
            .await
            .unwrap();
        // Once the grant is gone, the client id may change.
        assert!(
            s.delete_connection(a.id, g.id, &audit(Some(a.id), "connection.deleted", "g"))
                .await
                .unwrap()
        );
        assert_eq!(
            put_platform(s, &test3, &dk, &[8]).await.unwrap().client_id,
            "ca_3"
        );
    }
}

conformance! {
    async fn deleting_platforms_is_refused_while_grants_depend_unless_forced(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        let (other, other_dk) = tenant(s, "b").await;
        let del = |tenant: TenantId, mode: Option<bool>, force: bool| async move {
            s.delete_stripe_platforms(
                tenant,
                mode,
                force,
                &audit(Some(tenant), "stripe_platform.deleted", "p"),
            )
            .await
            .unwrap()
        };
        assert_eq!(del(a.id, None, true).await, PlatformDeletion::NotFound);

        put_platform(s, &platform(a.id, false, "ca_t"), &dk, &[1])
            .await
            .unwrap();
        put_platform(s, &platform(a.id, true, "ca_l"), &dk, &[2])
            .await
            .unwrap();
        let gt1 = add_oauth_connection(s, a.id, &dk, false, "ca_t").await;
        let gt2 = add_oauth_connection(s, a.id, &dk, false, "ca_t").await;
        let gl = add_oauth_connection(s, a.id, &dk, true, "ca_l").await;
        let key = add_connection(s, a.id, &dk, Some("key")).await.unwrap();
        put_platform(s, &platform(other.id, false, "ca_o"), &other_dk, &[3])
            .await
            .unwrap();
        let go = add_oauth_connection(s, other.id, &other_dk, false, "ca_o").await;

        assert_eq!(
            del(a.id, Some(false), false).await,
            PlatformDeletion::InUse { connections: 2 }
        );
        assert_eq!(
            del(a.id, None, false).await,
            PlatformDeletion::InUse { connections: 3 }
        );
        assert_eq!(s.list_stripe_platforms(a.id).await.unwrap().len(), 2);
        assert!(s.get_connection(a.id, gt1.id).await.unwrap().is_some());
        assert_eq!(audited(s, a.id, "stripe_platform.deleted").await, 0);

        // Forced: the dependents go in the same transaction, their secrets too.
        assert_eq!(
            del(a.id, Some(false), true).await,
            PlatformDeletion::Deleted {
                platforms: 1,
                connections: 2
            }
        );
        for g in [gt1.id, gt2.id] {
            assert!(s.get_connection(a.id, g).await.unwrap().is_none());
            assert_eq!(b.rows("connections", "id", g.uuid()).await, 0);
            assert_eq!(
                b.rows("connection_secrets", "connection_id", g.uuid()).await,
                0
            );
        }
        // The API-key connection of that mode and the live grant stay.
        assert_eq!(
            stored_secrets(s, a.id, key.id).await,
            vec![("api_key", vec![1, 2, 3], None)]
        );
        assert!(s.get_connection(a.id, gl.id).await.unwrap().is_some());
        assert_eq!(
            s.list_stripe_platforms(a.id)
                .await
                .unwrap()
                .iter()
                .map(|p| p.livemode)
                .collect::<Vec<_>>(),
            vec![true]
        );
        assert_eq!(
            del(a.id, Some(false), false).await,
            PlatformDeletion::NotFound
        );

        // Without dependents no force is needed.
        s.delete_connection(a.id, gl.id, &audit(Some(a.id), "connection.deleted", "g"))
            .await
            .unwrap();
        assert_eq!(
            del(a.id, Some(true), false).await,
            PlatformDeletion::Deleted {
                platforms: 1,
                connections: 0
            }
        );
        assert!(s.list_stripe_platforms(a.id).await.unwrap().is_empty());
        assert_eq!(audited(s, a.id, "stripe_platform.deleted").await, 2);

        // The other tenant was untouched; both its modes go at once, forced.
        assert!(s.get_connection(other.id, go.id).await.unwrap().is_some());
        put_platform(s, &platform(other.id, true, "ca_ol"), &other_dk, &[4])
            .await
            .unwrap();
        let gol = add_oauth_connection(s, other.id, &other_dk, true, "ca_ol").await;
        assert_eq!(
            del(other.id, None, true).await,
            PlatformDeletion::Deleted {
                platforms: 2,
                connections: 2
            }
        );
        assert!(s.get_connection(other.id, go.id).await.unwrap().is_none());
        assert!(s.get_connection(other.id, gol.id).await.unwrap().is_none());
        assert!(s.list_stripe_platforms(other.id).await.unwrap().is_empty());
    }
}

conformance! {
    async fn oauth_states_are_single_use_and_expire(b) {
        let s = b.store.as_ref();
        let (a, _) = tenant(s, "a").await;
        let t = now();
        let sess = session(add_seconds(t, 900));
        let st = oauth_state(a.id, "sha256$aaa", add_seconds(t, 600), Some(sess));
        s.create_oauth_state(&st).await.unwrap();
        assert!(s.take_oauth_state("sha256$zzz", t).await.unwrap().is_none());
        assert_eq!(
            s.take_oauth_state("sha256$aaa", t).await.unwrap(),
            Some(st.clone())
        );
        // Single use.
        assert!(s.take_oauth_state("sha256$aaa", t).await.unwrap().is_none());
        assert_eq!(
            b.rows("oauth_states", "tenant_id", a.id.uuid()).await,
            0
        );

        // Without a session.
        let plain = oauth_state(a.id, "sha256$plain", add_seconds(t, 600), None);
        s.create_oauth_state(&plain).await.unwrap();
        assert_eq!(
            s.take_oauth_state("sha256$plain", t).await.unwrap(),
            Some(plain)
        );

        // Expired (at its expiry): refused, and consumed even so.
        let old = oauth_state(a.id, "sha256$old", add_seconds(t, 10), None);
        s.create_oauth_state(&old).await.unwrap();
        assert!(
            s.take_oauth_state("sha256$old", add_seconds(t, 10))
                .await
                .unwrap()
                .is_none()
        );
        assert!(s.take_oauth_state("sha256$old", t).await.unwrap().is_none());
    }
}

conformance! {
    async fn purging_connect_records_removes_expired_states_and_session_uses(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        let t = now();
        let (soon, late) = (add_seconds(t, 10), add_seconds(t, 1000));
        s.create_oauth_state(&oauth_state(a.id, "sha256$soon", soon, None))
            .await
            .unwrap();
        s.create_oauth_state(&oauth_state(a.id, "sha256$late", late, None))
            .await
            .unwrap();
        let (s_soon, s_late) = (session(soon), session(late));
        let mut made = Vec::new();
        for sess in [s_soon, s_late] {
            let c = oauth_connection(a.id, false, "ca_1", None);
            s.create_connection(
                &NewConnection {
                    connection: c.clone(),
                    data_key_id: dk.id,
                    secrets: vec![sealed(SecretRole::AccessToken, &[1])],
                    jobs: vec![],
                    session: Some(sess),
                },
                &audit(Some(a.id), "connection.created", "c"),
            )
            .await
            .unwrap();
            made.push(c.id);
        }

        assert_eq!(
            s.system_purge_expired_connect_records(add_seconds(soon, -1))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            s.system_purge_expired_connect_records(soon).await.unwrap(),
            2,
            "one state and one session use"
        );
        assert!(!s.connect_session_used(a.id, s_soon.session_id).await.unwrap());
        assert!(s.connect_session_used(a.id, s_late.session_id).await.unwrap());
        assert!(s.take_oauth_state("sha256$soon", t).await.unwrap().is_none());
        assert!(s.take_oauth_state("sha256$late", t).await.unwrap().is_some());
        assert_eq!(
            s.system_purge_expired_connect_records(late).await.unwrap(),
            1
        );
        assert!(!s.connect_session_used(a.id, s_late.session_id).await.unwrap());
        // The connections the sessions created stay.
        for id in made {
            assert!(s.get_connection(a.id, id).await.unwrap().is_some());
        }
    }
}

conformance! {
    async fn a_grant_refresh_lease_is_exclusive_until_it_expires(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        let (other, _) = tenant(s, "b").await;
        let g = add_oauth_connection(s, a.id, &dk, false, "ca_1").await;
        let k = add_connection(s, a.id, &dk, Some("key")).await.unwrap();
        let t = now();
        let at = |secs| add_seconds(t, secs);
        let [t1, t2, t3, t4] = [(); 4].map(|()| uuid::Uuid::new_v4());

        assert_eq!(
            s.lease_grant_refresh(a.id, g.id, t1, at(30), t).await.unwrap(),
            RefreshLease::Acquired
        );
        assert_eq!(
            s.lease_grant_refresh(a.id, g.id, t2, at(40), at(10))
                .await
                .unwrap(),
            RefreshLease::Held
        );
        // Not a grant, another tenant's, or missing.
        assert_eq!(
            s.lease_grant_refresh(a.id, k.id, t2, at(40), t).await.unwrap(),
            RefreshLease::NotFound
        );
        assert_eq!(
            s.lease_grant_refresh(other.id, g.id, t2, at(40), t)
                .await
                .unwrap(),
            RefreshLease::NotFound
        );
        assert_eq!(
            s.lease_grant_refresh(a.id, ConnectionId::new(), t2, at(40), t)
                .await
                .unwrap(),
            RefreshLease::NotFound
        );
        // Releasing with another tenant's id or another token does nothing.
        s.release_grant_refresh(other.id, g.id, t1).await.unwrap();
        s.release_grant_refresh(a.id, g.id, t2).await.unwrap();
        assert_eq!(
            s.lease_grant_refresh(a.id, g.id, t2, at(40), at(10))
                .await
                .unwrap(),
            RefreshLease::Held
        );

        // Expired: t2 takes over.
        assert_eq!(
            s.lease_grant_refresh(a.id, g.id, t2, at(60), at(30))
                .await
                .unwrap(),
            RefreshLease::Acquired
        );
        // t1's refresh comes back late: refused, nothing changed or audited.
        let late = grant_update(
            &dk,
            vec![
                sealed(SecretRole::AccessToken, &[11]),
                sealed(SecretRole::RefreshToken, &[12]),
            ],
            "access_…late",
            at(31),
            Some(t1),
        );
        assert!(
            s.apply_grant(a.id, g.id, &late, &audit(Some(a.id), "connection.refreshed", "g"))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            stored_secrets(s, a.id, g.id).await,
            vec![("access_token", vec![1], None), ("refresh_token", vec![2], None)]
        );
        assert_eq!(s.get_connection(a.id, g.id).await.unwrap().unwrap(), g);
        assert_eq!(audited(s, a.id, "connection.refreshed").await, 0);

        // t2 gives the lease back: t3 takes it at once.
        s.release_grant_refresh(a.id, g.id, t2).await.unwrap();
        assert_eq!(
            s.lease_grant_refresh(a.id, g.id, t3, at(90), at(31))
                .await
                .unwrap(),
            RefreshLease::Acquired
        );
        // The holder applies: the access token is replaced, the refresh token
        // (Stripe sent none) kept, the grant updated, the lease released.
        let fresh = GrantUpdate {
            scope: GrantScope::ReadOnly,
            ..grant_update(
                &dk,
                vec![sealed(SecretRole::AccessToken, &[21])],
                "access_…bbbb",
                at(32),
                Some(t3),
            )
        };
        let c = s
            .apply_grant(a.id, g.id, &fresh, &audit(Some(a.id), "connection.refreshed", "g"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.key_hint, "access_…bbbb");
        assert_eq!(
            c.grant,
            Some(GrantInfo {
                client_id: "ca_1".into(),
                scope: GrantScope::ReadOnly,
                refreshed_at: Some(at(32)),
            })
        );
        assert_eq!(c.updated_at, at(32));
        // No validation: the test-call fields stay.
        assert_eq!(c.status, g.status);
        assert_eq!(c.last_validated_at, g.last_validated_at);
        assert_eq!(c.account, g.account);
        assert_eq!(s.get_connection(a.id, g.id).await.unwrap().unwrap(), c);
        assert_eq!(
            stored_secrets(s, a.id, g.id).await,
            vec![("access_token", vec![21], None), ("refresh_token", vec![2], None)]
        );
        assert_eq!(audited(s, a.id, "connection.refreshed").await, 1);
        // Released: the token no longer applies, and a new lease is taken at once.
        let again = grant_update(
            &dk,
            vec![sealed(SecretRole::AccessToken, &[22])],
            "access_…cccc",
            at(33),
            Some(t3),
        );
        assert!(
            s.apply_grant(a.id, g.id, &again, &audit(Some(a.id), "connection.refreshed", "g"))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            s.lease_grant_refresh(a.id, g.id, t4, at(100), at(33))
                .await
                .unwrap(),
            RefreshLease::Acquired
        );
        // Not a grant, or another tenant's: nothing.
        let relink = grant_update(
            &dk,
            vec![sealed(SecretRole::AccessToken, &[23])],
            "access_…dddd",
            at(34),
            None,
        );
        for (tenant, id) in [(a.id, k.id), (other.id, g.id)] {
            assert!(
                s.apply_grant(tenant, id, &relink, &audit(Some(tenant), "connection.refreshed", "g"))
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        assert_eq!(
            stored_secrets(s, a.id, k.id).await,
            vec![("api_key", vec![1, 2, 3], None)]
        );
        assert_eq!(
            stored_secrets(s, a.id, g.id).await,
            vec![("access_token", vec![21], None), ("refresh_token", vec![2], None)]
        );
    }
}

conformance! {
    async fn a_relink_replaces_the_grant_validates_and_spends_its_session(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        let g = add_oauth_connection(s, a.id, &dk, false, "ca_1").await;
        let t = now();
        let at = |secs| add_seconds(t, secs);
        // The grant had stopped working.
        let failed = ValidationRecord {
            status: ConnectionStatus::Invalid,
            account: None,
            missing_permissions: vec![],
            validated_at: t,
            last_error: Some(LastError {
                code: "stripe_key_invalid".into(),
                message: "rejected".into(),
                stripe_request_id: None,
            }),
        };
        s.record_validation(a.id, g.id, &failed, None)
            .await
            .unwrap()
            .unwrap();
        // A refresh is in flight.
        let lease = uuid::Uuid::new_v4();
        assert_eq!(
            s.lease_grant_refresh(a.id, g.id, lease, at(60), t)
                .await
                .unwrap(),
            RefreshLease::Acquired
        );

        let sess = session(at(600));
        let account = AccountDetails {
            stripe_account_id: g.account.stripe_account_id.clone(),
            account_name: Some("Renamed Ltd".into()),
            country: Some("DE".into()),
            default_currency: Some("chf".into()),
        };
        let relink = GrantUpdate {
            validation: Some(proved(at(5), Some(account.clone()))),
            session: Some(sess),
            ..grant_update(
                &dk,
                vec![
                    sealed(SecretRole::AccessToken, &[31]),
                    sealed(SecretRole::RefreshToken, &[32]),
                ],
                "access_…eeee",
                at(5),
                None,
            )
        };
        let c = s
            .apply_grant(a.id, g.id, &relink, &audit(Some(a.id), "connection.relinked", "g"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.status, ConnectionStatus::Active);
        assert_eq!(c.last_error, None);
        assert_eq!(c.last_validated_at, Some(at(5)));
        assert_eq!(c.account, account);
        assert_eq!(c.key_hint, "access_…eeee");
        assert_eq!(c.grant.as_ref().unwrap().refreshed_at, Some(at(5)));
        assert_eq!(
            stored_secrets(s, a.id, g.id).await,
            vec![("access_token", vec![31], None), ("refresh_token", vec![32], None)]
        );
        assert!(s.connect_session_used(a.id, sess.session_id).await.unwrap());

        // The refresh in flight lost its lease to the re-link.
        let stale = grant_update(
            &dk,
            vec![sealed(SecretRole::AccessToken, &[41])],
            "access_…ffff",
            at(6),
            Some(lease),
        );
        assert!(
            s.apply_grant(a.id, g.id, &stale, &audit(Some(a.id), "connection.refreshed", "g"))
                .await
                .unwrap()
                .is_none()
        );

        // The session cannot re-link twice; the refused re-link changes nothing.
        let twice = GrantUpdate {
            key_hint: "access_…gggg".into(),
            secrets: vec![sealed(SecretRole::AccessToken, &[51])],
            updated_at: at(7),
            ..relink.clone()
        };
        let err = s
            .apply_grant(a.id, g.id, &twice, &audit(Some(a.id), "connection.relinked", "g"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { field: "session" }),
            "{err:?}"
        );
        assert_eq!(s.get_connection(a.id, g.id).await.unwrap().unwrap(), c);
        assert_eq!(
            stored_secrets(s, a.id, g.id).await,
            vec![("access_token", vec![31], None), ("refresh_token", vec![32], None)]
        );
        assert_eq!(audited(s, a.id, "connection.relinked").await, 1);

        // A test call that could not see the account keeps the stored details.
        let blind = GrantUpdate {
            validation: Some(ValidationRecord {
                missing_permissions: vec!["rak_balance_read".into()],
                ..failed.clone()
            }),
            session: None,
            updated_at: at(8),
            ..relink.clone()
        };
        let c2 = s
            .apply_grant(a.id, g.id, &blind, &audit(Some(a.id), "connection.relinked", "g"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c2.status, ConnectionStatus::Invalid);
        assert_eq!(c2.last_error, failed.last_error);
        assert_eq!(c2.missing_permissions, vec!["rak_balance_read".to_string()]);
        assert_eq!(c2.last_validated_at, Some(t));
        assert_eq!(c2.account, account);
    }
}

conformance! {
    async fn marking_a_grant_revoking_enqueues_its_job_in_the_same_transaction(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        let (other, _) = tenant(s, "b").await;
        let g = add_oauth_connection(s, a.id, &dk, false, "ca_1").await;
        let k = add_connection(s, a.id, &dk, Some("key")).await.unwrap();
        let why = LastError {
            code: "connection_revoking".into(),
            message: "disconnect requested".into(),
            stripe_request_id: None,
        };
        let kind = "test.deauthorize";
        let job = |c: ConnectionId| NewJob::new(kind, c.uuid(), now()).for_tenant(a.id);

        // Another tenant's id, or an API-key connection: nothing, no job.
        for (tenant, id) in [(other.id, g.id), (a.id, k.id)] {
            assert!(
                s.mark_connection_revoking(
                    tenant,
                    id,
                    &why,
                    &job(id),
                    &audit(Some(tenant), "connection.revoking", "c")
                )
                .await
                .unwrap()
                .is_none()
            );
            assert!(
                s.system_jobs_for_subject(kind, id.uuid())
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        assert_eq!(audited(s, a.id, "connection.revoking").await, 0);
        assert_eq!(audited(s, other.id, "connection.revoking").await, 0);

        let c = s
            .mark_connection_revoking(
                a.id,
                g.id,
                &why,
                &job(g.id),
                &audit(Some(a.id), "connection.revoking", "g"),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.status, ConnectionStatus::Revoking);
        assert_eq!(c.last_error, Some(why.clone()));
        assert_eq!(s.get_connection(a.id, g.id).await.unwrap().unwrap(), c);
        let jobs = s.system_jobs_for_subject(kind, g.id.uuid()).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].tenant_id, Some(a.id));
        assert_eq!(jobs[0].status, JobStatus::Queued);
        assert_eq!(audited(s, a.id, "connection.revoking").await, 1);
        // The tokens stay until the job has deauthorized the grant.
        assert_eq!(
            stored_secrets(s, a.id, g.id).await,
            vec![("access_token", vec![1], None), ("refresh_token", vec![2], None)]
        );
        let revoking = ConnectionFilter {
            status: Some(ConnectionStatus::Revoking),
            ..Default::default()
        };
        assert_eq!(
            s.list_connections(a.id, &revoking, &PageRequest::first(10))
                .await
                .unwrap()
                .data,
            vec![c]
        );
    }
}

conformance! {
    async fn allowed_origins_are_replaced_listed_sorted_and_found_across_tenants(b) {
        let s = b.store.as_ref();
        let (a, _) = tenant(s, "a").await;
        let (other, _) = tenant(s, "b").await;
        let set = |tenant: TenantId, origins: &[&str]| {
            let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
            async move {
                s.set_allowed_origins(
                    tenant,
                    &origins,
                    &audit(Some(tenant), "tenant.origins_updated", "t"),
                )
                .await
                .unwrap()
            }
        };
        let allowed = |origin: &'static str| async move {
            s.system_origin_allowed(origin).await.unwrap()
        };
        assert!(s.allowed_origins(a.id).await.unwrap().is_empty());
        assert!(!allowed("https://a.example").await);

        assert!(
            set(
                a.id,
                &["https://b.example", "https://a.example", "https://a.example"]
            )
            .await
        );
        assert_eq!(
            s.allowed_origins(a.id).await.unwrap(),
            vec!["https://a.example".to_string(), "https://b.example".into()]
        );
        assert!(allowed("https://a.example").await);
        assert!(!allowed("https://c.example").await);
        assert!(set(other.id, &["https://c.example"]).await);
        assert_eq!(
            s.allowed_origins(other.id).await.unwrap(),
            vec!["https://c.example".to_string()]
        );
        assert_eq!(s.allowed_origins(a.id).await.unwrap().len(), 2);

        // Replacing, not adding.
        assert!(set(a.id, &["https://d.example"]).await);
        assert_eq!(
            s.allowed_origins(a.id).await.unwrap(),
            vec!["https://d.example".to_string()]
        );
        assert!(!allowed("https://a.example").await);
        assert!(allowed("https://c.example").await);
        assert!(allowed("https://d.example").await);
        // Exact matches only.
        assert!(!allowed("https://d.example/").await);
        assert!(!allowed("http://d.example").await);

        // A missing tenant: false, nothing stored, nothing audited.
        let ghost = TenantId::new();
        assert!(!set(ghost, &["https://e.example"]).await);
        assert!(!allowed("https://e.example").await);
        assert!(s.allowed_origins(ghost).await.unwrap().is_empty());
        assert_eq!(audited(s, ghost, "tenant.origins_updated").await, 0);

        // An empty list clears them.
        assert!(set(a.id, &[]).await);
        assert!(s.allowed_origins(a.id).await.unwrap().is_empty());
        assert!(!allowed("https://d.example").await);
        assert_eq!(audited(s, a.id, "tenant.origins_updated").await, 3);
        assert_eq!(s.allowed_origins(other.id).await.unwrap().len(), 1);
    }
}

conformance! {
    async fn another_tenants_connect_records_behave_as_missing(b) {
        let s = b.store.as_ref();
        let (a, dk) = tenant(s, "a").await;
        let (other, other_dk) = tenant(s, "b").await;
        put_platform(s, &platform(a.id, false, "ca_a"), &dk, &[1])
            .await
            .unwrap();
        let sess = session(add_seconds(now(), 600));
        let g = oauth_connection(a.id, false, "ca_a", Some("shared"));
        s.create_connection(
            &NewConnection {
                connection: g.clone(),
                data_key_id: dk.id,
                secrets: vec![
                    sealed(SecretRole::AccessToken, &[1]),
                    sealed(SecretRole::RefreshToken, &[2]),
                ],
                jobs: vec![],
                session: Some(sess),
            },
            &audit(Some(a.id), "connection.created", "g"),
        )
        .await
        .unwrap();
        s.set_allowed_origins(
            a.id,
            &["https://a.example".into()],
            &audit(Some(a.id), "tenant.origins_updated", "t"),
        )
        .await
        .unwrap();
        let ev = audit(Some(other.id), "x", "g");
        let t = now();
        let lease = uuid::Uuid::new_v4();

        assert!(s.list_stripe_platforms(other.id).await.unwrap().is_empty());
        assert!(
            s.get_stripe_platform_secret(other.id, false)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            s.delete_stripe_platforms(other.id, None, true, &ev)
                .await
                .unwrap(),
            PlatformDeletion::NotFound
        );
        assert!(s.get_connection_secrets(other.id, g.id).await.unwrap().is_none());
        assert!(
            s.find_connection_by_external_id(other.id, "shared")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            s.lease_grant_refresh(other.id, g.id, lease, add_seconds(t, 60), t)
                .await
                .unwrap(),
            RefreshLease::NotFound
        );
        let update = grant_update(
            &other_dk,
            vec![sealed(SecretRole::AccessToken, &[9])],
            "access_…xxxx",
            t,
            None,
        );
        assert!(s.apply_grant(other.id, g.id, &update, &ev).await.unwrap().is_none());
        let job = NewJob::new("test.deauthorize", g.id.uuid(), t).for_tenant(other.id);
        let why = LastError {
            code: "x".into(),
            message: "x".into(),
            stripe_request_id: None,
        };
        assert!(
            s.mark_connection_revoking(other.id, g.id, &why, &job, &ev)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!s.delete_connection(other.id, g.id, &ev).await.unwrap());
        assert!(!s.connect_session_used(other.id, sess.session_id).await.unwrap());
        assert!(s.allowed_origins(other.id).await.unwrap().is_empty());
        // The client-id rule is per tenant: the other tenant's own platform in
        // the same mode may take any client id.
        put_platform(s, &platform(other.id, false, "ca_b"), &other_dk, &[2])
            .await
            .unwrap();
        put_platform(s, &platform(other.id, false, "ca_b2"), &other_dk, &[3])
            .await
            .unwrap();

        // Tenant a's records are untouched.
        let mine = s.get_connection(a.id, g.id).await.unwrap().unwrap();
        assert_eq!(mine, g);
        assert_eq!(
            stored_secrets(s, a.id, g.id).await,
            vec![("access_token", vec![1], None), ("refresh_token", vec![2], None)]
        );
        assert_eq!(
            s.lease_grant_refresh(a.id, g.id, lease, add_seconds(t, 60), t)
                .await
                .unwrap(),
            RefreshLease::Acquired
        );
        assert_eq!(
            s.get_stripe_platform_secret(a.id, false)
                .await
                .unwrap()
                .unwrap()
                .platform
                .client_id,
            "ca_a"
        );
        assert!(
            s.system_jobs_for_subject("test.deauthorize", g.id.uuid())
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.allowed_origins(a.id).await.unwrap().len(), 1);
    }
}

conformance! {
    async fn deleting_a_tenant_removes_its_connect_records(b) {
        let s = b.store.as_ref();
        let (t, dk) = tenant(s, "doomed").await;
        let (other, other_dk) = tenant(s, "bystander").await;
        let mut grants = Vec::new();
        for (tenant_id, key) in [(t.id, &dk), (other.id, &other_dk)] {
            put_platform(s, &platform(tenant_id, false, "ca_t"), key, &[1])
                .await
                .unwrap();
            put_platform(s, &platform(tenant_id, true, "ca_l"), key, &[2])
                .await
                .unwrap();
            let sess = session(add_seconds(now(), 600));
            let g = oauth_connection(tenant_id, false, "ca_t", None);
            s.create_connection(
                &NewConnection {
                    connection: g.clone(),
                    data_key_id: key.id,
                    secrets: vec![
                        sealed(SecretRole::AccessToken, &[1]),
                        sealed(SecretRole::RefreshToken, &[2]),
                    ],
                    jobs: vec![],
                    session: Some(sess),
                },
                &audit(Some(tenant_id), "connection.created", "g"),
            )
            .await
            .unwrap();
            let k = add_connection(s, tenant_id, key, Some("key")).await.unwrap();
            s.create_oauth_state(&oauth_state(
                tenant_id,
                &format!("sha256${tenant_id}"),
                add_seconds(now(), 600),
                None,
            ))
            .await
            .unwrap();
            s.set_allowed_origins(
                tenant_id,
                &[format!("https://{tenant_id}.example")],
                &audit(Some(tenant_id), "tenant.origins_updated", "t"),
            )
            .await
            .unwrap();
            grants.push((tenant_id, g.id, k.id, sess.session_id));
        }
        let by_tenant = [
            ("stripe_platforms", 2),
            ("oauth_states", 1),
            ("connect_session_uses", 1),
            ("tenant_origins", 1),
            ("connections", 2),
        ];
        for (table, n) in by_tenant {
            assert_eq!(b.rows(table, "tenant_id", t.id.uuid()).await, n, "{table}");
        }

        assert!(
            s.delete_tenant(t.id, &audit(None, "tenant.deleted", &t.id.to_string()))
                .await
                .unwrap()
        );
        for (tenant_id, g, k, sess) in grants {
            let gone = tenant_id == t.id;
            for (table, n) in by_tenant {
                assert_eq!(
                    b.rows(table, "tenant_id", tenant_id.uuid()).await,
                    if gone { 0 } else { n },
                    "{table} of {}",
                    if gone { "the deleted tenant" } else { "the bystander" }
                );
            }
            for c in [g, k] {
                assert_eq!(
                    b.rows("connection_secrets", "connection_id", c.uuid()).await,
                    if gone { 0 } else if c == g { 2 } else { 1 }
                );
            }
            assert_eq!(s.connect_session_used(tenant_id, sess).await.unwrap(), !gone);
            assert_eq!(
                s.system_origin_allowed(&format!("https://{tenant_id}.example"))
                    .await
                    .unwrap(),
                !gone
            );
            assert_eq!(
                s.take_oauth_state(&format!("sha256${tenant_id}"), now())
                    .await
                    .unwrap()
                    .is_some(),
                !gone
            );
        }
    }
}

/// A database made by the migrations before Stripe Connect, holding a
/// connection whose key (and previous key) were columns, migrated by the
/// store: the keys become `connection_secrets` rows of the right roles, the
/// previous key keeping its expiry.
mod migrating_moves_connection_keys_into_secret_rows {
    use super::*;
    use sqlx::migrate::Migrator;

    /// A connection as the migrations before Connect stored it: the record, its key, its previous key.
    type LegacyRow = (Connection, Vec<u8>, Option<Vec<u8>>);

    /// The version of the last migration before the Connect one.
    fn before_connect(migrator: &Migrator) -> i64 {
        let all: Vec<_> = migrator.iter().collect();
        let connect = all
            .iter()
            .position(|m| m.description.contains("connect"))
            .expect("a Connect migration");
        assert!(connect > 0, "migrations come before the Connect one");
        all[connect - 1].version
    }

    /// The legacy connections: one with a kept previous key, one without.
    fn legacy(tenant: TenantId, expires: Timestamp) -> [LegacyRow; 2] {
        let kept = Connection {
            previous_key_hint: Some("sk_test_…0001".into()),
            previous_key_expires_at: Some(expires),
            ..connection(tenant, Some("legacy-1"))
        };
        [
            (kept, vec![1, 1], Some(vec![2, 2])),
            (connection(tenant, Some("legacy-2")), vec![3, 3], None),
        ]
    }

    const INSERT: &str = "INSERT INTO connections (id, tenant_id, provider, auth_method, livemode, \
         status, stripe_account_id, account_name, account_country, default_currency, key_hint, \
         external_id, name, metadata, stripe_version, missing_permissions, last_validated_at, \
         last_error, data_key_id, secret, previous_secret, previous_key_hint, \
         previous_key_expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, \
         $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)";

    /// Binds a legacy connection row; `$time` converts a timestamp to the column type.
    macro_rules! insert_legacy {
        ($pool:expr, $dk:expr, $row:expr, $time:expr) => {{
            let (c, secret, previous) = $row;
            sqlx::query(INSERT)
                .bind(c.id.uuid())
                .bind(c.tenant_id.uuid())
                .bind(c.provider.as_str())
                .bind(c.auth_method.as_str())
                .bind(c.livemode)
                .bind(c.status.as_str())
                .bind(&c.account.stripe_account_id)
                .bind(&c.account.account_name)
                .bind(&c.account.country)
                .bind(&c.account.default_currency)
                .bind(&c.key_hint)
                .bind(&c.external_id)
                .bind(&c.name)
                .bind(sqlx::types::Json(&c.metadata))
                .bind(&c.stripe_version)
                .bind(sqlx::types::Json(&c.missing_permissions))
                .bind(c.last_validated_at.map($time))
                .bind(c.last_error.as_ref().map(sqlx::types::Json))
                .bind($dk.id.uuid())
                .bind(secret)
                .bind(previous)
                .bind(&c.previous_key_hint)
                .bind(c.previous_key_expires_at.map($time))
                .bind($time(c.created_at))
                .bind($time(c.updated_at))
                .execute($pool)
                .await
                .unwrap();
        }};
    }

    /// A tenant and its data key as the schema before Connect holds them
    /// (written directly: the store writes columns later migrations add).
    macro_rules! insert_legacy_tenant {
        ($pool:expr, $time:expr) => {{
            let at = now();
            let t = TenantId::new();
            sqlx::query(
                "INSERT INTO tenants (id, name, status, metadata, created_at, updated_at) \
                 VALUES ($1, 'legacy', 'active', $2, $3, $4)",
            )
            .bind(t.uuid())
            .bind(sqlx::types::Json(Metadata::default()))
            .bind($time(at))
            .bind($time(at))
            .execute($pool)
            .await
            .unwrap();
            let dk = data_key(t, "k1");
            sqlx::query(
                "INSERT INTO data_keys (id, tenant_id, master_key_id, wrapped, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(dk.id.uuid())
            .bind(t.uuid())
            .bind(&dk.master_key_id)
            .bind(&dk.wrapped)
            .bind($time(dk.created_at))
            .execute($pool)
            .await
            .unwrap();
            (t, dk)
        }};
    }

    /// After the store's `migrate()`: each key is a row of its role.
    async fn check(s: &dyn Store, tenant: TenantId, rows: &[LegacyRow; 2], expires: Timestamp) {
        let (kept, none) = (&rows[0].0, &rows[1].0);
        assert_eq!(
            s.get_connection(tenant, kept.id).await.unwrap().as_ref(),
            Some(kept)
        );
        assert_eq!(
            s.get_connection(tenant, none.id).await.unwrap().as_ref(),
            Some(none)
        );
        assert_eq!(
            stored_secrets(s, tenant, kept.id).await,
            vec![
                ("api_key", vec![1, 1], None),
                ("previous_api_key", vec![2, 2], Some(expires)),
            ]
        );
        assert_eq!(
            stored_secrets(s, tenant, none.id).await,
            vec![("api_key", vec![3, 3], None)]
        );
        // The migrated previous key expires like any other.
        assert_eq!(
            s.system_purge_expired_previous_keys(expires).await.unwrap(),
            1
        );
        assert_eq!(
            stored_secrets(s, tenant, kept.id).await,
            vec![("api_key", vec![1, 1], None)]
        );
        assert_eq!(
            s.get_connection(tenant, kept.id)
                .await
                .unwrap()
                .unwrap()
                .previous_key_hint,
            None
        );
        s.migrate().await.unwrap();
    }

    #[tokio::test]
    async fn sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let migrator = sqlx::migrate!("../../migrations/sqlite");
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        migrator
            .run_to(before_connect(&migrator), &pool)
            .await
            .unwrap();

        let store = patchbay_store::open(&url, &PoolSettings::default(), false)
            .await
            .unwrap();
        let (t, dk) = insert_legacy_tenant!(&pool, |t: Timestamp| t.timestamp_micros());
        let expires = add_seconds(now(), 3600);
        let rows = legacy(t, expires);
        for row in rows.clone() {
            insert_legacy!(&pool, dk, row, |t: Timestamp| t.timestamp_micros());
        }
        pool.close().await;

        store.migrate().await.unwrap();
        check(store.as_ref(), t, &rows, expires).await;
        store.close().await;
    }

    #[tokio::test]
    async fn postgres() {
        let Some(base) = support::postgres_url_for_schema_test().await else {
            return;
        };
        let admin = sqlx::PgPool::connect(&base).await.unwrap();
        let schema = format!("migration_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
        let migrator = sqlx::migrate!("../../migrations/postgres");
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        migrator
            .run_to(before_connect(&migrator), &pool)
            .await
            .unwrap();

        let store = patchbay_store::open(&url, &PoolSettings::default(), false)
            .await
            .unwrap();
        let (t, dk) = insert_legacy_tenant!(&pool, |t: Timestamp| t);
        let expires = add_seconds(now(), 3600);
        let rows = legacy(t, expires);
        for row in rows.clone() {
            insert_legacy!(&pool, dk, row, |t: Timestamp| t);
        }
        pool.close().await;

        store.migrate().await.unwrap();
        check(store.as_ref(), t, &rows, expires).await;
        store.close().await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await;
    }
}

/// Every audit event `tenant` may see (all of them with `None`), newest first,
/// read page by page.
async fn all_audit_events(store: &dyn Store, tenant: Option<TenantId>) -> Vec<AuditEvent> {
    let mut all: Vec<AuditEvent> = Vec::new();
    loop {
        let after = all.last().map(|e| e.id);
        let page = store
            .list_audit_events(
                tenant,
                &AuditFilter::default(),
                &PageRequest::new(Some(100), after, None).unwrap(),
            )
            .await
            .unwrap();
        all.extend(page.data);
        if !page.has_more {
            return all;
        }
    }
}

conformance! {
    async fn audit_events_are_inserted_as_one_batch(b) {
        let s = b.store.as_ref();
        let (t, _) = tenant(s, "batch").await;
        let before = all_audit_events(s, None).await;

        s.insert_audit_events(&[]).await.unwrap();
        assert_eq!(all_audit_events(s, None).await, before, "an empty batch writes nothing");

        // More rows than one statement holds, with every field varied.
        let key = ApiKeyId::new();
        let events: Vec<AuditEvent> = (0..2_500)
            .map(|i| {
                let actor = match i % 4 {
                    0 => Actor::System,
                    1 => Actor::ApiKey(key),
                    2 => Actor::ConnectSession(uuid::Uuid::new_v4()),
                    _ => Actor::Admin,
                };
                AuditEvent::new(
                    (i % 3 != 0).then_some(t.id),
                    actor,
                    &format!("proxy.call_{}", i % 7),
                    (i % 2 == 0).then(|| format!("conn_{i}")),
                    serde_json::json!({"n": i, "status": 200 + i % 3, "path": "/v1/charges"}),
                    Some(format!("req_{i}")),
                )
                .with_client_request_id((i % 5 == 0).then(|| format!("client-{i}")))
            })
            .collect();
        s.insert_audit_events(&events).await.unwrap();

        let stored = all_audit_events(s, None).await;
        assert_eq!(stored.len(), before.len() + events.len());
        let by_id: std::collections::HashMap<_, _> = stored.iter().map(|e| (e.id, e)).collect();
        for event in &events {
            assert_eq!(by_id.get(&event.id), Some(&event), "stored as given");
        }
        let mine = all_audit_events(s, Some(t.id)).await;
        let expected_mine = events.iter().filter(|e| e.tenant_id == Some(t.id)).count();
        assert_eq!(mine.len(), expected_mine + 1, "the batch's and tenant.created");

        // A batch retried after it was written stores nothing twice, and the
        // new events in it are written.
        let late = audit(Some(t.id), "proxy.late", "conn_late");
        let mut retried = events[..10].to_vec();
        retried.push(late.clone());
        s.insert_audit_events(&retried).await.unwrap();
        let after_retry = all_audit_events(s, None).await;
        assert_eq!(after_retry.len(), stored.len() + 1);
        assert_eq!(after_retry[0], late);
    }
}

conformance! {
    async fn a_key_is_bound_only_to_a_connection_of_its_tenant_and_goes_with_it(b) {
        let s = b.store.as_ref();
        let (a, dk_a) = tenant(s, "a").await;
        let (other, dk_other) = tenant(s, "b").await;
        let conn = add_connection(s, a.id, &dk_a, None).await.unwrap();
        let foreign = add_connection(s, other.id, &dk_other, None).await.unwrap();

        let mut key = api_key(a.id, &[Scope::Proxy]);
        key.connection_id = Some(conn.id);
        s.create_api_key(&key, "sha256$x", &audit(Some(a.id), "api_key.created", "k"))
            .await
            .unwrap();
        assert_eq!(s.get_api_key(a.id, key.id).await.unwrap().unwrap().connection_id, Some(conn.id));
        let cred = s.find_api_key_credential(key.id).await.unwrap().unwrap();
        assert_eq!(cred.key.connection_id, Some(conn.id));

        // Another tenant's connection: refused, nothing written.
        let mut stray = api_key(a.id, &[Scope::Proxy]);
        stray.connection_id = Some(foreign.id);
        let err = s
            .create_api_key(&stray, "sha256$y", &audit(Some(a.id), "api_key.created", "k2"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict { field: "connection_id" }), "{err:?}");
        assert!(s.get_api_key(a.id, stray.id).await.unwrap().is_none());

        // Deleting the connection deletes its bound keys (an unbound key would reach everything).
        assert!(s.delete_connection(a.id, conn.id, &audit(Some(a.id), "connection.deleted", "c")).await.unwrap());
        assert!(s.get_api_key(a.id, key.id).await.unwrap().is_none());
        assert!(s.find_api_key_credential(key.id).await.unwrap().is_none());
    }
}

// ---- Webhooks: events, deliveries and their jobs ----

mod webhooks_support {
    use super::*;
    use patchbay_core::webhook::{
        DeliveryAttempt, Event, EventSource, NewDelivery, Subscription, SubscriptionStatus,
        WebhookEndpoint,
    };
    use patchbay_core::{DeliveryId, EventId, SubscriptionId, WebhookEndpointId};

    /// A platform endpoint of `tenant`, stored.
    pub async fn endpoint(s: &dyn Store, tenant: TenantId, dk: &DataKeyRecord) -> WebhookEndpoint {
        let at = now();
        let e = WebhookEndpoint {
            id: WebhookEndpointId::new(),
            tenant_id: tenant,
            connection_id: None,
            livemode: false,
            events: vec!["*".into()],
            description: None,
            secret_hint: "whsec_…abcd".into(),
            previous_secret_expires_at: None,
            created_at: at,
            updated_at: at,
        };
        s.create_webhook_endpoint(
            &e,
            dk.id,
            &SealedSecret(vec![7; 16]),
            &audit(Some(tenant), "webhook_endpoint.created", &e.id.to_string()),
        )
        .await
        .unwrap();
        e
    }

    /// An enabled `*` subscription of `tenant`, stored.
    pub async fn subscription(s: &dyn Store, tenant: TenantId, dk: &DataKeyRecord) -> Subscription {
        let at = now();
        let sub = Subscription {
            id: SubscriptionId::new(),
            tenant_id: tenant,
            connection_id: None,
            url: "https://hooks.example.com/patchbay".into(),
            events: vec!["*".into()],
            description: None,
            status: SubscriptionStatus::Enabled,
            disabled_reason: None,
            failing_since: None,
            secret_hint: "whsec_…Zm9v".into(),
            previous_secret_expires_at: None,
            created_at: at,
            updated_at: at,
        };
        s.create_subscription(
            &sub,
            dk.id,
            &SealedSecret(vec![9; 16]),
            &audit(
                Some(tenant),
                "event_subscription.created",
                &sub.id.to_string(),
            ),
        )
        .await
        .unwrap();
        sub
    }

    /// A Stripe event of `tenant` through `endpoint`, received at `received_at`.
    pub fn stripe_event(
        tenant: TenantId,
        endpoint: Option<WebhookEndpointId>,
        stripe_id: Option<&str>,
        received_at: Timestamp,
    ) -> Event {
        Event {
            id: EventId::new(),
            tenant_id: tenant,
            source: if stripe_id.is_some() {
                EventSource::Stripe
            } else {
                EventSource::Patchbay
            },
            endpoint_id: endpoint,
            connection_id: None,
            stripe_event_id: stripe_id.map(Into::into),
            event_type: "invoice.paid".into(),
            account: None,
            livemode: false,
            created: received_at,
            received_at,
            payload: format!(
                "{{\"id\":\"{}\",\"type\":\"invoice.paid\"}}",
                stripe_id.unwrap_or("patchbay")
            ),
        }
    }

    /// A delivery (with its job, due at `at`) to `subscription`.
    pub fn delivery(tenant: TenantId, subscription: SubscriptionId, at: Timestamp) -> NewDelivery {
        let id = DeliveryId::new();
        NewDelivery {
            id,
            subscription_id: subscription,
            job: NewJob::new(kinds::WEBHOOK_DELIVER, id.uuid(), at)
                .for_tenant(tenant)
                .max_attempts(1000),
        }
    }

    /// The `webhook.deliver` jobs of a delivery.
    pub async fn delivery_jobs(s: &dyn Store, id: DeliveryId) -> Vec<patchbay_core::job::Job> {
        s.system_jobs_for_subject(kinds::WEBHOOK_DELIVER, id.uuid())
            .await
            .unwrap()
    }

    /// Claims the due `webhook.deliver` jobs at `at`.
    pub async fn claim_deliveries(
        s: &dyn Store,
        at: Timestamp,
    ) -> Vec<patchbay_core::job::ClaimedJob> {
        s.system_claim_jobs(&ClaimRequest {
            owner: "w".into(),
            now: at,
            lease_until: add_seconds(at, 60),
            limit: 100,
            kinds: patchbay_core::job::KindFilter::Only(kinds::WEBHOOK_DELIVER),
        })
        .await
        .unwrap()
    }

    /// An attempt numbered `n` at `at`.
    pub fn attempt(n: u32, at: Timestamp, status: Option<u16>) -> DeliveryAttempt {
        DeliveryAttempt {
            attempt: n,
            attempted_at: at,
            status_code: status,
            duration_ms: 12,
            error: None,
            response_snippet: "nope".into(),
        }
    }
}

conformance! {
    async fn an_event_is_stored_once_per_endpoint_with_its_deliveries_and_jobs(b) {
        use patchbay_core::webhook::EventInsert;
        use webhooks_support::*;
        let s = b.store.as_ref();
        let (t, dk) = tenant(s, "t").await;
        let ep = endpoint(s, t.id, &dk).await;
        let ep2 = endpoint(s, t.id, &dk).await;
        let sub = subscription(s, t.id, &dk).await;
        let at = now();

        let first = stripe_event(t.id, Some(ep.id), Some("evt_1"), at);
        let d1 = delivery(t.id, sub.id, at);
        assert_eq!(
            s.insert_event(&first, std::slice::from_ref(&d1)).await.unwrap(),
            EventInsert::Stored { deliveries: vec![d1.id] }
        );
        assert_eq!(s.get_event(t.id, first.id).await.unwrap().as_ref(), Some(&first));
        assert_eq!(delivery_jobs(s, d1.id).await.len(), 1);
        let listed = s.list_deliveries(t.id, first.id).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0.id, d1.id);
        assert_eq!(listed[0].0.status, patchbay_core::webhook::DeliveryStatus::Pending);
        assert_eq!(listed[0].0.attempts, 0);
        assert!(listed[0].1.is_empty());

        // The same Stripe event again on the same endpoint: nothing written,
        // the first event's id answered.
        let again = stripe_event(t.id, Some(ep.id), Some("evt_1"), add_seconds(at, 1));
        let d2 = delivery(t.id, sub.id, at);
        assert_eq!(
            s.insert_event(&again, std::slice::from_ref(&d2)).await.unwrap(),
            EventInsert::Duplicate(first.id)
        );
        assert!(s.get_event(t.id, again.id).await.unwrap().is_none());
        assert_eq!(b.rows("event_deliveries", "id", d2.id.uuid()).await, 0);
        assert!(delivery_jobs(s, d2.id).await.is_empty());
        assert_eq!(b.rows("events", "tenant_id", t.id.uuid()).await, 1);
        assert_eq!(s.list_deliveries(t.id, first.id).await.unwrap().len(), 1);

        // The same Stripe id through another endpoint is another event.
        let other = stripe_event(t.id, Some(ep2.id), Some("evt_1"), at);
        let d3 = delivery(t.id, sub.id, at);
        assert_eq!(
            s.insert_event(&other, std::slice::from_ref(&d3)).await.unwrap(),
            EventInsert::Stored { deliveries: vec![d3.id] }
        );
        // Patchbay's own events (no endpoint, no Stripe id) never collide.
        for _ in 0..2 {
            let own = stripe_event(t.id, None, None, at);
            assert!(matches!(
                s.insert_event(&own, &[]).await.unwrap(),
                EventInsert::Stored { deliveries } if deliveries.is_empty()
            ));
        }
        assert_eq!(b.rows("events", "tenant_id", t.id.uuid()).await, 4);

        // Another tenant sees none of it.
        let (other_tenant, _) = tenant(s, "o").await;
        assert!(s.get_event(other_tenant.id, first.id).await.unwrap().is_none());
        assert!(s.list_deliveries(other_tenant.id, first.id).await.unwrap().is_empty());
    }
}

conformance! {
    async fn deliveries_skip_disabled_deleted_and_foreign_subscriptions(b) {
        use patchbay_core::webhook::{EventInsert, SubscriptionStatus};
        use webhooks_support::*;
        let s = b.store.as_ref();
        let (t, dk) = tenant(s, "t").await;
        let (o, odk) = tenant(s, "o").await;
        let ep = endpoint(s, t.id, &dk).await;
        let enabled = subscription(s, t.id, &dk).await;
        let mut disabled = subscription(s, t.id, &dk).await;
        disabled.status = SubscriptionStatus::Disabled;
        disabled.disabled_reason = Some("Disabled by the tenant.".into());
        s.update_subscription(&disabled, &audit(Some(t.id), "event_subscription.updated", "s"))
            .await
            .unwrap()
            .unwrap();
        let deleted = subscription(s, t.id, &dk).await;
        assert!(
            s.delete_subscription(t.id, deleted.id, &audit(Some(t.id), "event_subscription.deleted", "s"))
                .await
                .unwrap()
        );
        let foreign = subscription(s, o.id, &odk).await;

        let at = now();
        let event = stripe_event(t.id, Some(ep.id), Some("evt_skip"), at);
        let planned: Vec<_> = [enabled.id, disabled.id, deleted.id, foreign.id]
            .into_iter()
            .map(|sub| delivery(t.id, sub, at))
            .collect();
        assert_eq!(
            s.insert_event(&event, &planned).await.unwrap(),
            EventInsert::Stored { deliveries: vec![planned[0].id] }
        );
        assert_eq!(delivery_jobs(s, planned[0].id).await.len(), 1);
        for skipped in &planned[1..] {
            assert_eq!(b.rows("event_deliveries", "id", skipped.id.uuid()).await, 0);
            assert!(delivery_jobs(s, skipped.id).await.is_empty(), "no job without its delivery");
        }

        // A redelivery follows the same rules.
        let again: Vec<_> = [enabled.id, disabled.id, deleted.id, foreign.id]
            .into_iter()
            .map(|sub| delivery(t.id, sub, at))
            .collect();
        let created = s.create_deliveries(t.id, event.id, &again).await.unwrap();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].id, again[0].id);
        assert_eq!(created[0].subscription_id, enabled.id);
        assert_eq!(created[0].event_id, event.id);
        assert_eq!(delivery_jobs(s, again[0].id).await.len(), 1);
        for skipped in &again[1..] {
            assert!(delivery_jobs(s, skipped.id).await.is_empty());
        }
        assert_eq!(s.list_deliveries(t.id, event.id).await.unwrap().len(), 2);
        // Another tenant cannot add deliveries to this event.
        let stray = delivery(o.id, foreign.id, at);
        assert!(s.create_deliveries(o.id, event.id, std::slice::from_ref(&stray)).await.unwrap().is_empty());
        assert!(delivery_jobs(s, stray.id).await.is_empty());

        // Deleting the subscription deletes its deliveries.
        assert!(
            s.delete_subscription(t.id, enabled.id, &audit(Some(t.id), "event_subscription.deleted", "s"))
                .await
                .unwrap()
        );
        assert!(s.list_deliveries(t.id, event.id).await.unwrap().is_empty());
        assert!(s.delivery_work(t.id, planned[0].id, now()).await.unwrap().is_none());
    }
}

conformance! {
    async fn an_attempt_is_recorded_only_under_the_jobs_lease(b) {
        use patchbay_core::webhook::{AttemptRecord, DeliveryStatus, SubscriptionHealth};
        use webhooks_support::*;
        let s = b.store.as_ref();
        let (t, dk) = tenant(s, "t").await;
        let ep = endpoint(s, t.id, &dk).await;
        let sub = subscription(s, t.id, &dk).await;
        let at = now();
        let event = stripe_event(t.id, Some(ep.id), Some("evt_lease"), at);
        let d = delivery(t.id, sub.id, at);
        s.insert_event(&event, std::slice::from_ref(&d)).await.unwrap();

        let work = s.delivery_work(t.id, d.id, at).await.unwrap().unwrap();
        assert_eq!(work.delivery.id, d.id);
        assert_eq!(work.event, event);
        assert_eq!(work.subscription.subscription.id, sub.id);
        assert_eq!(work.subscription.secret, SealedSecret(vec![9; 16]));
        assert!(work.subscription.previous.is_none());

        let claimed = claim_deliveries(s, add_seconds(at, 1)).await;
        assert_eq!(claimed.len(), 1);
        let job = &claimed[0];
        assert_eq!(job.job.subject, d.id.uuid());
        let failed = AttemptRecord {
            tenant_id: t.id,
            delivery_id: d.id,
            subscription_id: sub.id,
            attempt: attempt(1, at, Some(500)),
            status: DeliveryStatus::Pending,
            next_attempt_at: Some(add_seconds(at, 30)),
            health: SubscriptionHealth::Failed {
                disable_if_failing_since: add_seconds(at, -3600),
                reason: "failing".into(),
            },
        };
        let retry = JobOutcome::Retry { run_at: add_seconds(at, 30), error: "HTTP 500".into() };

        // A worker whose lease was lost writes nothing at all.
        assert!(
            !s.record_delivery_attempt(&failed, job.job.id, uuid::Uuid::new_v4(), &retry, at)
                .await
                .unwrap()
        );
        assert_eq!(b.rows("delivery_attempts", "delivery_id", d.id.uuid()).await, 0);
        let (delivery, log) = s.list_deliveries(t.id, event.id).await.unwrap().remove(0);
        assert_eq!(delivery.attempts, 0);
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert!(delivery.last_status_code.is_none());
        assert!(log.is_empty());
        let unchanged = s.get_subscription(t.id, sub.id).await.unwrap().unwrap();
        assert!(unchanged.failing_since.is_none());
        let jobs = delivery_jobs(s, d.id).await;
        assert_eq!(jobs[0].status, JobStatus::Running, "the job is still the holder's");

        // The holder records: log row, delivery, subscription and job at once.
        assert!(
            s.record_delivery_attempt(&failed, job.job.id, job.lease_token, &retry, at)
                .await
                .unwrap()
        );
        let (delivery, log) = s.list_deliveries(t.id, event.id).await.unwrap().remove(0);
        assert_eq!(delivery.attempts, 1);
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert_eq!(delivery.last_status_code, Some(500));
        assert_eq!(delivery.next_attempt_at, Some(add_seconds(at, 30)));
        assert_eq!(log, vec![attempt(1, at, Some(500))]);
        let jobs = delivery_jobs(s, d.id).await;
        assert_eq!(jobs[0].status, JobStatus::Queued);
        assert_eq!(jobs[0].run_at, add_seconds(at, 30));
        assert_eq!(
            s.get_subscription(t.id, sub.id).await.unwrap().unwrap().failing_since,
            Some(at)
        );
        // The same token again (a duplicate finish) writes nothing.
        assert!(
            !s.record_delivery_attempt(&failed, job.job.id, job.lease_token, &retry, at)
                .await
                .unwrap()
        );
        assert_eq!(b.rows("delivery_attempts", "delivery_id", d.id.uuid()).await, 1);

        // Delivered: the job ends, the failure run ends.
        let claimed = claim_deliveries(s, add_seconds(at, 31)).await;
        assert_eq!(claimed.len(), 1);
        let ok = AttemptRecord {
            attempt: attempt(2, add_seconds(at, 31), Some(204)),
            status: DeliveryStatus::Succeeded,
            next_attempt_at: None,
            health: SubscriptionHealth::Delivered,
            ..failed.clone()
        };
        assert!(
            s.record_delivery_attempt(&ok, claimed[0].job.id, claimed[0].lease_token, &JobOutcome::Done, add_seconds(at, 31))
                .await
                .unwrap()
        );
        let (delivery, log) = s.list_deliveries(t.id, event.id).await.unwrap().remove(0);
        assert_eq!(delivery.status, DeliveryStatus::Succeeded);
        assert_eq!(delivery.attempts, 2);
        assert!(delivery.next_attempt_at.is_none());
        assert_eq!(log.len(), 2);
        assert_eq!(log[1].status_code, Some(204));
        assert!(delivery_jobs(s, d.id).await.is_empty(), "a done job is gone");
        assert!(s.get_subscription(t.id, sub.id).await.unwrap().unwrap().failing_since.is_none());
    }
}

/// Claims the delivery's job at `at` and records attempt `n + 1` with
/// `status` and `health`; returns the subscription after it.
async fn record_attempt(
    s: &dyn Store,
    (tenant, delivery, subscription): (
        TenantId,
        patchbay_core::DeliveryId,
        patchbay_core::SubscriptionId,
    ),
    n: &mut u32,
    at: Timestamp,
    status: patchbay_core::webhook::DeliveryStatus,
    health: patchbay_core::webhook::SubscriptionHealth,
) -> patchbay_core::webhook::Subscription {
    use patchbay_core::webhook::{AttemptRecord, DeliveryStatus};
    *n += 1;
    let claimed = webhooks_support::claim_deliveries(s, at).await;
    assert_eq!(claimed.len(), 1, "the delivery's job is due at {at}");
    let outcome = if status == DeliveryStatus::Pending {
        JobOutcome::Retry {
            run_at: at,
            error: "HTTP 500".into(),
        }
    } else {
        JobOutcome::Done
    };
    let r = AttemptRecord {
        tenant_id: tenant,
        delivery_id: delivery,
        subscription_id: subscription,
        attempt: webhooks_support::attempt(*n, at, Some(500)),
        status,
        next_attempt_at: (status == DeliveryStatus::Pending).then_some(at),
        health,
    };
    assert!(
        s.record_delivery_attempt(&r, claimed[0].job.id, claimed[0].lease_token, &outcome, at)
            .await
            .unwrap()
    );
    s.get_subscription(tenant, subscription)
        .await
        .unwrap()
        .unwrap()
}

conformance! {
    async fn a_subscription_failing_past_the_cutoff_is_disabled_with_the_reason(b) {
        use patchbay_core::webhook::{DeliveryStatus, SubscriptionHealth, SubscriptionStatus};
        use webhooks_support::*;
        let s = b.store.as_ref();
        let (t, dk) = tenant(s, "t").await;
        let ep = endpoint(s, t.id, &dk).await;
        let sub = subscription(s, t.id, &dk).await;
        let t0 = now();
        let event = stripe_event(t.id, Some(ep.id), Some("evt_fail"), t0);
        let d = delivery(t.id, sub.id, t0);
        s.insert_event(&event, std::slice::from_ref(&d)).await.unwrap();

        let mut n = 0;
        let ids = (t.id, d.id, sub.id);
        let failed = |cutoff: Timestamp, reason: &str| SubscriptionHealth::Failed {
            disable_if_failing_since: cutoff,
            reason: reason.into(),
        };
        const HOUR: i64 = 3600;

        // A failure starts a run; failures within the allowance keep it going.
        let got = record_attempt(s, ids, &mut n, t0, DeliveryStatus::Pending, failed(add_seconds(t0, -HOUR), "r1")).await;
        assert_eq!(got.failing_since, Some(t0));
        assert_eq!(got.status, SubscriptionStatus::Enabled);
        let t1 = add_seconds(t0, HOUR / 2);
        let got = record_attempt(s, ids, &mut n, t1, DeliveryStatus::Pending, failed(add_seconds(t1, -HOUR), "r2")).await;
        assert_eq!(got.failing_since, Some(t0), "the run's start stays");
        assert_eq!(got.status, SubscriptionStatus::Enabled);
        // A success ends the run.
        let t2 = add_seconds(t0, HOUR);
        let got = record_attempt(s, ids, &mut n, t2, DeliveryStatus::Pending, SubscriptionHealth::Delivered).await;
        assert!(got.failing_since.is_none());
        // Unchanged (an attempt not made) changes nothing.
        let got = record_attempt(s, ids, &mut n, t2, DeliveryStatus::Pending, SubscriptionHealth::Unchanged).await;
        assert!(got.failing_since.is_none());
        assert_eq!(got.status, SubscriptionStatus::Enabled);
        // A new run, and a failure once it is as old as the allowance: disabled.
        let t3 = add_seconds(t0, 2 * HOUR);
        let got = record_attempt(s, ids, &mut n, t3, DeliveryStatus::Pending, failed(add_seconds(t3, -HOUR), "r3")).await;
        assert_eq!(got.failing_since, Some(t3));
        assert_eq!(got.status, SubscriptionStatus::Enabled);
        let t4 = add_seconds(t3, HOUR);
        let got = record_attempt(s, ids, &mut n, t4, DeliveryStatus::Pending, failed(add_seconds(t4, -HOUR), "the reason")).await;
        assert_eq!(got.status, SubscriptionStatus::Disabled);
        assert_eq!(got.disabled_reason.as_deref(), Some("the reason"));
        assert_eq!(got.updated_at, t4);
        assert!(!s.enabled_subscriptions(t.id).await.unwrap().iter().any(|x| x.id == sub.id));
        // Later failures keep the first reason.
        let t5 = add_seconds(t4, 10);
        let got = record_attempt(s, ids, &mut n, t5, DeliveryStatus::Failed, failed(add_seconds(t5, -HOUR), "another")).await;
        assert_eq!(got.status, SubscriptionStatus::Disabled);
        assert_eq!(got.disabled_reason.as_deref(), Some("the reason"));
        assert_eq!(got.updated_at, t4);
        let (delivery, log) = s.list_deliveries(t.id, event.id).await.unwrap().remove(0);
        assert_eq!(delivery.status, DeliveryStatus::Failed);
        assert_eq!(log.len(), 7);

        // The tenant re-enables it: the run and the reason are cleared.
        let mut again = got.clone();
        again.status = SubscriptionStatus::Enabled;
        again.disabled_reason = None;
        again.failing_since = None;
        again.updated_at = add_seconds(t5, 1);
        let back = s
            .update_subscription(&again, &audit(Some(t.id), "event_subscription.updated", "s"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, again);
        assert!(s.enabled_subscriptions(t.id).await.unwrap().iter().any(|x| x.id == sub.id));
    }
}

conformance! {
    async fn old_events_are_purged_with_their_deliveries_in_batches(b) {
        use patchbay_core::webhook::{AttemptRecord, DeliveryStatus, SubscriptionHealth};
        use webhooks_support::*;
        let s = b.store.as_ref();
        let (t, dk) = tenant(s, "t").await;
        let (o, odk) = tenant(s, "o").await;
        let ep = endpoint(s, t.id, &dk).await;
        let oep = endpoint(s, o.id, &odk).await;
        let sub = subscription(s, t.id, &dk).await;
        let at = now();
        let old_at = add_seconds(at, -40 * 86400);
        let cutoff = add_seconds(at, -30 * 86400);

        let old = stripe_event(t.id, Some(ep.id), Some("evt_old"), old_at);
        let old_delivery = delivery(t.id, sub.id, at);
        s.insert_event(&old, std::slice::from_ref(&old_delivery)).await.unwrap();
        let claimed = claim_deliveries(s, at).await;
        assert_eq!(claimed.len(), 1);
        let r = AttemptRecord {
            tenant_id: t.id,
            delivery_id: old_delivery.id,
            subscription_id: sub.id,
            attempt: attempt(1, at, Some(500)),
            status: DeliveryStatus::Pending,
            next_attempt_at: Some(add_seconds(at, 60)),
            health: SubscriptionHealth::Unchanged,
        };
        assert!(
            s.record_delivery_attempt(
                &r,
                claimed[0].job.id,
                claimed[0].lease_token,
                &JobOutcome::Retry { run_at: add_seconds(at, 60), error: "HTTP 500".into() },
                at,
            )
            .await
            .unwrap()
        );
        let more_old = [
            stripe_event(t.id, Some(ep.id), Some("evt_old2"), add_seconds(old_at, 1)),
            stripe_event(o.id, Some(oep.id), Some("evt_old3"), add_seconds(old_at, 2)),
        ];
        for e in &more_old {
            s.insert_event(e, &[]).await.unwrap();
        }
        let fresh = stripe_event(t.id, Some(ep.id), Some("evt_new"), at);
        let fresh_delivery = delivery(t.id, sub.id, at);
        s.insert_event(&fresh, std::slice::from_ref(&fresh_delivery)).await.unwrap();
        // Exactly at the cut-off is kept (strictly before is purged).
        let edge = stripe_event(t.id, Some(ep.id), Some("evt_edge"), cutoff);
        s.insert_event(&edge, &[]).await.unwrap();

        // Batches: the oldest first, across tenants.
        assert_eq!(s.system_purge_events(cutoff, 2).await.unwrap(), 2);
        assert!(s.get_event(t.id, old.id).await.unwrap().is_none());
        assert!(s.get_event(t.id, more_old[0].id).await.unwrap().is_none());
        assert!(s.get_event(o.id, more_old[1].id).await.unwrap().is_some());
        assert_eq!(s.system_purge_events(cutoff, 2).await.unwrap(), 1);
        assert!(s.get_event(o.id, more_old[1].id).await.unwrap().is_none());
        assert_eq!(s.system_purge_events(cutoff, 2).await.unwrap(), 0);

        // The old event's delivery and attempt log went with it; its job
        // finds no work.
        assert_eq!(b.rows("event_deliveries", "id", old_delivery.id.uuid()).await, 0);
        assert_eq!(b.rows("delivery_attempts", "delivery_id", old_delivery.id.uuid()).await, 0);
        assert!(s.delivery_work(t.id, old_delivery.id, at).await.unwrap().is_none());
        // The rest stays.
        assert!(s.get_event(t.id, fresh.id).await.unwrap().is_some());
        assert!(s.get_event(t.id, edge.id).await.unwrap().is_some());
        assert_eq!(s.list_deliveries(t.id, fresh.id).await.unwrap().len(), 1);
        assert!(s.get_subscription(t.id, sub.id).await.unwrap().is_some());
        assert!(s.get_webhook_endpoint(t.id, ep.id).await.unwrap().is_some());
        // A purged Stripe event id can be stored again (Stripe may resend it).
        let resent = stripe_event(t.id, Some(ep.id), Some("evt_old"), at);
        assert!(matches!(
            s.insert_event(&resent, &[]).await.unwrap(),
            patchbay_core::webhook::EventInsert::Stored { .. }
        ));
    }
}

conformance! {
    async fn claims_take_only_or_all_but_one_kind(b) {
        use patchbay_core::job::KindFilter;
        let s = b.store.as_ref();
        let (t, _) = tenant(s, "t").await;
        let at = now();
        let deliver = NewJob::new(kinds::WEBHOOK_DELIVER, uuid::Uuid::now_v7(), at).for_tenant(t.id);
        let deliver2 = NewJob::new(kinds::WEBHOOK_DELIVER, uuid::Uuid::now_v7(), at).for_tenant(t.id);
        let revalidate = NewJob::new(kinds::CONNECTION_REVALIDATE, uuid::Uuid::now_v7(), at).for_tenant(t.id);
        let purge = NewJob::new(kinds::EVENTS_PURGE, uuid::Uuid::nil(), at);
        for j in [&deliver, &deliver2, &revalidate, &purge] {
            assert!(s.enqueue_job(j).await.unwrap());
        }
        let claim = |kinds: KindFilter, limit: u32| ClaimRequest {
            owner: "w".into(),
            now: add_seconds(at, 1),
            lease_until: add_seconds(at, 60),
            limit,
            kinds,
        };
        let ids = |claimed: Vec<patchbay_core::job::ClaimedJob>| {
            let mut v: Vec<_> = claimed.into_iter().map(|c| c.job.id).collect();
            v.sort();
            v
        };
        let sorted = |mut v: Vec<patchbay_core::JobId>| {
            v.sort();
            v
        };

        // Only: that kind, up to the limit.
        let one = s.system_claim_jobs(&claim(KindFilter::Only(kinds::WEBHOOK_DELIVER), 1)).await.unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].job.kind, kinds::WEBHOOK_DELIVER);
        // Except: every other kind, never that one.
        let others = s.system_claim_jobs(&claim(KindFilter::Except(kinds::WEBHOOK_DELIVER), 10)).await.unwrap();
        assert_eq!(ids(others), sorted(vec![revalidate.id, purge.id]));
        assert!(
            s.system_claim_jobs(&claim(KindFilter::Except(kinds::WEBHOOK_DELIVER), 10))
                .await
                .unwrap()
                .is_empty(),
            "the other lane's jobs are left alone"
        );
        let rest = s.system_claim_jobs(&claim(KindFilter::Only(kinds::WEBHOOK_DELIVER), 10)).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_ne!(rest[0].job.id, one[0].job.id);
        assert_eq!(
            sorted(vec![one[0].job.id, rest[0].job.id]),
            sorted(vec![deliver.id, deliver2.id])
        );
        // A kind with no job: nothing.
        assert!(
            s.system_claim_jobs(&claim(KindFilter::Only(kinds::CONNECT_DEAUTHORIZE), 10))
                .await
                .unwrap()
                .is_empty()
        );
        // Released, a delivery is claimable by All again.
        assert!(s.release_job(rest[0].job.id, rest[0].lease_token, at).await.unwrap());
        let all = s.system_claim_jobs(&claim(KindFilter::All, 10)).await.unwrap();
        assert_eq!(ids(all), vec![rest[0].job.id]);
    }
}
