//! IPAM and the address lifecycle repository, on both backends.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use sagaflow_steps::DomainDb;
use sagaflow_steps::ipam::repo::{self as ipam, AllocateRequest};
use sagaflow_steps::ipam::{IpamError, Pool, PoolConfig};
use sagaflow_steps::lifecycle::repo::{self as lifecycle, LifecycleError, NewAddress};
use sagaflow_steps::lifecycle::{AddressState, Family};
use serde_json::json;

const T: &str = "t1";

async fn pool(db: &DomainDb, name: &str, cidr: &str) -> Pool {
    let cfg = PoolConfig::new(T, name, cidr.parse().unwrap());
    ipam::ensure_pools(db, &[cfg], Utc::now())
        .await
        .unwrap()
        .remove(0)
}

async fn allocate(db: &DomainDb, pool: &Pool, sub: &str, key: &str) -> Result<String, IpamError> {
    ipam::allocate(
        db,
        &AllocateRequest {
            pool,
            subscriber_id: sub,
            key,
            run_id: "run",
            metadata: json!({}),
            address: None,
        },
        Utc::now(),
    )
    .await
    .map(|r| r.address)
}

/// `n` allocations at once from `pool`: the addresses handed out, and the
/// pools named by exhaustion errors.
async fn concurrently(db: &DomainDb, pool: &Pool, n: usize) -> (Vec<String>, Vec<String>) {
    let pool = Arc::new(pool.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (db, pool) = (db.clone(), pool.clone());
        let key = format!("{}:k{i}", pool.name);
        tasks.spawn(async move { allocate(&db, &pool, &format!("s{i}"), &key).await });
    }
    let (mut ok, mut exhausted) = (Vec::new(), Vec::new());
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(a) => ok.push(a),
            Err(IpamError::Exhausted { pool }) => exhausted.push(pool),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    (ok, exhausted)
}

