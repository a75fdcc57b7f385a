//! Scenario 2, pause a replica: two engines share the runs (half are
//! started through each, which drives them); one is
//! SIGSTOPped for three lease lengths while it holds runs with attempts in
//! flight, the other takes its runs over, then the paused one is SIGCONTed.
//! Its late writes must be refused (fencing) and its handlers stopped: the
//! histories hold no result of an attempt B found interrupted, the ledger's
//! call log no call of A's attempts after it resumed ([`crate::stale`]), and
//! the invariants hold. A's `sagaflow_leases_lost_total` is reported beside.

use std::time::{Duration, Instant};

use serde_json::json;

use super::Stage;
use crate::client::{Api, start_all};
use crate::process::{Engine, EngineConfig, TENANT, counter_sum};
use crate::{Options, Report, Result, check, db, stale, workflows};

const LEASE_MS: u64 = 1_500;

pub async fn run(opts: &Options) -> Result<Report> {
    let n = opts.counts.pause_runs;
    let st = Stage::new(
        opts,
        "pause",
        &[(
            "ledger_saga.toml",
            workflows::ledger("ledger_saga", 5, "compensate", 20_000, 100),
        )],
    )
    .await?;
    let mut report = Report::new("pause");
    let config =
        EngineConfig::new(&st.db.url, &st.workflows(), LEASE_MS, 16).write(&st.dir, "engine")?;
    let a = Engine::start(&opts.bin, &config, "pause-a", &st.log("pause-a")).await?;
    let mut b = Engine::start(&opts.bin, &config, "pause-b", &st.log("pause-b")).await?;
    let api = Api::new(&b.grpc, "chaos-crm", st.codes.clone())?;
    let api_a = Api::new(&a.grpc, "chaos-crm", st.codes.clone())?;
    let inputs: Vec<_> = (0..n)
        .map(|i| {
            let fail = i % 5 == 0;
            (
                format!("pause-{i}"),
                json!({"n": i, "ledger": {"sleep_ms": 300 + fastrand::u64(0..300), "fail_step": if fail { "l4" } else { "" }}}),
            )
        })
        .collect();
    // Half through each replica: a replica with room drives the runs
    // started through it (eager starts), so both hold runs.
    let (to_a, to_b) = inputs.split_at(n / 2);
    start_all(&api_a, "ledger_saga", to_a).await?;
    start_all(&api, "ledger_saga", to_b).await?;

    // Wait until A holds runs, then stop it in the middle of its attempts.
    let held = |owner: &'static str| {
        let pool = st.pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM runs WHERE lease_owner = $1 AND lease_expires_at > now() \
                 AND state IN ('PENDING', 'RUNNING', 'COMPENSATING')",
            )
            .bind(owner)
            .fetch_one(&pool)
            .await?;
            Ok::<i64, crate::ChaosError>(n)
        }
    };
    let held_by_a = db::poll(
        "replica A holding runs",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || async {
            let n = held("pause-a").await?;
            Ok((n > 0).then_some(n))
        },
    )
    .await?;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE lease_owner = 'pause-a' AND lease_expires_at > now()",
    )
    .fetch_all(&st.pool)
    .await?;
    let before = counter_sum(&a.metrics().await?, "sagaflow_leases_lost_total");
    a.signal("STOP")?;
    let stopped_at = Instant::now();
    let stopped = stale::in_flight(&st.pool, "pause-a").await?;
    report.fact("runs held by A when it was stopped", held_by_a);

    // B takes them over: each is leased by B, or has ended.
    let taken = db::poll(
        "replica B taking A's runs over",
        Duration::from_secs(120),
        Duration::from_millis(20),
        || async {
            let left: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM runs WHERE id = ANY($1) AND lease_owner = 'pause-a' \
             AND state IN ('PENDING', 'RUNNING', 'COMPENSATING')",
            )
            .bind(&ids)
            .fetch_one(&st.pool)
            .await?;
            Ok((left == 0).then(Instant::now))
        },
    )
    .await?;
    report
        .recovery_ms
        .push(taken.duration_since(stopped_at).as_millis() as u64);
    report.fact(
        "recovery",
        "from SIGSTOP of A until B holds (or has finished) every run A held",
    );
    // Keep A stopped for three lease lengths in all.
    let until = stopped_at + Duration::from_millis(3 * LEASE_MS);
    if let Some(rest) = until.checked_duration_since(Instant::now()) {
        tokio::time::sleep(rest).await; // the pause itself is the fault being injected
    }
    let resumed_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&st.pool)
        .await?;
    a.signal("CONT")?;
    // A resumes: its attempts in flight finish and try to checkpoint.
    let lost = db::poll(
        "A noticing its lost leases",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let m = a.metrics().await.unwrap_or_default();
            let lost = counter_sum(&m, "sagaflow_leases_lost_total");
            Ok((lost > before).then_some(lost))
        },
    )
    .await
    .unwrap_or(0.0);
    report.fact("A's sagaflow_leases_lost_total after SIGCONT", lost);
    let open = db::wait_terminal(&st.pool, TENANT, Duration::from_secs(300)).await?;
    report.fact("runs not terminal after the wait", open);
    let mut a = a;
    report.bar("both replicas still running", a.alive() && b.alive(), "");
    drop(a);
    drop(b);
    // What became of A's attempts, read from the histories and the call
    // log (not from A's own counters).
    let seen = stale::outcome(&st.pool, &stopped, resumed_at).await?;
    report.fact(
        "attempts in flight on A when it was stopped",
        seen.in_flight,
    );
    report.fact("of those, found interrupted by B", seen.taken_over);
    report.bar(
        "A's attempts were taken over by B (proof has something to prove)",
        seen.taken_over > 0,
        format!("{}/{}", seen.taken_over, seen.in_flight),
    );
    report.bar_list(
        "0 results of A's interrupted attempts in the histories (stale writes refused)",
        &seen.stale_results,
    );
    report.bar_list(
        "0 effects reached by A's attempts after it resumed (no zombie handlers)",
        &seen.late_calls,
    );
    let effects = check::ledger_effects(&st.pool).await?;
    st.finish(&mut report, &effects).await?;
    Ok(report)
}
