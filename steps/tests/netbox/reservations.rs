//! Reservations of NetBox tenants against a real NetBox: each is an IP
//! address (or prefix) object with status `reserved`, the tenant and the
//! reservation's key, made before the record, removed before the record
//! ends (released by hand or expired by the `reservation_expiry` job).

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use sagaflow_engine::state::RunState;
use sagaflow_steps::DomainDb;
use sagaflow_steps::ipam::netbox::{KEY_FIELD, SUBSCRIBER_FIELD};
use sagaflow_steps::ipam::reservations::{self, ReserveRequest, reservation_key};
use sagaflow_steps::ipam::{IpamBackend, IpamError};
use sagaflow_steps::lifecycle::repo as lifecycle;
use sagaflow_steps::lifecycle::{AddressState, Family};
use sagaflow_steps::notify::LogNotifier;
use serde_json::{Value, json};

use super::support::{TENANT, V4_POOL, World};
use super::{Api, backend, netbox_options, pool, request};

/// A reservation of `sub` in `tenant`'s pools of `family`: `address`, or
/// any free one.
fn ask<'a>(
    tenant: &'a str,
    sub: &'a str,
    family: Family,
    address: Option<&'a str>,
    days: u32,
) -> ReserveRequest<'a> {
    ReserveRequest {
        tenant,
        subscriber_id: sub,
        pool: None,
        family,
        address,
        expires_in_days: days,
        reason: "static customer",
        owner: "op-olga",
    }
}

