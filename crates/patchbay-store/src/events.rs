//! Events and their deliveries (both engines). An event is stored together
//! with its deliveries and their `webhook.deliver` jobs (the outbox), in one
//! transaction; a Stripe event an endpoint already stored writes nothing. An
//! attempt's log row, the delivery's status, the subscription's health and
//! the job's outcome are recorded together too, only under the job's lease.

use async_trait::async_trait;
use patchbay_core::store::{EventStore, StoreResult};
use patchbay_core::webhook::{
    AttemptRecord, AttemptWrite, Delivery, DeliveryAttempt, DeliveryWork, Event, EventFilter,
    EventInsert, NewDelivery, SubscriptionHealth,
};
use patchbay_core::{DeliveryId, EventId, Id, Page, PageRequest, TenantId, Timestamp};
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::engine::for_each_engine;
use crate::error::map;
use crate::page::push_page;
use crate::rows::convert;
use crate::signing_secrets::SecretTable;
use crate::subscriptions::subscription_secrets;
use crate::types::{DbTime, db_time};
use crate::webhook_rows::{
    ATTEMPT_COLUMNS, AttemptRow, DELIVERY_COLUMNS, DeliveryRow, EVENT_COLUMNS, EventRow,
};

/// A delivery to a subscription that still exists and is enabled.
const INSERT_DELIVERY: &str = "INSERT INTO event_deliveries (id, tenant_id, event_id, \
     subscription_id, status, attempts, next_attempt_at, created_at, updated_at) \
     SELECT $1, tenant_id, $2, id, 'pending', 0, $3, $4, $4 FROM event_subscriptions \
     WHERE id = $5 AND tenant_id = $6 AND status = 'enabled'";

