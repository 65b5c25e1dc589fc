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
