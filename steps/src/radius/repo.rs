//! The repository of FreeRADIUS's SQL tables: one subscriber is a
//! `radcheck` row (Cleartext-Password), `radreply` rows (Framed-IP-Address,
//! Delegated-IPv6-Prefix) and one `radusergroup` row (the plan group, or the
//! suspended group). Every write is idempotent: a replay replaces the rows it
//! wrote instead of adding more. Both backends run the same statements
//! (`$n` parameters work on PostgreSQL and SQLite alike).
//!
//! Ownership: sagaflow's own `radius_accounts` table records, in the same
//! transaction as the account's rows, which tenant and which forward step
//! created each user name. A write refuses a user another tenant owns (or
//! that another step created), and the undo of a creation deletes only the
//! account its own forward step created.

use std::sync::Arc;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::OnceCell;

use super::account::{
    Account, AccountRows, DELEGATED_PREFIX, FRAMED_IP, PASSWORD, ReplyAttribute, validate_name,
};
use super::{Error, Result};

/// `radusergroup.priority` of the subscriber's one group row.
const GROUP_PRIORITY: i32 = 1;

/// Serializes the writes of one user (or group) on PostgreSQL, where
/// READ COMMITTED would let two concurrent replays both find no row and both
/// insert one. SQLite serializes writers by itself: every transaction here
/// starts with a write, which takes the database's write lock.
pub(super) const PG_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

const PG_SCHEMA: [&str; 2] = [
    include_str!("../../../migrations/domain/postgres/0005_radius.sql"),
    include_str!("../../../migrations/domain/postgres/0009_radius_ownership.sql"),
];
const SQLITE_SCHEMA: [&str; 2] = [
    include_str!("../../../migrations/domain/sqlite/0005_radius.sql"),
    include_str!("../../../migrations/domain/sqlite/0009_radius_ownership.sql"),
];

/// Who writes an account: the tenant, the subscriber, and the forward step
/// (`{run}:{step}`) that creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    pub tenant_id: &'a str,
    pub subscriber_id: &'a str,
    pub created_by: &'a str,
}

/// Which account a deletion may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteScope<'a> {
    /// Deprovisioning: the tenant's account of that name (or one sagaflow
    /// has no ownership record of, which only the tenant's own user-name
    /// format produces); another tenant's account is refused.
    Tenant(&'a str),
    /// The undo of a creation: only the account that forward step created
    /// (`created_by`) in that tenant; anything else is left alone.
    CreatedBy {
        tenant_id: &'a str,
        created_by: &'a str,
    },
}

/// The `radius_accounts` row of a user name.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountOwner {
    pub tenant_id: String,
    pub subscriber_id: String,
    pub created_by: String,
}

const OWNER_SQL: &str =
    "SELECT tenant_id, subscriber_id, created_by FROM radius_accounts WHERE username = $1";
/// The first statement of a transaction that checks ownership: a write, so
/// SQLite takes its write lock before the check (it matches no row).
const SQLITE_WRITE_LOCK: &str = "UPDATE radius_accounts SET username = username WHERE 1 = 0";

#[derive(Debug, Clone)]
pub(super) enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// FreeRADIUS's tables on PostgreSQL or SQLite.
#[derive(Debug, Clone)]
pub struct RadiusRepo {
    pub(super) db: Db,
    /// Set for a database the engine's migrations do not cover: FreeRADIUS's
    /// schema is created there (if missing) before the first use.
    schema: Option<Arc<OnceCell<()>>>,
}

/// Runs `$body` with `$pool` bound to the repository's pool and `$lock` to
/// the statement that serializes a user's writes on that backend (if any).
macro_rules! on_db {
    ($repo:expr, $pool:ident, $lock:ident => $body:expr) => {
        match &$repo.db {
            super::repo::Db::Postgres($pool) => {
                let $lock: Option<&'static str> = Some(super::repo::PG_LOCK);
                $body
            }
            super::repo::Db::Sqlite($pool) => {
                let $lock: Option<&'static str> = None;
                $body
            }
        }
    };
}
pub(super) use on_db;

