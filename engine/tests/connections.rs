//! The settings every connection of the store's pools starts with: its
//! statement timeout, and the pages it writes flushed every 256 kB
//! (`backend_flush_after`) so that the kernel never holds a burst of
//! write-back for the sagas' commits to wait behind.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::Duration;

use sagaflow_engine::store::postgres::{PgOptions, PgStore};

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn store_connections_flush_what_they_write_as_they_go(pool: sqlx::PgPool) {
    let opts = PgOptions {
        max_connections: 2,
        statement_timeout: Duration::from_millis(12_345),
        ..PgOptions::default()
    };
    let pg = PgStore::connect_opts((*pool.connect_options()).clone(), &opts)
        .await
        .unwrap();
    let mut conn = pg.pool().acquire().await.unwrap();
    let (flush, timeout): (String, String) = sqlx::query_as(
        "SELECT current_setting('backend_flush_after'), current_setting('statement_timeout')",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(flush, "256kB");
    assert_eq!(timeout, "12345ms");

    // A connection opened otherwise keeps the server's default (0: off).
    let other: String = sqlx::query_scalar("SELECT current_setting('backend_flush_after')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(other, "0");
}
