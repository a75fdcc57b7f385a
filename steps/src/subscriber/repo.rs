//! The repository of `customers`, `subscribers` and `network_profiles`.
//! Creations are idempotent per run: a record created by the same run is
//! returned again; deletions (compensations) only remove what the given run
//! created. `created_run` holds the run id's text.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;

use super::{
    Customer, NetworkProfile, NewCustomer, NewProfile, NewSubscriber, Subscriber, SubscriberError,
    SubscriberState,
};
use sagaflow_engine::ids::RunId;

use crate::db::{DomainDb, with_db};

pub type Result<T, E = SubscriberError> = std::result::Result<T, E>;

const CUSTOMER_COLUMNS: &str = "tenant_id, id, name, email, phone, created_run, created_at";
const SUBSCRIBER_COLUMNS: &str = "tenant_id, subscriber_id, customer_id, plan, state, onu_serial, \
    cpe_serial, nas, enable_ipv6, details, created_run, created_at, updated_at, archived_at";
const PROFILE_COLUMNS: &str = "tenant_id, subscriber_id, plan, download_kbps, upload_kbps, \
    service_vlan, ipv6, created_run, created_at, archived_at";

#[derive(sqlx::FromRow)]
struct CustomerRow {
    tenant_id: String,
    id: String,
    name: String,
    email: String,
    phone: Option<String>,
    created_run: String,
    created_at: DateTime<Utc>,
}

