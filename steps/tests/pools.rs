//! Pools as run-time objects: created, grown, re-thresholded and retired,
//! every change audited; spillover to the next pool with room; requested
//! addresses. On PostgreSQL and SQLite.
#![allow(clippy::unwrap_used)]

mod support;

use chrono::Utc;
use sagaflow_engine::state::RunState;
use sagaflow_steps::DomainDb;
use sagaflow_steps::ipam::pools::{self, PoolUpdate};
use sagaflow_steps::ipam::repo::{self as ipam, AllocateRequest};
use sagaflow_steps::ipam::{Builtin, IpamError, Pool, PoolConfig};
use sagaflow_steps::lifecycle::Family;
use sagaflow_steps::lifecycle::repo as lifecycle;
use serde_json::json;
use support::{Options, TENANT, World, provision_input};

const T: &str = "t1";

async fn allocate(
    db: &DomainDb,
    pool: &Pool,
    key: &str,
    address: Option<&str>,
) -> Result<String, IpamError> {
    ipam::allocate(
        db,
        &AllocateRequest {
            pool,
            subscriber_id: "s",
            key,
            run_id: "run",
            metadata: json!({}),
            address,
        },
        Utc::now(),
    )
    .await
    .map(|r| r.address)
}

async fn run_time_pools(db: DomainDb) {
    let now = Utc::now();
    let c = PoolConfig::new(T, "small", "10.50.0.0/30".parse().unwrap());
    let p = pools::create_pool(&db, &c, "admin-ada", now).await.unwrap();
    assert_eq!((p.capacity, p.retired_at), (2, None));
    // A taken name, an overlapping range.
    let e = pools::create_pool(&db, &c, "admin-ada", now)
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::PoolExists { .. }), "{e}");
    let over = PoolConfig::new(T, "other", "10.50.0.0/24".parse().unwrap());
    let e = pools::create_pool(&db, &over, "admin-ada", now)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("overlaps"), "{e}");

    // Fill it, grow it: the held addresses keep their place.
    assert_eq!(allocate(&db, &p, "k1", None).await.unwrap(), "10.50.0.1");
    assert_eq!(allocate(&db, &p, "k2", None).await.unwrap(), "10.50.0.2");
    assert!(matches!(
        allocate(&db, &p, "k3", None).await.unwrap_err(),
        IpamError::Exhausted { .. }
    ));
    let grown = pools::update_pool(
        &db,
        T,
        "small",
        &PoolUpdate {
            cidr: Some("10.50.0.0/29".parse().unwrap()),
            warning_percent: Some(60),
            critical_percent: None,
        },
        "admin-bob",
        now,
    )
    .await
    .unwrap();
    assert_eq!((grown.capacity, grown.warning_percent), (6, 60));
    assert_eq!(
        allocate(&db, &grown, "k3", None).await.unwrap(),
        "10.50.0.3"
    );
    // A range that does not extend the old one from its first address.
    let e = pools::update_pool(
        &db,
        T,
        "small",
        &PoolUpdate {
            cidr: Some("10.50.1.0/24".parse().unwrap()),
            ..PoolUpdate::default()
        },
        "admin-bob",
        now,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, IpamError::InvalidPool { .. }), "{e}");

    // A requested address: given when free, refused when held.
    assert_eq!(
        allocate(&db, &grown, "k4", Some("10.50.0.6"))
            .await
            .unwrap(),
        "10.50.0.6"
    );
    let e = allocate(&db, &grown, "k5", Some("10.50.0.6"))
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::Taken { .. }), "{e}");
    let e = allocate(&db, &grown, "k5", Some("10.60.0.1"))
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::NotInPool { .. }), "{e}");

    // Retired: no new allocations by name, existing ones kept.
    let retired = pools::retire_pool(&db, T, "small", "admin-cy", now)
        .await
        .unwrap();
    assert!(retired.retired_at.is_some());
    let e = ipam::choose_pools(&db, T, Family::Ipv4, Some("small"), None)
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::Retired { .. }), "{e}");
    let e = ipam::choose_pools(&db, T, Family::Ipv4, None, None)
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::NoPool { .. }), "{e}");
    let usage = ipam::utilization(&db, Some(T)).await.unwrap();
    assert_eq!(usage[0].in_use, 4);

    // Every change audited, with who did it.
    let audit = pools::pool_audit(&db, T, p.id).await.unwrap();
    let got: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.actor.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("CREATED", "admin-ada"),
            ("UPDATED", "admin-bob"),
            ("RETIRED", "admin-cy")
        ]
    );
    assert_eq!(audit[1].detail.0["previous_cidr"], "10.50.0.0/30");
    assert_eq!(audit[1].detail.0["cidr"], "10.50.0.0/29");
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn run_time_pools_postgres(pg: sqlx::PgPool) {
    run_time_pools(DomainDb::Postgres(pg)).await;
}

