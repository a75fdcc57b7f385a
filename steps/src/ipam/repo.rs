//! The repository of `ip_pools`, and allocation out of them into
//! `address_records`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

pub use super::pools::{choose_pools, ensure_pools, list_pools};
use super::{CapacityLevel, IpamError, Pool, PoolUsage, Result};
use crate::db::{DomainDb, with_db};
use crate::lifecycle::repo::{self as lifecycle, AddressRecord, COLUMNS, RecordRow, insert_sql};
use crate::lifecycle::{AddressState, Family};

pub(super) const POOL_COLUMNS: &str = "id, tenant_id, name, family, cidr, prefix_length, \
    capacity, warning_percent, critical_percent, retired_at";

/// The SQL list of the states that hold an address.
const HELD: &str = "('PENDING', 'ALLOCATED', 'ACTIVE', 'SUSPENDED', 'REVOKING')";

#[derive(sqlx::FromRow)]
pub(super) struct PoolRow {
    pub(super) id: i64,
    tenant_id: String,
    name: String,
    family: String,
    cidr: String,
    prefix_length: i32,
    capacity: i64,
    warning_percent: i32,
    critical_percent: i32,
    retired_at: Option<DateTime<Utc>>,
}

impl TryFrom<PoolRow> for Pool {
    type Error = IpamError;
    fn try_from(r: PoolRow) -> Result<Self> {
        let corrupt = |what: &str| IpamError::Corrupt(format!("pool {}: {what}", r.name));
        Ok(Pool {
            id: r.id,
            family: r.family.parse()?,
            cidr: r.cidr.parse().map_err(|_| corrupt("cidr"))?,
            prefix_length: u8::try_from(r.prefix_length).map_err(|_| corrupt("prefix_length"))?,
            capacity: r.capacity,
            warning_percent: u8::try_from(r.warning_percent).map_err(|_| corrupt("warning"))?,
            critical_percent: u8::try_from(r.critical_percent).map_err(|_| corrupt("critical"))?,
            retired_at: r.retired_at,
            tenant_id: r.tenant_id,
            name: r.name,
        })
    }
}

/// One allocation request. `key` makes it idempotent: a second call with
/// the same key returns the record the first one allocated.
#[derive(Debug, Clone)]
pub struct AllocateRequest<'a> {
    pub pool: &'a Pool,
    pub subscriber_id: &'a str,
    pub key: &'a str,
    pub run_id: &'a str,
    pub metadata: Value,
    /// A specific address (IPv4) or prefix (IPv6, `addr/len`) of the pool:
    /// a static customer's, or the one the external IPAM handed out.
    pub address: Option<&'a str>,
}

/// Allocates an address (or prefix) for a subscriber: the one asked for
/// (refused with [`IpamError::Taken`] when held), else the subscriber's
/// reservation in the pool if it has one, else the lowest free ordinal.
/// The record is created ALLOCATED.
pub async fn allocate(
    db: &DomainDb,
    req: &AllocateRequest<'_>,
    now: DateTime<Utc>,
) -> Result<AddressRecord> {
    let at = req.address.map(|a| ordinal_in(req.pool, a)).transpose()?;
    hold(
        db,
        &Hold {
            pool: req.pool,
            subscriber_id: req.subscriber_id,
            state: AddressState::Allocated,
            key: Some(req.key),
            run_id: Some(req.run_id),
            reserved_until: None,
            metadata: &req.metadata,
            at,
        },
        now,
    )
    .await
}

/// Holds the lowest free address of `pool` for `subscriber` until `until`
/// (a PENDING record); an allocation for that subscriber from that pool
/// takes it. A subscriber's live reservation in the pool is returned as is.
pub async fn reserve(
    db: &DomainDb,
    pool: &Pool,
    subscriber: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<AddressRecord> {
    let metadata = serde_json::json!({"reservation": true});
    reserve_with(db, pool, subscriber, until, None, &metadata, now).await
}

/// Like [`reserve`], for `address` when given (refused with
/// [`IpamError::Taken`] when held), with the record's `metadata`.
pub async fn reserve_with(
    db: &DomainDb,
    pool: &Pool,
    subscriber: &str,
    until: DateTime<Utc>,
    address: Option<&str>,
    metadata: &Value,
    now: DateTime<Utc>,
) -> Result<AddressRecord> {
    let at = address.map(|a| ordinal_in(pool, a)).transpose()?;
    hold(
        db,
        &Hold {
            pool,
            subscriber_id: subscriber,
            state: AddressState::Pending,
            key: None,
            run_id: None,
            reserved_until: Some(until),
            metadata,
            at,
        },
        now,
    )
    .await
}

/// A record to create in a held state: ALLOCATED (an allocation, with its
/// key) or PENDING (a reservation, with its end).
struct Hold<'a> {
    pool: &'a Pool,
    subscriber_id: &'a str,
    state: AddressState,
    key: Option<&'a str>,
    run_id: Option<&'a str>,
    reserved_until: Option<DateTime<Utc>>,
    metadata: &'a Value,
    /// The ordinal asked for; the lowest free one when `None`.
    at: Option<i64>,
}

