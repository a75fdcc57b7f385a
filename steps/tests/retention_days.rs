//! PostgreSQL's daily partitions of `run_events` (migration 0019) and the
//! `run_retention` workflow that drops them: the days ahead exist after
//! migrate; a day past the age is dropped whole, with exact counts, after
//! the events of the runs still stored (unresolved, kept longer by their
//! workflow, still running, another tenant's not yet purged) were kept in
//! a kept day; their histories stay complete and gapless; a newer day is
//! left alone; the kept day shrinks as its runs go, and goes with them; a live run's writes never wait a second meanwhile (the
//! lock-time sampler of `retention.rs`). SQLite has no partitions: its
//! row deletes are tested in `retention.rs`.
#![allow(clippy::unwrap_used)]

mod retention_seed;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use retention_seed::{Val, count, exec, live_writes, options, runs, sample_locks, seed_definition};
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::state::RunState;
use sagaflow_steps::DomainDb;
use serde_json::json;
use support::{OTHER_TENANT, TENANT, World};
use uuid::Uuid;

fn partition(day: NaiveDate) -> String {
    format!("run_events_p{}", day.format("%Y%m%d"))
}

async fn add_day(db: &DomainDb, day: NaiveDate) {
    let next = day.succ_opt().unwrap();
    exec(
        db,
        &format!(
            "CREATE TABLE {} PARTITION OF run_events FOR VALUES FROM ('{day} 00:00:00+00') \
             TO ('{next} 00:00:00+00')",
            partition(day)
        ),
        vec![],
    )
    .await;
}

/// Counts the rows of `day`'s kept day (there must be one).
fn kept_day(day: NaiveDate) -> String {
    format!(
        "SELECT count(*) FROM run_events e JOIN pg_class c ON c.oid = e.tableoid \
         WHERE c.relname LIKE 'run_events_k{}%' \
         HAVING count(DISTINCT c.relname) = 1",
        day.format("%Y%m%d")
    )
}

