//! The `run_retention` maintenance workflow, run by the engine from its file
//! in `workflows/`: exact counts of what it deletes and keeps on both
//! backends (per-workflow and per-tenant ages, FAILED and
//! COMPENSATION_FAILED runs kept however old, fires, snapshots, audit rows
//! and progress by their own ages), and on PostgreSQL a lock-time sampler:
//! while it deletes 20,000 runs and 200,000 events, writes to a live run
//! never wait as long as a second.
#![allow(clippy::unwrap_used)]

mod retention_seed;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use retention_seed::{
    DEF, Val, count, days, exec, live_writes, options, runs, sample_locks, seed_definition,
};
use sagaflow_engine::state::RunState;
use sagaflow_steps::DomainDb;
use serde_json::{Value, json};
use support::{OTHER_TENANT, Options, TENANT, World};
use uuid::Uuid;

/// A schedule of `tenant` with `old` fires 100 days ago and `new` fires
/// within the last day.
async fn schedule_with_fires(db: &DomainDb, tenant: &str, old: i64, new: i64, now: DateTime<Utc>) {
    let id = Uuid::now_v7();
    exec(
        db,
        "INSERT INTO schedules (id, tenant_id, name, cron, workflow_name, input, overlap_policy, \
         catchup_policy, created_at, updated_at) VALUES ($1, $2, 'seeded', '* * * * *', \
         'seeded', '{}', 'SKIP', 'NONE', $3, $3)",
        vec![Val::Id(id), Val::Text(tenant.into()), Val::Ts(Some(now))],
    )
    .await;
    for i in 0..old + new {
        let at = if i < old {
            now - days(100) - chrono::Duration::minutes(i)
        } else {
            now - chrono::Duration::minutes(i)
        };
        exec(
            db,
            "INSERT INTO schedule_fires (schedule_id, scheduled_time, outcome, at) \
             VALUES ($1, $2, 'skipped', $2)",
            vec![Val::Id(id), Val::Ts(Some(at))],
        )
        .await;
    }
}

/// `n` rows of each maintenance table of `tenant`, `age` old.
async fn maintenance_rows(
    db: &DomainDb,
    tenant: &str,
    age: chrono::Duration,
    n: i64,
    now: DateTime<Utc>,
) {
    let at = now - age;
    for i in 0..n {
        let key = format!("{tenant}-{}-{i}", age.num_days());
        exec(
            db,
            "INSERT INTO lifecycle_snapshots (tenant_id, idempotency_key, taken_at, records, pools) \
             VALUES ($1, $2, $3, '[]', '[]')",
            vec![Val::Text(tenant.into()), Val::Text(key.clone()), Val::DomainTs(at)],
        )
        .await;
        exec(
            db,
            "INSERT INTO address_audit (tenant_id, record_id, subscriber_id, address, action, \
             idempotency_key, at) VALUES ($1, $2, 's', '10.0.0.1', 'RESERVATION_EXPIRED', $3, $4)",
            vec![
                Val::Text(tenant.into()),
                Val::Int(i + 1000 * age.num_days() + if tenant == TENANT { 0 } else { 1 << 30 }),
                Val::Text(key.clone()),
                Val::DomainTs(at),
            ],
        )
        .await;
        exec(
            db,
            "INSERT INTO maintenance_progress (idempotency_key, job, output, done, updated_at, \
             tenant_id) VALUES ($1, 'seeded', '{}', true, $2, $3)",
            vec![Val::Text(key), Val::DomainTs(at), Val::Text(tenant.into())],
        )
        .await;
    }
}

