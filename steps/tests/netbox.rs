//! The NetBox IPAM backend against a real NetBox 4.7 (PyPI `netbox`), its
//! effects checked in NetBox through its REST API. Run with
//! `scripts/netbox-tests.sh`, which starts NetBox on loopback and passes
//! NETBOX_URL and NETBOX_TOKEN; or `cargo test -p sagaflow-steps --features
//! netbox-tests --test netbox` with those two set. Without them every test
//! fails, saying so.
//!
//! Each test uses its own ranges and tenants, so the tests share one NetBox.
//! Reservations are tested in `netbox/reservations.rs`.
#![cfg(feature = "netbox-tests")]
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[path = "netbox/reservations.rs"]
mod reservations;
mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::Utc;
use sagaflow_engine::handler::StepError;
use sagaflow_engine::state::RunState;
use sagaflow_steps::DomainDb;
use sagaflow_steps::ipam::netbox::{KEY_FIELD, SUBSCRIBER_FIELD};
use sagaflow_steps::ipam::repo::{self as ipam, AllocateRequest};
use sagaflow_steps::ipam::{
    BackendKind, IpamBackend, IpamConfig, IpamError, NetBox, NetBoxConfig, Pool, PoolConfig,
};
use sagaflow_steps::lifecycle::repo as lifecycle;
use serde_json::{Value, json};
use support::undo::every_failing_step_leaves_the_system_as_it_was;
use support::{Options, TENANT, World, provision_input};

/// NetBox's URL and token, from the environment.
fn netbox_config() -> NetBoxConfig {
    let (Ok(url), Ok(token)) = (std::env::var("NETBOX_URL"), std::env::var("NETBOX_TOKEN")) else {
        panic!(
            "NETBOX_URL and NETBOX_TOKEN are not set: run scripts/netbox-tests.sh \
             (it starts NetBox on loopback and sets them)"
        );
    };
    NetBoxConfig::new(url, token)
}

/// NetBox's REST API, for checking what the backend did.
struct Api {
    client: reqwest::Client,
    cfg: NetBoxConfig,
}