for_each_engine! {
    impl Engine {
        /// Inserts an event unless its endpoint stored that Stripe event
        /// already. True if inserted.
        async fn insert_event_row(
            conn: &mut <Db as sqlx::Database>::Connection,
            e: &Event,
        ) -> StoreResult<bool> {
            let inserted = sqlx::query(
                "INSERT INTO events (id, tenant_id, source, endpoint_id, connection_id, \
                 stripe_event_id, type, account, livemode, created, received_at, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (endpoint_id, stripe_event_id) DO NOTHING",
            )
            .bind(e.id.uuid())
            .bind(e.tenant_id.uuid())
            .bind(e.source.as_str())
            .bind(e.endpoint_id.map(|id| id.uuid()))
            .bind(e.connection_id.map(|id| id.uuid()))
            .bind(&e.stripe_event_id)
            .bind(&e.event_type)
            .bind(&e.account)
            .bind(e.livemode)
            .bind(DbTime(e.created))
            .bind(DbTime(e.received_at))
            .bind(&e.payload)
            .execute(conn)
            .await
            .map_err(map)?
            .rows_affected();
            Ok(inserted == 1)
        }

        /// The stored copy of a duplicate Stripe event.
        async fn first_of(
            conn: &mut <Db as sqlx::Database>::Connection,
            e: &Event,
        ) -> StoreResult<EventInsert> {
            let (first,): (Uuid,) = sqlx::query_as(
                "SELECT id FROM events WHERE endpoint_id = $1 AND stripe_event_id = $2",
            )
            .bind(e.endpoint_id.map(|id| id.uuid()))
            .bind(&e.stripe_event_id)
            .fetch_one(conn)
            .await
            .map_err(map)?;
            Ok(EventInsert::Duplicate(Id::from_uuid(first)))
        }

        /// Writes an attempt's log row, delivery status and subscription health.
        async fn write_attempt(
            tx: &mut <Db as sqlx::Database>::Connection,
            r: &AttemptRecord,
            now: Timestamp,
        ) -> StoreResult<()> {
            let a = &r.attempt;
            let attempt = i32::try_from(a.attempt).unwrap_or(i32::MAX);
            let status_code = a.status_code.map(i32::from);
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (delivery_id, attempt) DO NOTHING"
            )))
            .bind(r.delivery_id.uuid())
            .bind(attempt)
            .bind(DbTime(a.attempted_at))
            .bind(status_code)
            .bind(i32::try_from(a.duration_ms).unwrap_or(i32::MAX))
            .bind(&a.error)
            .bind(&a.response_snippet)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            sqlx::query(
                "UPDATE event_deliveries SET status = $1, attempts = $2, last_status_code = $3, \
                 last_error = $4, next_attempt_at = $5, updated_at = $6 \
                 WHERE tenant_id = $7 AND id = $8",
            )
            .bind(r.status.as_str())
            .bind(attempt)
            .bind(status_code)
            .bind(&a.error)
            .bind(db_time(r.next_attempt_at))
            .bind(DbTime(now))
            .bind(r.tenant_id.uuid())
            .bind(r.delivery_id.uuid())
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            match &r.health {
                SubscriptionHealth::Unchanged => {}
                SubscriptionHealth::Delivered => {
                    sqlx::query(
                        "UPDATE event_subscriptions SET failing_since = NULL \
                         WHERE tenant_id = $1 AND id = $2 AND failing_since IS NOT NULL",
                    )
                    .bind(r.tenant_id.uuid())
                    .bind(r.subscription_id.uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
                }
                SubscriptionHealth::Failed { disable_if_failing_since, reason } => {
                    sqlx::query(
                        "UPDATE event_subscriptions SET \
                         failing_since = COALESCE(failing_since, $3), \
                         disabled_reason = CASE WHEN status = 'enabled' \
                           AND COALESCE(failing_since, $3) <= $4 THEN $5 ELSE disabled_reason END, \
                         status = CASE WHEN COALESCE(failing_since, $3) <= $4 THEN 'disabled' ELSE status END, \
                         updated_at = CASE WHEN status = 'enabled' \
                           AND COALESCE(failing_since, $3) <= $4 THEN $3 ELSE updated_at END \
                         WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(r.tenant_id.uuid())
                    .bind(r.subscription_id.uuid())
                    // A run of failures starts when its first attempt did.
                    .bind(DbTime(a.attempted_at))
                    .bind(DbTime(*disable_if_failing_since))
                    .bind(reason)
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
                }
            }
            Ok(())
        }

        /// Inserts deliveries (and their jobs) on `conn`; returns those created.
        async fn insert_deliveries(
            conn: &mut <Db as sqlx::Database>::Connection,
            tenant: TenantId,
            event: EventId,
            deliveries: &[NewDelivery],
            now: Timestamp,
        ) -> StoreResult<Vec<DeliveryId>> {
            let mut created = Vec::with_capacity(deliveries.len());
            for d in deliveries {
                let inserted = sqlx::query(INSERT_DELIVERY)
                    .bind(d.id.uuid())
                    .bind(event.uuid())
                    .bind(DbTime(d.job.run_at))
                    .bind(DbTime(now))
                    .bind(d.subscription_id.uuid())
                    .bind(tenant.uuid())
                    .execute(&mut *conn)
                    .await
                    .map_err(map)?
                    .rows_affected();
                if inserted == 1 {
                    Engine::insert_job(&mut *conn, &d.job, now).await?;
                    created.push(d.id);
                }
            }
            Ok(created)
        }
    }

    #[async_trait]
    impl EventStore for Engine {
        async fn insert_event(
            &self,
            e: &Event,
            deliveries: &[NewDelivery],
        ) -> StoreResult<EventInsert> {
            if deliveries.is_empty() {
                // One statement, committed on its own: no transaction to open.
                let mut conn = self.writer().acquire().await.map_err(map)?;
                if Engine::insert_event_row(&mut conn, e).await? {
                    return Ok(EventInsert::Stored { deliveries: Vec::new() });
                }
                return Engine::first_of(&mut conn, e).await;
            }
            let mut tx = self.begin().await?;
            if !Engine::insert_event_row(&mut tx, e).await? {
                return Engine::first_of(&mut tx, e).await;
            }
            let created =
                Engine::insert_deliveries(&mut tx, e.tenant_id, e.id, deliveries, e.received_at)
                    .await?;
            tx.commit().await.map_err(map)?;
            Ok(EventInsert::Stored { deliveries: created })
        }

        async fn get_event(&self, tenant: TenantId, id: EventId) -> StoreResult<Option<Event>> {
            let row: Option<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND id = $2"
            )))
            .bind(tenant.uuid())
            .bind(id.uuid())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn list_events(
            &self,
            tenant: TenantId,
            filter: &EventFilter,
            page: &PageRequest<EventId>,
        ) -> StoreResult<Page<Event>> {
            let mut qb = QueryBuilder::<Db>::new(format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = "
            ));
            qb.push_bind(tenant.uuid());
            if let Some(c) = filter.connection_id {
                qb.push(" AND connection_id = ").push_bind(c.uuid());
            }
            if let Some(t) = &filter.event_type {
                qb.push(" AND type = ").push_bind(t.clone());
            }
            if let Some(t) = filter.created_gte {
                qb.push(" AND created >= ").push_bind(DbTime(t));
            }
            if let Some(t) = filter.created_lte {
                qb.push(" AND created <= ").push_bind(DbTime(t));
            }
            push_page(&mut qb, "id", page);
            let rows: Vec<EventRow> = qb
                .build_query_as()
                .fetch_all(&mut *self.reader().await?)
                .await
                .map_err(map)?;
            Ok(Page::from_rows(convert(rows)?, page))
        }

        async fn system_purge_events(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
            let deleted = sqlx::query(
                "DELETE FROM events WHERE id IN \
                 (SELECT id FROM events WHERE received_at < $1 ORDER BY received_at LIMIT $2)",
            )
            .bind(DbTime(before))
            .bind(i64::from(limit))
            .execute(self.writer())
            .await
            .map_err(map)?
            .rows_affected();
            Ok(deleted)
        }

        async fn create_deliveries(
            &self,
            tenant: TenantId,
            event: EventId,
            deliveries: &[NewDelivery],
        ) -> StoreResult<Vec<Delivery>> {
            let mut tx = self.begin().await?;
            let exists: Option<(Uuid,)> =
                sqlx::query_as("SELECT id FROM events WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.uuid())
                    .bind(event.uuid())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map)?;
            if exists.is_none() {
                return Ok(Vec::new());
            }
            let now = patchbay_core::time::now();
            let created = Engine::insert_deliveries(&mut tx, tenant, event, deliveries, now).await?;
            let mut out = Vec::with_capacity(created.len());
            for id in created {
                let row: DeliveryRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {DELIVERY_COLUMNS} FROM event_deliveries WHERE tenant_id = $1 AND id = $2"
                )))
                .bind(tenant.uuid())
                .bind(id.uuid())
                .fetch_one(&mut *tx)
                .await
                .map_err(map)?;
                out.push(row.try_into()?);
            }
            tx.commit().await.map_err(map)?;
            Ok(out)
        }

        async fn list_deliveries(
            &self,
            tenant: TenantId,
            event: EventId,
        ) -> StoreResult<Vec<(Delivery, Vec<DeliveryAttempt>)>> {
            let mut reader = self.reader().await?;
            let rows: Vec<DeliveryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DELIVERY_COLUMNS} FROM event_deliveries \
                 WHERE tenant_id = $1 AND event_id = $2 ORDER BY id"
            )))
            .bind(tenant.uuid())
            .bind(event.uuid())
            .fetch_all(&mut *reader)
            .await
            .map_err(map)?;
            let attempts: Vec<AttemptRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id IN \
                 (SELECT id FROM event_deliveries WHERE tenant_id = $1 AND event_id = $2) \
                 ORDER BY delivery_id, attempt"
            )))
            .bind(tenant.uuid())
            .bind(event.uuid())
            .fetch_all(&mut *reader)
            .await
            .map_err(map)?;
            drop(reader);
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let delivery: Delivery = row.try_into()?;
                out.push((delivery, Vec::new()));
            }
            for a in attempts {
                let id = a.delivery_id;
                let attempt: DeliveryAttempt = a.try_into()?;
                if let Some((_, log)) = out.iter_mut().find(|(d, _)| d.id.uuid() == id) {
                    log.push(attempt);
                }
            }
            Ok(out)
        }

        async fn delivery_work(
            &self,
            tenant: TenantId,
            id: DeliveryId,
            now: Timestamp,
        ) -> StoreResult<Option<DeliveryWork>> {
            let mut reader = self.reader().await?;
            let delivery: Option<DeliveryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DELIVERY_COLUMNS} FROM event_deliveries WHERE tenant_id = $1 AND id = $2"
            )))
            .bind(tenant.uuid())
            .bind(id.uuid())
            .fetch_optional(&mut *reader)
            .await
            .map_err(map)?;
            let Some(delivery) = delivery else { return Ok(None) };
            let delivery: Delivery = delivery.try_into()?;
            let event: Option<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND id = $2"
            )))
            .bind(tenant.uuid())
            .bind(delivery.event_id.uuid())
            .fetch_optional(&mut *reader)
            .await
            .map_err(map)?;
            let Some(event) = event else { return Ok(None) };
            let sub = Engine::signing_secrets(
                &mut reader,
                SecretTable::Subscriptions,
                Some(tenant),
                delivery.subscription_id.uuid(),
                now,
            )
            .await?;
            let Some(sub) = sub else { return Ok(None) };
            Ok(Some(DeliveryWork {
                delivery,
                event: event.try_into()?,
                subscription: subscription_secrets(sub)?,
            }))
        }

        async fn record_delivery_attempts(
            &self,
            writes: &[AttemptWrite],
            now: Timestamp,
        ) -> StoreResult<Vec<bool>> {
            let mut applied = Vec::with_capacity(writes.len());
            if writes.is_empty() {
                return Ok(applied);
            }
            let mut tx = self.begin().await?;
            for w in writes {
                let ok =
                    Engine::finish_job_on(&mut tx, w.job, w.lease_token, &w.outcome, now).await?;
                applied.push(ok);
                if ok {
                    Engine::write_attempt(&mut tx, &w.record, now).await?;
                }
            }
            tx.commit().await.map_err(map)?;
            Ok(applied)
        }
    }
}
