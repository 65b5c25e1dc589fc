//! Dialect: PostgreSQL's `LISTEN/NOTIFY` as the [`ChangeFeed`] between
//! replicas. Notifications are published through the store's pool; each
//! subscription listens on a dedicated connection of its own (outside the
//! pool, so it never takes a slot from queries), and ends at the first sign
//! that the connection was lost, so its reader knows messages may be missing.

use std::time::Duration;

use async_trait::async_trait;
use patchbay_core::change_feed::{ChangeFeed, FeedError, FeedSubscription};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

/// Longest wait for the listening connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct PgChangeFeed {
    pool: PgPool,
}

impl PgChangeFeed {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn feed_error(e: sqlx::Error) -> FeedError {
    FeedError(format!("PostgreSQL: {e}"))
}

#[async_trait]
impl ChangeFeed for PgChangeFeed {
    fn transport(&self) -> &'static str {
        "postgres"
    }

    async fn publish(&self, channel: &str, payload: &str) -> Result<(), FeedError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map_err(feed_error)?;
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<Box<dyn FeedSubscription>, FeedError> {
        // A pool of one for the listener alone: it holds its connection for
        // as long as it listens.
        let options = (*self.pool.connect_options()).clone();
        let own = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(feed_error)?;
        let mut listener = PgListener::connect_with(&own).await.map_err(feed_error)?;
        // A lost connection is reported (not silently replaced), so the
        // reader can account for what it may have missed.
        listener.eager_reconnect(false);
        listener.listen(channel).await.map_err(feed_error)?;
        Ok(Box::new(PgSubscription {
            listener,
            _pool: own,
        }))
    }
}

struct PgSubscription {
    listener: PgListener,
    _pool: PgPool,
}

#[async_trait]
impl FeedSubscription for PgSubscription {
    async fn next(&mut self) -> Result<String, FeedError> {
        match self.listener.try_recv().await.map_err(feed_error)? {
            Some(notification) => Ok(notification.payload().to_owned()),
            None => Err(FeedError(
                "PostgreSQL: the listening connection was lost".into(),
            )),
        }
    }
}