impl Api {
    fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            client: reqwest::Client::new(),
            cfg: netbox_config(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.cfg.base_url))
            .header("Authorization", format!("Bearer {}", self.cfg.token));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// The objects a query finds (up to 1000).
    async fn list(&self, path: &str) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("{path}{sep}limit=1000"),
                None,
            )
            .await;
        v["results"].as_array().cloned().unwrap_or_default()
    }

    /// The IPv4 addresses NetBox holds inside `cidr`, with their keys.
    async fn addresses_in(&self, cidr: &str) -> BTreeSet<(String, String)> {
        self.list(&format!("/api/ipam/ip-addresses/?parent={cidr}"))
            .await
            .into_iter()
            .map(|o| {
                (
                    o["address"].as_str().unwrap().to_owned(),
                    o["custom_fields"][KEY_FIELD]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                )
            })
            .collect()
    }

    /// The prefixes NetBox holds inside `cidr` (not `cidr` itself).
    async fn prefixes_within(&self, cidr: &str) -> BTreeSet<String> {
        self.list(&format!("/api/ipam/prefixes/?within={cidr}"))
            .await
            .into_iter()
            .map(|o| o["prefix"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn pool(db: &DomainDb, tenant: &str, name: &str, cidr: &str) -> Pool {
    ipam::ensure_pools(
        db,
        &[PoolConfig::new(tenant, name, cidr.parse().unwrap())],
        Utc::now(),
    )
    .await
    .unwrap()
    .remove(0)
}

fn request<'a>(pool: &'a Pool, sub: &'a str, key: &'a str) -> AllocateRequest<'a> {
    AllocateRequest {
        pool,
        subscriber_id: sub,
        key,
        run_id: "run-1",
        metadata: json!({}),
        address: None,
    }
}

/// The retryable errors, for classification (IpamError is not Clone).
fn clone_err(e: &IpamError) -> IpamError {
    match e {
        IpamError::External(a) => IpamError::External(a.clone()),
        other => IpamError::Config(other.to_string()),
    }
}

fn backend() -> NetBox {
    NetBox::new(&netbox_config()).unwrap()
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn allocate_retry_and_release(pool_: sqlx::PgPool) {
    let db = DomainDb::Postgres(pool_);
    let api = Api::new();
    let nb = backend();
    let p = pool(&db, "nb-basic", "v4", "10.91.0.0/24").await;

    let first = nb
        .allocate(&db, &request(&p, "s1", "run-1:alloc:ipv4"), Utc::now())
        .await
        .unwrap();
    assert_eq!(first.address, "10.91.0.1");
    let held = api.addresses_in("10.91.0.0/24").await;
    assert_eq!(
        held,
        BTreeSet::from([("10.91.0.1/24".into(), "run-1:alloc:ipv4".into())])
    );
    let o = &api
        .list("/api/ipam/ip-addresses/?parent=10.91.0.0/24")
        .await[0];
    assert_eq!(o["tenant"]["slug"], "nb-basic");
    assert_eq!(o["status"]["value"], "active");
    assert_eq!(o["custom_fields"][SUBSCRIBER_FIELD], "s1");

    // The same key again: the same address, nothing new in NetBox.
    let again = nb
        .allocate(&db, &request(&p, "s1", "run-1:alloc:ipv4"), Utc::now())
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(api.addresses_in("10.91.0.0/24").await, held);

    // Another subscriber gets the next one.
    let second = nb
        .allocate(&db, &request(&p, "s2", "run-2:alloc:ipv4"), Utc::now())
        .await
        .unwrap();
    assert_eq!(second.address, "10.91.0.2");

    // The undo of the first key removes its address only.
    let undone = nb
        .undo_allocation(
            &db,
            "nb-basic",
            p.family,
            "run-1:alloc:ipv4",
            "undo",
            Utc::now(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!undone.state.holds_address());
    assert_eq!(
        api.addresses_in("10.91.0.0/24").await,
        BTreeSet::from([("10.91.0.2/24".into(), "run-2:alloc:ipv4".into())])
    );
    // An undo again (or of a key that made nothing) changes nothing.
    nb.undo_allocation(
        &db,
        "nb-basic",
        p.family,
        "run-1:alloc:ipv4",
        "undo",
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(api.addresses_in("10.91.0.0/24").await.len(), 1);

    // A forward release of the second subscriber's record.
    let released = nb
        .release(&db, &second, "deprov", Utc::now())
        .await
        .unwrap();
    assert!(!released.state.holds_address());
    assert!(api.addresses_in("10.91.0.0/24").await.is_empty());
    let rec = lifecycle::get(&db, "nb-basic", second.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!rec.state.holds_address());
}

/// An attempt whose answer was lost: NetBox made the address (with the
/// key), sagaflow never heard. The retry finds it instead of taking another.
#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_retry_after_a_lost_answer_finds_the_first_allocation(pool_: sqlx::PgPool) {
    let db = DomainDb::Postgres(pool_);
    let api = Api::new();
    let nb = backend();
    let p = pool(&db, "nb-lost", "v4", "10.92.0.0/24").await;
    // The backend's first allocation creates the custom fields and the
    // prefix; it is undone, so the range is empty again.
    nb.allocate(&db, &request(&p, "warm", "warm:alloc:ipv4"), Utc::now())
        .await
        .unwrap();
    nb.undo_allocation(&db, "nb-lost", p.family, "warm:alloc:ipv4", "u", Utc::now())
        .await
        .unwrap();
    assert!(api.addresses_in("10.92.0.0/24").await.is_empty());

    // The earlier attempt, as it reached NetBox.
    let made = api
        .call(
            reqwest::Method::POST,
            "/api/ipam/ip-addresses/",
            Some(json!({
                "address": "10.92.0.77/24",
                "status": "active",
                "tenant": { "slug": "nb-lost" },
                "custom_fields": { KEY_FIELD: "run-9:alloc:ipv4", SUBSCRIBER_FIELD: "s9" },
            })),
        )
        .await;
    assert!(made["id"].as_i64().is_some());

    let rec = nb
        .allocate(&db, &request(&p, "s9", "run-9:alloc:ipv4"), Utc::now())
        .await
        .unwrap();
    assert_eq!(rec.address, "10.92.0.77");
    assert_eq!(
        api.addresses_in("10.92.0.0/24").await,
        BTreeSet::from([("10.92.0.77/24".into(), "run-9:alloc:ipv4".into())])
    );
    // The undo of another run's key leaves it alone.
    nb.undo_allocation(
        &db,
        "nb-lost",
        p.family,
        "run-8:alloc:ipv4",
        "u",
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(api.addresses_in("10.92.0.0/24").await.len(), 1);
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn two_hundred_concurrent_allocations_get_distinct_addresses(pool_: sqlx::PgPool) {
    let db = DomainDb::Postgres(pool_);
    let api = Api::new();
    // Two hundred requests queue at NetBox's three workers, which take each
    // allocation under one lock: the wait is long, by design of the test.
    let nb = NetBox::new(&NetBoxConfig {
        timeout_ms: 300_000,
        ..netbox_config()
    })
    .unwrap();
    let p = pool(&db, "nb-many", "v4", "10.93.0.0/24").await;
    let keys: Vec<String> = (0..200).map(|i| format!("run-{i}:alloc:ipv4")).collect();
    let subs: Vec<String> = (0..200).map(|i| format!("s{i}")).collect();
    let started = Instant::now();
    let requests: Vec<AllocateRequest<'_>> = keys
        .iter()
        .zip(&subs)
        .map(|(k, s)| request(&p, s, k))
        .collect();
    // One that still times out is retried with its key, as the engine
    // would, and finds what its first attempt made.
    let results = futures::future::join_all(requests.iter().map(|r| async {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match nb.allocate(&db, r, Utc::now()).await {
                Err(e) if attempt < 5 && StepError::from(clone_err(&e)).is_retryable() => continue,
                other => return other,
            }
        }
    }))
    .await;
    eprintln!("200 concurrent NetBox allocations: {:?}", started.elapsed());
    let addresses: BTreeSet<String> = results.into_iter().map(|r| r.unwrap().address).collect();
    assert_eq!(addresses.len(), 200);
    let in_netbox = api.addresses_in("10.93.0.0/24").await;
    assert_eq!(in_netbox.len(), 200);
    let netbox_addresses: BTreeSet<String> = in_netbox
        .iter()
        .map(|(a, _)| a.trim_end_matches("/24").to_owned())
        .collect();
    assert_eq!(netbox_addresses, addresses);
    let netbox_keys: BTreeSet<&str> = in_netbox.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(netbox_keys.len(), 200);
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_full_prefix_is_pool_exhausted(pool_: sqlx::PgPool) {
    let db = DomainDb::Postgres(pool_);
    let nb = backend();
    // A /29: six usable addresses.
    let p = pool(&db, "nb-full", "v4", "10.94.0.0/29").await;
    for i in 0..6 {
        let key = format!("run-{i}:alloc:ipv4");
        nb.allocate(&db, &request(&p, "s", &key), Utc::now())
            .await
            .unwrap();
    }
    let e = nb
        .allocate(&db, &request(&p, "s", "run-6:alloc:ipv4"), Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::Exhausted { .. }), "{e}");
    assert_eq!(StepError::from(e).kind(), "pool_exhausted");

    // A specific address that NetBox holds is refused as taken.
    let mut taken = request(&p, "s", "run-7:alloc:ipv4");
    taken.address = Some("10.94.0.3");
    let e = nb.allocate(&db, &taken, Utc::now()).await.unwrap_err();
    assert!(matches!(e, IpamError::Taken { .. }), "{e}");
}

fn netbox_options(v4: &str, v6: &str) -> Options {
    let mut ipam = IpamConfig {
        netbox: Some(netbox_config()),
        ..IpamConfig::default()
    };
    ipam.tenants.insert(TENANT.into(), BackendKind::Netbox);
    Options {
        v4_cidr: v4.into(),
        v6_cidr: v6.into(),
        ipam,
        ..Options::default()
    }
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn provisioning_end_to_end_with_netbox(pool_: sqlx::PgPool) {
    let api = Api::new();
    let w = World::postgres(pool_, netbox_options("10.95.0.0/24", "2001:db8:9500::/40")).await;
    let run = w
        .run("provision_subscriber", provision_input("nb-1", true))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    let v4 = api.addresses_in("10.95.0.0/24").await;
    assert_eq!(v4.len(), 1, "{v4:?}");
    let v6 = api.prefixes_within("2001:db8:9500::/40").await;
    assert_eq!(v6.len(), 1, "{v6:?}");
    let records = lifecycle::for_subscriber(&w.db, TENANT, "nb-1")
        .await
        .unwrap();
    let held: BTreeSet<String> = records
        .iter()
        .filter(|r| r.state.holds_address())
        .map(|r| r.address.clone())
        .collect();
    let (v4_address, _) = v4.iter().next().unwrap();
    assert!(
        held.contains(v4_address.trim_end_matches("/24")),
        "{held:?}"
    );
    assert!(held.contains(v6.iter().next().unwrap()), "{held:?}");

    let run = w
        .run("deprovision_subscriber", json!({ "subscriber_id": "nb-1" }))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    assert!(api.addresses_in("10.95.0.0/24").await.is_empty());
    assert!(api.prefixes_within("2001:db8:9500::/40").await.is_empty());
    w.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn every_failing_step_is_undone_with_netbox(pool_: sqlx::PgPool) {
    let w = World::postgres(pool_, netbox_options("10.96.0.0/24", "2001:db8:9600::/40")).await;
    let outside = || async {
        let api = Api::new();
        json!({
            "v4": api.addresses_in("10.96.0.0/24").await,
            "v6": api.prefixes_within("2001:db8:9600::/40").await,
        })
    };
    every_failing_step_leaves_the_system_as_it_was(w, outside).await;
}

/// An address sagaflow holds (a reservation NetBox does not know of) that
/// NetBox hands out: refused as taken, and given back to NetBox.
#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn an_address_held_in_sagaflow_is_given_back_to_netbox(pool_: sqlx::PgPool) {
    let db = DomainDb::Postgres(pool_);
    let api = Api::new();
    let nb = backend();
    let p = pool(&db, "nb-held", "v4", "10.97.0.0/29").await;
    let until = Utc::now() + chrono::Duration::days(1);
    ipam::reserve_with(
        &db,
        &p,
        "other",
        until,
        Some("10.97.0.1"),
        &json!({}),
        Utc::now(),
    )
    .await
    .unwrap();
    let e = nb
        .allocate(&db, &request(&p, "s", "run-1:alloc:ipv4"), Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::Taken { .. }), "{e}");
    assert!(api.addresses_in("10.97.0.0/29").await.is_empty());
}
