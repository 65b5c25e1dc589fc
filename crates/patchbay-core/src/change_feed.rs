//! The port through which replicas tell each other that something they may
//! have cached changed: a broadcast channel of short text messages.
//! PostgreSQL (`LISTEN/NOTIFY`) and Redis (pub/sub) implement it; whoever
//! reads it owns the reconnecting, and the meaning of the messages.

use async_trait::async_trait;

/// Why a feed could not publish or stopped delivering.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FeedError(pub String);

/// A broadcast channel shared by every replica. Delivery is at most once:
/// messages sent while a subscriber is disconnected are lost to it.
#[async_trait]
pub trait ChangeFeed: Send + Sync + std::fmt::Debug {
    /// What carries the messages, for logs (`postgres`, `redis`).
    fn transport(&self) -> &'static str;
    /// Sends `payload` to every current subscriber of `channel`.
    async fn publish(&self, channel: &str, payload: &str) -> Result<(), FeedError>;
    /// A new subscription to `channel`, on a connection of its own.
    async fn subscribe(&self, channel: &str) -> Result<Box<dyn FeedSubscription>, FeedError>;
}

/// One subscription; it ends for good at its first error.
#[async_trait]
pub trait FeedSubscription: Send {
    /// The next message; an error means the connection was lost and
    /// messages may have been missed.
    async fn next(&mut self) -> Result<String, FeedError>;
}
