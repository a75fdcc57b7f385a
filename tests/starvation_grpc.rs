//! Leases cannot starve, through the real server: 200 concurrent
//! ListWorkflows and WatchWorkflow callers on an API pool of four
//! connections, while 200 runs are in flight under a short lease. The
//! executor's claim, checkpoints and renewals have a pool of their own, so
//! no lease is lost: no attempt is ever found interrupted (what another
//! holder records when it takes a run over), and every run completes.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use sagaflow_proto::v1 as pb;
use serde_json::json;
use sqlx::PgPool;

const DEMO: &str = include_str!("../workflows/demo_saga.v1.toml");
const RUNS: usize = 200;
const CALLERS: usize = 200;

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn api_and_watch_load_cost_no_lease(pool: PgPool) {
    let mut s = start_with(&pool, &[("demo_saga.v1.toml", DEMO.to_owned())], |c| {
        c.database.max_connections = 4;
        c.database.hot_connections = 4;
        c.database.acquire_timeout_ms = 30_000;
        c.engine.lease_ms = 2_000;
        c.engine.max_in_flight = RUNS;
    })
    .await;
    let mut ids = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let r = start_run(
            &mut s.client,
            "crm-a",
            "demo_saga",
            json!({"demo": {"sleep_ms": 300}, "i": i}),
            &format!("starve-{i}"),
        )
        .await
        .unwrap();
        ids.push(r.workflow.unwrap().id);
    }

    // Half the callers list every run over and over, half watch one run
    // each; all of them share the API pool's four connections.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for i in 0..CALLERS {
        let mut c = s.client.clone();
        let stop = stop.clone();
        let id = ids[i % RUNS].clone();
        load.push(tokio::spawn(async move {
            if i % 2 == 0 {
                while !stop.load(Ordering::Relaxed) {
                    let listed = c
                        .list_workflows(req(
                            pb::ListWorkflowsRequest {
                                page_size: 1000,
                                ..Default::default()
                            },
                            "crm-a",
                        ))
                        .await;
                    if listed.is_err() {
                        // A refusal under load (UNAVAILABLE) is allowed;
                        // the point is the pressure on the pool.
                        tokio::task::yield_now().await;
                    }
                }
            } else {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(stream) = c
                        .watch_workflow(req(pb::WatchWorkflowRequest { id: id.clone() }, "crm-a"))
                        .await
                    else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    let mut stream = stream.into_inner();
                    while let Ok(Some(_)) = stream.message().await {}
                }
            }
        }));
    }

    let deadline = Instant::now() + Duration::from_secs(240);
    let done = loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM runs WHERE state IN ('COMPLETED', 'FAILED', 'COMPENSATED')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if done as usize == RUNS || Instant::now() > deadline {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(200)).await; // poll interval
    };
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.abort();
    }
    assert_eq!(done as usize, RUNS, "runs finished before the deadline");

    let completed: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE state = 'COMPLETED'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let interrupted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM run_events WHERE kind = 'step_interrupted'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let attempts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM run_events WHERE kind = 'step_started' AND attempt > 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (completed as usize, interrupted, attempts),
        (RUNS, 0, 0),
        "every run completed with one attempt per step and no lease lost"
    );
    s.server.shutdown().await;
}
