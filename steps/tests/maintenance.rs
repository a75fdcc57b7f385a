//! The maintenance workflows, run by the engine from their files in
//! `workflows/`: lifecycle cleanup (100,000 records, short statements),
//! capacity crossings notified once to a real webhook, lifecycle metrics and
//! reservation expiry.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::RunRecord;
use sagaflow_steps::ipam::repo::{self as ipam, AllocateRequest};
use sagaflow_steps::ipam::{CapacityLevel, Pool, PoolConfig};
use sagaflow_steps::lifecycle::repo::{self as lifecycle, NewAddress};
use sagaflow_steps::lifecycle::{AddressState, Family};
use sagaflow_steps::maintenance::MaintenanceConfig;
use sagaflow_steps::notify::{Notification, NotificationKind, NotifyConfig};
use sagaflow_steps::{DomainConfig, DomainDb, DomainRuntime};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::Connection;
use support::{Options, TENANT, V4_POOL, World};

const SECRET: &str = "webhook-secret";

/// The output of step `name` of a completed run.
fn step_output(run: &RunRecord, name: &str) -> Value {
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    run.steps
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.output.clone())
        .unwrap_or_else(|| panic!("step {name} has no output: {:?}", run.steps))
}

/// Counts of one tenant's records by state.
async fn state_counts(db: &DomainDb, tenant: &str) -> Vec<(AddressState, i64)> {
    let mut out: Vec<(AddressState, i64)> = Vec::new();
    for c in lifecycle::counts(db, tenant).await.unwrap() {
        match out.iter_mut().find(|(s, _)| *s == c.state) {
            Some((_, n)) => *n += c.count,
            None => out.push((c.state, c.count)),
        }
    }
    out.sort();
    out
}

// ---- lifecycle_cleanup over 100,000 records ----

/// Seeds 101,000 records with known ages in one statement: for tenant t1,
/// 60,000 REVOKED 91+ days ago (purged), 20,000 REVOKED 89 days ago (kept),
/// 1,500 ALLOCATED 25 h ago (leaks), 2,000 ALLOCATED 23 h ago, 200
/// REVOKING 2 h ago (stuck), 300 REVOKING 30 min ago, 16,000 ACTIVE; and
/// 1,000 REVOKED 200 days ago of tenant t2 (not t1's job).
const SEED: &str = "
WITH s AS (
  SELECT g,
    CASE WHEN g > 100000 THEN 't2' ELSE 't1' END AS tenant,
    CASE WHEN g <= 80000 OR g > 100000 THEN 'REVOKED'
         WHEN g <= 83500 THEN 'ALLOCATED'
         WHEN g <= 84000 THEN 'REVOKING'
         ELSE 'ACTIVE' END AS state,
    CASE WHEN g <= 60000 THEN $2 - interval '91 days' - g * interval '1 second'
         WHEN g <= 80000 THEN $2 - interval '89 days'
         WHEN g <= 81500 THEN $2 - interval '25 hours'
         WHEN g <= 83500 THEN $2 - interval '23 hours'
         WHEN g <= 83700 THEN $2 - interval '2 hours'
         WHEN g <= 84000 THEN $2 - interval '30 minutes'
         WHEN g <= 100000 THEN $2 - interval '10 days'
         ELSE $2 - interval '200 days' END AS at
  FROM generate_series(1, 101000) AS g)
INSERT INTO address_records (tenant_id, subscriber_id, pool_id, family, address, ordinal, state,
    allocated_at, activated_at, revoking_at, revoked_at, created_at, updated_at)
SELECT tenant, 'sub-' || g, $1, 'IPV4',
    '10.' || (g / 65536) || '.' || (g / 256 % 256) || '.' || (g % 256), g, state,
    CASE WHEN state = 'ALLOCATED' THEN at ELSE at - interval '100 days' END,
    CASE WHEN state = 'ACTIVE' THEN at END,
    CASE WHEN state IN ('REVOKING', 'REVOKED') THEN at END,
    CASE WHEN state = 'REVOKED' THEN at END,
    at - interval '100 days', at
FROM s";

