//! Stripe's rate limits counted in Redis, so several replicas acting for one
//! connection stay under the limit together. The same sliding log as the
//! in-process limiter ([`crate::rate_limit`]), kept as a Redis list per
//! connection, mode and class, reserved by one Lua script that answers how
//! long to wait (on Redis's clock, so replicas' clocks need not agree).
//!
//! Redis must never make a Stripe call fail: when it cannot be reached, the
//! call falls back on this replica's own limiter, a warning is logged once
//! per outage, and Redis is tried again a second later.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::rate_limit::{Limiter, Limits, RateClass, RateLimiter};
use crate::redis_link::RedisLink;

/// Reserves a slot in the log at `KEYS[1]`: `ARGV` = limit, window (ms),
/// longest wait (ms). Answers `{1, wait_ms}` (reserved) or `{0, wait_ms}`
/// (refused, nothing reserved). Times are Redis's, in milliseconds.
const RESERVE: &str = r"
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local len = redis.call('LLEN', key)
local slot = now
if len < limit then
  if len > 0 then
    local last = tonumber(redis.call('LINDEX', key, -1))
    if last > slot then slot = last end
  end
else
  local earliest = tonumber(redis.call('LINDEX', key, len - limit)) + window
  if earliest > slot then slot = earliest end
end
if slot - now > max_wait then
  return {0, slot - now}
end
redis.call('RPUSH', key, string.format('%d', slot))
if len + 1 > limit then
  redis.call('LTRIM', key, -limit, -1)
end
redis.call('PEXPIRE', key, slot - now + window + 1000)
return {1, slot - now}
";

/// Longest a reservation may take before the local limiter is used instead.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long Redis is left alone after a failure.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// See the module documentation.
pub struct RedisLimiter {
    link: Arc<RedisLink>,
    prefix: String,
    limits: Limits,
    script: redis::Script,
    local: RateLimiter,
    /// Whether an outage is in progress (and was logged).
    down: AtomicBool,
    /// Until when Redis is not tried again.
    skip_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("link", &self.link)
            .field("prefix", &self.prefix)
            .field("limits", &self.limits)
            .field("down", &self.down.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What Redis answered.
enum Reservation {
    /// A slot this far away.
    Reserved(Duration),
    /// The next slot is this far away, beyond the longest wait.
    Refused(Duration),
}

impl RedisLimiter {
    /// A limiter counting in Redis under `{prefix}:ratelimit:…`.
    pub fn new(link: Arc<RedisLink>, prefix: &str, limits: Limits) -> Self {
        Self {
            link,
            prefix: prefix.to_owned(),
            limits,
            script: redis::Script::new(RESERVE),
            local: RateLimiter::new(limits),
            down: AtomicBool::new(false),
            skip_until: Mutex::new(None),
        }
    }

    /// Whether Redis is being bypassed after a failure.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// The Redis key of one bucket.
    fn key(&self, key: &str, livemode: bool, class: RateClass) -> String {
        let mode = if livemode { "live" } else { "test" };
        let class = match class {
            RateClass::Read => "read",
            RateClass::Write => "write",
        };
        format!("{}:ratelimit:{mode}:{class}:{key}", self.prefix)
    }

    async fn reserve(
        &self,
        key: &str,
        livemode: bool,
        class: RateClass,
    ) -> Result<Reservation, String> {
        let limit = if livemode {
            self.limits.live
        } else {
            self.limits.test
        }
        .max(1);
        let mut conn = self.link.connection().await?;
        let (reserved, wait_ms): (i64, i64) = self
            .script
            .key(self.key(key, livemode, class))
            .arg(limit)
            .arg(self.limits.window.as_millis() as u64)
            .arg(self.limits.max_wait.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let wait = Duration::from_millis(wait_ms.max(0) as u64);
        Ok(if reserved == 1 {
            Reservation::Reserved(wait)
        } else {
            Reservation::Refused(wait)
        })
    }

    /// Whether Redis is left alone for now.
    fn skipping(&self) -> bool {
        let mut skip = self.skip_until.lock();
        match *skip {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *skip = None;
                false
            }
            None => false,
        }
    }

    async fn failed(&self, error: &str) {
        *self.skip_until.lock() = Some(Instant::now() + RETRY_AFTER);
        self.link.reset().await;
        if !self.down.swap(true, Ordering::Relaxed) {
            warn!(
                error,
                "Redis is unreachable: Stripe rate limits are counted per replica until it is back"
            );
        }
    }

    fn recovered(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            info!("Redis is reachable again: Stripe rate limits are shared by the replicas");
        }
    }
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn acquire(&self, key: &str, livemode: bool, class: RateClass) -> Result<(), Duration> {
        if !self.skipping() {
            let answer = tokio::time::timeout(CALL_TIMEOUT, self.reserve(key, livemode, class))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {CALL_TIMEOUT:?}")));
            match answer {
                Ok(Reservation::Reserved(wait)) => {
                    self.recovered();
                    // Not even a zero sleep: tokio rounds it up to its next
                    // millisecond tick.
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    return Ok(());
                }
                Ok(Reservation::Refused(wait)) => {
                    self.recovered();
                    return Err(wait);
                }
                Err(e) => self.failed(&e).await,
            }
        }
        self.local.wait_for_slot(key, livemode, class).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_apart_by_mode_class_and_prefix() {
        let link = Arc::new(RedisLink::open("redis://127.0.0.1:1/0").unwrap());
        let l = RedisLimiter::new(link, "pb", Limits::default());
        assert_eq!(
            l.key("conn_1", false, RateClass::Read),
            "pb:ratelimit:test:read:conn_1"
        );
        assert_eq!(
            l.key("conn_1", true, RateClass::Write),
            "pb:ratelimit:live:write:conn_1"
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_on_the_local_limits() {
        // Port 1 on loopback refuses at once.
        let link = Arc::new(RedisLink::open("redis://127.0.0.1:1/0").unwrap());
        let limits = Limits {
            live: 100,
            test: 2,
            window: Duration::from_secs(60),
            max_wait: Duration::ZERO,
        };
        let l = RedisLimiter::new(link, "pb", limits);
        assert!(l.acquire("c", false, RateClass::Read).await.is_ok());
        assert!(l.is_down());
        assert!(l.acquire("c", false, RateClass::Read).await.is_ok());
        // The local log is full: the third fails fast, as it would with Redis.
        assert!(l.acquire("c", false, RateClass::Read).await.is_err());
    }
}
