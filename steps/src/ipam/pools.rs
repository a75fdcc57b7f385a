//! Pools as run-time objects: seeded from configuration
//! ([`ensure_pools`]), created, grown, re-thresholded and retired through
//! the API ([`create_pool`], [`update_pool`], [`retire_pool`]), every change
//! audited in `pool_audit`; and which pools an allocation may take from
//! ([`choose_pools`]: the one named, or spillover).

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use super::repo::{POOL_COLUMNS, PoolRow};
use super::{IpamError, Pool, PoolConfig, PoolRange, Result};
use crate::db::{DomainDb, with_db};
use crate::lifecycle::Family;

/// Writes one `pool_audit` row in the transaction `$tx` (a macro, so the
/// same code serves both backends inside `with_db!`).
macro_rules! audit {
    ($tx:expr, ($tenant:expr, $pool_id:expr, $name:expr), $action:expr, $actor:expr, $detail:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO pool_audit (tenant_id, pool_id, pool_name, action, actor, detail, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind($tenant)
        .bind($pool_id)
        .bind($name)
        .bind($action)
        .bind($actor)
        .bind(Json($detail))
        .bind($now)
        .execute(&mut *$tx)
        .await?
    };
}

/// Creates the configured pools that do not exist yet. Configuration only
/// seeds: a stored pool keeps what was changed at run time (thresholds, a
/// grown range); a configured range outside the stored one is refused.
/// Idempotent.
pub async fn ensure_pools(
    db: &DomainDb,
    configs: &[PoolConfig],
    now: DateTime<Utc>,
) -> Result<Vec<Pool>> {
    let mut out = Vec::with_capacity(configs.len());
    for c in configs {
        let range = c.range()?;
        let stored = match find(db, &c.tenant, &c.name).await? {
            Some(p) => p,
            None => match insert(db, c, "config", now).await {
                Ok(p) => p,
                // Another replica seeded it meanwhile.
                Err(IpamError::PoolExists { .. }) => find(db, &c.tenant, &c.name)
                    .await?
                    .ok_or_else(|| IpamError::Corrupt(format!("pool {} vanished", c.name)))?,
                Err(e) => return Err(e),
            },
        };
        if !stored.cidr.contains(&range.net) || stored.prefix_length != range.prefix_length {
            return Err(IpamError::PoolChanged {
                name: c.name.clone(),
                stored: format!("{} /{}", stored.cidr, stored.prefix_length),
                configured: format!("{} /{}", range.net, range.prefix_length),
            });
        }
        out.push(stored);
    }
    Ok(out)
}

/// Creates a pool at run time, audited as `actor`. A taken name is
/// [`IpamError::PoolExists`]; a range overlapping another pool of the
/// tenant is [`IpamError::InvalidPool`].
pub async fn create_pool(
    db: &DomainDb,
    c: &PoolConfig,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Pool> {
    let range = c.range()?;
    c.thresholds()?;
    if find(db, &c.tenant, &c.name).await?.is_some() {
        return Err(IpamError::PoolExists {
            tenant: c.tenant.clone(),
            name: c.name.clone(),
        });
    }
    if let Some(other) = list_pools(db, Some(&c.tenant))
        .await?
        .into_iter()
        .find(|p| overlaps(&p.cidr, &range.net))
    {
        return Err(IpamError::InvalidPool {
            name: c.name.clone(),
            reason: format!(
                "{} overlaps pool {:?} ({})",
                range.net, other.name, other.cidr
            ),
        });
    }
    insert(db, c, actor, now).await
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

async fn insert(db: &DomainDb, c: &PoolConfig, actor: &str, now: DateTime<Utc>) -> Result<Pool> {
    let range = c.range()?;
    let (warning, critical) = c.thresholds()?;
    let sql = format!(
        "INSERT INTO ip_pools (tenant_id, name, family, cidr, prefix_length, capacity, \
         warning_percent, critical_percent, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (tenant_id, name) DO NOTHING RETURNING {POOL_COLUMNS}"
    );
    let detail = json!({
        "cidr": range.net.to_string(),
        "prefix_length": range.prefix_length,
        "warning_percent": warning,
        "critical_percent": critical,
    });
    let row: Option<PoolRow> = with_db!(db, pool => {
        async {
            let mut tx = pool.begin().await?;
            let row: Option<PoolRow> = sqlx::query_as(AssertSqlSafe(sql))
                .bind(&c.tenant)
                .bind(&c.name)
                .bind(c.family().as_str())
                .bind(range.net.to_string())
                .bind(i32::from(range.prefix_length))
                .bind(range.capacity())
                .bind(i32::from(warning))
                .bind(i32::from(critical))
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(r) = &row {
                audit!(tx, (&c.tenant, r.id, &c.name), "CREATED", actor, &detail, now);
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(row)
        }
        .await?
    });
    match row {
        Some(r) => Pool::try_from(r),
        None => Err(IpamError::PoolExists {
            tenant: c.tenant.clone(),
            name: c.name.clone(),
        }),
    }
}

/// What [`update_pool`] changes; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct PoolUpdate {
    /// A range containing the old one, starting at the same address.
    pub cidr: Option<IpNet>,
    pub warning_percent: Option<u8>,
    pub critical_percent: Option<u8>,
}

/// Grows a pool's range and/or changes its thresholds, audited as
/// `actor`. A range can only grow, from the same first address, so every
/// held address keeps its ordinal.
pub async fn update_pool(
    db: &DomainDb,
    tenant: &str,
    name: &str,
    change: &PoolUpdate,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Pool> {
    let pool = get(db, tenant, name).await?;
    let invalid = |reason: String| IpamError::InvalidPool {
        name: name.into(),
        reason,
    };
    let cidr = change.cidr.map(|c| c.trunc()).unwrap_or(pool.cidr);
    if !cidr.contains(&pool.cidr) || cidr.network() != pool.cidr.network() {
        return Err(invalid(format!(
            "a range can only grow from its first address: {cidr} does not extend {}",
            pool.cidr
        )));
    }
    if cidr != pool.cidr
        && let Some(other) = list_pools(db, Some(tenant))
            .await?
            .into_iter()
            .find(|p| p.id != pool.id && overlaps(&p.cidr, &cidr))
    {
        return Err(invalid(format!(
            "{cidr} overlaps pool {:?} ({})",
            other.name, other.cidr
        )));
    }
    let range = PoolRange::new(cidr, pool.prefix_length).map_err(invalid)?;
    if range.v4_skips_edges() != pool.range()?.v4_skips_edges() {
        return Err(invalid(
            "growing a /31 or /32 would renumber its addresses; create another pool".into(),
        ));
    }
    let warning = change.warning_percent.unwrap_or(pool.warning_percent);
    let critical = change.critical_percent.unwrap_or(pool.critical_percent);
    let mut cfg = PoolConfig::new(tenant, name, cidr);
    cfg.warning_percent = Some(warning);
    cfg.critical_percent = Some(critical);
    cfg.thresholds()?;
    let detail = json!({
        "cidr": cidr.to_string(),
        "previous_cidr": pool.cidr.to_string(),
        "warning_percent": warning,
        "critical_percent": critical,
    });
    let sql = format!(
        "UPDATE ip_pools SET cidr = $1, capacity = $2, warning_percent = $3, \
         critical_percent = $4, updated_at = $5 WHERE id = $6 RETURNING {POOL_COLUMNS}"
    );
    let row: PoolRow = with_db!(db, p => {
        async {
            let mut tx = p.begin().await?;
            let row: PoolRow = sqlx::query_as(AssertSqlSafe(sql))
                .bind(cidr.to_string())
                .bind(range.capacity())
                .bind(i32::from(warning))
                .bind(i32::from(critical))
                .bind(now)
                .bind(pool.id)
                .fetch_one(&mut *tx)
                .await?;
            audit!(tx, (tenant, pool.id, name), "UPDATED", actor, &detail, now);
            tx.commit().await?;
            Ok::<_, sqlx::Error>(row)
        }
        .await?
    });
    Pool::try_from(row)
}

/// Retires a pool: no new allocations, existing records kept. Retiring a
/// retired pool returns it as it is.
pub async fn retire_pool(
    db: &DomainDb,
    tenant: &str,
    name: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Pool> {
    let pool = get(db, tenant, name).await?;
    if pool.retired_at.is_some() {
        return Ok(pool);
    }
    let sql = format!(
        "UPDATE ip_pools SET retired_at = $1, updated_at = $1 WHERE id = $2 \
         RETURNING {POOL_COLUMNS}"
    );
    let detail = json!({ "cidr": pool.cidr.to_string() });
    let row: PoolRow = with_db!(db, p => {
        async {
            let mut tx = p.begin().await?;
            let row: PoolRow = sqlx::query_as(AssertSqlSafe(sql))
                .bind(now)
                .bind(pool.id)
                .fetch_one(&mut *tx)
                .await?;
            audit!(tx, (tenant, pool.id, name), "RETIRED", actor, &detail, now);
            tx.commit().await?;
            Ok::<_, sqlx::Error>(row)
        }
        .await?
    });
    Pool::try_from(row)
}

/// One change to a pool, as audited.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct PoolAudit {
    pub id: i64,
    pub pool_name: String,
    /// `CREATED`, `UPDATED` or `RETIRED`.
    pub action: String,
    pub actor: String,
    pub detail: Json<Value>,
    pub at: DateTime<Utc>,
}

/// The audit of a tenant's pool, oldest first.
pub async fn pool_audit(db: &DomainDb, tenant: &str, pool_id: i64) -> Result<Vec<PoolAudit>> {
    let sql = "SELECT id, pool_name, action, actor, detail, at FROM pool_audit \
               WHERE tenant_id = $1 AND pool_id = $2 ORDER BY id";
    Ok(with_db!(db, p => {
        sqlx::query_as(sql).bind(tenant).bind(pool_id).fetch_all(p).await?
    }))
}

async fn find(db: &DomainDb, tenant: &str, name: &str) -> Result<Option<Pool>> {
    let sql = format!("SELECT {POOL_COLUMNS} FROM ip_pools WHERE tenant_id = $1 AND name = $2");
    let row: Option<PoolRow> = with_db!(db, p => {
        sqlx::query_as(AssertSqlSafe(sql)).bind(tenant).bind(name).fetch_optional(p).await?
    });
    row.map(Pool::try_from).transpose()
}

/// A tenant's pool by name.
pub async fn get(db: &DomainDb, tenant: &str, name: &str) -> Result<Pool> {
    find(db, tenant, name)
        .await?
        .ok_or_else(|| IpamError::UnknownPool {
            tenant: tenant.into(),
            name: name.into(),
        })
}

/// A tenant's pools (every tenant's with `None`), by tenant and name.
pub async fn list_pools(db: &DomainDb, tenant: Option<&str>) -> Result<Vec<Pool>> {
    let filter = if tenant.is_some() {
        "WHERE tenant_id = $1"
    } else {
        ""
    };
    let sql = format!("SELECT {POOL_COLUMNS} FROM ip_pools {filter} ORDER BY tenant_id, name");
    let rows: Vec<PoolRow> = with_db!(db, pool => {
        let mut q = sqlx::query_as(AssertSqlSafe(sql));
        if let Some(t) = tenant {
            q = q.bind(t);
        }
        q.fetch_all(pool).await?
    });
    rows.into_iter().map(Pool::try_from).collect()
}

/// The pools an allocation may take from, in the order to try them: the
/// one named (refused when retired), or else spillover: every pool of the
/// tenant of `family` (handing out `/prefix_length` when given) that is not
/// retired, by name. The allocation takes the first with room.
pub async fn choose_pools(
    db: &DomainDb,
    tenant: &str,
    family: Family,
    name: Option<&str>,
    prefix_length: Option<u8>,
) -> Result<Vec<Pool>> {
    let pools = list_pools(db, Some(tenant)).await?;
    if let Some(name) = name {
        let pool = pools
            .into_iter()
            .find(|p| p.name == name && p.family == family)
            .ok_or_else(|| IpamError::UnknownPool {
                tenant: tenant.into(),
                name: name.into(),
            })?;
        if pool.retired_at.is_some() {
            return Err(IpamError::Retired { pool: pool.name });
        }
        return Ok(vec![pool]);
    }
    let candidates: Vec<Pool> = pools
        .into_iter()
        .filter(|p| {
            p.family == family
                && p.retired_at.is_none()
                && prefix_length.is_none_or(|l| l == p.prefix_length)
        })
        .collect();
    if candidates.is_empty() {
        return Err(IpamError::NoPool {
            tenant: tenant.into(),
            family,
            prefix_length,
        });
    }
    Ok(candidates)
}
