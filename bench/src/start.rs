//! StartWorkflow over gRPC at a fixed offered rate, against the real
//! server.

use std::time::Duration;

use sagaflow_engine::ids::RunId;
use sagaflow_proto::json::json_to_struct;
use sagaflow_proto::v1 as pb;
use serde_json::{Value, json};

use crate::Options;
use crate::host::{authed, bench_server};
use crate::setup::{Setup, summary};
use crate::throughput::{STARTERS, throughput};

/// Open loop: StartWorkflow calls are sent on a fixed schedule whatever
/// the answers take, and each latency counts from the moment its call was
/// due, so a stall shows in the figures instead of slowing the load.
pub(crate) async fn start(
    s: &Setup,
    args: &Options,
    rate: Option<f64>,
    seconds: u64,
    calibrate_runs: usize,
) -> anyhow::Result<Value> {
    let (rate, calibration) = match rate {
        Some(r) if r > 0.0 => (r, Value::Null),
        Some(_) => anyhow::bail!("--rate must be above 0"),
        None => {
            let t = throughput(s, calibrate_runs, 256, STARTERS).await?;
            if let Some(pg) = &s.pg {
                // What autovacuum would have done after the calibration's
                // runs (off on some machines): see `analyze_runs`.
                sagaflow_engine::store::postgres::scale::analyze_runs(pg).await?;
            }
            let measured = t["sagas_per_s"].as_f64().unwrap_or(0.0);
            ((measured / 2.0).max(1.0), t)
        }
    };
    let tenant = format!("bench-{}", RunId::new());
    let b = bench_server(s, args, &tenant).await?;
    let total = (rate * seconds as f64).round().max(1.0) as usize;
    let every = Duration::from_secs_f64(1.0 / rate);
    let t0 = tokio::time::Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = t0 + every.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let mut client = b.client.clone();
        calls.spawn(async move {
            let req = pb::StartWorkflowRequest {
                workflow_name: "bench_noop".into(),
                input: Some(json_to_struct(&json!({ "i": i }))),
                ..Default::default()
            };
            let r = client.start_workflow(authed(req)).await;
            (
                due.elapsed().as_secs_f64() * 1000.0,
                r.err().map(|e| e.code()),
            )
        });
    }
    let offered_s = t0.elapsed().as_secs_f64();
    let mut ok = Vec::with_capacity(total);
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    while let Some(j) = calls.join_next().await {
        let (ms, code) = j?;
        match code {
            None => ok.push(ms),
            Some(c) => *errors.entry(format!("{c:?}")).or_default() += 1,
        }
    }
    b.server.shutdown().await;
    Ok(json!({
        "scenario": "start",
        "backend": s.backend,
        "offered_per_s": rate,
        "calls": total,
        "offered_over_s": offered_s,
        "ok": ok.len(),
        "errors": errors,
        "latency": summary(ok),
        "calibration": calibration,
    }))
}
