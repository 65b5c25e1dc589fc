//! One Redis connection, opened on first use and again after it fails, so a
//! replica starts (and keeps serving) while Redis is away. Shared by the
//! rate limiter here and the invalidation bus in `patchbay-api`.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

/// Longest wait for a connection to Redis to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// See the module documentation.
pub struct RedisLink {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only where it points.
        let info = self.client.get_connection_info();
        f.debug_struct("RedisLink")
            .field("addr", &info.addr.to_string())
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// A link to `url` (`redis://host:port/db`); nothing is opened yet.
    pub fn open(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("PATCHBAY_REDIS_URL is not usable: {:?}", e.kind()))?;
        Ok(Self {
            client,
            connection: tokio::sync::Mutex::new(None),
        })
    }

    /// The client, for connections of their own (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The shared connection, opened if need be.
    pub async fn connection(&self) -> Result<MultiplexedConnection, String> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let opened = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
        *slot = Some(opened.clone());
        Ok(opened)
    }

    /// Forgets the shared connection after a failure; the next use opens another.
    pub async fn reset(&self) {
        *self.connection.lock().await = None;
    }
}
