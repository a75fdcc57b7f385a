//! Scenario 4, operator races: eight clients with an operator token race
//! retry, compensate and cancel on the same run at once, on runs paused as
//! FAILED and on runs still moving. Per run: at most one winner among
//! retry and compensate, at most one winning cancel; every other answer is
//! FAILED_PRECONDITION; every winner is in the history exactly once and
//! nothing else is; compensation at most once per step (ledger).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Barrier;

use super::Stage;
use crate::client::{Api, start_all};
use crate::process::{Engine, EngineConfig, OPERATOR, TENANT};
use crate::{Options, Report, Result, check, db, workflows};

const CLIENTS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Action {
    Retry,
    Compensate,
    Cancel { compensate: bool },
}

impl Action {
    fn random() -> Self {
        match fastrand::u8(0..4) {
            0 => Action::Retry,
            1 => Action::Compensate,
            2 => Action::Cancel { compensate: true },
            _ => Action::Cancel { compensate: false },
        }
    }

    fn class(self) -> &'static str {
        match self {
            Action::Retry | Action::Compensate => "retry/compensate",
            Action::Cancel { .. } => "cancel",
        }
    }
}

pub async fn run(opts: &Options) -> Result<Report> {
    let n = opts.counts.race_runs;
    let st = Stage::new(
        opts,
        "races",
        &[(
            "race_saga.toml",
            workflows::ledger("race_saga", 4, "pause", 20_000, 3),
        )],
    )
    .await?;
    let mut report = Report::new("races");
    let config =
        EngineConfig::new(&st.db.url, &st.workflows(), 2_000, 16).write(&st.dir, "engine")?;
    let mut engine = Engine::start(&opts.bin, &config, "races", &st.log("races")).await?;
    let crm = Api::new(&engine.grpc, "chaos-crm", st.codes.clone())?;
    let op = Api::new(&engine.grpc, OPERATOR, st.codes.clone())?;

    // Half the runs fail at l3 and pause as FAILED; half move slowly.
    let inputs: Vec<_> = (0..n)
        .map(|i| {
            let paused = i % 2 == 0;
            let ledger = if paused {
                json!({"sleep_ms": 5, "fail_step": "l3"})
            } else {
                json!({"sleep_ms": 150 + fastrand::u64(0..150)})
            };
            (format!("race-{i}"), json!({"n": i, "ledger": ledger}))
        })
        .collect();
    let ids = start_all(&crm, "race_saga", &inputs).await?;

    let mut wins: HashMap<String, Vec<Action>> = HashMap::new();
    let mut unexpected = Vec::new();
    let mut raced_failed = 0;
    for (i, id) in ids.iter().enumerate() {
        if i % 2 == 0 {
            // Wait for the pause.
            db::poll(
                "a run pausing as FAILED",
                Duration::from_secs(60),
                Duration::from_millis(20),
                || async {
                    let w = op
                        .get(id)
                        .await
                        .map_err(|e| crate::ChaosError::Grpc(e.to_string()))?;
                    Ok((w.state == sagaflow_proto::v1::WorkflowState::Failed as i32).then_some(()))
                },
            )
            .await?;
            raced_failed += 1;
        } else {
            // Still moving: let it get into its steps first.
            super::random_pause(50, 300).await;
        }
        let barrier = Arc::new(Barrier::new(CLIENTS));
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let (op, id, barrier) = (op.clone(), id.clone(), barrier.clone());
            let action = Action::random();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let patch = json!({"ledger": {"sleep_ms": 5, "fail_step": ""}});
                let r = match action {
                    Action::Retry => op.retry(&id, Some(&patch)).await,
                    Action::Compensate => op.compensate(&id).await,
                    Action::Cancel { compensate } => op.cancel(&id, compensate).await,
                };
                (action, r.map(|_| ()).map_err(|e| e.code_name()))
            }));
        }
        for t in tasks {
            let Ok((action, r)) = t.await else { continue };
            match r {
                Ok(()) => wins.entry(id.clone()).or_default().push(action),
                Err(code) if code == "FailedPrecondition" => {}
                Err(code) => unexpected.push(format!("{id} {action:?}: {code}")),
            }
        }
    }
    report.fact("runs raced while FAILED", raced_failed);
    report.fact("runs raced while moving", n - raced_failed);
    report.fact("concurrent operator calls per run", CLIENTS);
    let open = db::wait_terminal(&st.pool, TENANT, Duration::from_secs(300)).await?;
    report.fact("runs not terminal after the wait", open);
    report.bar("the engine is still running", engine.alive(), "");
    engine.kill();

    // One winner per conflicting pair.
    let mut double = Vec::new();
    for (id, w) in &wins {
        for class in ["retry/compensate", "cancel"] {
            let k = w.iter().filter(|a| a.class() == class).count();
            if k > 1 {
                double.push(format!("{id}: {k} winners of {class}"));
            }
        }
    }
    let total_wins: usize = wins.values().map(Vec::len).sum();
    report.fact("accepted operator actions", total_wins);
    report.bar(
        "one winner per conflicting pair",
        double.is_empty(),
        format!(
            "{} runs with two winners {:?}",
            double.len(),
            &double[..double.len().min(3)]
        ),
    );
    report.bar(
        "every loser got FAILED_PRECONDITION",
        unexpected.is_empty(),
        format!(
            "{} other answers {:?}",
            unexpected.len(),
            &unexpected[..unexpected.len().min(3)]
        ),
    );
    // Every accepted action is in the history once; refused ones are not.
    let recorded: Vec<(uuid::Uuid, i64)> =
        sqlx::query_as("SELECT run_id, count(*) FROM run_events WHERE actor = $1 GROUP BY run_id")
            .bind(OPERATOR)
            .fetch_all(&st.pool)
            .await?;
    let recorded: HashMap<String, i64> = recorded
        .into_iter()
        .map(|(r, c)| (r.to_string(), c))
        .collect();
    let mismatched: Vec<String> = ids
        .iter()
        .filter_map(|id| {
            let won = wins.get(id).map_or(0, Vec::len) as i64;
            let rec = recorded.get(id).copied().unwrap_or(0);
            (won != rec).then(|| format!("{id}: {won} accepted, {rec} in the history"))
        })
        .collect();
    report.bar(
        "accepted actions = operator events in the histories",
        mismatched.is_empty(),
        format!(
            "{} mismatches {:?}",
            mismatched.len(),
            &mismatched[..mismatched.len().min(3)]
        ),
    );
    let effects = check::ledger_effects(&st.pool).await?;
    st.finish(&mut report, &effects).await?;
    Ok(report)
}
