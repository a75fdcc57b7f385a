//! The repository of FreeRADIUS's SQL tables: one subscriber is a
//! `radcheck` row (Cleartext-Password), `radreply` rows (Framed-IP-Address,
//! Delegated-IPv6-Prefix) and one `radusergroup` row (the plan group, or the
//! suspended group). Every write is idempotent: a replay replaces the rows it
//! wrote instead of adding more. Both backends run the same statements
//! (`$n` parameters work on PostgreSQL and SQLite alike).

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::OnceCell;

use super::{Error, Result};

/// The attributes of `radcheck` / `radreply` this repository owns; rows of
/// other attributes an operator adds for a subscriber are left alone by
/// [`RadiusRepo::upsert_account`].
const PASSWORD: &str = "Cleartext-Password";
const FRAMED_IP: &str = "Framed-IP-Address";
const DELEGATED_PREFIX: &str = "Delegated-IPv6-Prefix";

/// `radusergroup.priority` of the subscriber's one group row.
const GROUP_PRIORITY: i32 = 1;

/// Serializes the writes of one user (or group) on PostgreSQL, where
/// READ COMMITTED would let two concurrent replays both find no row and both
/// insert one. SQLite serializes writers by itself: every transaction here
/// starts with a write, which takes the database's write lock.
const PG_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

const PG_SCHEMA: &str = include_str!("../../../migrations/postgres/0005_radius.sql");
const SQLITE_SCHEMA: &str = include_str!("../../../migrations/sqlite/0005_radius.sql");

/// A row of `radgroupreply` (or `radreply`): `attribute op value`, e.g.
/// `Filter-Id := suspended`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyAttribute {
    pub attribute: String,
    #[serde(default = "ReplyAttribute::default_op")]
    pub op: String,
    pub value: String,
}

impl ReplyAttribute {
    pub fn new(attribute: &str, op: &str, value: &str) -> Self {
        Self {
            attribute: attribute.to_owned(),
            op: op.to_owned(),
            value: value.to_owned(),
        }
    }

    fn default_op() -> String {
        ":=".to_owned()
    }

    /// Checks the row against what FreeRADIUS accepts in a reply item.
    pub fn validate(&self) -> std::result::Result<(), String> {
        const OPS: [&str; 5] = ["=", ":=", "+=", "==", "!="];
        if self.attribute.trim().is_empty() || self.attribute.len() > 64 {
            return Err(format!(
                "attribute {:?} must be 1 to 64 characters",
                self.attribute
            ));
        }
        if !OPS.contains(&self.op.as_str()) {
            return Err(format!("operator {:?} must be one of {OPS:?}", self.op));
        }
        if self.value.len() > 253 {
            return Err(format!(
                "the value of {} is longer than 253 bytes",
                self.attribute
            ));
        }
        Ok(())
    }
}

/// What the provisioning system writes for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    /// Written as `Cleartext-Password := …` in `radcheck`.
    pub password: String,
    /// `Framed-IP-Address := …` in `radreply`.
    pub framed_ip: Option<Ipv4Addr>,
    /// `Delegated-IPv6-Prefix := …` in `radreply`.
    pub delegated_prefix: Option<Ipv6Net>,
    /// The plan group, in `radusergroup`.
    pub group: String,
}

impl Account {
    fn validate(&self) -> Result<()> {
        validate_name("username", &self.username)?;
        validate_name("group", &self.group)?;
        if self.password.is_empty() || self.password.len() > 128 {
            return Err(Error::InvalidInput(format!(
                "the RADIUS password of {:?} must be 1 to 128 bytes",
                self.username
            )));
        }
        Ok(())
    }

    fn reply_rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = Vec::new();
        if let Some(ip) = self.framed_ip {
            rows.push((FRAMED_IP, ip.to_string()));
        }
        if let Some(prefix) = self.delegated_prefix {
            rows.push((DELEGATED_PREFIX, prefix.trunc().to_string()));
        }
        rows
    }
}

fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 64 {
        return Err(Error::InvalidInput(format!(
            "the RADIUS {what} {name:?} must be 1 to 64 bytes"
        )));
    }
    Ok(())
}

