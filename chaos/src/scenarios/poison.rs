//! Scenario 6, poison steps: a step whose handler panics on every call and
//! one that hangs (ignoring cancellation). Each attempt counts, a crash
//! included; the runs end in the policy's terminal state (3 attempts, then
//! compensation); other runs are not slowed down much. The harness
//! measures the normal runs' time with and without poison runs beside
//! them and reports the ratio.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Stage;
use crate::client::{Api, start_all};
use crate::process::{Engine, EngineConfig, TENANT};
use crate::{Options, Report, Result, Tier, check, db, workflows};

const MAX_ATTEMPTS: i64 = 3;

fn normal(tag: &str, n: usize) -> Vec<(String, Value)> {
    (0..n)
        .map(|i| {
            (
                format!("{tag}-{i}"),
                json!({"n": i, "ledger": {"sleep_ms": 20}}),
            )
        })
        .collect()
}

/// Starts `runs` and returns how long until every one of them ended.
async fn timed(api: &Api, pool: &sqlx::PgPool, runs: &[(String, Value)]) -> Result<Duration> {
    let t = Instant::now();
    let ids = start_all(api, "poison_saga", runs).await?;
    let ids: Vec<uuid::Uuid> = ids
        .iter()
        .filter_map(|i| uuid::Uuid::parse_str(i).ok())
        .collect();
    db::poll(
        "normal runs ending",
        Duration::from_secs(600),
        Duration::from_millis(20),
        || async {
            let open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM runs WHERE id = ANY($1) AND finished_at IS NULL",
            )
            .bind(&ids)
            .fetch_one(pool)
            .await?;
            Ok((open == 0).then(|| t.elapsed()))
        },
    )
    .await
}

pub async fn run(opts: &Options) -> Result<Report> {
    let (n, bad) = (opts.counts.poison_normal_runs, opts.counts.poison_runs);
    let st = Stage::new(
        opts,
        "poison",
        &[(
            "poison_saga.toml",
            workflows::ledger("poison_saga", 4, "compensate", 500, MAX_ATTEMPTS as u32),
        )],
    )
    .await?;
    let mut report = Report::new("poison");
    let config =
        EngineConfig::new(&st.db.url, &st.workflows(), 5_000, 16).write(&st.dir, "engine")?;
    let mut engine = Engine::start(&opts.bin, &config, "poison", &st.log("poison")).await?;
    let api = Api::new(&engine.grpc, "chaos-crm", st.codes.clone())?;

    // Warm up, then the normal runs beside as many well-behaved runs of the
    // poison workflow, then beside the poison runs: the same amount of work
    // on the engine and the database, so only the poison shows.
    timed(&api, &st.pool, &normal("warm", n.min(20))).await?;
    let well: Vec<(String, Value)> = (0..bad)
        .map(|i| {
            (
                format!("well-{i}"),
                json!({"n": i, "ledger": {"sleep_ms": 5}}),
            )
        })
        .collect();
    start_all(&api, "poison_saga", &well).await?;
    let alone = timed(&api, &st.pool, &normal("alone", n)).await?;
    let poison: Vec<(String, Value)> = (0..bad)
        .map(|i| {
            let field = if i % 2 == 0 {
                "panic_step"
            } else {
                "hang_step"
            };
            (
                format!("poison-{i}"),
                json!({"n": i, "ledger": {"sleep_ms": 5, field: "l2"}}),
            )
        })
        .collect();
    start_all(&api, "poison_saga", &poison).await?;
    let beside = timed(&api, &st.pool, &normal("beside", n)).await?;
    let slowdown = 100.0 * (beside.as_secs_f64() / alone.as_secs_f64() - 1.0);
    report.fact(
        "normal runs",
        format!(
            "{n} beside {bad} well-behaved runs {:.2} s, {n} beside {bad} poison runs {:.2} s: {slowdown:+.1} %",
            alone.as_secs_f64(),
            beside.as_secs_f64()
        ),
    );
    if opts.tier == Tier::Full {
        // Timing is a bar only in the full tier (a measurement, not a CI test).
        report.bar(
            "poison runs slow the others by <= 10 %",
            slowdown <= 10.0,
            format!("{slowdown:+.1} %"),
        );
    }
    let open = db::wait_terminal(&st.pool, TENANT, Duration::from_secs(300)).await?;
    report.fact("runs not terminal after the wait", open);
    report.bar("the engine is still running", engine.alive(), "");
    engine.kill();

    // Each poison run: l2 attempted exactly MAX_ATTEMPTS times (history and
    // handler calls), then compensated.
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT r.idempotency_key, r.state, \
           (SELECT count(*) FROM run_events e WHERE e.run_id = r.id AND e.step = 'l2' AND e.kind = 'step_started'), \
           (SELECT count(*) FROM effect_calls c WHERE c.idempotency_key = r.id::text || ':l2') \
         FROM runs r WHERE r.tenant_id = $1 AND r.idempotency_key LIKE 'poison-%'",
    )
    .bind(TENANT)
    .fetch_all(&st.pool)
    .await?;
    let wrong: Vec<String> = rows
        .iter()
        .filter(|(_, state, started, calls)| {
            state != "COMPENSATED" || *started != MAX_ATTEMPTS || *calls != MAX_ATTEMPTS
        })
        .map(|(k, s, a, c)| format!("{k}: {s}, {a} attempts, {c} calls"))
        .collect();
    report.fact(
        "poison runs",
        format!(
            "{} ({} panicking, {} hanging)",
            rows.len(),
            bad.div_ceil(2),
            bad / 2
        ),
    );
    report.bar(
        &format!("every poison run: {MAX_ATTEMPTS} attempts counted, then COMPENSATED"),
        wrong.is_empty() && rows.len() == bad,
        format!("{} wrong {:?}", wrong.len(), &wrong[..wrong.len().min(3)]),
    );
    let normal_wrong: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM runs WHERE tenant_id = $1 AND idempotency_key NOT LIKE 'poison-%' \
         AND state <> 'COMPLETED'",
    )
    .bind(TENANT)
    .fetch_one(&st.pool)
    .await?;
    report.bar(
        "every normal run COMPLETED",
        normal_wrong == 0,
        format!("{normal_wrong} not"),
    );
    let effects = check::ledger_effects(&st.pool).await?;
    st.finish(&mut report, &effects).await?;
    Ok(report)
}
