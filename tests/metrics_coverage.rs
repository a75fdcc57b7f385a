//! The metrics check, both ways: a server with every shipped workflow and
//! the default schedules provisions a subscriber, runs a saga with a retry,
//! and fires every maintenance schedule; its `/metrics` then exports every
//! metric docs/metrics.md lists and docs/prometheus-alerts.yml and
//! docs/grafana-dashboard.json use, and every `sagaflow_*` metric it
//! exports is listed in docs/metrics.md. The record and pool gauges are
//! read from the database at each refresh, with no maintenance job run.
//!
//! The recorder is process-wide, so this file is its own test binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::prom::{Sample, documented, exported, names_in, scrape, value};
use common::{start_run, start_with, wait_state};
use sagaflow_proto::v1 as pb;
use serde_json::json;
use sqlx::PgPool;

const ALERTS: &str = include_str!("../docs/prometheus-alerts.yml");
const DASHBOARD: &str = include_str!("../docs/grafana-dashboard.json");
const MAINTENANCE: [&str; 5] = [
    "lifecycle_cleanup",
    "lifecycle_metrics",
    "capacity_check",
    "reservation_expiry",
    "run_retention",
];

/// The shipped workflow files and the default schedules' file.
fn shipped() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// Every metric name the docs, the rules and the dashboard use.
fn used() -> BTreeSet<String> {
    let mut all: BTreeSet<String> = documented().into_iter().collect();
    all.extend(names_in(ALERTS));
    all.extend(names_in(DASHBOARD));
    all
}

#[test]
fn the_names_are_read_from_queries() {
    assert_eq!(
        names_in(
            "histogram_quantile(0.95, sum by (le) (rate(sagaflow_a_bucket[5m]))) / sagaflow_b"
        ),
        ["sagaflow_a_bucket", "sagaflow_b"]
    );
    let s = common::prom::parse("sagaflow_h_bucket{le=\"1\"} 0\nsagaflow_c_total 1\n");
    assert!(exported(&s, "sagaflow_h") && exported(&s, "sagaflow_h_bucket"));
    assert!(exported(&s, "sagaflow_c_total") && !exported(&s, "sagaflow_c"));
    let used = used();
    assert!(
        used.contains("sagaflow_lifecycle_leaks_found_total"),
        "{used:?}"
    );
    assert!(used.contains("sagaflow_pool_warning_ratio"), "{used:?}");
}