/// Every row FreeRADIUS would read for one user, for inspection and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountRows {
    /// `radcheck`: (attribute, op, value), in id order.
    pub check: Vec<ReplyAttribute>,
    /// `radreply`: (attribute, op, value), in id order.
    pub reply: Vec<ReplyAttribute>,
    /// `radusergroup`: (group, priority), by priority.
    pub groups: Vec<(String, i32)>,
}

impl AccountRows {
    /// The value of the first `radcheck` / `radreply` row of `attribute`.
    pub fn check_value(&self, attribute: &str) -> Option<&str> {
        find(&self.check, attribute)
    }
    pub fn reply_value(&self, attribute: &str) -> Option<&str> {
        find(&self.reply, attribute)
    }
}

fn find<'a>(rows: &'a [ReplyAttribute], attribute: &str) -> Option<&'a str> {
    rows.iter()
        .find(|r| r.attribute == attribute)
        .map(|r| r.value.as_str())
}

#[derive(Debug, Clone)]
enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// FreeRADIUS's tables on PostgreSQL or SQLite.
#[derive(Debug, Clone)]
pub struct RadiusRepo {
    db: Db,
    /// Set for a database the engine's migrations do not cover: FreeRADIUS's
    /// schema is created there (if missing) before the first use.
    schema: Option<Arc<OnceCell<()>>>,
}

/// Runs `$body` with `$pool` bound to the repository's pool and `$lock` to
/// the statement that serializes a user's writes on that backend (if any).
macro_rules! on_db {
    ($repo:expr, $pool:ident, $lock:ident => $body:expr) => {
        match &$repo.db {
            Db::Postgres($pool) => {
                let $lock: Option<&'static str> = Some(PG_LOCK);
                $body
            }
            Db::Sqlite($pool) => {
                let $lock: Option<&'static str> = None;
                $body
            }
        }
    };
}

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
                sqlx::raw_sql(PG_SCHEMA).execute(pool).await?;
            }
            Db::Sqlite(pool) => {
                sqlx::raw_sql(SQLITE_SCHEMA).execute(pool).await?;
            }
        }
        Ok(())
    }

    async fn ready(&self) -> Result<()> {
        if let Some(cell) = &self.schema {
            cell.get_or_try_init(|| self.ensure_schema()).await?;
        }
        Ok(())
    }

    /// Writes the subscriber's password, addresses and plan group, replacing
    /// what an earlier call wrote (so a replay leaves one row of each).
    pub async fn upsert_account(&self, account: &Account) -> Result<()> {
        account.validate()?;
        self.ready().await?;
        let user = account.username.as_str();
        let reply = account.reply_rows();
        on_db!(self, pool, lock => {
            let mut tx = pool.begin().await?;
            if let Some(lock) = lock {
                sqlx::query(lock).bind(lock_key("user", user)).execute(&mut *tx).await?;
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

    /// Puts the user into `group` alone (its one `radusergroup` row). The
    /// user must have an account (a `radcheck` row).
    pub async fn set_group(&self, username: &str, group: &str) -> Result<()> {
        validate_name("username", username)?;
        validate_name("group", group)?;
        self.ready().await?;
        let found = on_db!(self, pool, lock => {
            let mut tx = pool.begin().await?;
            if let Some(lock) = lock {
                sqlx::query(lock).bind(lock_key("user", username)).execute(&mut *tx).await?;
            }
            // The first statement writes, so SQLite takes its write lock here.
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
    /// user. Returns whether there was any.
    pub async fn delete_account(&self, username: &str) -> Result<bool> {
        validate_name("username", username)?;
        self.ready().await?;
        let removed = on_db!(self, pool, _lock => {
            let mut tx = pool.begin().await?;
            let mut removed = 0;
            for sql in [
                "DELETE FROM radcheck WHERE username = $1",
                "DELETE FROM radreply WHERE username = $1",
                "DELETE FROM radusergroup WHERE username = $1",
            ] {
                removed += sqlx::query(sql).bind(username).execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            removed
        });
        Ok(removed > 0)
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

fn lock_key(kind: &str, name: &str) -> String {
    format!("sagaflow.radius.{kind}:{name}")
}
