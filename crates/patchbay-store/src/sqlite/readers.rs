//! Reader connections held open for the life of the store.
//!
//! Each SQLite connection in sqlx lives on a worker thread of its own, and a
//! pool returning a connection spawns a task that pings it — a second round
//! trip to that thread for every query. Reads here are single statements
//! outside transactions, so there is nothing to roll back on release: holding
//! the connections and handing them out under a lock halves the thread
//! hand-offs per read (see BENCHMARKS.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use patchbay_core::StoreError;
use patchbay_core::stats::PoolStats;
use patchbay_core::store::StoreResult;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Sqlite, SqlitePool};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::error::map;

/// Where reads go.
#[derive(Debug, Clone)]
pub(super) enum Readers {
    /// Connections of their own (a database file).
    Held(Arc<Held>),
    /// The writer's pool (an in-memory database exists once per connection).
    Shared(SqlitePool),
}

#[derive(Debug)]
pub(super) struct Held {
    /// `None` once the store is closed.
    connections: Vec<Mutex<Option<SqliteConnection>>>,
    next: AtomicUsize,
}

/// A reader connection checked out for one statement.
pub(crate) enum Reader<'a> {
    Held(MappedMutexGuard<'a, SqliteConnection>),
    Shared(PoolConnection<Sqlite>),
}

impl std::ops::Deref for Reader<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        match self {
            Self::Held(c) => c,
            Self::Shared(c) => c,
        }
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            Self::Held(c) => c,
            Self::Shared(c) => c,
        }
    }
}

impl Readers {
    /// Opens `count` connections (at least one) with `options`.
    pub(super) async fn open(options: &SqliteConnectOptions, count: u32) -> StoreResult<Self> {
        let mut connections = Vec::new();
        for _ in 0..count.max(1) {
            connections.push(Mutex::new(Some(options.connect().await.map_err(map)?)));
        }
        Ok(Self::Held(Arc::new(Held {
            connections,
            next: AtomicUsize::new(0),
        })))
    }

    /// A free connection, or the next one to come free.
    pub(super) async fn get(&self) -> StoreResult<Reader<'_>> {
        let held = match self {
            Self::Shared(pool) => return pool.acquire().await.map(Reader::Shared).map_err(map),
            Self::Held(held) => held,
        };
        let n = held.connections.len();
        let start = held.next.fetch_add(1, Ordering::Relaxed);
        let guard = match (0..n).find_map(|i| held.connections[(start + i) % n].try_lock().ok()) {
            Some(guard) => guard,
            None => held.connections[start % n].lock().await,
        };
        MutexGuard::try_map(guard, Option::as_mut)
            .map(Reader::Held)
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))
    }

    /// The held connections, open and free at this moment; `None` when reads
    /// share the writer's pool.
    pub(super) fn stats(&self) -> Option<PoolStats> {
        let Self::Held(held) = self else {
            return None;
        };
        let mut size = 0;
        let mut idle = 0;
        for slot in &held.connections {
            match slot.try_lock() {
                Ok(guard) if guard.is_some() => {
                    size += 1;
                    idle += 1;
                }
                Ok(_) => {}
                // Locked: in use (a closed slot is only locked while closing).
                Err(_) => size += 1,
            }
        }
        Some(PoolStats {
            pool: "reader",
            size,
            idle,
            max: u32::try_from(held.connections.len()).unwrap_or(u32::MAX),
        })
    }

    /// Closes every held connection; later reads fail as unavailable.
    pub(super) async fn close(&self) {
        match self {
            Self::Shared(pool) => pool.close().await,
            Self::Held(held) => {
                for slot in &held.connections {
                    if let Some(connection) = slot.lock().await.take() {
                        let _ = connection.close().await;
                    }
                }
            }
        }
    }
}
