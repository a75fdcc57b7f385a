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
static LEDGER_POSTGRES: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("../migrations/test-support/postgres")
};

/// The SQLite twin of [`LEDGER_POSTGRES`].
static LEDGER_SQLITE: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("../migrations/test-support/sqlite")
};

/// The domain's migrations for `db`'s backend, in the order they are applied.
fn sets(db: &DomainDb) -> [&'static Migrator; 2] {
    match db {
        DomainDb::Postgres(_) => [&POSTGRES, &LEDGER_POSTGRES],
        DomainDb::Sqlite(_) => [&SQLITE, &LEDGER_SQLITE],
    }
}

/// Applies the domain's migrations to the engine's database (after the
/// engine's own); nothing without one.
pub async fn migrate(deps: &Deps) -> Result<(), MigrateError> {
    let Some(db) = deps.domain_db() else {
        return Ok(());
    };
    for set in sets(&db) {
        match &db {
            DomainDb::Postgres(pool) => set.run(pool).await?,
            DomainDb::Sqlite(pool) => set.run(pool).await?,
        }
    }
    Ok(())
}

/// Every migration a test database needs, engine's and domain's, as one
/// set: `#[sqlx::test(migrator = "sagaflow_steps::migrations::test_support::MIGRATOR")]`.
pub mod test_support {
    use std::sync::LazyLock;

    use sqlx::migrate::Migrator;

    /// The engine's and the domain's PostgreSQL migrations.
    pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
        combined(&[
            &sagaflow_engine::store::postgres::MIGRATOR,
            &super::POSTGRES,
            &super::LEDGER_POSTGRES,
        ])
    });

    /// The engine's and the domain's SQLite migrations.
    pub static SQLITE_MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
        combined(&[
            &sagaflow_engine::store::sqlite::MIGRATOR,
            &super::SQLITE,
            &super::LEDGER_SQLITE,
        ])
    });

    /// One migrator of every migration of `sets`, in version order: what a
    /// database migrated before the sets were split has applied.
    pub fn combined(sets: &[&Migrator]) -> Migrator {
        Migrator::with_migrations(sets.iter().flat_map(|m| m.iter().cloned()).collect())
    }
}