impl RadiusRepo {
    /// On the engine's (or any) PostgreSQL pool.
    pub fn postgres(pool: PgPool) -> Self {
        Self {
            db: Db::Postgres(pool),
            schema: None,
        }
    }

    /// On a SQLite pool.
    pub fn sqlite(pool: SqlitePool) -> Self {
        Self {
            db: Db::Sqlite(pool),
            schema: None,
        }
    }

    /// A pool on `url` (`postgres://…` or `sqlite:…`) that connects on first
    /// use.
    pub fn connect_lazy(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new().max_connections(8).connect_lazy(url)?;
            Ok(Self::postgres(pool))
        } else if url.starts_with("sqlite:") {
            let opts: SqliteConnectOptions = url
                .parse::<SqliteConnectOptions>()?
                .create_if_missing(true)
                .busy_timeout(std::time::Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_lazy_with(opts);
            Ok(Self::sqlite(pool))
        } else {
            Err(Error::Config(
                "radius.database_url must be a postgres:// or sqlite: URL".into(),
            ))
        }
    }

    /// Makes the first use of the repository create FreeRADIUS's tables if
    /// they are missing (for a database outside the engine's migrations).
    pub fn with_schema_check(mut self) -> Self {
        self.schema = Some(Arc::new(OnceCell::new()));
        self
    }