impl From<CustomerRow> for Customer {
    fn from(r: CustomerRow) -> Self {
        Customer {
            tenant_id: r.tenant_id,
            id: r.id,
            name: r.name,
            email: r.email,
            phone: r.phone,
            created_run: r.created_run,
            created_at: r.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct SubscriberRow {
    tenant_id: String,
    subscriber_id: String,
    customer_id: String,
    plan: String,
    state: String,
    onu_serial: String,
    cpe_serial: String,
    nas: Json<Value>,
    enable_ipv6: bool,
    details: Json<Value>,
    created_run: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    archived_at: Option<DateTime<Utc>>,
}

impl TryFrom<SubscriberRow> for Subscriber {
    type Error = SubscriberError;
    fn try_from(r: SubscriberRow) -> Result<Self> {
        Ok(Subscriber {
            state: r.state.parse()?,
            tenant_id: r.tenant_id,
            subscriber_id: r.subscriber_id,
            customer_id: r.customer_id,
            plan: r.plan,
            onu_serial: r.onu_serial,
            cpe_serial: r.cpe_serial,
            nas: r.nas.0,
            enable_ipv6: r.enable_ipv6,
            details: r.details.0,
            created_run: r.created_run,
            created_at: r.created_at,
            updated_at: r.updated_at,
            archived_at: r.archived_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ProfileRow {
    tenant_id: String,
    subscriber_id: String,
    plan: String,
    download_kbps: i64,
    upload_kbps: i64,
    service_vlan: Option<i32>,
    ipv6: bool,
    created_run: String,
    created_at: DateTime<Utc>,
    archived_at: Option<DateTime<Utc>>,
}

impl From<ProfileRow> for NetworkProfile {
    fn from(r: ProfileRow) -> Self {
        NetworkProfile {
            tenant_id: r.tenant_id,
            subscriber_id: r.subscriber_id,
            plan: r.plan,
            download_kbps: r.download_kbps,
            upload_kbps: r.upload_kbps,
            service_vlan: r.service_vlan,
            ipv6: r.ipv6,
            created_run: r.created_run,
            created_at: r.created_at,
            archived_at: r.archived_at,
        }
    }
}

// ---- shared statements ----

/// A row type both backends can read.
trait AnyRow:
    for<'r> sqlx::FromRow<'r, PgRow> + for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin
{
}
impl<T> AnyRow for T where
    T: for<'r> sqlx::FromRow<'r, PgRow> + for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin
{
}

/// The row `sql` selects with `$1` the tenant and `$2` the record's key.
async fn fetch_keyed<R: AnyRow>(
    db: &DomainDb,
    sql: String,
    tenant: &str,
    key: &str,
) -> Result<Option<R>> {
    Ok(with_db!(db, pool => {
        sqlx::query_as(AssertSqlSafe(sql)).bind(tenant).bind(key).fetch_optional(pool).await?
    }))
}

/// The rows `sql` selects with `$1` the tenant.
async fn fetch_tenant<R: AnyRow>(db: &DomainDb, sql: String, tenant: &str) -> Result<Vec<R>> {
    Ok(with_db!(db, pool => {
        sqlx::query_as(AssertSqlSafe(sql)).bind(tenant).fetch_all(pool).await?
    }))
}

/// Runs a `DELETE` whose `$1`, `$2` and `$3` are the tenant, the record's
/// key and the creating run's id. Returns whether a row was deleted.
async fn delete_keyed_created_by(
    db: &DomainDb,
    sql: &'static str,
    tenant: &str,
    key: &str,
    run_id: RunId,
) -> Result<bool> {
    let run_id = run_id.to_string();
    let n = with_db!(db, pool => {
        sqlx::query(sql).bind(tenant).bind(key).bind(&run_id).execute(pool).await?.rows_affected()
    });
    Ok(n > 0)
}

/// Runs an archiving `UPDATE` whose `$1`, `$2` and `$3` are the time, the
/// tenant and the record's key. Returns whether a row was archived.
async fn archive_keyed(
    db: &DomainDb,
    sql: &'static str,
    now: DateTime<Utc>,
    tenant: &str,
    key: &str,
) -> Result<bool> {
    let n = with_db!(db, pool => {
        sqlx::query(sql).bind(now).bind(tenant).bind(key).execute(pool).await?.rows_affected()
    });
    Ok(n > 0)
}

/// The live record just inserted by `run_id` (with `ON CONFLICT DO
/// NOTHING`), or `exists(created_run)` when another run's record holds the
/// place.
fn created_by_run<T>(
    live: Option<T>,
    created_run: impl FnOnce(&T) -> &str,
    run_id: &str,
    exists: impl FnOnce(String) -> SubscriberError,
) -> Result<T> {
    let live = live.ok_or(SubscriberError::Database(sqlx::Error::RowNotFound))?;
    let owner = created_run(&live);
    if owner != run_id {
        return Err(exists(owner.to_string()));
    }
    Ok(live)
}

// ---- customers ----

/// Creates the customer unless it exists; returns it. A customer is shared
/// by its subscribers, so an existing one is simply used.
pub async fn create_customer(
    db: &DomainDb,
    tenant: &str,
    c: &NewCustomer,
    run_id: RunId,
    now: DateTime<Utc>,
) -> Result<Customer> {
    let run_id = run_id.to_string();
    let insert = "INSERT INTO customers (tenant_id, id, name, email, phone, created_run, created_at) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, id) DO NOTHING";
    with_db!(db, pool => {
        sqlx::query(insert)
            .bind(tenant)
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.email)
            .bind(&c.phone)
            .bind(&run_id)
            .bind(now)
            .execute(pool)
            .await?;
    });
    get_customer(db, tenant, &c.id)
        .await?
        .ok_or(SubscriberError::Database(sqlx::Error::RowNotFound))
}

pub async fn get_customer(db: &DomainDb, tenant: &str, id: &str) -> Result<Option<Customer>> {
    let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE tenant_id = $1 AND id = $2");
    let row: Option<CustomerRow> = fetch_keyed(db, sql, tenant, id).await?;
    Ok(row.map(Customer::from))
}

pub async fn list_customers(db: &DomainDb, tenant: &str) -> Result<Vec<Customer>> {
    let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE tenant_id = $1 ORDER BY id");
    let rows: Vec<CustomerRow> = fetch_tenant(db, sql, tenant).await?;
    Ok(rows.into_iter().map(Customer::from).collect())
}

/// Deletes the customer if `run_id` created it and no subscriber (live or
/// archived) refers to it. Returns whether it was deleted.
pub async fn delete_customer_created_by(
    db: &DomainDb,
    tenant: &str,
    id: &str,
    run_id: RunId,
) -> Result<bool> {
    let sql = "DELETE FROM customers WHERE tenant_id = $1 AND id = $2 AND created_run = $3 \
               AND NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.tenant_id = $1 AND s.customer_id = $2)";
    delete_keyed_created_by(db, sql, tenant, id, run_id).await
}

// ---- subscribers ----

/// Creates the live subscriber record, ACTIVE. Fails with
/// [`SubscriberError::Exists`] when another run created a live one.
pub async fn create_subscriber(
    db: &DomainDb,
    tenant: &str,
    s: &NewSubscriber,
    run_id: RunId,
    now: DateTime<Utc>,
) -> Result<Subscriber> {
    let run_id = run_id.to_string();
    let insert = "INSERT INTO subscribers (tenant_id, subscriber_id, customer_id, plan, state, onu_serial, \
                  cpe_serial, nas, enable_ipv6, details, created_run, created_at, updated_at) \
                  VALUES ($1, $2, $3, $4, 'ACTIVE', $5, $6, $7, $8, $9, $10, $11, $11) ON CONFLICT DO NOTHING";
    with_db!(db, pool => {
        sqlx::query(insert)
            .bind(tenant)
            .bind(&s.subscriber_id)
            .bind(&s.customer_id)
            .bind(&s.plan)
            .bind(&s.onu_serial)
            .bind(&s.cpe_serial)
            .bind(Json(&s.nas))
            .bind(s.enable_ipv6)
            .bind(Json(&s.details))
            .bind(&run_id)
            .bind(now)
            .execute(pool)
            .await?;
    });
    created_by_run(
        get_subscriber(db, tenant, &s.subscriber_id).await?,
        |live| &live.created_run,
        &run_id,
        |owner| SubscriberError::Exists(s.subscriber_id.clone(), owner),
    )
}

/// The live (not archived) subscriber with this id.
pub async fn get_subscriber(db: &DomainDb, tenant: &str, id: &str) -> Result<Option<Subscriber>> {
    let sql = format!(
        "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE tenant_id = $1 AND subscriber_id = $2 \
         AND archived_at IS NULL"
    );
    let row: Option<SubscriberRow> = fetch_keyed(db, sql, tenant, id).await?;
    row.map(Subscriber::try_from).transpose()
}

/// Every subscriber record of a tenant, archived ones included.
pub async fn list_subscribers(db: &DomainDb, tenant: &str) -> Result<Vec<Subscriber>> {
    let sql = format!(
        "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE tenant_id = $1 ORDER BY subscriber_id, id"
    );
    let rows: Vec<SubscriberRow> = fetch_tenant(db, sql, tenant).await?;
    rows.into_iter().map(Subscriber::try_from).collect()
}

/// Deletes the live subscriber if `run_id` created it.
pub async fn delete_subscriber_created_by(
    db: &DomainDb,
    tenant: &str,
    id: &str,
    run_id: RunId,
) -> Result<bool> {
    let sql = "DELETE FROM subscribers WHERE tenant_id = $1 AND subscriber_id = $2 AND created_run = $3 \
               AND archived_at IS NULL";
    delete_keyed_created_by(db, sql, tenant, id, run_id).await
}

/// Sets a live subscriber's state (ACTIVE or SUSPENDED); archiving is
/// [`archive_subscriber`]. Returns the record, or `None` if none is live.
pub async fn set_subscriber_state(
    db: &DomainDb,
    tenant: &str,
    id: &str,
    state: SubscriberState,
    now: DateTime<Utc>,
) -> Result<Option<Subscriber>> {
    let sql = "UPDATE subscribers SET state = $1, updated_at = $2 WHERE tenant_id = $3 \
               AND subscriber_id = $4 AND archived_at IS NULL";
    with_db!(db, pool => {
        sqlx::query(sql).bind(state.as_str()).bind(now).bind(tenant).bind(id).execute(pool).await?;
    });
    get_subscriber(db, tenant, id).await
}

/// Archives the live subscriber, if there is one. Returns whether one was.
pub async fn archive_subscriber(
    db: &DomainDb,
    tenant: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let sql = "UPDATE subscribers SET state = 'ARCHIVED', archived_at = $1, updated_at = $1 \
               WHERE tenant_id = $2 AND subscriber_id = $3 AND archived_at IS NULL";
    archive_keyed(db, sql, now, tenant, id).await
}

// ---- network profiles ----

/// Creates the live network profile; fails with
/// [`SubscriberError::ProfileExists`] when another run created a live one.
pub async fn create_profile(
    db: &DomainDb,
    tenant: &str,
    p: &NewProfile,
    run_id: RunId,
    now: DateTime<Utc>,
) -> Result<NetworkProfile> {
    let run_id = run_id.to_string();
    let insert = "INSERT INTO network_profiles (tenant_id, subscriber_id, plan, download_kbps, upload_kbps, \
                  service_vlan, ipv6, created_run, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                  ON CONFLICT DO NOTHING";
    with_db!(db, pool => {
        sqlx::query(insert)
            .bind(tenant)
            .bind(&p.subscriber_id)
            .bind(&p.plan)
            .bind(p.download_kbps)
            .bind(p.upload_kbps)
            .bind(p.service_vlan)
            .bind(p.ipv6)
            .bind(&run_id)
            .bind(now)
            .execute(pool)
            .await?;
    });
    created_by_run(
        get_profile(db, tenant, &p.subscriber_id).await?,
        |live| &live.created_run,
        &run_id,
        |owner| SubscriberError::ProfileExists(p.subscriber_id.clone(), owner),
    )
}

/// The subscriber's live network profile.
pub async fn get_profile(
    db: &DomainDb,
    tenant: &str,
    subscriber: &str,
) -> Result<Option<NetworkProfile>> {
    let sql = format!(
        "SELECT {PROFILE_COLUMNS} FROM network_profiles WHERE tenant_id = $1 AND subscriber_id = $2 \
         AND archived_at IS NULL"
    );
    let row: Option<ProfileRow> = fetch_keyed(db, sql, tenant, subscriber).await?;
    Ok(row.map(NetworkProfile::from))
}

/// Every network profile of a tenant, archived ones included.
pub async fn list_profiles(db: &DomainDb, tenant: &str) -> Result<Vec<NetworkProfile>> {
    let sql = format!(
        "SELECT {PROFILE_COLUMNS} FROM network_profiles WHERE tenant_id = $1 ORDER BY subscriber_id, id"
    );
    let rows: Vec<ProfileRow> = fetch_tenant(db, sql, tenant).await?;
    Ok(rows.into_iter().map(NetworkProfile::from).collect())
}

/// Deletes the live profile if `run_id` created it.
pub async fn delete_profile_created_by(
    db: &DomainDb,
    tenant: &str,
    subscriber: &str,
    run_id: RunId,
) -> Result<bool> {
    let sql = "DELETE FROM network_profiles WHERE tenant_id = $1 AND subscriber_id = $2 \
               AND created_run = $3 AND archived_at IS NULL";
    delete_keyed_created_by(db, sql, tenant, subscriber, run_id).await
}

/// Archives the live profile, if there is one.
pub async fn archive_profile(
    db: &DomainDb,
    tenant: &str,
    subscriber: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let sql = "UPDATE network_profiles SET archived_at = $1 WHERE tenant_id = $2 AND subscriber_id = $3 \
               AND archived_at IS NULL";
    archive_keyed(db, sql, now, tenant, subscriber).await
}