/// `(address, status, key)` of every IPv4 object inside `cidr`.
async fn objects_in(api: &Api, cidr: &str) -> BTreeSet<(String, String, String)> {
    api.list(&format!("/api/ipam/ip-addresses/?parent={cidr}"))
        .await
        .iter()
        .map(|o| {
            (
                o["address"].as_str().unwrap().to_owned(),
                o["status"]["value"].as_str().unwrap().to_owned(),
                o["custom_fields"][KEY_FIELD]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

/// The one IPv4 object NetBox has at `address` (`a.b.c.d/len`).
async fn object_at(api: &Api, address: &str) -> Value {
    let found = api
        .list(&format!("/api/ipam/ip-addresses/?address={address}"))
        .await;
    assert_eq!(found.len(), 1, "{address}: {found:?}");
    found[0].clone()
}

async fn reserve(
    db: &DomainDb,
    nb: &dyn IpamBackend,
    r: &ReserveRequest<'_>,
    now: DateTime<Utc>,
) -> Result<lifecycle::AddressRecord, IpamError> {
    reservations::reserve(db, nb, &LogNotifier, r, now).await
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_reserved_address_is_reserved_in_netbox_and_never_allocated(pool_: sqlx::PgPool) {
    let db = DomainDb::Postgres(pool_);
    let api = Api::new();
    let nb = backend();
    const T: &str = "nb-res";
    // A /29: six usable addresses, two of them reserved.
    let p = pool(&db, T, "v4", "10.98.0.0/29").await;
    let now = Utc::now();
    let one = reserve(
        &db,
        &nb,
        &ask(T, "owner-1", Family::Ipv4, Some("10.98.0.1"), 7),
        now,
    )
    .await
    .unwrap();
    assert_eq!(one.address, "10.98.0.1");
    assert_eq!(one.state, AddressState::Pending);
    let o = object_at(&api, "10.98.0.1/29").await;
    assert_eq!(o["status"]["value"], "reserved");
    assert_eq!(o["tenant"]["slug"], T);
    assert_eq!(
        o["custom_fields"][KEY_FIELD],
        reservation_key("owner-1", "v4", Some("10.98.0.1"))
    );
    assert_eq!(o["custom_fields"][SUBSCRIBER_FIELD], "owner-1");
    // Any free address: NetBox's first available one.
    let two = reserve(&db, &nb, &ask(T, "owner-2", Family::Ipv4, None, 7), now)
        .await
        .unwrap();
    assert_eq!(two.address, "10.98.0.2");
    let o = object_at(&api, "10.98.0.2/29").await;
    assert_eq!(o["status"]["value"], "reserved");
    assert_eq!(o["tenant"]["slug"], T);
    // The same request again: the same reservation, nothing new in NetBox.
    let again = reserve(&db, &nb, &ask(T, "owner-2", Family::Ipv4, None, 7), now)
        .await
        .unwrap();
    assert_eq!(again.id, two.id);
    assert_eq!(objects_in(&api, "10.98.0.0/29").await.len(), 2);

    // Others' allocations take the four other addresses, then the pool is
    // full: a reserved address is never handed out.
    let mut given = BTreeSet::new();
    for i in 0..4 {
        let key = format!("run-{i}:alloc:ipv4");
        let rec = nb
            .allocate(&db, &request(&p, &format!("s{i}"), &key), Utc::now())
            .await
            .unwrap();
        given.insert(rec.address);
    }
    let want: BTreeSet<String> = (3..=6).map(|i| format!("10.98.0.{i}")).collect();
    assert_eq!(given, want);
    let e = nb
        .allocate(&db, &request(&p, "s9", "run-9:alloc:ipv4"), Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::Exhausted { .. }), "{e}");

    // The owner's own allocation takes the reservation: the object becomes
    // the allocation's (status and key), the record ALLOCATED.
    let taken = nb
        .allocate(&db, &request(&p, "owner-1", "run-o:alloc:ipv4"), Utc::now())
        .await
        .unwrap();
    assert_eq!(taken.id, one.id);
    assert_eq!(taken.address, "10.98.0.1");
    assert_eq!(taken.state, AddressState::Allocated);
    let o = object_at(&api, "10.98.0.1/29").await;
    assert_eq!(o["status"]["value"], "active");
    assert_eq!(o["custom_fields"][KEY_FIELD], "run-o:alloc:ipv4");
    assert_eq!(objects_in(&api, "10.98.0.0/29").await.len(), 6);
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn reserving_an_address_netbox_holds_is_refused(pool_: sqlx::PgPool) {
    let db = DomainDb::Postgres(pool_);
    let api = Api::new();
    let nb = backend();
    const T: &str = "nb-res-taken";
    let p = pool(&db, T, "v4", "10.99.0.0/29").await;
    // One address allocated through sagaflow, one made in NetBox by
    // someone else.
    let allocated = nb
        .allocate(&db, &request(&p, "s1", "run-1:alloc:ipv4"), Utc::now())
        .await
        .unwrap();
    assert_eq!(allocated.address, "10.99.0.1");
    api.call(
        reqwest::Method::POST,
        "/api/ipam/ip-addresses/",
        Some(json!({ "address": "10.99.0.3/29", "status": "active" })),
    )
    .await;
    let before = objects_in(&api, "10.99.0.0/29").await;
    assert_eq!(before.len(), 2);

    for address in ["10.99.0.1", "10.99.0.3"] {
        let e = reserve(
            &db,
            &nb,
            &ask(T, "r1", Family::Ipv4, Some(address), 7),
            Utc::now(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, IpamError::Taken { .. }), "{address}: {e}");
    }
    // Nothing stored, nothing new in NetBox.
    assert!(reservations::list(&db, T, None).await.unwrap().is_empty());
    assert!(
        lifecycle::for_subscriber(&db, T, "r1")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(objects_in(&api, "10.99.0.0/29").await, before);
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn releasing_a_reservation_deletes_its_object_only(pool_: sqlx::PgPool) {
    let db = DomainDb::Postgres(pool_);
    let api = Api::new();
    let nb = backend();
    const T: &str = "nb-res-release";
    let p = pool(&db, T, "v4", "10.100.0.0/29").await;
    let now = Utc::now();
    let a = reserve(
        &db,
        &nb,
        &ask(T, "a", Family::Ipv4, Some("10.100.0.1"), 7),
        now,
    )
    .await
    .unwrap();
    reserve(
        &db,
        &nb,
        &ask(T, "b", Family::Ipv4, Some("10.100.0.2"), 7),
        now,
    )
    .await
    .unwrap();
    let c = nb
        .allocate(&db, &request(&p, "c", "run-c:alloc:ipv4"), now)
        .await
        .unwrap();
    assert_eq!(c.address, "10.100.0.3");

    let released = reservations::release(&db, &nb, T, a.id, "op-olga", now)
        .await
        .unwrap();
    assert_eq!(released.state, AddressState::Failed);
    let key_b = reservation_key("b", "v4", Some("10.100.0.2"));
    let left = BTreeSet::from([
        ("10.100.0.2/29".to_owned(), "reserved".to_owned(), key_b),
        (
            "10.100.0.3/29".to_owned(),
            "active".to_owned(),
            "run-c:alloc:ipv4".to_owned(),
        ),
    ]);
    assert_eq!(objects_in(&api, "10.100.0.0/29").await, left);
    // Released again: as it is, NetBox unchanged.
    let again = reservations::release(&db, &nb, T, a.id, "op-olga", now)
        .await
        .unwrap();
    assert_eq!(again.state, AddressState::Failed);
    assert_eq!(objects_in(&api, "10.100.0.0/29").await, left);
    // The address is free again, in NetBox too.
    let next = reserve(&db, &nb, &ask(T, "d", Family::Ipv4, None, 7), now)
        .await
        .unwrap();
    assert_eq!(next.address, "10.100.0.1");
}

/// An attempt whose answer was lost: NetBox made the reserved object (with
/// the reservation's key), sagaflow never recorded it. The retry finds it.
#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_reservation_retry_after_a_lost_answer_finds_the_first(pool_: sqlx::PgPool) {
    let db = DomainDb::Postgres(pool_);
    let api = Api::new();
    let nb = backend();
    const T: &str = "nb-res-lost";
    let p = pool(&db, T, "v4", "10.102.0.0/29").await;
    // The backend's first use creates the custom fields and the tenant.
    let now = Utc::now();
    let warm = reserve(&db, &nb, &ask(T, "warm", Family::Ipv4, None, 7), now)
        .await
        .unwrap();
    reservations::release(&db, &nb, T, warm.id, "op", now)
        .await
        .unwrap();
    assert!(objects_in(&api, "10.102.0.0/29").await.is_empty());

    let key = reservation_key("lost-1", &p.name, None);
    api.call(
        reqwest::Method::POST,
        "/api/ipam/ip-addresses/",
        Some(json!({
            "address": "10.102.0.5/29",
            "status": "reserved",
            "tenant": { "slug": T },
            "custom_fields": { KEY_FIELD: key, SUBSCRIBER_FIELD: "lost-1" },
        })),
    )
    .await;
    let rec = reserve(&db, &nb, &ask(T, "lost-1", Family::Ipv4, None, 7), now)
        .await
        .unwrap();
    assert_eq!(rec.address, "10.102.0.5");
    assert_eq!(rec.state, AddressState::Pending);
    assert_eq!(
        objects_in(&api, "10.102.0.0/29").await,
        BTreeSet::from([("10.102.0.5/29".into(), "reserved".into(), key)])
    );
}

/// The hourly job ends expired reservations in NetBox too (IPv4 addresses
/// and IPv6 prefixes), and leaves live ones.
#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn expired_reservations_are_removed_from_netbox(pool_: sqlx::PgPool) {
    let api = Api::new();
    let (v4, v6) = ("10.101.0.0/24", "2001:db8:a100::/40");
    let w = World::postgres(pool_, netbox_options(v4, v6)).await;
    let nb = w
        .domain
        .as_ref()
        .unwrap()
        .deps
        .ipam
        .for_tenant(TENANT)
        .clone();
    let past = Utc::now() - Duration::days(10);
    let gone4 = reserve(
        &w.db,
        nb.as_ref(),
        &ask(TENANT, "exp-1", Family::Ipv4, None, 1),
        past,
    )
    .await
    .unwrap();
    let gone6 = reserve(
        &w.db,
        nb.as_ref(),
        &ask(TENANT, "exp-1", Family::Ipv6, None, 1),
        past,
    )
    .await
    .unwrap();
    let live = reserve(
        &w.db,
        nb.as_ref(),
        &ask(TENANT, "exp-2", Family::Ipv4, None, 7),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(objects_in(&api, v4).await.len(), 2);
    let v6_held = api.prefixes_within(v6).await;
    assert_eq!(v6_held, BTreeSet::from([gone6.address.clone()]));
    let o = &api
        .list(&format!("/api/ipam/prefixes/?prefix={}", gone6.address))
        .await[0];
    assert_eq!(o["status"]["value"], "reserved");

    let run = w.run("reservation_expiry", json!({})).await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    let key = reservation_key("exp-2", V4_POOL, None);
    assert_eq!(
        objects_in(&api, v4).await,
        BTreeSet::from([(format!("{}/24", live.address), "reserved".into(), key)])
    );
    assert!(api.prefixes_within(v6).await.is_empty());
    for (id, state) in [
        (gone4.id, AddressState::Failed),
        (gone6.id, AddressState::Failed),
        (live.id, AddressState::Pending),
    ] {
        let r = lifecycle::get(&w.db, TENANT, id).await.unwrap().unwrap();
        assert_eq!(r.state, state);
    }
    w.shutdown().await;
}