async fn retention_by_its_ages(w: World) {
    let db = w.db.clone();
    let now = Utc::now();
    seed_definition(&db).await;
    use RunState::*;
    // (tenant, workflow, state, age in days, runs, events each). Deleted
    // (t1): 30 COMPLETED 100 days old with 3 events each, 5 COMPENSATED 95
    // days with 2, 3 TERMINATED and 2 CANCELLED 120 days with 1, 12
    // capacity_check runs 10 days old (its age is 7) with 1.
    let deleted: [(&str, &str, RunState, i64, usize, i64); 5] = [
        (TENANT, "provision_subscriber", Completed, 100, 30, 3),
        (TENANT, "provision_subscriber", Compensated, 95, 5, 2),
        (TENANT, "demo_saga", Terminated, 120, 3, 1),
        (TENANT, "demo_saga", Cancelled, 120, 2, 1),
        (TENANT, "capacity_check", Completed, 10, 12, 1),
    ];
    // Kept: recent, waiting for an operator however old, still running,
    // a workflow kept for ever, another tenant's.
    let kept: [(&str, &str, RunState, i64, usize, i64); 7] = [
        (TENANT, "provision_subscriber", Completed, 80, 10, 3),
        (TENANT, "provision_subscriber", Failed, 300, 6, 4),
        (
            TENANT,
            "provision_subscriber",
            CompensationFailed,
            300,
            4,
            5,
        ),
        (TENANT, "provision_subscriber", Running, 200, 2, 2),
        (TENANT, "capacity_check", Completed, 3, 5, 1),
        (TENANT, "keep_me", Completed, 400, 7, 2),
        (OTHER_TENANT, "provision_subscriber", Completed, 100, 8, 3),
    ];
    let mut gone = Vec::new();
    for (i, (tenant, wf, state, age, n, events)) in deleted.into_iter().chain(kept).enumerate() {
        let ids = runs(&db, tenant, wf, state, days(age), n, events, now).await;
        if i < deleted.len() {
            gone.extend(ids);
        }
    }
    // A deleted run's signals, webhook deliveries and search attributes go
    // with it; a kept run's search attribute stays.
    for run in gone.iter().take(5) {
        exec(
            &db,
            "INSERT INTO run_search (run_id, tenant_id, key, value) \
             VALUES ($1, $2, 'subscriber_id', 's-1')",
            vec![Val::Id(*run), Val::Text(TENANT.into())],
        )
        .await;
    }
    exec(
        &db,
        "INSERT INTO run_search (run_id, tenant_id, key, value) \
         SELECT id, tenant_id, 'subscriber_id', 's-2' FROM runs WHERE tenant_id = $1",
        vec![Val::Text(OTHER_TENANT.into())],
    )
    .await;
    for (i, run) in gone.iter().take(3).enumerate() {
        exec(
            &db,
            "INSERT INTO run_signals (run_id, tenant_id, name, payload, actor, received_at) \
             VALUES ($1, $2, 'go', '{}', 'seed', $3)",
            vec![
                Val::Id(*run),
                Val::Text(TENANT.into()),
                Val::Ts(Some(now - days(100))),
            ],
        )
        .await;
        exec(
            &db,
            "INSERT INTO webhook_deliveries (id, tenant_id, run_id, url, event, occurred_at, \
             state) VALUES ($1, $2, $3, 'http://h', 'run.completed', $4, 'delivered')",
            vec![
                Val::Id(Uuid::now_v7()),
                Val::Text(TENANT.into()),
                Val::Id(gone[i]),
                Val::Ts(Some(now - days(100))),
            ],
        )
        .await;
    }
    schedule_with_fires(&db, TENANT, 25, 5, now).await;
    schedule_with_fires(&db, OTHER_TENANT, 4, 0, now).await;
    maintenance_rows(&db, TENANT, days(400), 9, now).await; // all gone
    maintenance_rows(&db, TENANT, days(100), 6, now).await; // audit kept
    maintenance_rows(&db, TENANT, days(1), 3, now).await; // kept
    maintenance_rows(&db, OTHER_TENANT, days(400), 2, now).await; // kept

    let id = w.start("run_retention", json!({})).await;
    let run = w.finish(id, Duration::from_secs(120)).await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    let mut out: Value = run.steps[0].output.clone().unwrap();
    let longest = out.as_object_mut().unwrap().remove("longest_batch_ms");
    assert!(longest.unwrap().as_u64().unwrap() < 1000);
    // The pauses between batches (busy_percent, 25 by default) take time.
    assert!(out.as_object_mut().unwrap().remove("paused_ms").is_some());
    // Batches of 4: runs 12 (capacity_check) + 40 (others), fires 25,
    // snapshots 15, audit 9, progress 15 — each kind ends with a short batch.
    assert_eq!(
        out,
        json!({
            "runs_deleted": 52, "events_deleted": 30 * 3 + 5 * 2 + 3 + 2 + 12,
            "signals_deleted": 3, "deliveries_deleted": 3, "fires_deleted": 25,
            "snapshots_deleted": 15, "address_audit_deleted": 9, "progress_deleted": 15,
            "batches": 4 + 11 + 7 + 4 + 3 + 4,
            // No day of events is old enough to drop (PostgreSQL's are
            // today's and the next ones; SQLite has none).
            "event_days_dropped": 0, "events_dropped_with_days": 0, "events_kept": 0,
            "longest_day_lock_ms": 0,
        })
    );

    // What is left, counted where it lands.
    let t1_runs = format!("SELECT count(*) FROM runs WHERE tenant_id = '{TENANT}'");
    // 10 + 6 + 4 + 2 + 5 + 7 seeded, and the retention run itself.
    assert_eq!(count(&db, &t1_runs).await, 35);
    let states = format!(
        "SELECT count(*) FROM runs WHERE tenant_id = '{TENANT}' \
         AND state IN ('FAILED', 'COMPENSATION_FAILED')"
    );
    assert_eq!(
        count(&db, &states).await,
        10,
        "unresolved runs are never purged"
    );
    let t2_runs = format!("SELECT count(*) FROM runs WHERE tenant_id = '{OTHER_TENANT}'");
    assert_eq!(count(&db, &t2_runs).await, 8);
    let seeded_events = "SELECT count(*) FROM run_events WHERE actor = 'seed'";
    assert_eq!(
        count(&db, seeded_events).await,
        10 * 3 + 6 * 4 + 4 * 5 + 2 * 2 + 5 + 7 * 2 + 8 * 3
    );
    let orphans = "SELECT count(*) FROM run_events e WHERE NOT EXISTS \
                   (SELECT 1 FROM runs r WHERE r.id = e.run_id)";
    assert_eq!(count(&db, orphans).await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM run_signals").await, 0);
    let search = "SELECT count(*) FROM run_search";
    assert_eq!(count(&db, search).await, 8, "the other tenant's runs' only");
    assert_eq!(
        count(&db, "SELECT count(*) FROM webhook_deliveries").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM schedule_fires").await,
        5 + 4
    );
    let by_tenant =
        |t: &str, table: &str| format!("SELECT count(*) FROM {table} WHERE tenant_id = '{t}'");
    assert_eq!(
        count(&db, &by_tenant(TENANT, "lifecycle_snapshots")).await,
        3
    );
    assert_eq!(count(&db, &by_tenant(TENANT, "address_audit")).await, 6 + 3);
    // 3 recent seeded rows and the retention step's own progress.
    assert_eq!(
        count(&db, &by_tenant(TENANT, "maintenance_progress")).await,
        4
    );
    for table in [
        "lifecycle_snapshots",
        "address_audit",
        "maintenance_progress",
    ] {
        assert_eq!(
            count(&db, &by_tenant(OTHER_TENANT, table)).await,
            2,
            "{table}"
        );
    }

    // A second run finds nothing more to delete.
    let again = w.run("run_retention", json!({})).await;
    let out = again.steps[0].output.clone().unwrap();
    assert_eq!(out["runs_deleted"], json!(0));
    assert_eq!(out["fires_deleted"], json!(0));
    w.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn retention_by_its_ages_on_postgres(pool: sqlx::PgPool) {
    retention_by_its_ages(World::postgres(pool, options()).await).await;
}

#[tokio::test]
async fn retention_by_its_ages_on_sqlite() {
    retention_by_its_ages(World::sqlite(options()).await).await;
}

// ---- PostgreSQL: 20,000 runs and 200,000 events, sampled ----

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn retention_never_blocks_a_live_run_for_a_second(pool: sqlx::PgPool) {
    let w = World::postgres(
        pool.clone(),
        Options {
            step_timeout_ms: 600_000,
            ..Options::default()
        },
    )
    .await;
    let now = Utc::now();
    seed_definition(&w.db).await;
    sqlx::query(
        "INSERT INTO runs (id, tenant_id, workflow_name, workflow_version, definition_id, state, \
            input, input_hash, context, steps, last_seq, created_at, updated_at, finished_at) \
         SELECT gen_random_uuid(), $1, 'provision_subscriber', 1, $2, \
            CASE WHEN g % 10 = 0 THEN 'FAILED' ELSE 'COMPLETED' END, '{}', 'h', '{}', '[]', 10, \
            $3 - interval '100 days' - g * interval '1 second', \
            $3 - interval '100 days' - g * interval '1 second', \
            CASE WHEN g % 10 = 0 THEN NULL ELSE $3 - interval '100 days' - g * interval '1 second' END \
         FROM generate_series(1, 22222) AS g",
    )
    .bind(TENANT)
    .bind(DEF)
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO run_events (run_id, seq, at, kind, attempt, run_state, actor) \
         SELECT r.id, s, r.created_at, 'step_succeeded', 0, r.state, 'seed' \
         FROM runs r, generate_series(1, 10) AS s WHERE r.definition_id = $1",
    )
    .bind(DEF)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE runs, run_events")
        .execute(&pool)
        .await
        .unwrap();
    let live = runs(
        &w.db,
        TENANT,
        "provision_subscriber",
        RunState::Running,
        days(0),
        1,
        1,
        now,
    )
    .await[0];

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(live_writes(pool.clone(), live, stop.clone()));
    let sampler = tokio::spawn(sample_locks(pool.clone(), stop.clone()));
    let started = Instant::now();
    let id = w.start("run_retention", json!({})).await;
    let run = w.finish(id, Duration::from_secs(600)).await;
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (longest_write, writes) = writer.await.unwrap();
    let longest_lock = sampler.await.unwrap();

    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    let out = run.steps[0].output.clone().unwrap();
    assert_eq!(out["runs_deleted"], json!(20_000));
    assert_eq!(out["events_deleted"], json!(200_000));
    assert_eq!(out["batches"].as_u64().unwrap(), 20 + 1 + 4);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE definition_id = $1")
        .bind(DEF)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 2_222 + 1, "the FAILED runs and the live one");
    println!(
        "retention: 20,000 runs / 200,000 events in {took:?} ({:.0} runs/s), longest batch \
         {} ms; {writes} live writes, longest {longest_write:?}; longest lock {longest_lock:.3} s",
        20_000.0 / took.as_secs_f64(),
        out["longest_batch_ms"]
    );
    assert!(writes > 0);
    assert!(
        longest_write < Duration::from_secs(1),
        "a write to a live run waited {longest_write:?}"
    );
    assert!(
        longest_lock < 1.0,
        "a transaction held locks on runs/run_events for {longest_lock:.3} s"
    );
    w.shutdown().await;
}
