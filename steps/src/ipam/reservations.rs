//! Reservations made by an operator: an address or prefix held for a
//! subscriber until it expires (the hourly `reservation_expiry` job ends
//! it, with its `RESERVATION_EXPIRED` audit row and notification), is
//! taken by that subscriber's next allocation from the pool, or is
//! released. A reservation is a PENDING `address_records` row with
//! `reserved_until`, its owner, reason and key in the metadata, and, when
//! the tenant's IPAM backend is external, what that backend holds under the
//! key (NetBox: a `reserved` object). The backend holds first and gives
//! back first, so the record never claims what the backend does not hold
//! unless an error was returned. Making and releasing one writes an
//! `address_audit` row (`RESERVED`, `RESERVATION_RELEASED`) with who and
//! why. Making one is notified (`address_reserved`) once its audit row is
//! written; the row's `notified_at` says it was delivered.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::backend::IpamBackend;
use super::repo as ipam;
use super::{IpamError, Pool, Result, pools};
use crate::db::{DomainDb, with_db};
use crate::lifecycle::repo::{self as lifecycle, AddressRecord, LifecycleError};
use crate::lifecycle::{AddressState, Family};
use crate::notify::{Notification, NotificationKind, Notifier};

/// The days a reservation lasts when the request names none.
pub const DEFAULT_DAYS: u32 = 30;

/// What to reserve.
#[derive(Debug, Clone)]
pub struct ReserveRequest<'a> {
    pub tenant: &'a str,
    pub subscriber_id: &'a str,
    /// The pool by name; `None`: the first pool of the family with room.
    pub pool: Option<&'a str>,
    pub family: Family,
    /// A specific address or prefix; `None`: the lowest free one.
    pub address: Option<&'a str>,
    /// 0: [`DEFAULT_DAYS`].
    pub expires_in_days: u32,
    pub reason: &'a str,
    /// Who asks (the caller's name).
    pub owner: &'a str,
}

/// The key of a reservation, in its record's metadata (`key`) and on what
/// the backend holds for it: who, in which pool, which address (`any`).
/// The same request makes the same key, so its retry finds what the first
/// attempt made.
pub fn reservation_key(subscriber: &str, pool: &str, address: Option<&str>) -> String {
    format!(
        "reservation:{subscriber}:{pool}:{}",
        address.unwrap_or("any")
    )
}

/// The key of a reservation record (`None` for one made before keys).
pub fn key_of(rec: &AddressRecord) -> Option<&str> {
    rec.metadata.get("key").and_then(serde_json::Value::as_str)
}