#[tokio::test]
async fn run_time_pools_sqlite() {
    let (_store, db, _dir) = support::sqlite().await;
    run_time_pools(db).await;
}

/// Provisioning names no pool: when the first pool of the family fills,
/// the next one (by name) takes over; a retired pool is skipped.
async fn spillover(w: World) {
    // The world's v4 pool (10.20.0.0/30: two addresses) fills up.
    for sub in ["a", "b"] {
        let run = w
            .run("provision_subscriber", provision_input(sub, false))
            .await;
        assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    }
    let run = w
        .run("provision_subscriber", provision_input("c", false))
        .await;
    assert_eq!(run.state, RunState::Compensated);
    assert!(
        run.error
            .as_deref()
            .unwrap_or("")
            .contains("pool_exhausted"),
        "{:?}",
        run.error
    );

    // A new pool relieves it, as the capacity alert advises.
    let c = PoolConfig::new(TENANT, "v4-more", "10.21.0.0/24".parse().unwrap());
    pools::create_pool(&w.db, &c, "admin", Utc::now())
        .await
        .unwrap();
    let run = w
        .run("provision_subscriber", provision_input("d", false))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    let d = lifecycle::for_subscriber(&w.db, TENANT, "d").await.unwrap();
    assert_eq!(d[0].address, "10.21.0.1");

    // A static customer asks for a specific address.
    let mut input = provision_input("e", false);
    input["requested_ipv4"] = json!("10.21.0.200");
    let run = w.run("provision_subscriber", input.clone()).await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    let e = lifecycle::for_subscriber(&w.db, TENANT, "e").await.unwrap();
    assert_eq!(e[0].address, "10.21.0.200");
    // Someone else asking for it is refused cleanly.
    input["subscriber_id"] = json!("f");
    let run = w.run("provision_subscriber", input).await;
    assert_eq!(run.state, RunState::Compensated);
    assert!(
        run.error.as_deref().unwrap_or("").contains("address_taken"),
        "{:?}",
        run.error
    );
    w.shutdown().await;
}

