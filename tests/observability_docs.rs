//! The shipped dashboard and alert rules only use metrics that exist: every
//! query of `docs/grafana-dashboard.json` and every rule expression of
//! `docs/prometheus-alerts.yml` names metrics listed in `docs/metrics.md`
//! (which `tests/metrics.rs` checks against a real scrape).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use serde_json::Value;

const METRICS_MD: &str = include_str!("../docs/metrics.md");
const DASHBOARD: &str = include_str!("../docs/grafana-dashboard.json");
const ALERTS: &str = include_str!("../docs/prometheus-alerts.yml");

/// Metric names listed in docs/metrics.md (first column of its tables).
fn documented() -> BTreeSet<String> {
    METRICS_MD
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("sagaflow_"))
        .map(str::to_owned)
        .collect()
}

/// The `sagaflow_*` metric names a PromQL expression uses, with the
/// histogram series suffixes taken off.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("sagaflow_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.push(base.to_owned());
        rest = &tail[end..];
    }
    out
}

/// Every PromQL query of a dashboard: panel targets' `expr` and the
/// templating variables' queries.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) if s.contains('(') => out.push(s.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

#[test]
fn metrics_md_lists_metrics() {
    let d = documented();
    assert!(d.len() >= 20, "{d:?}");
    for name in [
        "sagaflow_runs_started_total",
        "sagaflow_step_duration_seconds",
        "sagaflow_pool_utilization_ratio",
        "sagaflow_schedule_fire_lateness_seconds",
    ] {
        assert!(d.contains(name), "{name}");
    }
    assert_eq!(
        metrics_in(
            "histogram_quantile(0.95, rate(sagaflow_step_duration_seconds_bucket[5m])) / sagaflow_runs"
        ),
        ["sagaflow_step_duration_seconds", "sagaflow_runs"]
    );
}

#[test]
fn every_dashboard_query_names_a_documented_metric() {
    let dash: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let docs = documented();
    let mut qs = Vec::new();
    queries(&dash, &mut qs);
    assert!(qs.len() >= 20, "{} queries", qs.len());
    let mut used = BTreeSet::new();
    for q in &qs {
        let names = metrics_in(q);
        assert!(!names.is_empty(), "query {q:?} names no sagaflow metric");
        for n in names {
            assert!(
                docs.contains(&n),
                "{n} (in {q:?}) is not in docs/metrics.md"
            );
            used.insert(n);
        }
    }
    // What the dashboard must show.
    for n in [
        "sagaflow_runs",
        "sagaflow_step_duration_seconds",
        "sagaflow_step_retries_total",
        "sagaflow_compensations_total",
        "sagaflow_address_records",
        "sagaflow_pool_utilization_ratio",
        "sagaflow_lifecycle_leaks_found_total",
        "sagaflow_schedule_fire_lateness_seconds",
    ] {
        assert!(used.contains(n), "the dashboard shows no {n}");
    }
    // Panels have ids and positions Grafana accepts.
    let panels = dash["panels"].as_array().unwrap();
    let ids: BTreeSet<_> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for p in panels {
        assert!(p["gridPos"]["w"].as_u64().unwrap() <= 24);
    }
}

#[test]
fn every_alert_rule_names_a_documented_metric() {
    let docs = documented();
    let mut alerts = 0;
    let mut exprs = Vec::new();
    let mut lines = ALERTS.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("- alert:") {
            alerts += 1;
        }
        if let Some(e) = t.strip_prefix("expr:") {
            let e = e.trim();
            if e == "|" {
                // A block scalar: the more-indented lines that follow.
                let indent = line.len() - t.len();
                let mut block = String::new();
                while let Some(next) = lines.peek() {
                    let nt = next.trim_start();
                    if !nt.is_empty() && next.len() - nt.len() <= indent {
                        break;
                    }
                    block.push_str(nt);
                    block.push(' ');
                    lines.next();
                }
                exprs.push(block);
            } else {
                exprs.push(e.to_owned());
            }
        }
    }
    assert_eq!(exprs.len(), alerts, "one expression per alert");
    assert!(alerts >= 8);
    for e in &exprs {
        let names = metrics_in(e);
        assert!(!names.is_empty(), "rule {e:?} names no sagaflow metric");
        for n in names {
            assert!(
                docs.contains(&n),
                "{n} (in {e:?}) is not in docs/metrics.md"
            );
        }
    }
    // Near exhaustion honours each pool's own warning threshold; exhausted
    // is full, whatever the thresholds.
    assert!(
        ALERTS.contains(">= on (tenant, pool) max by (tenant, pool) (sagaflow_pool_warning_ratio)")
    );
    assert!(ALERTS.contains("max by (tenant, pool) (sagaflow_pool_utilization_ratio) >= 1"));
    // More than 5 records stuck REVOKING for 30 minutes.
    let stuck = ALERTS
        .split("- alert: ")
        .find(|r| r.starts_with("SagaflowRevocationsStuck"))
        .expect("the stuck revocations alert");
    assert!(
        stuck.contains(r#"sagaflow_address_records{state="REVOKING"}) > 5"#),
        "{stuck}"
    );
    assert!(stuck.contains("for: 30m"), "{stuck}");
}

#[test]
fn the_dashboard_filters_by_tenant_and_has_the_domain_panels() {
    let d: Value = serde_json::from_str(DASHBOARD).unwrap();
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(vars.contains(&"tenant"), "{vars:?}");
    let panels = d["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Allocations and revocations per second",
        "Allocation and revocation latency p95",
        "Pool utilization growth per day",
        "Lifecycle states over time",
    ] {
        assert!(titles.contains(&want), "{want} missing: {titles:?}");
    }
    assert!(panels.iter().any(|p| p["type"] == "state-timeline"));
    // Every query of a tenant-labelled gauge honours the variable.
    let mut all = Vec::new();
    queries(&d, &mut all);
    for q in all
        .iter()
        .filter(|q| q.contains("sagaflow_pool_") || q.contains("sagaflow_address_records"))
    {
        if q.starts_with("label_values") {
            continue;
        }
        assert!(q.contains("tenant=~\"$tenant\""), "{q}");
    }
    // Panel ids are unique (Grafana keys panels by id).
    let ids: BTreeSet<i64> = panels.iter().filter_map(|p| p["id"].as_i64()).collect();
    assert_eq!(ids.len(), panels.len());
}
