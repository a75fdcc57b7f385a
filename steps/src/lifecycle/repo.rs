//! The repository of `address_records`: the lifecycle of every address and
//! prefix. Allocation itself (choosing a free address) is in
//! [`crate::ipam::repo`]; it inserts records with [`INSERT`].

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use super::{AddressState, Family, InvalidTransition, UnknownName};
use crate::db::{DomainDb, is_unique_violation, with_db};

/// Why a lifecycle operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Invalid(#[from] InvalidTransition),
    #[error("address record {0} not found")]
    NotFound(i64),
    #[error("address {address} is held by another record")]
    AddressTaken { address: String },
    #[error("the address record changed under this operation too often")]
    Contention,
    #[error("stored address record is corrupt: {0}")]
    Corrupt(#[from] UnknownName),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

pub type Result<T, E = LifecycleError> = std::result::Result<T, E>;

/// One address or prefix and its lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AddressRecord {
    pub id: i64,
    pub tenant_id: String,
    pub subscriber_id: String,
    pub pool_id: i64,
    pub family: Family,
    /// `100.64.0.7` or `2001:db8:0:100::/56`.
    pub address: String,
    /// The position in the pool (0-based).
    pub ordinal: i64,
    pub state: AddressState,
    pub allocation_key: Option<String>,
    pub reserved_until: Option<DateTime<Utc>>,
    pub pending_at: Option<DateTime<Utc>>,
    pub allocated_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub revoking_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub metadata: Value,
    /// The run that last changed the record.
    pub workflow_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AddressRecord {
    /// The time the record entered `state`, if it ever did.
    pub fn entered(&self, state: AddressState) -> Option<DateTime<Utc>> {
        match state {
            AddressState::Pending => self.pending_at,
            AddressState::Allocated => self.allocated_at,
            AddressState::Active => self.activated_at,
            AddressState::Suspended => self.suspended_at,
            AddressState::Revoking => self.revoking_at,
            AddressState::Revoked => self.revoked_at,
            AddressState::Failed => self.failed_at,
        }
    }
}

pub(crate) const COLUMNS: &str = "id, tenant_id, subscriber_id, pool_id, family, address, ordinal, \
    state, allocation_key, reserved_until, pending_at, allocated_at, activated_at, suspended_at, \
    revoking_at, revoked_at, failed_at, metadata, workflow_id, created_at, updated_at";

/// Inserts a record entering `$8` (its state) at `$12`, which also sets the
/// state's timestamp column; returns it. Binds: tenant, subscriber, pool,
/// family, address, ordinal, allocation key, state, reserved_until,
/// metadata, workflow id, now.
pub(crate) fn insert_sql(state: AddressState) -> String {
    format!(
        "INSERT INTO address_records (tenant_id, subscriber_id, pool_id, family, address, ordinal, \
         allocation_key, state, reserved_until, metadata, workflow_id, created_at, updated_at, {col}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $12) RETURNING {COLUMNS}",
        col = state.timestamp_column()
    )
}

#[derive(sqlx::FromRow)]
pub(crate) struct RecordRow {
    pub(crate) id: i64,
    tenant_id: String,
    pub(crate) subscriber_id: String,
    pool_id: i64,
    family: String,
    pub(crate) address: String,
    pub(crate) ordinal: i64,
    state: String,
    allocation_key: Option<String>,
    reserved_until: Option<DateTime<Utc>>,
    pending_at: Option<DateTime<Utc>>,
    allocated_at: Option<DateTime<Utc>>,
    activated_at: Option<DateTime<Utc>>,
    suspended_at: Option<DateTime<Utc>>,
    revoking_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
    metadata: Json<Value>,
    workflow_id: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<RecordRow> for AddressRecord {
    type Error = UnknownName;
    fn try_from(r: RecordRow) -> Result<Self, UnknownName> {
        Ok(AddressRecord {
            id: r.id,
            tenant_id: r.tenant_id,
            subscriber_id: r.subscriber_id,
            pool_id: r.pool_id,
            family: r.family.parse()?,
            address: r.address,
            ordinal: r.ordinal,
            state: r.state.parse()?,
            allocation_key: r.allocation_key,
            reserved_until: r.reserved_until,
            pending_at: r.pending_at,
            allocated_at: r.allocated_at,
            activated_at: r.activated_at,
            suspended_at: r.suspended_at,
            revoking_at: r.revoking_at,
            revoked_at: r.revoked_at,
            failed_at: r.failed_at,
            metadata: r.metadata.0,
            workflow_id: r.workflow_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

pub(crate) fn records(rows: Vec<RecordRow>) -> Result<Vec<AddressRecord>, UnknownName> {
    rows.into_iter().map(AddressRecord::try_from).collect()
}

/// A record to create directly (outside IPAM allocation, e.g. an import).
#[derive(Debug, Clone)]
pub struct NewAddress<'a> {
    pub tenant_id: &'a str,
    pub subscriber_id: &'a str,
    pub pool_id: i64,
    pub family: Family,
    pub address: &'a str,
    pub ordinal: i64,
    pub state: AddressState,
    pub metadata: Value,
    pub run_id: &'a str,
}

/// How many records are in each (family, state), for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateCount {
    pub family: Family,
    pub state: AddressState,
    pub count: i64,
}

/// Creates a record in `new.state` (a held state, so the unique index keeps
/// the address from being held twice).
pub async fn create(
    db: &DomainDb,
    new: &NewAddress<'_>,
    now: DateTime<Utc>,
) -> Result<AddressRecord> {
    let sql = insert_sql(new.state);
    let row: std::result::Result<RecordRow, sqlx::Error> = with_db!(db, pool => {
        sqlx::query_as::<_, RecordRow>(AssertSqlSafe(sql))
            .bind(new.tenant_id)
            .bind(new.subscriber_id)
            .bind(new.pool_id)
            .bind(new.family.as_str())
            .bind(new.address)
            .bind(new.ordinal)
            .bind(None::<String>)
            .bind(new.state.as_str())
            .bind(None::<DateTime<Utc>>)
            .bind(Json(&new.metadata))
            .bind(new.run_id)
            .bind(now)
            .fetch_one(pool)
            .await
    });
    match row {
        Ok(row) => Ok(row.try_into()?),
        Err(e) if is_unique_violation(&e) => Err(LifecycleError::AddressTaken {
            address: new.address.to_owned(),
        }),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(db: &DomainDb, tenant: &str, id: i64) -> Result<Option<AddressRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM address_records WHERE tenant_id = $1 AND id = $2");
    let row: Option<RecordRow> = with_db!(db, pool => {
        sqlx::query_as(AssertSqlSafe(sql)).bind(tenant).bind(id).fetch_optional(pool).await?
    });
    Ok(row.map(AddressRecord::try_from).transpose()?)
}

/// Every record of a subscriber, oldest first (history included).
pub async fn for_subscriber(
    db: &DomainDb,
    tenant: &str,
    subscriber: &str,
) -> Result<Vec<AddressRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM address_records WHERE tenant_id = $1 AND subscriber_id = $2 ORDER BY id"
    );
    let rows: Vec<RecordRow> = with_db!(db, pool => {
        sqlx::query_as(AssertSqlSafe(sql)).bind(tenant).bind(subscriber).fetch_all(pool).await?
    });
    Ok(records(rows)?)
}

/// A tenant's records in any of `states`, by subscriber then id.
pub async fn list(
    db: &DomainDb,
    tenant: &str,
    states: &[AddressState],
) -> Result<Vec<AddressRecord>> {
    if states.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM address_records WHERE tenant_id = $1 AND state IN ({}) \
         ORDER BY subscriber_id, id",
        list.join(", ")
    );
    let rows: Vec<RecordRow> = with_db!(db, pool => {
        sqlx::query_as(AssertSqlSafe(sql)).bind(tenant).fetch_all(pool).await?
    });
    Ok(records(rows)?)
}

/// Moves record `id` to `to`, stamping the state's time and the run that
/// did it. Moving a record to the state it is in is refused like any other
/// move outside the table; callers that want idempotence check first.
pub async fn transition(
    db: &DomainDb,
    tenant: &str,
    id: i64,
    to: AddressState,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<AddressRecord> {
    let sql = format!(
        "UPDATE address_records SET state = $1, {col} = $2, updated_at = $2, workflow_id = $3 \
         WHERE tenant_id = $4 AND id = $5 AND state = $6 RETURNING {COLUMNS}",
        col = to.timestamp_column()
    );
    for _ in 0..5 {
        let current = get(db, tenant, id)
            .await?
            .ok_or(LifecycleError::NotFound(id))?;
        current.state.check(to)?;
        let row: std::result::Result<Option<RecordRow>, sqlx::Error> = with_db!(db, pool => {
            sqlx::query_as(AssertSqlSafe(sql.clone()))
                .bind(to.as_str())
                .bind(now)
                .bind(run_id)
                .bind(tenant)
                .bind(id)
                .bind(current.state.as_str())
                .fetch_optional(pool)
                .await
        });
        match row {
            Ok(Some(row)) => return Ok(row.try_into()?),
            Ok(None) => continue,
            Err(e) if is_unique_violation(&e) => {
                return Err(LifecycleError::AddressTaken {
                    address: current.address,
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(LifecycleError::Contention)
}

/// Record counts by (family, state) for one tenant.
pub async fn counts(db: &DomainDb, tenant: &str) -> Result<Vec<StateCount>> {
    let sql = "SELECT family, state, count(*) AS n FROM address_records WHERE tenant_id = $1 \
               GROUP BY family, state ORDER BY family, state";
    let rows: Vec<(String, String, i64)> = with_db!(db, pool => {
        sqlx::query_as(sql).bind(tenant).fetch_all(pool).await?
    });
    rows.into_iter()
        .map(|(f, s, n)| {
            Ok(StateCount {
                family: f.parse()?,
                state: s.parse()?,
                count: n,
            })
        })
        .collect()
}

/// Record counts by (tenant, family, state) of every tenant, for the
/// gauges every replica exports.
pub async fn counts_by_tenant(db: &DomainDb) -> Result<Vec<(String, StateCount)>> {
    let sql = "SELECT tenant_id, family, state, count(*) AS n FROM address_records \
               GROUP BY tenant_id, family, state ORDER BY tenant_id, family, state";
    let rows: Vec<(String, String, String, i64)> = with_db!(db, pool => {
        sqlx::query_as(sql).fetch_all(pool).await?
    });
    rows.into_iter()
        .map(|(t, f, s, n)| {
            Ok((
                t,
                StateCount {
                    family: f.parse()?,
                    state: s.parse()?,
                    count: n,
                },
            ))
        })
        .collect()
}

/// Deletes up to `batch` REVOKED records revoked before `before`; returns
/// how many. Call it until it returns less than `batch`.
pub async fn purge_revoked(db: &DomainDb, before: DateTime<Utc>, batch: i64) -> Result<u64> {
    purge_revoked_in(db, None, before, batch).await
}

/// [`purge_revoked`] of one tenant's records (every tenant's with `None`),
/// the oldest first. Each call is one short statement: its own transaction,
/// holding row locks on at most `batch` rows.
pub async fn purge_revoked_in(
    db: &DomainDb,
    tenant: Option<&str>,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<u64> {
    let (filter, order) = match tenant {
        Some(_) => ("AND tenant_id = $3", "revoked_at, id"),
        None => ("", "id"),
    };
    let sql = format!(
        "DELETE FROM address_records WHERE id IN (SELECT id FROM address_records \
         WHERE state = 'REVOKED' AND revoked_at < $1 {filter} ORDER BY {order} LIMIT $2)"
    );
    let done = with_db!(db, pool => {
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(before).bind(batch);
        if let Some(t) = tenant {
            q = q.bind(t);
        }
        q.execute(pool).await?.rows_affected()
    });
    Ok(done)
}

/// How many of a tenant's records are in `state` and entered it before
/// `before`.
pub async fn count_in_state_before(
    db: &DomainDb,
    tenant: &str,
    state: AddressState,
    before: DateTime<Utc>,
) -> Result<i64> {
    let sql = format!(
        "SELECT count(*) FROM address_records WHERE tenant_id = $1 AND state = $2 AND {col} < $3",
        col = state.timestamp_column()
    );
    let (n,): (i64,) = with_db!(db, pool => {
        sqlx::query_as(AssertSqlSafe(sql))
            .bind(tenant)
            .bind(state.as_str())
            .bind(before)
            .fetch_one(pool)
            .await?
    });
    Ok(n)
}

/// One page of a tenant's records in `state` that entered it before
/// `before`, by id after `after_id`, at most `limit`: walking the pages with
/// the last id seen visits each record once even when some cannot be moved
/// on.
pub async fn in_state_before_page(
    db: &DomainDb,
    tenant: &str,
    state: AddressState,
    before: DateTime<Utc>,
    after_id: i64,
    limit: i64,
) -> Result<Vec<AddressRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM address_records WHERE tenant_id = $1 AND state = $2 AND {col} < $3 \
         AND id > $4 ORDER BY id LIMIT $5",
        col = state.timestamp_column()
    );
    let rows: Vec<RecordRow> = with_db!(db, pool => {
        sqlx::query_as(AssertSqlSafe(sql))
            .bind(tenant)
            .bind(state.as_str())
            .bind(before)
            .bind(after_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
    });
    Ok(records(rows)?)
}

/// A stored picture of a tenant's lifecycle: record counts and pool use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub id: i64,
    pub tenant_id: String,
    /// The step that took it.
    pub idempotency_key: String,
    pub taken_at: DateTime<Utc>,
    /// `[{family, state, count}]`.
    pub records: Value,
    /// `[{pool, family, capacity, in_use, utilization}]`.
    pub pools: Value,
}

const SNAPSHOT_COLUMNS: &str = "id, tenant_id, idempotency_key, taken_at, records, pools";

type SnapshotRow = (i64, String, String, DateTime<Utc>, Json<Value>, Json<Value>);

fn snapshot(r: SnapshotRow) -> Snapshot {
    Snapshot {
        id: r.0,
        tenant_id: r.1,
        idempotency_key: r.2,
        taken_at: r.3,
        records: r.4.0,
        pools: r.5.0,
    }
}

/// Stores a snapshot once per idempotency key; returns the stored one (the
/// first, when the key took one before).
pub async fn insert_snapshot(
    db: &DomainDb,
    tenant: &str,
    key: &str,
    taken_at: DateTime<Utc>,
    records: &Value,
    pools: &Value,
) -> Result<Snapshot> {
    let insert = "INSERT INTO lifecycle_snapshots (tenant_id, idempotency_key, taken_at, records, pools) \
                  VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING";
    let select = format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM lifecycle_snapshots WHERE tenant_id = $1 \
         AND idempotency_key = $2"
    );
    let row: SnapshotRow = with_db!(db, pool => {
        sqlx::query(insert)
            .bind(tenant)
            .bind(key)
            .bind(taken_at)
            .bind(Json(records))
            .bind(Json(pools))
            .execute(pool)
            .await?;
        sqlx::query_as(AssertSqlSafe(select)).bind(tenant).bind(key).fetch_one(pool).await?
    });
    Ok(snapshot(row))
}

/// A tenant's latest snapshots, newest first.
pub async fn snapshots(db: &DomainDb, tenant: &str, limit: i64) -> Result<Vec<Snapshot>> {
    let sql = format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM lifecycle_snapshots WHERE tenant_id = $1 \
         ORDER BY taken_at DESC, id DESC LIMIT $2"
    );
    let rows: Vec<SnapshotRow> = with_db!(db, pool => {
        sqlx::query_as(AssertSqlSafe(sql)).bind(tenant).bind(limit).fetch_all(pool).await?
    });
    Ok(rows.into_iter().map(snapshot).collect())
}

/// Records in `state` that entered it before `before`, oldest first, at
/// most `limit`: ALLOCATED ones are leak suspects, REVOKING ones are stuck.
pub async fn in_state_since_before(
    db: &DomainDb,
    state: AddressState,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<AddressRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM address_records WHERE state = $1 AND {col} < $2 ORDER BY {col}, id LIMIT $3",
        col = state.timestamp_column()
    );
    let rows: Vec<RecordRow> = with_db!(db, pool => {
        sqlx::query_as(AssertSqlSafe(sql))
            .bind(state.as_str())
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await?
    });
    Ok(records(rows)?)
}

/// ALLOCATED records allocated before `before` (never activated: leaks).
pub async fn allocated_before(
    db: &DomainDb,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<AddressRecord>> {
    in_state_since_before(db, AddressState::Allocated, before, limit).await
}

/// REVOKING records that started revoking before `before` (to finish).
pub async fn revoking_before(
    db: &DomainDb,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<AddressRecord>> {
    in_state_since_before(db, AddressState::Revoking, before, limit).await
}