/// The ordinal of `address` in `pool`, or why it is not one of the pool's.
pub fn ordinal_in(pool: &Pool, address: &str) -> Result<i64> {
    let range = pool.range()?;
    let wanted = match pool.family {
        Family::Ipv4 => address.split('/').next().unwrap_or(address).to_owned(),
        Family::Ipv6 => address.to_owned(),
    };
    range
        .ordinal_of(&wanted)
        .filter(|o| range.nth(*o).as_deref() == Some(wanted.as_str()))
        .ok_or_else(|| IpamError::NotInPool {
            pool: pool.name.clone(),
            address: address.into(),
        })
}

/// Creates the record of `h` on the lowest free ordinal, in one
/// transaction holding the pool's lock, unless the key's record is still
/// held (returned as is) or the subscriber's live reservation answers it
/// (taken by an allocation, returned to a reservation).
async fn hold(db: &DomainDb, h: &Hold<'_>, now: DateTime<Utc>) -> Result<AddressRecord> {
    let pool_def = h.pool;
    let range = pool_def.range()?;
    let lock = format!("SELECT id FROM ip_pools WHERE id = $1{}", db.for_update());
    let by_key = format!(
        "SELECT {COLUMNS} FROM address_records WHERE allocation_key = $1 AND tenant_id = $2"
    );
    let reservation = format!(
        "SELECT {COLUMNS} FROM address_records WHERE pool_id = $1 AND tenant_id = $2 \
         AND subscriber_id = $3 AND state = 'PENDING' AND reserved_until > $4 ORDER BY id LIMIT 1"
    );
    let take_reservation = format!(
        "UPDATE address_records SET state = 'ALLOCATED', allocated_at = $1, updated_at = $1, \
         allocation_key = $2, workflow_id = $3, reserved_until = NULL WHERE id = $4 RETURNING {COLUMNS}"
    );
    let free = format!(
        "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM address_records WHERE pool_id = $1 AND ordinal = 0 \
         AND state IN {HELD}) THEN 0 ELSE (SELECT min(a.ordinal) + 1 FROM address_records a \
         WHERE a.pool_id = $1 AND a.state IN {HELD} AND NOT EXISTS (SELECT 1 FROM address_records b \
         WHERE b.pool_id = $1 AND b.ordinal = a.ordinal + 1 AND b.state IN {HELD})) END"
    );
    let insert = insert_sql(h.state);
    with_db!(db, pool => {
        async {
            let mut tx = pool.begin().await?;
            let locked: Option<(i64,)> = sqlx::query_as(AssertSqlSafe(lock))
                .bind(pool_def.id)
                .fetch_optional(&mut *tx)
                .await?;
            if locked.is_none() {
                return Err(IpamError::UnknownPool {
                    tenant: pool_def.tenant_id.clone(),
                    name: pool_def.name.clone(),
                });
            }
            if let Some(key) = h.key {
                let existing: Option<RecordRow> = sqlx::query_as(AssertSqlSafe(by_key))
                    .bind(key)
                    .bind(&pool_def.tenant_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(row) = existing {
                    let rec = AddressRecord::try_from(row)?;
                    if rec.state.holds_address() {
                        tx.commit().await?;
                        return Ok(rec);
                    }
                    // Released by an earlier attempt that then failed: allocate anew.
                    sqlx::query("UPDATE address_records SET allocation_key = NULL WHERE id = $1")
                        .bind(rec.id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let reserved: Option<RecordRow> = sqlx::query_as(AssertSqlSafe(reservation))
                .bind(pool_def.id)
                .bind(&pool_def.tenant_id)
                .bind(h.subscriber_id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let taken = format!(
                "SELECT id FROM address_records WHERE pool_id = $1 AND ordinal = $2 AND state IN {HELD}"
            );
            if let Some(r) = reserved.filter(|r| h.at.is_none_or(|o| o == r.ordinal)) {
                let row = if h.state == AddressState::Pending {
                    r
                } else {
                    sqlx::query_as(AssertSqlSafe(take_reservation))
                        .bind(now)
                        .bind(h.key)
                        .bind(h.run_id)
                        .bind(r.id)
                        .fetch_one(&mut *tx)
                        .await?
                };
                tx.commit().await?;
                return Ok(AddressRecord::try_from(row)?);
            }
            let ordinal = if let Some(at) = h.at {
                let held: Option<(i64,)> = sqlx::query_as(AssertSqlSafe(taken))
                    .bind(pool_def.id)
                    .bind(at)
                    .fetch_optional(&mut *tx)
                    .await?;
                if held.is_some() {
                    return Err(IpamError::Taken {
                        pool: pool_def.name.clone(),
                        address: range.nth(at).unwrap_or_default(),
                    });
                }
                at
            } else {
                let (ordinal,): (Option<i64>,) = sqlx::query_as(AssertSqlSafe(free))
                    .bind(pool_def.id)
                    .fetch_one(&mut *tx)
                    .await?;
                ordinal.unwrap_or(0)
            };
            let Some(address) = range.nth(ordinal) else {
                return Err(IpamError::Exhausted { pool: pool_def.name.clone() });
            };
            let row: RecordRow = sqlx::query_as(AssertSqlSafe(insert))
                .bind(&pool_def.tenant_id)
                .bind(h.subscriber_id)
                .bind(pool_def.id)
                .bind(pool_def.family.as_str())
                .bind(address)
                .bind(ordinal)
                .bind(h.key)
                .bind(h.state.as_str())
                .bind(h.reserved_until)
                .bind(Json(h.metadata))
                .bind(h.run_id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(AddressRecord::try_from(row)?)
        }
        .await
    })
}

/// Ends every reservation whose time is up (PENDING → FAILED, which frees
/// the address) and returns them.
pub async fn expire_reservations(db: &DomainDb, now: DateTime<Utc>) -> Result<Vec<AddressRecord>> {
    expire(db, None, now).await
}

/// Ends a tenant's reservations whose time is up, like
/// [`expire_reservations`], and in the same transaction writes an audit
/// record (`RESERVATION_EXPIRED`) of each under `key`, the step's
/// idempotency key. Returns the records expired by this call.
pub async fn expire_reservations_audited(
    db: &DomainDb,
    tenant: &str,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Vec<AddressRecord>> {
    expire(db, Some((tenant, key)), now).await
}

async fn expire(
    db: &DomainDb,
    audit: Option<(&str, &str)>,
    now: DateTime<Utc>,
) -> Result<Vec<AddressRecord>> {
    let filter = if audit.is_some() {
        "AND tenant_id = $2"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE address_records SET state = 'FAILED', failed_at = $1, updated_at = $1 \
         WHERE state = 'PENDING' AND reserved_until IS NOT NULL AND reserved_until <= $1 {filter} \
         RETURNING {COLUMNS}"
    );
    let insert = "INSERT INTO address_audit (tenant_id, record_id, subscriber_id, address, action, \
                  idempotency_key, at) VALUES ($1, $2, $3, $4, 'RESERVATION_EXPIRED', $5, $6) \
                  ON CONFLICT (record_id, action) DO NOTHING";
    let rows: Vec<RecordRow> = with_db!(db, pool => {
        async {
            let mut tx = pool.begin().await?;
            let mut q = sqlx::query_as::<_, RecordRow>(AssertSqlSafe(sql)).bind(now);
            if let Some((tenant, _)) = audit {
                q = q.bind(tenant);
            }
            let rows = q.fetch_all(&mut *tx).await?;
            if let Some((tenant, key)) = audit {
                for r in &rows {
                    sqlx::query(insert)
                        .bind(tenant)
                        .bind(r.id)
                        .bind(&r.subscriber_id)
                        .bind(&r.address)
                        .bind(key)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(rows)
        }
        .await?
    });
    let mut out = lifecycle::records(rows)?;
    out.sort_by_key(|r| r.id);
    Ok(out)
}

/// An audit record of an address operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub tenant_id: String,
    pub record_id: i64,
    pub subscriber_id: String,
    pub address: String,
    /// `RESERVATION_EXPIRED`.
    pub action: String,
    /// The step that did it.
    pub idempotency_key: String,
    pub at: DateTime<Utc>,
    /// When the owner was told.
    pub notified_at: Option<DateTime<Utc>>,
}

type AuditRow = (
    i64,
    String,
    i64,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

const AUDIT_COLUMNS: &str = "id, tenant_id, record_id, subscriber_id, address, action, \
    idempotency_key, at, notified_at";

/// The audit records a step (`key`) of `tenant` wrote, by id.
pub async fn audit_of(db: &DomainDb, tenant: &str, key: &str) -> Result<Vec<AuditRecord>> {
    let sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM address_audit WHERE tenant_id = $1 AND idempotency_key = $2 \
         ORDER BY id"
    );
    let rows: Vec<AuditRow> = with_db!(db, pool => {
        sqlx::query_as(AssertSqlSafe(sql)).bind(tenant).bind(key).fetch_all(pool).await?
    });
    Ok(rows
        .into_iter()
        .map(|r| AuditRecord {
            id: r.0,
            tenant_id: r.1,
            record_id: r.2,
            subscriber_id: r.3,
            address: r.4,
            action: r.5,
            idempotency_key: r.6,
            at: r.7,
            notified_at: r.8,
        })
        .collect())
}

/// Notes that the owner of `tenant`'s audit record `id` was told.
pub async fn mark_audit_notified(
    db: &DomainDb,
    tenant: &str,
    id: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    let sql = "UPDATE address_audit SET notified_at = $1 WHERE tenant_id = $2 AND id = $3 \
               AND notified_at IS NULL";
    with_db!(db, pool => {
        sqlx::query(sql).bind(now).bind(tenant).bind(id).execute(pool).await?.rows_affected()
    });
    Ok(())
}

/// The last capacity level stored for each of a tenant's pools, by pool id.
pub async fn capacity_levels(db: &DomainDb, tenant: &str) -> Result<BTreeMap<i64, CapacityLevel>> {
    let sql = "SELECT l.pool_id, l.level FROM pool_capacity_levels l \
               JOIN ip_pools p ON p.id = l.pool_id WHERE p.tenant_id = $1";
    let rows: Vec<(i64, String)> = with_db!(db, pool => {
        sqlx::query_as(sql).bind(tenant).fetch_all(pool).await?
    });
    rows.into_iter()
        .map(|(id, level)| Ok((id, level.parse()?)))
        .collect()
}

/// Stores the capacity level of `tenant`'s pool `pool_id` (a pool of
/// another tenant is left alone).
pub async fn set_capacity_level(
    db: &DomainDb,
    tenant: &str,
    pool_id: i64,
    level: CapacityLevel,
    percent: f64,
    now: DateTime<Utc>,
) -> Result<()> {
    let sql = "INSERT INTO pool_capacity_levels (pool_id, level, percent, changed_at) \
               SELECT id, $2, $3, $4 FROM ip_pools WHERE id = $1 AND tenant_id = $5 \
               ON CONFLICT (pool_id) DO UPDATE SET level = excluded.level, \
               percent = excluded.percent, changed_at = excluded.changed_at";
    with_db!(db, pool => {
        sqlx::query(sql)
            .bind(pool_id)
            .bind(level.as_str())
            .bind(percent)
            .bind(now)
            .bind(tenant)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Returns a record's address to its pool: through REVOKING to REVOKED (a
/// PENDING one to FAILED). Already released records are returned as they
/// are, so release is idempotent.
pub async fn release(
    db: &DomainDb,
    tenant: &str,
    id: i64,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<AddressRecord> {
    let mut rec = lifecycle::get(db, tenant, id)
        .await?
        .ok_or(lifecycle::LifecycleError::NotFound(id))?;
    loop {
        let next = match rec.state {
            AddressState::Pending => AddressState::Failed,
            AddressState::Allocated | AddressState::Active | AddressState::Suspended => {
                AddressState::Revoking
            }
            AddressState::Revoking => AddressState::Revoked,
            AddressState::Revoked | AddressState::Failed => return Ok(rec),
        };
        rec = lifecycle::transition(db, tenant, id, next, run_id, now).await?;
    }
}

/// `tenant`'s record an allocation key names, if any.
pub async fn by_allocation_key(
    db: &DomainDb,
    tenant: &str,
    key: &str,
) -> Result<Option<AddressRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM address_records WHERE tenant_id = $1 AND allocation_key = $2"
    );
    let row: Option<RecordRow> = with_db!(db, pool => {
        sqlx::query_as(AssertSqlSafe(sql)).bind(tenant).bind(key).fetch_optional(pool).await?
    });
    Ok(row.map(AddressRecord::try_from).transpose()?)
}

/// Every pool's capacity and use (one tenant's, or all with `None`).
pub async fn utilization(db: &DomainDb, tenant: Option<&str>) -> Result<Vec<PoolUsage>> {
    let filter = if tenant.is_some() {
        "WHERE p.tenant_id = $1"
    } else {
        ""
    };
    let sql = format!(
        "SELECT p.id, p.tenant_id, p.name, p.family, p.cidr, p.prefix_length, p.capacity, \
         p.warning_percent, p.critical_percent, p.retired_at, (SELECT count(*) FROM address_records r \
         WHERE r.pool_id = p.id AND r.state IN ('ALLOCATED', 'ACTIVE', 'SUSPENDED', 'REVOKING')) AS in_use \
         FROM ip_pools p {filter} ORDER BY p.tenant_id, p.name"
    );
    let rows: Vec<(PoolRow, i64)> = with_db!(db, pool => {
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(t) = tenant {
            q = q.bind(t);
        }
        let rows = q.fetch_all(pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            use sqlx::{FromRow, Row};
            out.push((PoolRow::from_row(row)?, row.try_get::<i64, _>("in_use")?));
        }
        out
    });
    rows.into_iter()
        .map(|(p, in_use)| {
            Ok(PoolUsage {
                pool: p.try_into()?,
                in_use,
            })
        })
        .collect()
}
