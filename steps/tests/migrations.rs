//! The split migrations: a database migrated with the former single set
//! (every file, engine's, domain's and the effect ledger's, in version
//! order through one migrator) is accepted by the engine's and the domain's
//! migrators as it is, with nothing re-run; a fresh database gets every
//! version of the combined test set.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;
use std::str::FromStr;

use sagaflow_steps::Deps;
use sagaflow_steps::test_support::{MIGRATOR, combined};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

/// What `_sqlx_migrations` records, version by version.
type Applied = Vec<(i64, Vec<u8>, String)>;

/// The single set of before the split: every file of `backend` under
/// `migrations/`, read from the source tree.
async fn single_set(backend: &str) -> Migrator {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut sets = Vec::new();
    for folder in ["engine", "domain", "test-support"] {
        sets.push(
            Migrator::new(root.join(folder).join(backend))
                .await
                .unwrap(),
        );
    }
    let mut single = combined(&sets.iter().collect::<Vec<_>>());
    single.migrations = single
        .migrations
        .iter()
        .filter(|m| m.version <= LAST_OF_THE_SINGLE_SET)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    single
}

/// The last version released while the migrations were one set; later
/// ones are added by the split migrators on top.
const LAST_OF_THE_SINGLE_SET: i64 = 12;

/// `after` holds `before` unchanged, plus only versions newer than the
/// single set.
fn kept_and_only_newer_added(before: &Applied, after: &Applied) {
    let kept: Applied = after
        .iter()
        .filter(|(v, _, _)| *v <= LAST_OF_THE_SINGLE_SET)
        .cloned()
        .collect();
    assert_eq!(&kept, before, "nothing re-run");
    assert!(
        after.len() >= before.len(),
        "versions lost: {:?}",
        versions(after)
    );
}

/// The engine's migrations, then the domain's, as the binary applies them.
async fn split_pg(pool: &PgPool) {
    sagaflow_engine::store::postgres::MIGRATOR
        .run(pool)
        .await
        .unwrap();
    let deps = Deps {
        postgres: Some(pool.clone()),
        ..Deps::default()
    };
    sagaflow_steps::migrations::migrate(&deps).await.unwrap();
}

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

#[sqlx::test(migrations = false)]
async fn a_postgres_database_of_the_single_set_is_accepted_without_rerun(pool: PgPool) {
    single_set("postgres").await.run(&pool).await.unwrap();
    let before = applied_pg(&pool).await;
    assert_eq!(versions(&before), (1..=12).collect::<Vec<_>>());

    split_pg(&pool).await;

    kept_and_only_newer_added(&before, &applied_pg(&pool).await);
}

#[sqlx::test(migrations = false)]
async fn a_fresh_postgres_database_gets_every_version_from_the_split_sets(pool: PgPool) {
    split_pg(&pool).await;
    let all: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(versions(&applied_pg(&pool).await), all);
}

#[tokio::test]
async fn a_sqlite_database_of_the_single_set_is_accepted_without_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteConnectOptions::from_str(&format!(
        "sqlite://{}",
        dir.path().join("split.db").display()
    ))
    .unwrap()
    .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap();
    single_set("sqlite").await.run(&pool).await.unwrap();
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

    kept_and_only_newer_added(&before, &applied_sqlite(&pool).await);
}
