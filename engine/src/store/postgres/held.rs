//! Connections kept out of a pool between uses, for the two writes every
//! saga makes most often: checkpoint batches and starts.
//!
//! sqlx pings a connection when it is taken from a pool and again when it
//! is given back: two round trips of their own around every statement, a
//! third of the hot path's round trips and as many wake-ups of a
//! PostgreSQL backend. A kept connection skips both.
//!
//! - A connection whose statement failed is not kept: it goes back to the
//!   pool, which closes it if it is broken.
//! - A connection kept unused for longer than [`FRESH`] is not used again:
//!   a task gives it back to the pool within another [`FRESH`], and a
//!   start or batch in between takes a pinged one instead. So a connection
//!   the server ended while it sat idle (a restart) costs no statement, and
//!   a quiet engine holds no connection out of its pools for long; under
//!   load a kept connection is reused within milliseconds.
//! - At most a share of a pool is kept (half of the executor's own, a
//!   quarter of the general one, and at most [`MOST`]), so everything else
//!   on it still has connections; none is kept from a pool the store
//!   shares with other users ([`super::PgStore::from_pool`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use crate::store::Result;

/// How long a kept connection is used without a ping.
const FRESH: Duration = Duration::from_secs(1);

/// Most connections kept (the executor's checkpoint writers by default).
const MOST: usize = 4;

/// A kept connection and when its last statement ended.
type Kept = (PoolConnection<Postgres>, Instant);

#[derive(Debug, Clone, Default)]
pub(super) struct HeldConnections {
    kept: Arc<Mutex<Vec<Kept>>>,
    max: usize,
}

impl HeldConnections {
    /// Keeps up to `1 / share` of a pool of `connections` (see the
    /// module), and starts the task that gives stale ones back.
    pub(super) fn of_pool(connections: u32, share: usize) -> Self {
        let held = Self {
            kept: Default::default(),
            max: MOST.min(connections as usize / share.max(1)),
        };
        if held.max > 0 {
            let kept = Arc::downgrade(&held.kept);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(FRESH);
                loop {
                    every.tick().await;
                    // Ends with the store.
                    let Some(kept) = kept.upgrade() else { return };
                    kept.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain(|(_, at)| at.elapsed() < FRESH);
                }
            });
        }
        held
    }

    /// A kept connection used within [`FRESH`], or one taken from `pool`.
    pub(super) async fn take(&self, pool: &PgPool) -> Result<PoolConnection<Postgres>> {
        let fresh = {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            // Kept in the order they were used: when the newest is stale,
            // so are the others, and all go back to the pool.
            let newest = kept.pop().filter(|(_, at)| at.elapsed() < FRESH);
            if newest.is_none() {
                kept.clear();
            }
            newest
        };
        match fresh {
            Some((c, _)) => Ok(c),
            None => Ok(pool.acquire().await?),
        }
    }

    /// Keeps `conn`, whose statement succeeded, if there is room.
    pub(super) fn keep(&self, conn: PoolConnection<Postgres>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < self.max {
            kept.push((conn, Instant::now()));
        }
    }
}
