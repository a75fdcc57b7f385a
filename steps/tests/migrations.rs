//! The split migrations: a database migrated with the former single set
//! (every file, engine's and domain's, in version order through one
//! migrator) is accepted by the engine's and the domain's migrators as it
//! is, with nothing re-run; a fresh database gets every version.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::str::FromStr;

use sagaflow_steps::Deps;
use sagaflow_steps::test_support::{MIGRATOR, SQLITE_MIGRATOR};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

/// What `_sqlx_migrations` records, version by version.
type Applied = Vec<(i64, Vec<u8>, String)>;

async fn applied_pg(pool: &PgPool) -> Applied {
    sqlx::query_as(
        "SELECT version, checksum, installed_on::text FROM _sqlx_migrations \
         WHERE success ORDER BY version",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn applied_sqlite(pool: &SqlitePool) -> Applied {
    sqlx::query_as(
        "SELECT version, checksum, CAST(installed_on AS TEXT) FROM _sqlx_migrations \
         WHERE success ORDER BY version",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn versions(applied: &Applied) -> Vec<i64> {
    applied.iter().map(|(v, _, _)| *v).collect()
}

async fn sqlite_pool(dir: &tempfile::TempDir) -> SqlitePool {
    let opts = SqliteConnectOptions::from_str(&format!(
        "sqlite://{}",
        dir.path().join("split.db").display()
    ))
    .unwrap()
    .create_if_missing(true);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_postgres_database_of_the_single_set_is_accepted_without_rerun(pool: PgPool) {
    MIGRATOR.run(&pool).await.unwrap();
    let before = applied_pg(&pool).await;
    assert_eq!(versions(&before), (1..=12).collect::<Vec<_>>());

    sagaflow_engine::store::postgres::MIGRATOR
        .run(&pool)
        .await
        .unwrap();
    let deps = Deps {
        postgres: Some(pool.clone()),
        ..Deps::default()
    };
    sagaflow_steps::migrations::migrate(&deps).await.unwrap();

    assert_eq!(applied_pg(&pool).await, before, "nothing re-run or added");
}

#[sqlx::test(migrations = false)]
async fn a_fresh_postgres_database_gets_every_version_from_the_split_sets(pool: PgPool) {
    sagaflow_engine::store::postgres::MIGRATOR
        .run(&pool)
        .await
        .unwrap();
    let deps = Deps {
        postgres: Some(pool.clone()),
        ..Deps::default()
    };
    sagaflow_steps::migrations::migrate(&deps).await.unwrap();
    let single: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(versions(&applied_pg(&pool).await), single);
    // And the single set then finds nothing to do.
    MIGRATOR.run(&pool).await.unwrap();
}

#[tokio::test]
async fn a_sqlite_database_of_the_single_set_is_accepted_without_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlite_pool(&dir).await;
    SQLITE_MIGRATOR.run(&pool).await.unwrap();
    let before = applied_sqlite(&pool).await;
    assert_eq!(versions(&before), vec![1, 2, 3, 4, 5, 6, 9, 10, 11, 12]);

    sagaflow_engine::store::sqlite::MIGRATOR
        .run(&pool)
        .await
        .unwrap();
    let deps = Deps {
        sqlite: Some(pool.clone()),
        ..Deps::default()
    };
    sagaflow_steps::migrations::migrate(&deps).await.unwrap();

    assert_eq!(
        applied_sqlite(&pool).await,
        before,
        "nothing re-run or added"
    );
}