async fn exists(db: &DomainDb, table: &str) -> bool {
    count(db, &format!("SELECT count(to_regclass('{table}'))")).await == 1
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn retention_drops_a_day_of_events_and_keeps_what_runs_still_need(pool: sqlx::PgPool) {
    let w = World::postgres(pool.clone(), options()).await;
    let db = w.db.clone();
    let now = Utc::now();
    let today = now.date_naive();

    // After migrate: today and the 7 days ahead, and the default partition.
    for i in 0..=7 {
        let day = today + chrono::Days::new(i);
        assert!(exists(&db, &partition(day)).await, "{day}");
    }
    assert!(exists(&db, "run_events_default").await);

    // A day 100 days ago (past the 90-day age and its day of margin) and
    // one 50 days ago.
    let old = today - chrono::Days::new(100);
    let recent = today - chrono::Days::new(50);
    add_day(&db, old).await;
    add_day(&db, recent).await;
    seed_definition(&db).await;
    let noon = old.and_hms_opt(12, 0, 0).unwrap().and_utc();
    let age = now - noon;
    use RunState::*;
    // (tenant, workflow, state, runs, events each), all finished at noon of
    // the old day with their events in it.
    let seeded: [(&str, &str, RunState, usize, i64); 5] = [
        (TENANT, "provision_subscriber", Completed, 30, 3), // purged
        (TENANT, "provision_subscriber", Failed, 6, 4),     // unresolved
        (TENANT, "keep_me", Completed, 7, 2),               // kept for ever
        (TENANT, "provision_subscriber", Running, 2, 2),    // still active
        (OTHER_TENANT, "provision_subscriber", Completed, 8, 3), // not this tenant's
    ];
    let (mut kept, mut failed) = (Vec::new(), Vec::new());
    for (i, (tenant, wf, state, n, events)) in seeded.into_iter().enumerate() {
        let ids = runs(&db, tenant, wf, state, age, n, events, now).await;
        if i == 1 {
            failed.clone_from(&ids);
        }
        if i > 0 {
            kept.extend(ids.into_iter().map(|id| (tenant, id)));
        }
    }
    // A FAILED run with 3 events on the old day and 2 today.
    let spanning = runs(&db, TENANT, "provision_subscriber", Failed, age, 1, 3, now).await[0];
    for seq in 4..=5 {
        exec(
            &db,
            "INSERT INTO run_events (run_id, seq, at, kind, attempt, run_state, actor) \
             VALUES ($1, $2, $3, 'run_started', 0, 'FAILED', 'seed')",
            vec![Val::Id(spanning), Val::Int(seq), Val::Ts(Some(now))],
        )
        .await;
    }
    exec(
        &db,
        "UPDATE runs SET last_seq = 5 WHERE id = $1",
        vec![Val::Id(spanning)],
    )
    .await;
    kept.push((TENANT, spanning));
    // A run of the recent day, kept (50 days < 90) and its day with it.
    let young = now - recent.and_hms_opt(12, 0, 0).unwrap().and_utc();
    let ids = runs(
        &db,
        TENANT,
        "provision_subscriber",
        Completed,
        young,
        1,
        2,
        now,
    )
    .await;
    kept.push((TENANT, ids[0]));
    let in_old_day = format!("SELECT count(*) FROM {}", partition(old));
    assert_eq!(count(&db, &in_old_day).await, 90 + 24 + 14 + 4 + 24 + 3);

    let live = runs(
        &db,
        TENANT,
        "provision_subscriber",
        Running,
        chrono::Duration::zero(),
        1,
        1,
        now,
    )
    .await[0];
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(live_writes(pool.clone(), live, stop.clone()));
    let sampler = tokio::spawn(sample_locks(pool.clone(), stop.clone()));
    let run = w.run("run_retention", json!({})).await;
    stop.store(true, Ordering::SeqCst);
    let (longest_write, writes) = writer.await.unwrap();
    let longest_lock = sampler.await.unwrap();
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);

    let mut out = run.steps[0].output.clone().unwrap();
    let o = out.as_object_mut().unwrap();
    let lock_ms = o.remove("longest_day_lock_ms").unwrap().as_u64().unwrap();
    o.remove("longest_batch_ms");
    o.remove("batches");
    o.remove("paused_ms");
    assert_eq!(
        out,
        json!({
            "runs_deleted": 30, "events_deleted": 0, "signals_deleted": 0,
            "deliveries_deleted": 0, "fires_deleted": 0, "snapshots_deleted": 0,
            "address_audit_deleted": 0, "progress_deleted": 0,
            "event_days_dropped": 1,
            "events_dropped_with_days": 90 + 24 + 14 + 4 + 24 + 3,
            "events_kept": 24 + 14 + 4 + 24 + 3,
        })
    );
    println!(
        "day dropped with its exclusive lock held {lock_ms} ms; {writes} live writes, \
         longest {longest_write:?}; longest lock {longest_lock:.3} s"
    );
    assert!(lock_ms < 1000);
    assert!(writes > 0);
    assert!(longest_write < Duration::from_secs(1), "{longest_write:?}");
    assert!(longest_lock < 1.0, "{longest_lock:.3} s");

    // Where it lands: the old day is gone, the recent one and today stay.
    // The old day is gone; its kept day holds the events still needed.
    assert!(!exists(&db, &partition(old)).await);
    assert!(exists(&db, &partition(recent)).await);
    assert_eq!(count(&db, &kept_day(old)).await, 24 + 14 + 4 + 24 + 3);
    let seeded_events = "SELECT count(*) FROM run_events WHERE actor = 'seed'";
    assert_eq!(
        count(&db, seeded_events).await,
        (24 + 14 + 4 + 24 + 3) + 2 + 2 + 1
    );
    let in_default = "SELECT count(*) FROM run_events_default";
    assert_eq!(count(&db, in_default).await, 0);
    let orphans = "SELECT count(*) FROM run_events e WHERE NOT EXISTS \
                   (SELECT 1 FROM runs r WHERE r.id = e.run_id)";
    assert_eq!(count(&db, orphans).await, 0);

    // Every kept run's history, read through the engine, is whole: seq
    // 1..=last_seq without a gap.
    for (tenant, id) in &kept {
        let t = TenantId::new(*tenant);
        let history = w.engine.events(&t, RunId(*id), 0).await.unwrap();
        let run = w.engine.get(&t, RunId(*id)).await.unwrap();
        let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=run.last_seq).collect::<Vec<_>>(), "{id}");
    }
    let t = TenantId::new(TENANT);
    assert_eq!(
        w.engine.events(&t, RunId(spanning), 0).await.unwrap().len(),
        5
    );

    // The next run finds no day to drop, and the kept day unchanged.
    let again = w.run("run_retention", json!({})).await;
    let out = again.steps[0].output.clone().unwrap();
    assert_eq!(out["event_days_dropped"], json!(0));
    assert_eq!(out["runs_deleted"], json!(0));

    // Once the FAILED runs are gone, their events leave the kept day; once
    // no run of that day is stored, the kept day goes.
    let gone = |ids: Vec<Uuid>| {
        let list = ids.iter().map(|u| format!("'{u}'")).collect::<Vec<_>>();
        format!("DELETE FROM runs WHERE id IN ({})", list.join(", "))
    };
    exec(&db, &gone(failed), vec![]).await;
    let out = w.run("run_retention", json!({})).await.steps[0]
        .output
        .clone()
        .unwrap();
    assert_eq!(out["event_days_dropped"], json!(1));
    assert_eq!(out["events_dropped_with_days"], json!(24 + 14 + 4 + 24 + 3));
    assert_eq!(out["events_kept"], json!(14 + 4 + 24 + 3));
    assert_eq!(count(&db, &kept_day(old)).await, 14 + 4 + 24 + 3);
    let rest: Vec<Uuid> = kept.iter().map(|(_, id)| *id).collect();
    exec(&db, &gone(rest), vec![]).await;
    let out = w.run("run_retention", json!({})).await.steps[0]
        .output
        .clone()
        .unwrap();
    assert_eq!(out["event_days_dropped"], json!(1));
    assert_eq!(out["events_kept"], json!(0));
    let kept_days = "SELECT count(*) FROM pg_class WHERE relname LIKE 'run\\_events\\_k%'";
    assert_eq!(count(&db, kept_days).await, 0);
    w.shutdown().await;
}
