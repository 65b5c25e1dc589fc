//! Redis pub/sub as the [`ChangeFeed`] between replicas (chosen over
//! PostgreSQL `NOTIFY` when `PATCHBAY_REDIS_URL` is set). Publishing uses the
//! shared connection; each subscription has a connection of its own and ends
//! when that connection is lost.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use patchbay_core::change_feed::{ChangeFeed, FeedError, FeedSubscription};
use patchbay_stripe::redis_link::RedisLink;

/// Longest wait for the subscribing connection to open and subscribe.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct RedisChangeFeed {
    link: Arc<RedisLink>,
}

impl RedisChangeFeed {
    /// A feed over `link`.
    pub fn new(link: Arc<RedisLink>) -> Self {
        Self { link }
    }
}

fn feed_error(e: impl std::fmt::Display) -> FeedError {
    FeedError(format!("Redis: {e}"))
}

#[async_trait]
impl ChangeFeed for RedisChangeFeed {
    fn transport(&self) -> &'static str {
        "redis"
    }

    async fn publish(&self, channel: &str, payload: &str) -> Result<(), FeedError> {
        let mut conn = self.link.connection().await.map_err(feed_error)?;
        let sent: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut conn)
            .await;
        if let Err(e) = sent {
            self.link.reset().await;
            return Err(feed_error(e));
        }
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<Box<dyn FeedSubscription>, FeedError> {
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let mut pubsub = self.link.client().get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await
        .map_err(|_| feed_error(format!("not subscribed within {SUBSCRIBE_TIMEOUT:?}")))?
        .map_err(feed_error)?;
        Ok(Box::new(RedisSubscription {
            messages: Box::pin(subscribed.into_on_message()),
        }))
    }
}

struct RedisSubscription {
    messages: std::pin::Pin<Box<dyn futures::Stream<Item = redis::Msg> + Send>>,
}

#[async_trait]
impl FeedSubscription for RedisSubscription {
    async fn next(&mut self) -> Result<String, FeedError> {
        match self.messages.next().await {
            Some(message) => message.get_payload::<String>().map_err(feed_error),
            None => Err(feed_error("the subscribing connection was lost")),
        }
    }
}