fn tiny() -> Options {
    Options {
        v4_cidr: "10.20.0.0/30".into(),
        ..Options::default()
    }
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn spillover_postgres(pg: sqlx::PgPool) {
    spillover(World::postgres(pg, tiny()).await).await;
}

#[tokio::test]
async fn spillover_sqlite() {
    spillover(World::sqlite(tiny()).await).await;
}

/// The forecast from stored snapshots: a synthetic history of 5 addresses
/// a day over 30 days, 150 of 254 in use now: full in (254 − 150) / 5 =
/// 20.8 days.
async fn forecast_from_snapshots(db: DomainDb) {
    use sagaflow_steps::ipam::forecast;
    let now = Utc::now();
    let p = pools::create_pool(
        &db,
        &PoolConfig::new(T, "fc", "10.70.0.0/24".parse().unwrap()),
        "admin",
        now,
    )
    .await
    .unwrap();
    for day in 0..=30 {
        let in_use = 150 - 5 * (30 - day);
        lifecycle::insert_snapshot(
            &db,
            T,
            &format!("snap-{day}"),
            now - chrono::Duration::days(30 - day),
            &json!([]),
            &json!([{ "pool": "fc", "family": "IPV4", "capacity": 254, "in_use": in_use }]),
        )
        .await
        .unwrap();
    }
    // An older point outside the window, far off the line, is ignored.
    lifecycle::insert_snapshot(
        &db,
        T,
        "snap-old",
        now - chrono::Duration::days(60),
        &json!([]),
        &json!([{ "pool": "fc", "in_use": 250 }]),
    )
    .await
    .unwrap();
    for i in 0..150 {
        allocate(&db, &p, &format!("k{i}"), None).await.unwrap();
    }
    let usage = ipam::utilization(&db, Some(T)).await.unwrap();
    let f = forecast::forecasts(&db, T, &usage, now).await.unwrap()[&p.id];
    assert!((f.growth_per_day - 5.0).abs() < 1e-6, "{f:?}");
    let days = f.days_to_exhaustion.unwrap();
    assert!((days - 20.8).abs() < 1e-6, "{f:?}");
    let end = now + chrono::Duration::minutes((20.8 * 24.0 * 60.0) as i64);
    assert!(
        (f.exhaustion_at.unwrap() - end).num_minutes().abs() <= 1,
        "{f:?}"
    );
    assert_eq!(
        f.describe("fc", usage[0].percent()),
        "pool fc: 59 %, full in ~21 days at the last 30 days' rate"
    );
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn forecast_from_snapshots_postgres(pg: sqlx::PgPool) {
    forecast_from_snapshots(DomainDb::Postgres(pg)).await;
}

#[tokio::test]
async fn forecast_from_snapshots_sqlite() {
    let (_store, db, _dir) = support::sqlite().await;
    forecast_from_snapshots(db).await;
}

/// Reservations by an operator: made (a specific address, or any), listed,
/// refused when taken, released, expired by the hourly job; audited.
async fn operator_reservations(db: DomainDb) {
    use sagaflow_steps::ipam::reservations::{self, ReserveRequest};
    use sagaflow_steps::notify::LogNotifier;
    // Microseconds: what both backends keep.
    let now = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    pools::create_pool(
        &db,
        &PoolConfig::new(T, "r", "10.80.0.0/29".parse().unwrap()),
        "admin",
        now,
    )
    .await
    .unwrap();
    let ask = |sub: &'static str, address: Option<&'static str>, days: u32| ReserveRequest {
        tenant: T,
        subscriber_id: sub,
        pool: None,
        family: Family::Ipv4,
        address,
        expires_in_days: days,
        reason: "static customer",
        owner: "op-olga",
    };
    let a = reservations::reserve(
        &db,
        &Builtin,
        &LogNotifier,
        &ask("s1", Some("10.80.0.5"), 7),
        now,
    )
    .await
    .unwrap();
    assert_eq!(a.address, "10.80.0.5");
    assert_eq!(a.reserved_until, Some(now + chrono::Duration::days(7)));
    let e = reservations::reserve(
        &db,
        &Builtin,
        &LogNotifier,
        &ask("s2", Some("10.80.0.5"), 7),
        now,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, IpamError::Taken { .. }), "{e}");
    let b = reservations::reserve(&db, &Builtin, &LogNotifier, &ask("s2", None, 0), now)
        .await
        .unwrap();
    assert_eq!(b.address, "10.80.0.1");
    assert_eq!(b.reserved_until, Some(now + chrono::Duration::days(30)));
    let listed: Vec<i64> = reservations::list(&db, T, None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, vec![a.id, b.id]);
    assert_eq!(
        reservations::list(&db, T, Some("s2")).await.unwrap().len(),
        1
    );

    let made = ipam::audit_of(&db, T, &format!("reserved:{}", a.id))
        .await
        .unwrap();
    assert_eq!(made.len(), 1);
    assert_eq!(
        (made[0].action.as_str(), made[0].address.as_str()),
        ("RESERVED", "10.80.0.5")
    );

    // Released by hand: the address is free again.
    let released = reservations::release(&db, &Builtin, T, b.id, "op-olga", now)
        .await
        .unwrap();
    assert!(!released.state.holds_address());
    let gone = ipam::audit_of(&db, T, &format!("reservation_released:{}", b.id))
        .await
        .unwrap();
    assert_eq!(gone[0].action, "RESERVATION_RELEASED");
    assert_eq!(reservations::list(&db, T, None).await.unwrap().len(), 1);

    // The hourly job ends the other one when its time is up.
    let later = now + chrono::Duration::days(8);
    let expired = ipam::expire_reservations_audited(&db, T, "expiry-1", later)
        .await
        .unwrap();
    assert_eq!(expired.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a.id]);
    assert!(reservations::list(&db, T, None).await.unwrap().is_empty());
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn operator_reservations_postgres(pg: sqlx::PgPool) {
    operator_reservations(DomainDb::Postgres(pg)).await;
}

#[tokio::test]
async fn operator_reservations_sqlite() {
    let (_store, db, _dir) = support::sqlite().await;
    operator_reservations(db).await;
}
