//! `/metrics` over HTTP: a saga that completes (with a retry) and one that
//! fails and is compensated by an operator move the counters and histograms
//! by exactly what they did; every exported metric is documented.
//!
//! The recorder is process-wide, so this file is its own test binary and
//! compares a scrape before with one after, on a workflow name no other
//! test uses.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::prom::{Sample, documented, parse, scrape, value};
use common::{req, start_run, wait_state};
use sagaflow_proto::v1 as pb;
use serde_json::json;
use sqlx::PgPool;

#[test]
fn the_parser_reads_the_text_format() {
    let s = parse(
        "# HELP x_total help\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"uote\"} 3\ny 1.5 1700000000\nh_bucket{le=\"+Inf\"} 2\n",
    );
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].labels["b"], "q\"uote");
    assert_eq!(value(&s, "x_total", &[("a", "1")]), 3.0);
    assert_eq!(value(&s, "y", &[]), 1.5);
    assert_eq!(value(&s, "h_bucket", &[("le", "+Inf")]), 2.0);
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn runs_and_compensations_move_the_counters_and_histograms(pool: PgPool) {
    const W: &str = "metrics_saga";
    let def = common::DEMO.replace("name = \"demo_saga\"", &format!("name = \"{W}\""));
    let mut t = common::start_with(&pool, &[("metrics_saga.v1.toml", def)], |c| {
        c.http.gauge_refresh_ms = 50;
    })
    .await;
    let url = format!("http://{}/metrics", t.server.http_addr);
    let before = scrape(&url).await;
    let start_ok = |s: &[Sample]| {
        value(
            s,
            "sagaflow_grpc_requests_total",
            &[
                ("service", "sagaflow.v1.WorkflowService"),
                ("method", "StartWorkflow"),
                ("code", "OK"),
            ],
        )
    };
    let grpc_before = start_ok(&before);

    // A run that completes; `reserve` fails once (retryable) first.
    let ok = start_run(
        &mut t.client,
        "crm-a",
        W,
        json!({"demo": {"flaky": {"reserve": 1}}}),
        "metrics-ok",
    )
    .await
    .unwrap()
    .workflow
    .unwrap();
    wait_state(&mut t.client, "crm-a", &ok.id, pb::WorkflowState::Completed).await;

    // A run whose `configure` fails for good: it pauses FAILED; an operator
    // compensates it (only `reserve` succeeded and has a compensation).
    let bad = start_run(
        &mut t.client,
        "crm-a",
        W,
        json!({"demo": {"fail_step": "configure"}}),
        "metrics-bad",
    )
    .await
    .unwrap()
    .workflow
    .unwrap();
    wait_state(&mut t.client, "crm-a", &bad.id, pb::WorkflowState::Failed).await;
    t.client
        .compensate_workflow(req(
            pb::CompensateWorkflowRequest {
                id: bad.id.clone(),
                reason: "metrics test".into(),
            },
            "operator-a",
        ))
        .await
        .unwrap();
    wait_state(
        &mut t.client,
        "crm-a",
        &bad.id,
        pb::WorkflowState::Compensated,
    )
    .await;
    // A refused call is counted with its code.
    let refused = t
        .client
        .get_workflow(req(pb::GetWorkflowRequest { id: "nope".into() }, "crm-a"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let after = scrape(&url).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        let mut l = vec![("workflow", W)];
        l.extend_from_slice(labels);
        value(&after, name, &l) - value(&before, name, &l)
    };
    let step = |step: &'static str, kind: &'static str| {
        [("step", step), ("kind", kind), ("adapter", "builtin.demo")]
    };

    assert_eq!(delta("sagaflow_runs_started_total", &[]), 2.0);
    assert_eq!(
        delta("sagaflow_runs_finished_total", &[("state", "completed")]),
        1.0
    );
    assert_eq!(
        delta("sagaflow_runs_finished_total", &[("state", "failed")]),
        1.0
    );
    assert_eq!(
        delta("sagaflow_runs_finished_total", &[("state", "compensated")]),
        1.0
    );
    assert_eq!(delta("sagaflow_runs_finished_total", &[]), 3.0);

    // Attempts: validate 2, reserve 2 + 1, configure 2 (one fails), notify
    // and bill 1 each; one compensation of reserve.
    for (s, n) in [
        ("validate", 2.0),
        ("reserve", 3.0),
        ("configure", 2.0),
        ("notify", 1.0),
        ("bill", 1.0),
    ] {
        assert_eq!(
            delta("sagaflow_step_attempts_total", &step(s, "forward")),
            n,
            "attempts of {s}"
        );
    }
    assert_eq!(
        delta(
            "sagaflow_step_attempts_total",
            &step("reserve", "compensate")
        ),
        1.0
    );
    assert_eq!(
        delta("sagaflow_step_attempts_total", &[("kind", "compensate")]),
        1.0
    );
    assert_eq!(
        delta(
            "sagaflow_step_failures_total",
            &[("step", "reserve"), ("error", "retryable")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "sagaflow_step_failures_total",
            &[("step", "configure"), ("error", "fatal")]
        ),
        1.0
    );
    assert_eq!(delta("sagaflow_step_failures_total", &[]), 2.0);
    assert_eq!(
        delta(
            "sagaflow_step_retries_total",
            &[("step", "reserve"), ("kind", "forward")]
        ),
        1.0
    );
    assert_eq!(delta("sagaflow_step_retries_total", &[]), 1.0);
    assert_eq!(
        delta(
            "sagaflow_compensations_total",
            &[("step", "reserve"), ("outcome", "succeeded")]
        ),
        1.0
    );
    assert_eq!(delta("sagaflow_compensations_total", &[]), 1.0);

    // The histogram: one observation per attempt, by outcome, with buckets.
    let d = "sagaflow_step_duration_seconds";
    let reserve = |outcome: &'static str| {
        let mut l = step("reserve", "forward").to_vec();
        l.push(("outcome", outcome));
        l
    };
    assert_eq!(delta(&format!("{d}_count"), &reserve("success")), 2.0);
    assert_eq!(
        delta(&format!("{d}_count"), &reserve("retryable_error")),
        1.0
    );
    assert_eq!(
        delta(
            &format!("{d}_count"),
            &[("step", "configure"), ("outcome", "fatal_error")]
        ),
        1.0
    );
    assert_eq!(delta(&format!("{d}_count"), &[]), 10.0);
    let mut inf = reserve("success");
    inf.push(("le", "+Inf"));
    assert_eq!(delta(&format!("{d}_bucket"), &inf), 2.0);
    let mut fast = reserve("success");
    fast.push(("le", "600"));
    assert_eq!(
        delta(&format!("{d}_bucket"), &fast),
        2.0,
        "the demo steps take well under 600 s"
    );
    assert!(delta(&format!("{d}_sum"), &[]) >= 0.0);
    let buckets = after
        .iter()
        .filter(|s| {
            s.name == format!("{d}_bucket")
                && s.labels.get("workflow").map(String::as_str) == Some(W)
        })
        .count();
    assert!(buckets > 0, "exported as a histogram, not a summary");

    // Claims and gRPC.
    let claims = value(&after, "sagaflow_claim_duration_seconds_count", &[])
        - value(&before, "sagaflow_claim_duration_seconds_count", &[]);
    assert!(claims >= 1.0, "claims were timed");
    assert!(
        value(&after, "sagaflow_runs_claimed_total", &[])
            - value(&before, "sagaflow_runs_claimed_total", &[])
            >= 3.0,
        "two runs, one claimed again after the operator's compensate"
    );
    for via in ["claim", "start"] {
        assert!(
            value(&after, "sagaflow_runs_claimed_total", &[("via", via)])
                - value(&before, "sagaflow_runs_claimed_total", &[("via", via)])
                >= 1.0,
            "runs leased via {via}: the starts found the executor idle, the compensation was claimed"
        );
    }
    assert_eq!(start_ok(&after) - grpc_before, 2.0);
    let code = |s: &[Sample], m: &str, c: &str| {
        value(
            s,
            "sagaflow_grpc_requests_total",
            &[("method", m), ("code", c)],
        )
    };
    assert_eq!(
        code(&after, "GetWorkflow", "INVALID_ARGUMENT")
            - code(&before, "GetWorkflow", "INVALID_ARGUMENT"),
        1.0
    );
    assert_eq!(
        code(&after, "CompensateWorkflow", "OK") - code(&before, "CompensateWorkflow", "OK"),
        1.0
    );

    // Gauges from the store, of every workflow: refreshed every 50 ms here.
    // Only the active states are counted (from a partial index); the
    // finished runs are the counter's.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = scrape(&url).await;
        let gauge_states: Vec<&str> = s
            .iter()
            .filter(|x| x.name == "sagaflow_runs")
            .filter_map(|x| x.labels.get("state").map(String::as_str))
            .collect();
        let max = value(&s, "sagaflow_store_pool_max_connections", &[]);
        let conns = value(&s, "sagaflow_store_pool_connections", &[]);
        let active = [
            "pending",
            "running",
            "failed",
            "compensating",
            "compensation_failed",
        ];
        if active.iter().all(|a| gauge_states.contains(a)) && max == 8.0 && conns >= 1.0 {
            assert_eq!(gauge_states.len(), active.len(), "{gauge_states:?}");
            break;
        }
        assert!(
            Instant::now() < end,
            "gauges: states {gauge_states:?}, pool max {max}, connections {conns}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval (loop has a deadline)
    }

    // Every metric the server exports is documented.
    let docs = documented();
    let final_scrape = scrape(&url).await;
    // The process metrics, read from /proc by the gauge refresh.
    #[cfg(target_os = "linux")]
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(value(&final_scrape, name, &[]) > 0.0, "{name} missing");
    }
    assert_eq!(
        value(
            &final_scrape,
            "sagaflow_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    for s in &final_scrape {
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suf| {
                s.name
                    .strip_suffix(suf)
                    .filter(|b| docs.iter().any(|d| d == b))
            })
            .unwrap_or(&s.name);
        if base.starts_with("sagaflow_") {
            assert!(
                docs.iter().any(|d| d == base),
                "{base} is exported but not listed in docs/metrics.md"
            );
        }
        for (k, v) in &s.labels {
            assert!(
                !v.contains(&ok.id) && !v.contains(&bad.id),
                "run id in label {k} of {}",
                s.name
            );
        }
    }

    // Ready: the store answers and the scheduler runs.
    let ready = reqwest::get(format!("http://{}/readyz", t.server.http_addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    t.server.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn readyz_fails_while_the_scheduler_is_not_running(pool: PgPool) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = common::database_url(&pool);
    let (store, _) = sagaflow::app::open_store(&url, 2).await.unwrap();
    let serve = |readiness| {
        let app = sagaflow::server::http_router(
            store.clone(),
            sagaflow::server::metrics_handle(),
            readiness,
        );
        async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(l, app).await });
            format!("http://{addr}/readyz")
        }
    };
    // A scheduler that is not running (a stopped one's flag is false).
    let stopped = serve(sagaflow::server::Readiness {
        scheduler: Some(Default::default()),
    })
    .await;
    let r = reqwest::get(&stopped).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "scheduler not running\n");
    // Without a scheduler in this replica, the store decides.
    let none = serve(sagaflow::server::Readiness::default()).await;
    assert_eq!(reqwest::get(&none).await.unwrap().status(), 200);
}
