//! The audit log (SQLite).

use async_trait::async_trait;
use patchbay_core::audit::AuditEvent;
use patchbay_core::store::{AuditFilter, AuditStore, StoreResult};
use patchbay_core::{AuditEventId, Page, PageRequest, TenantId};
use sqlx::{QueryBuilder, Sqlite};

use super::{SqliteStore, insert_audit};
use crate::error::map;
use crate::page::push_page;
use crate::rows::{AUDIT_COLUMNS, AuditRow, convert};

#[async_trait]
impl AuditStore for SqliteStore {
    async fn insert_audit_event(&self, event: &AuditEvent) -> StoreResult<()> {
        let mut conn = self.write.acquire().await.map_err(map)?;
        insert_audit(&mut conn, event).await
    }

    async fn list_audit_events(
        &self,
        tenant: Option<TenantId>,
        filter: &AuditFilter,
        page: &PageRequest<AuditEventId>,
    ) -> StoreResult<Page<AuditEvent>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
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
            .fetch_all(&mut *self.read.get().await?)
            .await
            .map_err(map)?;
        Ok(Page::from_rows(convert(rows)?, page))
    }
}