/// What is used and not exported, and what is exported and not documented.
fn mismatches(scrape: &[Sample]) -> (Vec<String>, BTreeSet<String>) {
    let missing = used()
        .into_iter()
        .filter(|n| !exported(scrape, n))
        .collect();
    let docs = documented();
    let undocumented = scrape
        .iter()
        .map(|s| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suf| {
                    s.name
                        .strip_suffix(suf)
                        .filter(|b| docs.iter().any(|d| d == b))
                })
                .unwrap_or(&s.name)
                .to_owned()
        })
        .filter(|n| n.starts_with("sagaflow_") && !docs.contains(n))
        .collect();
    (missing, undocumented)
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn every_used_metric_is_exported_and_every_exported_one_documented(pool: PgPool) {
    let files = shipped();
    let files: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let mut t = start_with(&pool, &files, |c| {
        c.http.gauge_refresh_ms = 50;
        c.schedules.tenant = "a".into();
        c.schedules.poll_ms = 50;
        c.domain.pools = sagaflow_steps::DomainConfig::dev("a").pools;
        c.domain.simulators.inform_tokens = [("a".to_owned(), "crm-a".to_owned())].into();
    })
    .await;
    let url = format!("http://{}/metrics", t.server.http_addr);

    // A provisioning, and a saga whose `reserve` fails once first.
    let input = json!({
        "subscriber_id": "sub-m", "plan": "fiber-300", "enable_ipv6": true,
        "customer": {"id": "c-m", "name": "Ada Lovelace", "email": "ada@example.net"},
        "nas": {"ip": "127.0.0.1"}, "onu_serial": "ALCL0099", "cpe_serial": "CPE0099"
    });
    let provision = start_run(&mut t.client, "crm-a", "provision_subscriber", input, "m-1")
        .await
        .unwrap()
        .workflow
        .unwrap();
    let demo = start_run(
        &mut t.client,
        "crm-a",
        "demo_saga",
        json!({"demo": {"flaky": {"reserve": 1}}}),
        "m-2",
    )
    .await
    .unwrap()
    .workflow
    .unwrap();
    for id in [&provision.id, &demo.id] {
        wait_state(&mut t.client, "crm-a", id, pb::WorkflowState::Completed).await;
    }

    // Every default schedule of tenant a is due now: the scheduler fires
    // each maintenance workflow once.
    let due = sqlx::query(
        "UPDATE schedules SET next_fire_at = now() - interval '1 second' WHERE tenant_id = 'a'",
    )
    .execute(&pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(due, MAINTENANCE.len() as u64, "the default schedules");
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let done: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT workflow_name FROM runs WHERE tenant_id = 'a' \
             AND schedule_id IS NOT NULL AND state = 'COMPLETED'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if done.len() == MAINTENANCE.len() {
            break;
        }
        let states: Vec<(String, String)> = sqlx::query_as(
            "SELECT workflow_name, state FROM runs WHERE tenant_id = 'a' AND schedule_id IS NOT NULL",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(Instant::now() < end, "maintenance runs: {states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval (loop has a deadline)
    }

    // The gauges are refreshed every 50 ms: poll until the scrape has
    // everything, and say what is missing when it never does.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = scrape(&url).await;
        let (missing, undocumented) = mismatches(&s);
        assert!(
            undocumented.is_empty(),
            "exported but not listed in docs/metrics.md: {undocumented:?}"
        );
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < end,
            "used by the docs, rules or dashboard but never exported: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval (loop has a deadline)
    }
    t.server.shutdown().await;
}

/// The record and pool gauges come from the database at each refresh, not
/// from a maintenance job: with no job run (no snapshot stored) they show
/// tenant b's provisioned records and pool use, as any replica on this
/// database would.
#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn domain_gauges_are_read_from_the_database(pool: PgPool) {
    let provision = include_str!("../workflows/provision_subscriber.v1.toml");
    let mut t = start_with(&pool, &[("provision.toml", provision.to_owned())], |c| {
        c.http.gauge_refresh_ms = 50;
        c.schedules.enabled = false;
        c.domain.pools = sagaflow_steps::DomainConfig::dev("b").pools;
        c.domain.simulators.inform_tokens = [("b".to_owned(), "crm-b".to_owned())].into();
    })
    .await;
    let url = format!("http://{}/metrics", t.server.http_addr);
    let input = json!({
        "subscriber_id": "sub-g", "plan": "fiber-300", "enable_ipv6": true,
        "customer": {"id": "c-g", "name": "Edsger Dijkstra", "email": "ewd@example.net"},
        "nas": {"ip": "127.0.0.1"}, "onu_serial": "ALCL0098", "cpe_serial": "CPE0098"
    });
    let run = start_run(&mut t.client, "crm-b", "provision_subscriber", input, "g-1")
        .await
        .unwrap()
        .workflow
        .unwrap();
    wait_state(
        &mut t.client,
        "crm-b",
        &run.id,
        pb::WorkflowState::Completed,
    )
    .await;

    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let active_v4 = count(
        "SELECT count(*) FROM address_records WHERE tenant_id = 'b' \
         AND family = 'IPV4' AND state = 'ACTIVE'",
    )
    .await;
    let records = count("SELECT count(*) FROM address_records WHERE tenant_id = 'b'").await;
    assert_eq!(active_v4, 1);
    assert_eq!(
        count("SELECT count(*) FROM lifecycle_snapshots").await,
        0,
        "no maintenance job ran"
    );
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = scrape(&url).await;
        let gauge = |name: &str, labels: &[(&str, &str)]| {
            let mut l = vec![("tenant", "b")];
            l.extend_from_slice(labels);
            value(&s, name, &l)
        };
        let v4 = gauge(
            "sagaflow_address_records",
            &[("family", "IPV4"), ("state", "ACTIVE")],
        );
        let all = gauge("sagaflow_address_records", &[]);
        let in_use = gauge("sagaflow_pool_in_use", &[]);
        let ratio = gauge("sagaflow_pool_utilization_ratio", &[]);
        if v4 == active_v4 as f64 && all == records as f64 && in_use >= 1.0 {
            assert!(ratio > 0.0 && ratio <= 2.0, "ratios {ratio}");
            break;
        }
        assert!(
            Instant::now() < end,
            "gauges: active ipv4 {v4}, records {all}, in use {in_use}; database: {active_v4}, {records}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval (loop has a deadline)
    }
    t.server.shutdown().await;
}