async fn two_hundred_concurrent_allocations(db: DomainDb) {
    let p24 = pool(&db, "p24", "10.1.0.0/24").await;
    let (ok, exhausted) = concurrently(&db, &p24, 200).await;
    assert_eq!(ok.len(), 200);
    assert!(exhausted.is_empty());
    let distinct: BTreeSet<&String> = ok.iter().collect();
    assert_eq!(distinct.len(), 200, "never a duplicate");
    assert!(
        ok.iter()
            .all(|a| a.starts_with("10.1.0.") && a != "10.1.0.0" && a != "10.1.0.255")
    );

    // Past capacity: a /25 has 126 host addresses.
    let p25 = pool(&db, "p25", "10.2.0.0/25").await;
    let (ok, exhausted) = concurrently(&db, &p25, 200).await;
    assert_eq!(ok.len(), 126);
    assert_eq!(ok.iter().collect::<BTreeSet<_>>().len(), 126);
    assert_eq!(exhausted.len(), 74);
    assert!(
        exhausted.iter().all(|p| p == "p25"),
        "the error names the pool"
    );
    let e = allocate(&db, &p25, "late", "late").await.unwrap_err();
    assert_eq!(e.to_string(), "pool \"p25\" is exhausted");

    let usage = ipam::utilization(&db, Some(T)).await.unwrap();
    let by_name: Vec<(&str, i64, i64)> = usage
        .iter()
        .map(|u| (u.pool.name.as_str(), u.in_use, u.capacity()))
        .collect();
    assert_eq!(by_name, vec![("p24", 200, 254), ("p25", 126, 126)]);
    assert_eq!(usage[1].percent(), 100.0);
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn two_hundred_concurrent_allocations_postgres(pg: sqlx::PgPool) {
    two_hundred_concurrent_allocations(DomainDb::Postgres(pg)).await;
}

#[tokio::test]
async fn two_hundred_concurrent_allocations_sqlite() {
    let (_store, db, _dir) = support::sqlite().await;
    two_hundred_concurrent_allocations(db).await;
}

async fn allocation_is_idempotent_and_release_frees(db: DomainDb) {
    let p = pool(&db, "p", "192.0.2.0/29").await; // 6 hosts
    let a = allocate(&db, &p, "s1", "k1").await.unwrap();
    assert_eq!(
        allocate(&db, &p, "s1", "k1").await.unwrap(),
        a,
        "same key, same address"
    );
    assert_eq!(a, "192.0.2.1");
    let b = allocate(&db, &p, "s2", "k2").await.unwrap();
    assert_eq!(b, "192.0.2.2");
    let rec = ipam::by_allocation_key(&db, "t1", "k1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.state, AddressState::Allocated);
    assert!(rec.allocated_at.is_some());
    let released = ipam::release(&db, T, rec.id, "run2", Utc::now())
        .await
        .unwrap();
    assert_eq!(released.state, AddressState::Revoked);
    assert!(released.revoking_at.is_some() && released.revoked_at.is_some());
    assert_eq!(released.workflow_id.as_deref(), Some("run2"));
    // Idempotent release.
    let again = ipam::release(&db, T, rec.id, "run3", Utc::now())
        .await
        .unwrap();
    assert_eq!(again, released);
    // The lowest free address is handed out again.
    assert_eq!(allocate(&db, &p, "s3", "k3").await.unwrap(), "192.0.2.1");
    // A released allocation's key allocates anew (an operator retry).
    let c = allocate(&db, &p, "s1", "k1").await.unwrap();
    assert_eq!(c, "192.0.2.3");
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn allocation_is_idempotent_and_release_frees_postgres(pg: sqlx::PgPool) {
    allocation_is_idempotent_and_release_frees(DomainDb::Postgres(pg)).await;
}

#[tokio::test]
async fn allocation_is_idempotent_and_release_frees_sqlite() {
    let (_store, db, _dir) = support::sqlite().await;
    allocation_is_idempotent_and_release_frees(db).await;
}

async fn reservations(db: DomainDb) {
    let p = pool(&db, "p", "192.0.2.0/29").await;
    let now = Utc::now();
    let r1 = ipam::reserve(&db, &p, "s1", now + Duration::hours(1), now)
        .await
        .unwrap();
    assert_eq!(
        (r1.address.as_str(), r1.state),
        ("192.0.2.1", AddressState::Pending)
    );
    let again = ipam::reserve(&db, &p, "s1", now + Duration::hours(1), now)
        .await
        .unwrap();
    assert_eq!(
        again.id, r1.id,
        "one live reservation per subscriber and pool"
    );
    let r2 = ipam::reserve(&db, &p, "s2", now + Duration::minutes(1), now)
        .await
        .unwrap();
    assert_eq!(r2.address, "192.0.2.2");
    // Others do not get reserved addresses; the subscriber gets its own.
    assert_eq!(allocate(&db, &p, "other", "k0").await.unwrap(), "192.0.2.3");
    assert_eq!(allocate(&db, &p, "s1", "k1").await.unwrap(), "192.0.2.1");
    let rec = ipam::by_allocation_key(&db, "t1", "k1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rec.id, rec.state), (r1.id, AddressState::Allocated));
    assert_eq!(rec.reserved_until, None);
    // Reservations do not count as in use; s2's expires and frees its address.
    let u = &ipam::utilization(&db, Some(T)).await.unwrap()[0];
    assert_eq!(u.in_use, 2);
    assert!(
        ipam::expire_reservations(&db, now)
            .await
            .unwrap()
            .is_empty()
    );
    let expired = ipam::expire_reservations(&db, now + Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].id, expired[0].state),
        (r2.id, AddressState::Failed)
    );
    assert!(expired[0].failed_at.is_some());
    assert_eq!(allocate(&db, &p, "s4", "k4").await.unwrap(), "192.0.2.2");
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn reservations_postgres(pg: sqlx::PgPool) {
    reservations(DomainDb::Postgres(pg)).await;
}

#[tokio::test]
async fn reservations_sqlite() {
    let (_store, db, _dir) = support::sqlite().await;
    reservations(db).await;
}

async fn pools_from_config(db: DomainDb) {
    let mut v6 = PoolConfig::new(T, "v6", "2001:db8:1000::/40".parse().unwrap());
    v6.prefix_length = Some(56);
    v6.warning_percent = Some(70);
    let v4 = PoolConfig::new(T, "v4", "100.64.0.0/10".parse().unwrap());
    let first = ipam::ensure_pools(&db, &[v4.clone(), v6.clone()], Utc::now())
        .await
        .unwrap();
    assert_eq!(first[0].capacity, (1 << 22) - 2);
    assert_eq!((first[1].capacity, first[1].family), (65_536, Family::Ipv6));
    assert_eq!(
        (first[1].warning_percent, first[1].critical_percent),
        (70, 100)
    );
    // Idempotent; configuration only seeds: the stored thresholds stay
    // (they are changed at run time, by UpdatePool).
    v6.critical_percent = Some(95);
    let second = ipam::ensure_pools(&db, &[v4.clone(), v6.clone()], Utc::now())
        .await
        .unwrap();
    assert_eq!(second, first);
    assert_eq!(ipam::list_pools(&db, Some(T)).await.unwrap().len(), 2);
    // A configured range outside the stored one is refused.
    let mut moved = v4.clone();
    moved.cidr = "100.128.0.0/16".parse().unwrap();
    let e = ipam::ensure_pools(&db, &[moved], Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::PoolChanged { .. }), "{e}");
    // Choosing: by name, by family and prefix length.
    let p = ipam::choose_pools(&db, T, Family::Ipv6, None, Some(56))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(p.name, "v6");
    let e = ipam::choose_pools(&db, T, Family::Ipv6, None, Some(48))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "tenant \"t1\" has no IPV6 pool delegating /48"
    );
    let e = ipam::choose_pools(&db, "t2", Family::Ipv4, Some("v4"), None)
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::UnknownPool { .. }));
    // A prefix out of a /40 without enumerating it.
    let a = allocate(&db, &p, "s", "k").await.unwrap();
    assert_eq!(a, "2001:db8:1000::/56");
    assert_eq!(
        allocate(&db, &p, "s2", "k2").await.unwrap(),
        "2001:db8:1000:100::/56"
    );
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn pools_from_config_postgres(pg: sqlx::PgPool) {
    pools_from_config(DomainDb::Postgres(pg)).await;
}