    /// Creates FreeRADIUS's tables and indexes where they are missing.
    pub async fn ensure_schema(&self) -> Result<()> {
        match &self.db {
            Db::Postgres(pool) => {
                for sql in PG_SCHEMA {
                    sqlx::raw_sql(sql).execute(pool).await?;
                }
            }
            Db::Sqlite(pool) => {
                for sql in SQLITE_SCHEMA {
                    sqlx::raw_sql(sql).execute(pool).await?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn ready(&self) -> Result<()> {
        if let Some(cell) = &self.schema {
            cell.get_or_try_init(|| self.ensure_schema()).await?;
        }
        Ok(())
    }

    /// Creates the subscriber's account (password, addresses, plan group)
    /// for `owner`, recording it in `radius_accounts`. A replay of the same
    /// step replaces what it wrote (one row of each). A user name another
    /// tenant owns is refused ([`Error::ForeignAccount`]); one that another
    /// step created, or that has rows sagaflow did not create, is refused
    /// too ([`Error::AccountExists`]): this step did not make it, so it must
    /// neither overwrite it nor, on undo, remove it.
    pub async fn upsert_account(&self, account: &Account, owner: &Owner<'_>) -> Result<()> {
        account.validate()?;
        self.ready().await?;
        let user = account.username.as_str();
        let reply = account.reply_rows();
        on_db!(self, pool, lock => {
            let mut tx = pool.begin().await?;
            let current = lock_user(&mut tx, lock, user).await?;
            match current {
                Some(o) if o.tenant_id != owner.tenant_id => {
                    return Err(Error::ForeignAccount(user.to_owned()));
                }
                Some(o) if o.created_by != owner.created_by => {
                    return Err(Error::AccountExists {
                        username: user.to_owned(),
                        created_by: Some(o.created_by),
                    });
                }
                Some(_) => {}
                None => {
                    let rows: Option<(String,)> = sqlx::query_as(
                        "SELECT username FROM radcheck WHERE username = $1 LIMIT 1",
                    )
                    .bind(user)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if rows.is_some() {
                        return Err(Error::AccountExists {
                            username: user.to_owned(),
                            created_by: None,
                        });
                    }
                    sqlx::query(
                        "INSERT INTO radius_accounts (username, tenant_id, subscriber_id, created_by) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(user)
                    .bind(owner.tenant_id)
                    .bind(owner.subscriber_id)
                    .bind(owner.created_by)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query("DELETE FROM radcheck WHERE username = $1 AND attribute = $2")
                .bind(user)
                .bind(PASSWORD)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO radcheck (username, attribute, op, value) VALUES ($1, $2, ':=', $3)",
            )
            .bind(user)
            .bind(PASSWORD)
            .bind(&account.password)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM radreply WHERE username = $1 AND attribute IN ($2, $3)")
                .bind(user)
                .bind(FRAMED_IP)
                .bind(DELEGATED_PREFIX)
                .execute(&mut *tx)
                .await?;
            for (attribute, value) in &reply {
                sqlx::query(
                    "INSERT INTO radreply (username, attribute, op, value) VALUES ($1, $2, ':=', $3)",
                )
                .bind(user)
                .bind(*attribute)
                .bind(value)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DELETE FROM radusergroup WHERE username = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO radusergroup (username, groupname, priority) VALUES ($1, $2, $3)")
                .bind(user)
                .bind(&account.group)
                .bind(GROUP_PRIORITY)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Puts `tenant`'s user into `group` alone (its one `radusergroup` row).
    /// The user must have an account (a `radcheck` row) that no other tenant
    /// owns.
    pub async fn set_group(&self, tenant: &str, username: &str, group: &str) -> Result<()> {
        validate_name("username", username)?;
        validate_name("group", group)?;
        self.ready().await?;
        let found = on_db!(self, pool, lock => {
            let mut tx = pool.begin().await?;
            let current = lock_user(&mut tx, lock, username).await?;
            if current.is_some_and(|o| o.tenant_id != tenant) {
                return Err(Error::ForeignAccount(username.to_owned()));
            }
            sqlx::query("DELETE FROM radusergroup WHERE username = $1")
                .bind(username)
                .execute(&mut *tx)
                .await?;
            let found: Option<(String,)> =
                sqlx::query_as("SELECT username FROM radcheck WHERE username = $1 LIMIT 1")
                    .bind(username)
                    .fetch_optional(&mut *tx)
                    .await?;
            if found.is_some() {
                sqlx::query(
                    "INSERT INTO radusergroup (username, groupname, priority) VALUES ($1, $2, $3)",
                )
                .bind(username)
                .bind(group)
                .bind(GROUP_PRIORITY)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            found.is_some()
        });
        if found {
            Ok(())
        } else {
            Err(Error::NoAccount(username.to_owned()))
        }
    }

    /// Makes `group`'s `radgroupreply` rows exactly `rows` (rewritten only
    /// when they differ).
    pub async fn ensure_group_reply(&self, group: &str, rows: &[ReplyAttribute]) -> Result<()> {
        validate_name("group", group)?;
        for r in rows {
            r.validate().map_err(Error::InvalidInput)?;
        }
        if self.group_reply(group).await? == rows {
            return Ok(());
        }
        on_db!(self, pool, lock => {
            let mut tx = pool.begin().await?;
            if let Some(lock) = lock {
                sqlx::query(lock).bind(lock_key("group", group)).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM radgroupreply WHERE groupname = $1")
                .bind(group)
                .execute(&mut *tx)
                .await?;
            for r in rows {
                sqlx::query(
                    "INSERT INTO radgroupreply (groupname, attribute, op, value) VALUES ($1, $2, $3, $4)",
                )
                .bind(group)
                .bind(&r.attribute)
                .bind(&r.op)
                .bind(&r.value)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Removes every `radcheck`, `radreply` and `radusergroup` row of the
    /// user, and its ownership record, when `scope` allows it (see
    /// [`DeleteScope`]). Returns whether there was anything to remove that
    /// the scope covers.
    pub async fn delete_account(&self, username: &str, scope: DeleteScope<'_>) -> Result<bool> {
        validate_name("username", username)?;
        self.ready().await?;
        let removed = on_db!(self, pool, lock => {
            let mut tx = pool.begin().await?;
            let current = lock_user(&mut tx, lock, username).await?;
            let allowed = match (scope, &current) {
                (DeleteScope::Tenant(t), Some(o)) if o.tenant_id != t => {
                    return Err(Error::ForeignAccount(username.to_owned()));
                }
                (DeleteScope::Tenant(_), _) => true,
                (DeleteScope::CreatedBy { tenant_id, created_by }, Some(o)) => {
                    o.tenant_id == tenant_id && o.created_by == created_by
                }
                (DeleteScope::CreatedBy { .. }, None) => false,
            };
            if !allowed {
                tx.rollback().await?;
                tracing::info!(
                    user = username,
                    owner = ?current,
                    "RADIUS account left alone: not created by this step"
                );
                return Ok(false);
            }
            let mut removed = 0;
            for sql in [
                "DELETE FROM radcheck WHERE username = $1",
                "DELETE FROM radreply WHERE username = $1",
                "DELETE FROM radusergroup WHERE username = $1",
                "DELETE FROM radius_accounts WHERE username = $1",
            ] {
                removed += sqlx::query(sql).bind(username).execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            removed
        });
        Ok(removed > 0)
    }

    /// The ownership record of `username`, if sagaflow created it.
    pub async fn owner(&self, username: &str) -> Result<Option<AccountOwner>> {
        self.ready().await?;
        Ok(on_db!(self, pool, _lock => {
            sqlx::query_as(OWNER_SQL).bind(username).fetch_optional(pool).await?
        }))
    }

    /// Every row FreeRADIUS would read for `username`; `None` when it has
    /// none at all.
    pub async fn account(&self, username: &str) -> Result<Option<AccountRows>> {
        self.ready().await?;
        let (check, reply, groups) = on_db!(self, pool, _lock => {
            let check: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT attribute, op, value FROM radcheck WHERE username = $1 ORDER BY id",
            )
            .bind(username)
            .fetch_all(pool)
            .await?;
            let reply: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT attribute, op, value FROM radreply WHERE username = $1 ORDER BY id",
            )
            .bind(username)
            .fetch_all(pool)
            .await?;
            let groups: Vec<(String, i32)> = sqlx::query_as(
                "SELECT groupname, priority FROM radusergroup WHERE username = $1 \
                 ORDER BY priority, id",
            )
            .bind(username)
            .fetch_all(pool)
            .await?;
            (check, reply, groups)
        });
        let rows = AccountRows {
            check: check.into_iter().map(attribute_row).collect(),
            reply: reply.into_iter().map(attribute_row).collect(),
            groups,
        };
        Ok((rows != AccountRows::default()).then_some(rows))
    }

    /// The user's group (the first by priority), if the user has one.
    pub async fn current_group(&self, username: &str) -> Result<Option<String>> {
        Ok(self
            .account(username)
            .await?
            .and_then(|a| a.groups.into_iter().next())
            .map(|(group, _)| group))
    }

    /// `group`'s `radgroupreply` rows, in id order.
    pub async fn group_reply(&self, group: &str) -> Result<Vec<ReplyAttribute>> {
        self.ready().await?;
        let rows: Vec<(String, String, String)> = on_db!(self, pool, _lock => {
            sqlx::query_as(
                "SELECT attribute, op, value FROM radgroupreply WHERE groupname = $1 ORDER BY id",
            )
            .bind(group)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(attribute_row).collect())
    }
}

fn attribute_row((attribute, op, value): (String, String, String)) -> ReplyAttribute {
    ReplyAttribute {
        attribute,
        op: op.trim().to_owned(),
        value,
    }
}

/// The first statements of a transaction that checks `username`'s
/// ownership: takes the user's write lock (`lock`, or SQLite's write lock
/// when the backend has none) and reads its `radius_accounts` row.
async fn lock_user<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    lock: Option<&'static str>,
    username: &str,
) -> Result<Option<AccountOwner>>
where
    DB: sqlx::Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    AccountOwner: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    match lock {
        Some(lock) => {
            sqlx::query(lock)
                .bind(lock_key("user", username))
                .execute(&mut **tx)
                .await?;
        }
        None => {
            sqlx::query(SQLITE_WRITE_LOCK).execute(&mut **tx).await?;
        }
    }
    Ok(sqlx::query_as(OWNER_SQL)
        .bind(username)
        .fetch_optional(&mut **tx)
        .await?)
}

fn lock_key(kind: &str, name: &str) -> String {
    format!("sagaflow.radius.{kind}:{name}")
}