/// The longest a backend other than `me` has held a lock on
/// `address_records` in one transaction, sampled until `stop`; and how many
/// samples saw such a lock.
async fn sample_locks(url_pool: sqlx::PgPool, stop: Arc<AtomicBool>) -> (f64, u64) {
    let mut conn = sqlx::PgConnection::connect_with(&url_pool.connect_options())
        .await
        .unwrap();
    let (mut max, mut seen) = (0.0f64, 0u64);
    while !stop.load(Ordering::SeqCst) {
        let (age, n): (f64, i64) = sqlx::query_as(
            "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - a.xact_start)), 0)::float8, \
             count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.relation = 'address_records'::regclass AND a.pid <> pg_backend_pid()",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        max = max.max(age);
        if n > 0 {
            seen += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await; // lock-sampling poll interval
    }
    (max, seen)
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn cleanup_of_100k_records_in_short_statements(pool: sqlx::PgPool) {
    let w = World::postgres(
        pool.clone(),
        Options {
            step_timeout_ms: 300_000,
            ..Options::default()
        },
    )
    .await;
    let big = ipam::ensure_pools(
        &w.db,
        &[PoolConfig::new(
            TENANT,
            "big",
            "10.0.0.0/8".parse().unwrap(),
        )],
        Utc::now(),
    )
    .await
    .unwrap()
    .remove(0);
    let now = Utc::now();
    let seeded = sqlx::query(SEED)
        .bind(big.id)
        .bind(now)
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(seeded, 101_000);
    sqlx::query("ANALYZE address_records")
        .execute(&pool)
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_locks(pool.clone(), stop.clone()));
    let id = w.start("lifecycle_cleanup", json!({})).await;
    let run = w.finish(id, Duration::from_secs(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (max_lock_secs, samples_with_locks) = sampler.await.unwrap();

    assert_eq!(
        step_output(&run, "cleanup"),
        json!({"revoked_deleted": 60_000, "allocated_stale": 1_500, "revoking_stuck": 200, "errors": 0})
    );
    let leaks = step_output(&run, "report_leaks");
    let listed = leaks["leaks"].as_array().unwrap();
    assert_eq!(listed.len(), 1000, "listed up to leak_report_limit");
    assert_eq!(leaks["leaks_truncated"], json!(true));
    assert_eq!(listed[0]["subscriber_id"], json!("sub-80001"));
    assert_eq!(listed[999]["subscriber_id"], json!("sub-81000"));

    assert_eq!(
        state_counts(&w.db, TENANT).await,
        vec![
            (AddressState::Allocated, 3_500),
            (AddressState::Active, 16_000),
            (AddressState::Revoking, 300),
            (AddressState::Revoked, 20_000 + 200),
        ]
    );
    assert_eq!(
        state_counts(&w.db, "t2").await,
        vec![(AddressState::Revoked, 1_000)],
        "another tenant's records are its own schedule's job"
    );
    // The stuck revocations were finished by this run.
    let (finished,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM address_records WHERE workflow_id = $1 AND state = 'REVOKED' \
         AND revoked_at >= $2",
    )
    .bind(run.id.to_string())
    .bind(now)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(finished, 200);

    assert!(
        samples_with_locks > 0,
        "the sampler saw the cleanup's statements"
    );
    assert!(
        max_lock_secs < 1.0,
        "a transaction held locks on address_records for {max_lock_secs:.3} s"
    );
    w.shutdown().await;
}

// ---- lifecycle_cleanup, small, on both backends ----

async fn seed_record(
    db: &DomainDb,
    pool: &Pool,
    n: i64,
    state: AddressState,
    at: DateTime<Utc>,
) -> i64 {
    let address = pool.range().unwrap().nth(n).unwrap();
    let sub = format!("s{n:04}");
    lifecycle::create(
        db,
        &NewAddress {
            tenant_id: TENANT,
            subscriber_id: &sub,
            pool_id: pool.id,
            family: Family::Ipv4,
            address: &address,
            ordinal: n,
            state,
            metadata: json!({}),
            run_id: "seed",
        },
        at,
    )
    .await
    .unwrap()
    .id
}

async fn cleanup_in_batches(w: World) {
    let pool = ipam::list_pools(&w.db, Some(TENANT))
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == V4_POOL)
        .unwrap();
    let now = Utc::now();
    let h = chrono::Duration::hours;
    let plan = [
        (120, AddressState::Revoked, now - h(24 * 91)),
        (30, AddressState::Revoked, now - h(24 * 89)),
        (25, AddressState::Allocated, now - h(25)),
        (10, AddressState::Allocated, now - h(23)),
        (15, AddressState::Revoking, now - h(2)),
        (
            5,
            AddressState::Revoking,
            now - chrono::Duration::minutes(30),
        ),
        (20, AddressState::Active, now - h(48)),
    ];
    let mut n = 0;
    for (count, state, at) in plan {
        for _ in 0..count {
            seed_record(&w.db, &pool, n, state, at).await;
            n += 1;
        }
    }
    let leaks = || {
        let text = prometheus().render();
        text.lines()
            .find_map(|l| l.strip_prefix("sagaflow_lifecycle_leaks_found_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let leaks_before = leaks();
    let id = w.start("lifecycle_cleanup", json!({})).await;
    let run = w.finish(id, Duration::from_secs(60)).await;
    assert_eq!(
        step_output(&run, "cleanup"),
        json!({"revoked_deleted": 120, "allocated_stale": 25, "revoking_stuck": 15, "errors": 0})
    );
    // The leaks found are counted (other tests of this binary only add).
    assert!(
        leaks() >= leaks_before + 25.0,
        "{} then {}",
        leaks_before,
        leaks()
    );
    assert_eq!(
        step_output(&run, "report_leaks")["leaks"]
            .as_array()
            .unwrap()
            .len(),
        25
    );
    assert_eq!(
        state_counts(&w.db, TENANT).await,
        vec![
            (AddressState::Allocated, 35),
            (AddressState::Active, 20),
            (AddressState::Revoking, 5),
            (AddressState::Revoked, 45),
        ]
    );
    // A second run: nothing old is left to purge or finish.
    let id = w.start("lifecycle_cleanup", json!({})).await;
    let run = w.finish(id, Duration::from_secs(60)).await;
    assert_eq!(
        step_output(&run, "cleanup"),
        json!({"revoked_deleted": 0, "allocated_stale": 25, "revoking_stuck": 0, "errors": 0})
    );
    w.shutdown().await;
}

fn small_batches() -> Options {
    Options {
        v4_cidr: "10.40.0.0/23".into(),
        maintenance: MaintenanceConfig {
            batch_size: 50,
            ..MaintenanceConfig::default()
        },
        ..Options::default()
    }
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn cleanup_in_batches_postgres(pool: sqlx::PgPool) {
    cleanup_in_batches(World::postgres(pool, small_batches()).await).await;
}

#[tokio::test]
async fn cleanup_in_batches_sqlite() {
    cleanup_in_batches(World::sqlite(small_batches()).await).await;
}

// ---- capacity_check and notifications ----

/// A notification as the test webhook received it.
#[derive(Debug, Clone)]
struct Received {
    notification: Notification,
    signature_valid: bool,
    delivery: String,
    event: String,
    content_type: String,
}

/// A webhook receiver on 127.0.0.1:0 that checks signatures and can be told
/// to refuse the next requests.
#[derive(Clone, Default)]
struct Hook {
    received: Arc<Mutex<Vec<Received>>>,
    refuse: Arc<AtomicU32>,
    refused: Arc<AtomicU32>,
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if hook
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        hook.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    // The signature, computed here independently of the notifier.
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let signature_valid = header("x-sagaflow-signature") == format!("sha256={expected}");
    let Ok(notification) = serde_json::from_slice::<Notification>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    hook.received.lock().unwrap().push(Received {
        notification,
        signature_valid,
        delivery: header("x-sagaflow-delivery"),
        event: header("x-sagaflow-event"),
        content_type: header("content-type"),
    });
    StatusCode::NO_CONTENT
}

impl Hook {
    async fn start() -> (Self, SocketAddr) {
        let hook = Hook::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(hook.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (hook, addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn kinds(&self) -> Vec<NotificationKind> {
        self.received()
            .iter()
            .map(|r| r.notification.kind)
            .collect()
    }
}

fn webhook_options(addr: SocketAddr, v4_cidr: &str) -> Options {
    Options {
        v4_cidr: v4_cidr.into(),
        notify: NotifyConfig {
            webhook_url: Some(format!("http://{addr}/hook")),
            secret: SECRET.into(),
            timeout_ms: 2_000,
            retries: 3,
        },
        ..Options::default()
    }
}

/// Allocates `n` more addresses from `pool`; returns their record ids.
async fn fill(db: &DomainDb, pool: &Pool, from: usize, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in from..from + n {
        let key = format!("fill:{i}");
        let r = ipam::allocate(
            db,
            &AllocateRequest {
                pool,
                subscriber_id: &format!("c{i}"),
                key: &key,
                run_id: "fill",
                metadata: json!({}),
                address: None,
            },
            Utc::now(),
        )
        .await
        .unwrap();
        ids.push(r.id);
    }
    ids
}

async fn capacity_crossings(w: World, hook: Hook) {
    let pool = ipam::list_pools(&w.db, Some(TENANT))
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == V4_POOL)
        .unwrap();
    assert_eq!(
        (pool.capacity, pool.warning_percent, pool.critical_percent),
        (14, 80, 100)
    );
    let check = || async {
        let run = w.run("capacity_check", json!({})).await;
        step_output(&run, "check_pools")
    };
    let mut held = Vec::new();

    // 11 of 14 (78.6 %): below the warning threshold.
    held.extend(fill(&w.db, &pool, 0, 11).await);
    let out = check().await;
    assert_eq!(out["crossings"], json!([]));
    assert!(hook.received().is_empty());

    // 12 of 14 (85.7 %): warning, once, delivered after the webhook's first
    // refusal (retried with backoff).
    held.extend(fill(&w.db, &pool, 11, 1).await);
    hook.refuse.store(1, Ordering::SeqCst);
    let out = check().await;
    assert_eq!(out["crossings"][0]["kind"], json!("capacity_warning"));
    assert_eq!(hook.refused.load(Ordering::SeqCst), 1);
    assert_eq!(hook.kinds(), vec![NotificationKind::CapacityWarning]);
    for _ in 0..2 {
        assert_eq!(check().await["crossings"], json!([]));
    }
    assert_eq!(
        hook.received().len(),
        1,
        "the same level is not notified again"
    );

    // 14 of 14: critical.
    held.extend(fill(&w.db, &pool, 12, 2).await);
    assert_eq!(
        check().await["crossings"][0]["kind"],
        json!("capacity_critical")
    );
    assert_eq!(check().await["crossings"], json!([]));

    // 4 of 14 (28.6 %): recovered.
    for id in held.drain(..10) {
        ipam::release(&w.db, TENANT, id, "test", Utc::now())
            .await
            .unwrap();
    }
    assert_eq!(
        check().await["crossings"][0]["kind"],
        json!("capacity_recovered")
    );
    for _ in 0..2 {
        assert_eq!(check().await["crossings"], json!([]));
    }

    let received = hook.received();
    assert_eq!(
        hook.kinds(),
        vec![
            NotificationKind::CapacityWarning,
            NotificationKind::CapacityCritical,
            NotificationKind::CapacityRecovered,
        ],
        "exactly one warning, one critical, one recovery"
    );
    for r in &received {
        assert!(r.signature_valid, "bad signature on {:?}", r.notification);
        assert_eq!(r.delivery, r.notification.id);
        assert_eq!(r.event, r.notification.kind.as_str());
        assert_eq!(r.content_type, "application/json");
        assert_eq!(r.notification.tenant_id, TENANT);
        assert_eq!(r.notification.data["pool"], json!(V4_POOL));
    }
    assert_eq!(received[0].notification.data["in_use"], json!(12));
    assert_eq!(received[1].notification.data["in_use"], json!(14));
    assert_eq!(received[2].notification.data["in_use"], json!(4));
    assert_eq!(
        received[2].notification.data["previous_level"],
        json!("CRITICAL")
    );
    let levels = ipam::capacity_levels(&w.db, TENANT).await.unwrap();
    assert_eq!(levels.get(&pool.id), Some(&CapacityLevel::Ok));
    w.shutdown().await;
}

/// A world on PostgreSQL (with `pool`) or SQLite whose notifications go to
/// a fresh test webhook, with a /28 IPv4 pool (14 addresses).
async fn hooked(pool: Option<sqlx::PgPool>) -> (World, Hook) {
    let (hook, addr) = Hook::start().await;
    let opts = webhook_options(addr, "10.50.0.0/28");
    let w = match pool {
        Some(pool) => World::postgres(pool, opts).await,
        None => World::sqlite(opts).await,
    };
    (w, hook)
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn capacity_crossings_are_notified_once_postgres(pool: sqlx::PgPool) {
    let (w, hook) = hooked(Some(pool)).await;
    capacity_crossings(w, hook).await;
}

#[tokio::test]
async fn capacity_crossings_are_notified_once_sqlite() {
    let (w, hook) = hooked(None).await;
    capacity_crossings(w, hook).await;
}

// ---- reservation_expiry ----

async fn reservations_expire(w: World, hook: Hook) {
    let pool = ipam::list_pools(&w.db, Some(TENANT))
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == V4_POOL)
        .unwrap();
    let now = Utc::now();
    let m = chrono::Duration::minutes;
    let gone1 = ipam::reserve(&w.db, &pool, "r1", now - m(5), now - m(60))
        .await
        .unwrap();
    let gone2 = ipam::reserve(&w.db, &pool, "r2", now - m(1), now - m(60))
        .await
        .unwrap();
    let live = ipam::reserve(&w.db, &pool, "r3", now + m(60), now)
        .await
        .unwrap();

    let run = w.run("reservation_expiry", json!({})).await;
    let out = step_output(&run, "expire_reservations");
    assert_eq!(out["reservations_expired"], json!(2));
    let key = format!("{}:expire_reservations", run.id);
    let audit = ipam::audit_of(&w.db, TENANT, &key).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .map(|a| (a.record_id, a.subscriber_id.as_str(), a.action.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (gone1.id, "r1", "RESERVATION_EXPIRED"),
            (gone2.id, "r2", "RESERVATION_EXPIRED")
        ]
    );
    assert!(audit.iter().all(|a| a.notified_at.is_some()));
    let received = hook.received();
    assert_eq!(
        received
            .iter()
            .map(|r| (
                r.notification.kind,
                r.notification.data["subscriber_id"].clone()
            ))
            .collect::<Vec<_>>(),
        vec![
            (NotificationKind::ReservationExpired, json!("r1")),
            (NotificationKind::ReservationExpired, json!("r2")),
        ]
    );
    assert!(received.iter().all(|r| r.signature_valid));
    for (id, state) in [
        (gone1.id, AddressState::Failed),
        (gone2.id, AddressState::Failed),
        (live.id, AddressState::Pending),
    ] {
        let r = lifecycle::get(&w.db, TENANT, id).await.unwrap().unwrap();
        assert_eq!(r.state, state);
    }
    // Nothing more to expire: no new audit, no notification.
    let run = w.run("reservation_expiry", json!({})).await;
    assert_eq!(
        step_output(&run, "expire_reservations")["reservations_expired"],
        json!(0)
    );
    assert_eq!(hook.received().len(), 2);
    w.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn reservations_expire_postgres(pool: sqlx::PgPool) {
    let (w, hook) = hooked(Some(pool)).await;
    reservations_expire(w, hook).await;
}

#[tokio::test]
async fn reservations_expire_sqlite() {
    let (w, hook) = hooked(None).await;
    reservations_expire(w, hook).await;
}

// ---- lifecycle_metrics ----

fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).unwrap();
        handle
    })
}

/// The value of the series `name` whose labels include all of `labels`.
fn gauge(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn lifecycle_metrics_are_exported_and_stored(pool: sqlx::PgPool) {
    let prom = prometheus();
    let w = World::postgres(
        pool,
        Options {
            v4_cidr: "10.70.0.0/28".into(),
            ..Options::default()
        },
    )
    .await;
    let v4 = ipam::list_pools(&w.db, Some(TENANT))
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == V4_POOL)
        .unwrap();
    let ids = fill(&w.db, &v4, 0, 7).await;
    for id in &ids[..3] {
        lifecycle::transition(&w.db, TENANT, *id, AddressState::Active, "t", Utc::now())
            .await
            .unwrap();
    }
    ipam::release(&w.db, TENANT, ids[6], "t", Utc::now())
        .await
        .unwrap();

    let run = w.run("lifecycle_metrics", json!({})).await;
    let out = step_output(&run, "snapshot");
    let snaps = lifecycle::snapshots(&w.db, TENANT, 10).await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(out["snapshot_id"], json!(snaps[0].id));
    assert_eq!(snaps[0].idempotency_key, format!("{}:snapshot", run.id));
    let count = |family: &str, state: &str| {
        snaps[0]
            .records
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["family"] == json!(family) && r["state"] == json!(state))
            .map(|r| r["count"].clone())
    };
    assert_eq!(count("IPV4", "ACTIVE"), Some(json!(3)));
    assert_eq!(count("IPV4", "ALLOCATED"), Some(json!(3)));
    assert_eq!(count("IPV4", "REVOKED"), Some(json!(1)));
    assert_eq!(count("IPV6", "ACTIVE"), Some(json!(0)));
    assert_eq!(
        snaps[0].pools[0],
        json!({"pool": V4_POOL, "family": "IPV4", "capacity": 14, "in_use": 6, "utilization": 6.0 / 14.0})
    );

    // The gauges are read from the database by the gauge refresh (every
    // replica's), not set by the job.
    sagaflow_steps::maintenance::gauges::refresh(&w.db, 30)
        .await
        .unwrap();
    let text = prom.render();
    let t = ("tenant", TENANT);
    assert_eq!(
        gauge(
            &text,
            "sagaflow_pool_exhaustion_horizon_days",
            &[t, ("pool", V4_POOL)]
        ),
        Some(30.0)
    );
    assert_eq!(
        gauge(
            &text,
            "sagaflow_address_records",
            &[t, ("family", "IPV4"), ("state", "ACTIVE")]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        gauge(
            &text,
            "sagaflow_address_records",
            &[t, ("family", "IPV6"), ("state", "REVOKED")]
        ),
        Some(0.0)
    );
    assert_eq!(
        gauge(&text, "sagaflow_pool_capacity", &[t, ("pool", V4_POOL)]),
        Some(14.0)
    );
    assert_eq!(
        gauge(&text, "sagaflow_pool_in_use", &[t, ("pool", V4_POOL)]),
        Some(6.0)
    );
    let ratio = gauge(
        &text,
        "sagaflow_pool_utilization_ratio",
        &[t, ("pool", V4_POOL)],
    )
    .unwrap();
    assert!((ratio - 6.0 / 14.0).abs() < 1e-9, "{ratio}");
    // The pool's thresholds (the defaults: 80 % and 100 %).
    assert_eq!(
        gauge(
            &text,
            "sagaflow_pool_warning_ratio",
            &[t, ("pool", V4_POOL)]
        ),
        Some(0.8)
    );
    assert_eq!(
        gauge(
            &text,
            "sagaflow_pool_critical_ratio",
            &[t, ("pool", V4_POOL)]
        ),
        Some(1.0)
    );

    // Each run stores its own snapshot.
    w.run("lifecycle_metrics", json!({})).await;
    assert_eq!(
        lifecycle::snapshots(&w.db, TENANT, 10).await.unwrap().len(),
        2
    );
    w.shutdown().await;
}

// ---- configuration ----

#[tokio::test]
async fn pools_take_the_maintenance_thresholds_unless_they_set_their_own() {
    let (_store, db, _dir) = support::sqlite().await;
    let mut own = PoolConfig::new(TENANT, "own", "10.1.0.0/24".parse().unwrap());
    own.warning_percent = Some(90);
    let mut cfg = DomainConfig {
        pools: vec![
            PoolConfig::new(TENANT, "plain", "10.2.0.0/24".parse().unwrap()),
            own,
        ],
        maintenance: MaintenanceConfig {
            warning_percent: 60,
            critical_percent: 95,
            ..MaintenanceConfig::default()
        },
        ..DomainConfig::default()
    };
    let rt = DomainRuntime::start(&db, &cfg, Arc::new(SystemClock))
        .await
        .unwrap();
    let thresholds: Vec<(String, u8, u8)> = rt
        .pools
        .iter()
        .map(|p| (p.name.clone(), p.warning_percent, p.critical_percent))
        .collect();
    assert_eq!(
        thresholds,
        vec![("plain".into(), 60, 95), ("own".into(), 90, 95)]
    );
    rt.shutdown().await;

    cfg.maintenance.warning_percent = 99;
    let e = DomainRuntime::start(&db, &cfg, Arc::new(SystemClock))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("domain.maintenance"), "{e}");
    cfg.maintenance.warning_percent = 60;
    cfg.notify.webhook_url = Some("http://127.0.0.1:9/hook".into());
    let e = DomainRuntime::start(&db, &cfg, Arc::new(SystemClock))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("domain.notify.secret"), "{e}");
}