#[tokio::test]
async fn pools_from_config_sqlite() {
    let (_store, db, _dir) = support::sqlite().await;
    pools_from_config(db).await;
}

async fn lifecycle_records(db: DomainDb) {
    let p = pool(&db, "p", "192.0.2.0/28").await;
    // Microseconds: what both backends keep.
    let now = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let t0 = now - Duration::days(100);
    let new = |sub: &'static str, ordinal: i64, state| NewAddress {
        tenant_id: T,
        subscriber_id: sub,
        pool_id: p.id,
        family: Family::Ipv4,
        address: ["192.0.2.1", "192.0.2.2", "192.0.2.3"][ordinal as usize],
        ordinal,
        state,
        metadata: json!({"source": "import"}),
        run_id: "r0",
    };
    let a = lifecycle::create(&db, &new("a", 0, AddressState::Allocated), t0)
        .await
        .unwrap();
    assert_eq!(a.metadata, json!({"source": "import"}));
    assert_eq!(a.allocated_at, Some(t0));
    let e = lifecycle::create(&db, &new("x", 0, AddressState::Pending), t0)
        .await
        .unwrap_err();
    assert!(
        matches!(e, LifecycleError::AddressTaken { .. }),
        "held twice: {e}"
    );
    let b = lifecycle::create(&db, &new("b", 1, AddressState::Allocated), t0)
        .await
        .unwrap();
    let c = lifecycle::create(&db, &new("c", 2, AddressState::Allocated), Utc::now())
        .await
        .unwrap();

    // Invalid transitions are typed errors and change nothing.
    let e = lifecycle::transition(&db, T, a.id, AddressState::Suspended, "r1", t0)
        .await
        .unwrap_err();
    assert!(
        matches!(e, LifecycleError::Invalid(i) if i.from == AddressState::Allocated && i.to == AddressState::Suspended)
    );
    let t1 = t0 + Duration::hours(1);
    for to in [
        AddressState::Active,
        AddressState::Suspended,
        AddressState::Active,
        AddressState::Revoking,
        AddressState::Revoked,
    ] {
        let r = lifecycle::transition(&db, T, a.id, to, "r1", t1)
            .await
            .unwrap();
        assert_eq!(
            (r.state, r.entered(to), r.workflow_id.as_deref()),
            (to, Some(t1), Some("r1"))
        );
    }
    let e = lifecycle::transition(&db, T, a.id, AddressState::Failed, "r1", t1)
        .await
        .unwrap_err();
    assert!(
        matches!(e, LifecycleError::Invalid(_)),
        "REVOKED is terminal"
    );
    lifecycle::transition(&db, T, b.id, AddressState::Revoking, "r2", t1)
        .await
        .unwrap();
    // FAILED → PENDING retries; FAILED frees the address meanwhile.
    lifecycle::transition(&db, T, c.id, AddressState::Failed, "r3", t1)
        .await
        .unwrap();
    let d = lifecycle::create(&db, &new("d", 2, AddressState::Allocated), t1)
        .await
        .unwrap();
    let e = lifecycle::transition(&db, T, c.id, AddressState::Pending, "r3", t1)
        .await
        .unwrap_err();
    assert!(matches!(e, LifecycleError::AddressTaken { .. }), "{e}");
    lifecycle::transition(&db, T, d.id, AddressState::Failed, "r4", t1)
        .await
        .unwrap();
    let c = lifecycle::transition(&db, T, c.id, AddressState::Pending, "r3", t1)
        .await
        .unwrap();
    assert_eq!(c.pending_at, Some(t1));

    let counts: Vec<(Family, AddressState, i64)> = lifecycle::counts(&db, T)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.family, c.state, c.count))
        .collect();
    assert_eq!(
        counts,
        vec![
            (Family::Ipv4, AddressState::Failed, 1),
            (Family::Ipv4, AddressState::Pending, 1),
            (Family::Ipv4, AddressState::Revoked, 1),
            (Family::Ipv4, AddressState::Revoking, 1),
        ]
    );
    assert_eq!(
        lifecycle::for_subscriber(&db, T, "a").await.unwrap().len(),
        1
    );

    // The maintenance queries.
    let soon = t1 + Duration::minutes(30);
    let later = t1 + Duration::hours(2);
    let stuck = lifecycle::revoking_before(&db, later, 10).await.unwrap();
    assert_eq!(stuck.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b.id]);
    assert!(
        lifecycle::revoking_before(&db, soon - Duration::hours(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let e = lifecycle::create(&db, &new("e", 0, AddressState::Allocated), t0)
        .await
        .unwrap();
    let leaks = lifecycle::allocated_before(&db, soon, 10).await.unwrap();
    assert_eq!(leaks.iter().map(|r| r.id).collect::<Vec<_>>(), vec![e.id]);
    assert_eq!(
        lifecycle::purge_revoked(&db, t1, 10).await.unwrap(),
        0,
        "not older"
    );
    assert_eq!(lifecycle::purge_revoked(&db, later, 10).await.unwrap(), 1);
    assert!(lifecycle::get(&db, T, a.id).await.unwrap().is_none());
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn lifecycle_records_postgres(pg: sqlx::PgPool) {
    lifecycle_records(DomainDb::Postgres(pg)).await;
}

#[tokio::test]
async fn lifecycle_records_sqlite() {
    let (_store, db, _dir) = support::sqlite().await;
    lifecycle_records(db).await;
}
