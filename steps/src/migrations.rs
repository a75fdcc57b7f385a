//! The ISP domain's schema: its migrations (`migrations/domain/…`), applied
//! after the engine's by [`migrate`], and [`test_support`]'s combined sets
//! for `#[sqlx::test]`.
//!
//! The engine's and the domain's migrations share one `_sqlx_migrations`
//! table and one version sequence (each file keeps the version it always
//! had), so each set ignores the versions of the other instead of refusing
//! them.

use sqlx::migrate::{MigrateError, Migrator};

use crate::Deps;
use crate::db::DomainDb;

/// The domain's PostgreSQL migrations.
pub static POSTGRES: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("../migrations/domain/postgres")
};

/// The domain's SQLite migrations.
pub static SQLITE: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("../migrations/domain/sqlite")
};

/// The tables of the effect ledger (`migrations/test-support/…`).
#[cfg(feature = "test-ledger")]
static LEDGER_POSTGRES: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("../migrations/test-support/postgres")
};

/// The SQLite twin of [`LEDGER_POSTGRES`].
#[cfg(feature = "test-ledger")]
static LEDGER_SQLITE: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("../migrations/test-support/sqlite")
};

/// The domain's PostgreSQL sets, in the order they are applied: the
/// effect ledger's only with the `test-ledger` feature.
static POSTGRES_SETS: &[&Migrator] = &[
    &POSTGRES,
    #[cfg(feature = "test-ledger")]
    &LEDGER_POSTGRES,
];

/// The domain's SQLite sets, in the order they are applied.
static SQLITE_SETS: &[&Migrator] = &[
    &SQLITE,
    #[cfg(feature = "test-ledger")]
    &LEDGER_SQLITE,
];

/// Applies the domain's migrations to the engine's database (after the
/// engine's own); nothing without one.
pub async fn migrate(deps: &Deps) -> Result<(), MigrateError> {
    match deps.domain_db() {
        Some(DomainDb::Postgres(pool)) => {
            for set in POSTGRES_SETS {
                set.run(&pool).await?;
            }
        }
        Some(DomainDb::Sqlite(pool)) => {
            for set in SQLITE_SETS {
                set.run(&pool).await?;
            }
        }
        None => {}
    }
    Ok(())
}

/// Every migration a test database needs, engine's and domain's (and the
/// effect ledger's with the `test-ledger` feature), as one set:
/// `#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]`.
pub mod test_support {
    use std::sync::LazyLock;

    use sqlx::migrate::Migrator;

    /// The engine's and the domain's PostgreSQL migrations.
    pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
        let engine: &[&Migrator] = &[&sagaflow_engine::store::postgres::MIGRATOR];
        combined(&[engine, super::POSTGRES_SETS].concat())
    });

    /// The engine's and the domain's SQLite migrations.
    pub static SQLITE_MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
        let engine: &[&Migrator] = &[&sagaflow_engine::store::sqlite::MIGRATOR];
        combined(&[engine, super::SQLITE_SETS].concat())
    });

    /// One migrator of every migration of `sets`, in version order: what a
    /// database migrated before the sets were split has applied.
    pub fn combined(sets: &[&Migrator]) -> Migrator {
        Migrator::with_migrations(sets.iter().flat_map(|m| m.iter().cloned()).collect())
    }
}