/// Reserves per `r`: in the pool named, or spilling over the family's pools
/// (as allocation does), audits it and tells `notifier`. A notification
/// that cannot be delivered is logged and leaves the reservation made (its
/// audit row's `notified_at` stays empty).
///
/// The subscriber's live reservation that answers `r` is returned as it
/// is. Otherwise `backend` holds the address first (NetBox: a `reserved`
/// object; a specific address it has is refused as taken), then the record
/// is written with that address; when the record cannot be written, what
/// the backend holds is given back (were that to fail too, the object
/// keeps the reservation's key, and a retry of the request finds it).
pub async fn reserve(
    db: &DomainDb,
    backend: &dyn IpamBackend,
    notifier: &dyn Notifier,
    r: &ReserveRequest<'_>,
    now: DateTime<Utc>,
) -> Result<AddressRecord> {
    let days = if r.expires_in_days == 0 {
        DEFAULT_DAYS
    } else {
        r.expires_in_days
    };
    let until = now + Duration::days(i64::from(days));
    let candidates = pools::choose_pools(db, r.tenant, r.family, r.pool, None).await?;
    let mut last = None;
    for pool in &candidates {
        if let Some(a) = r.address
            && ipam::ordinal_in(pool, a).is_err()
        {
            continue;
        }
        let made = match live(db, pool, r.subscriber_id, r.address, now).await? {
            Some(rec) => Ok(rec),
            None => reserve_in(db, backend, pool, r, until, now).await,
        };
        match made {
            Ok(rec) => {
                audit(db, &rec, "RESERVED", r.owner, r.reason, now).await?;
                notify_reserved(db, notifier, &rec, r, now).await?;
                return Ok(rec);
            }
            Err(e @ IpamError::Exhausted { .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| IpamError::NotInPool {
        pool: candidates
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        address: r.address.unwrap_or_default().into(),
    }))
}

/// Reserves in `pool`: the backend first, then the record (the backend's
/// hold given back when the record fails).
async fn reserve_in(
    db: &DomainDb,
    backend: &dyn IpamBackend,
    pool: &Pool,
    r: &ReserveRequest<'_>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<AddressRecord> {
    let key = reservation_key(r.subscriber_id, &pool.name, r.address);
    let metadata = json!({ "reservation": true, "reason": r.reason, "owner": r.owner, "key": key });
    let held = backend
        .reserve(pool, r.subscriber_id, &key, r.address)
        .await?;
    let address = held.as_deref().or(r.address);
    let stored =
        ipam::reserve_with(db, pool, r.subscriber_id, until, address, &metadata, now).await;
    if stored.is_err()
        && held.is_some()
        && let Err(e) = backend.unreserve(r.tenant, pool.family, &key).await
    {
        tracing::error!(%key, error = %e, "a reservation not recorded is still held by the IPAM backend");
    }
    stored
}

/// `subscriber`'s live reservation in `pool` (of `address` when given;
/// none when `address` is not one of the pool's), the first made.
pub async fn live(
    db: &DomainDb,
    pool: &Pool,
    subscriber: &str,
    address: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<AddressRecord>> {
    let at = match address.map(|a| ipam::ordinal_in(pool, a)) {
        Some(Err(_)) => return Ok(None),
        Some(Ok(o)) => Some(o),
        None => None,
    };
    Ok(lifecycle::for_subscriber(db, &pool.tenant_id, subscriber)
        .await?
        .into_iter()
        .find(|rec| {
            rec.pool_id == pool.id
                && rec.state == AddressState::Pending
                && rec.reserved_until.is_some_and(|u| u > now)
                && at.is_none_or(|o| o == rec.ordinal)
        }))
}

/// A tenant's live reservations (one subscriber's when given), by id.
pub async fn list(
    db: &DomainDb,
    tenant: &str,
    subscriber: Option<&str>,
) -> Result<Vec<AddressRecord>> {
    Ok(lifecycle::list(db, tenant, &[AddressState::Pending])
        .await?
        .into_iter()
        .filter(|r| r.reserved_until.is_some())
        .filter(|r| subscriber.is_none_or(|s| s == r.subscriber_id))
        .collect())
}

/// Ends a live reservation by hand (PENDING → FAILED, the address free
/// again), audited. Releasing one that already ended returns it as it is.
/// The backend gives its hold back first; when it cannot, the reservation
/// stays as it was and the error is returned (a retry releases it).
pub async fn release(
    db: &DomainDb,
    backend: &dyn IpamBackend,
    tenant: &str,
    id: i64,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<AddressRecord> {
    let rec = lifecycle::get(db, tenant, id)
        .await?
        .filter(|r| r.reserved_until.is_some())
        .ok_or(IpamError::Lifecycle(LifecycleError::NotFound(id)))?;
    if rec.state != AddressState::Pending {
        return Ok(rec);
    }
    if let Some(key) = key_of(&rec) {
        backend.unreserve(tenant, rec.family, key).await?;
    }
    let done = ipam::release(db, tenant, id, &format!("release:{owner}"), now).await?;
    audit(db, &done, "RESERVATION_RELEASED", owner, "", now).await?;
    Ok(done)
}

/// Gives back what the backend holds for `tenant`'s reservations whose time
/// is up at `now`, before [`ipam::expire_reservations_audited`] ends their
/// records: an error leaves the records as they are, for a retry.
pub async fn unreserve_expired(
    db: &DomainDb,
    backend: &dyn IpamBackend,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    for rec in list(db, tenant, None).await? {
        if let (Some(key), Some(until)) = (key_of(&rec), rec.reserved_until)
            && until <= now
        {
            backend.unreserve(tenant, rec.family, key).await?;
        }
    }
    Ok(())
}

/// Sends the `address_reserved` notification of `rec` unless its audit row
/// says it went already, and marks the row.
async fn notify_reserved(
    db: &DomainDb,
    notifier: &dyn Notifier,
    rec: &AddressRecord,
    r: &ReserveRequest<'_>,
    now: DateTime<Utc>,
) -> Result<()> {
    let key = format!("reserved:{}", rec.id);
    for a in ipam::audit_of(db, &rec.tenant_id, &key).await? {
        if a.notified_at.is_some() {
            continue;
        }
        let n = Notification {
            id: key.clone(),
            kind: NotificationKind::AddressReserved,
            tenant_id: rec.tenant_id.clone(),
            at: a.at,
            data: json!({
                "subscriber_id": rec.subscriber_id,
                "address": rec.address,
                "record_id": rec.id,
                "expires_at": rec.reserved_until,
                "owner": r.owner,
                "reason": r.reason,
            }),
        };
        match notifier.notify(&n).await {
            Ok(()) => ipam::mark_audit_notified(db, &rec.tenant_id, a.id, now).await?,
            Err(e) => tracing::warn!(id = %key, error = %e, "reservation not notified"),
        }
    }
    Ok(())
}

async fn audit(
    db: &DomainDb,
    rec: &AddressRecord,
    action: &str,
    actor: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let sql = "INSERT INTO address_audit (tenant_id, record_id, subscriber_id, address, action, \
               idempotency_key, at, actor, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
               ON CONFLICT (record_id, action) DO NOTHING";
    let key = format!("{}:{}", action.to_lowercase(), rec.id);
    with_db!(db, pool => {
        sqlx::query(sql)
            .bind(&rec.tenant_id)
            .bind(rec.id)
            .bind(&rec.subscriber_id)
            .bind(&rec.address)
            .bind(action)
            .bind(key)
            .bind(now)
            .bind(actor)
            .bind(reason)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(())
}
