//! The audit log (both engines).

use async_trait::async_trait;
use patchbay_core::audit::AuditEvent;
use patchbay_core::store::{AuditFilter, AuditStore, StoreResult};
use patchbay_core::{AuditEventId, Page, PageRequest, TenantId};
use sqlx::QueryBuilder;

use crate::engine::for_each_engine;
use crate::error::map;
use crate::page::push_page;
use crate::rows::{AUDIT_COLUMNS, AuditRow, convert};
use crate::types::DbTime;
use sqlx::types::Json;

/// Rows per multi-row `INSERT` in [`AuditStore::insert_audit_events`]: nine
/// bound values each, so one statement binds at most 9,000 values, well under
/// SQLite's limit (32,766) and PostgreSQL's (65,535).
const AUDIT_ROWS_PER_INSERT: usize = 1_000;

for_each_engine! {
    impl Engine {
        /// Appends an audit event on `conn`, inside the caller's transaction.
        pub(crate) async fn insert_audit(
            conn: &mut <Db as sqlx::Database>::Connection,
            event: &AuditEvent,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO audit_events (id, tenant_id, actor, action, target_id, details, \
                 request_id, client_request_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(event.id.uuid())
            .bind(event.tenant_id.map(|t| t.uuid()))
            .bind(event.actor.to_string())
            .bind(&event.action)
            .bind(&event.target_id)
            .bind(Json(&event.details))
            .bind(&event.request_id)
            .bind(&event.client_request_id)
            .bind(DbTime(event.created_at))
            .execute(conn)
            .await
            .map_err(map)?;
            Ok(())
        }
    }

    #[async_trait]
    impl AuditStore for Engine {
        async fn insert_audit_event(&self, event: &AuditEvent) -> StoreResult<()> {
            let mut conn = self.writer().acquire().await.map_err(map)?;
            Engine::insert_audit(&mut conn, event).await
        }

        async fn insert_audit_events(&self, events: &[AuditEvent]) -> StoreResult<()> {
            if events.is_empty() {
                return Ok(());
            }
            let mut tx = self.begin().await?;
            for chunk in events.chunks(AUDIT_ROWS_PER_INSERT) {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO audit_events (id, tenant_id, actor, action, target_id, details, \
                     request_id, client_request_id, created_at) ",
                );
                qb.push_values(chunk, |mut row, event| {
                    row.push_bind(event.id.uuid())
                        .push_bind(event.tenant_id.map(|t| t.uuid()))
                        .push_bind(event.actor.to_string())
                        .push_bind(&event.action)
                        .push_bind(&event.target_id)
                        .push_bind(Json(&event.details))
                        .push_bind(&event.request_id)
                        .push_bind(&event.client_request_id)
                        .push_bind(DbTime(event.created_at));
                });
                // A batch retried after its commit was acknowledged too late
                // must not fail on its own rows.
                qb.push(" ON CONFLICT (id) DO NOTHING");
                qb.build().execute(&mut *tx).await.map_err(map)?;
            }
            tx.commit().await.map_err(map)
        }

        async fn list_audit_events(
            &self,
            tenant: Option<TenantId>,
            filter: &AuditFilter,
            page: &PageRequest<AuditEventId>,
        ) -> StoreResult<Page<AuditEvent>> {
            let mut qb = QueryBuilder::<Db>::new(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE 1 = 1"
            ));
            if let Some(tenant) = tenant {
                qb.push(" AND tenant_id = ").push_bind(tenant.uuid());
            }
            if let Some(action) = &filter.action {
                qb.push(" AND action = ").push_bind(action.clone());
            }
            if let Some(target) = &filter.target_id {
                qb.push(" AND target_id = ").push_bind(target.clone());
            }
            push_page(&mut qb, "id", page);
            let rows: Vec<AuditRow> = qb
                .build_query_as()
                .fetch_all(&mut *self.reader().await?)
                .await
                .map_err(map)?;
            Ok(Page::from_rows(convert(rows)?, page))
        }
    }
}
