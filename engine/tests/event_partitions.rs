//! PostgreSQL's daily partitions of `run_events` (migration 0019): an
//! upgrade from 0018 with events already stored ends like a fresh install
//! (same key, daily partitions from the oldest event's day to 7 days ahead,
//! every event in its day, none lost); the engine adds the days ahead at
//! migrate, and leaves a day whose events already sit in the default
//! partition to it rather than failing; what an interrupted drop leaves
//! behind is cleared, not while another replica drops; a day's kept events
//! are copied in chunks, exactly; a run's history is read whole.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;

use chrono::{DateTime, Days, NaiveDate, Utc};
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::store::postgres::partitions::DROP_LOCK;
use sagaflow_engine::store::postgres::{MIGRATOR, PgStore};
use sagaflow_engine::store::{Pace, RetentionStore, RunReads};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use uuid::Uuid;

fn partition(day: NaiveDate) -> String {
    format!("run_events_p{}", day.format("%Y%m%d"))
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Takes (or releases) the drop lock on `conn`, as a replica dropping a
/// day holds it.
async fn drop_lock(conn: &mut sqlx::PgConnection, take: bool) {
    let sql = match take {
        true => "SELECT pg_advisory_lock($1)",
        false => "SELECT pg_advisory_unlock($1)",
    };
    sqlx::query(sql)
        .bind(DROP_LOCK)
        .execute(conn)
        .await
        .unwrap();
}

/// The partitions of `run_events`, by name.
async fn partitions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'run_events'::regclass ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The partitioning and key of `run_events`, as PostgreSQL states them:
/// the same after an upgrade and on a fresh install.
async fn assert_shape(pool: &PgPool) {
    let (key, index): (String, String) = sqlx::query_as(
        "SELECT pg_get_partkeydef('run_events'::regclass), \
         (SELECT indexdef FROM pg_indexes WHERE tablename = 'run_events')",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(key, "RANGE (at)");
    assert_eq!(
        index,
        "CREATE UNIQUE INDEX run_events_pkey ON ONLY public.run_events USING btree (run_id, seq, at)"
    );
}

/// A run of tenant `t` created at `at` with `n` events, the first `split`
/// of them at `at` and the rest at `later`.
async fn run_with_events(
    pool: &PgPool,
    at: DateTime<Utc>,
    later: DateTime<Utc>,
    n: i64,
    split: i64,
) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO runs (id, tenant_id, workflow_name, workflow_version, definition_id, state, \
            input, input_hash, context, steps, last_seq, created_at, updated_at) \
         VALUES ($1, 't', 'w', 1, 'w@v1#x', 'RUNNING', '{}', 'h', '{}', '[]', $2, $3, $3)",
    )
    .bind(id)
    .bind(n)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO run_events (run_id, seq, at, kind, attempt, run_state, actor) \
         SELECT $1, s, CASE WHEN s <= $3 THEN $2 ELSE $4 END, 'step_started', 0, 'RUNNING', 'seed' \
         FROM generate_series(1, $5::int8) AS s",
    )
    .bind(id)
    .bind(at)
    .bind(split)
    .bind(later)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
    id
}

#[sqlx::test(migrations = false)]
async fn an_upgrade_with_events_ends_like_a_fresh_install(pool: PgPool) {
    let before = Migrator {
        migrations: Cow::Owned(
            MIGRATOR
                .iter()
                .filter(|m| m.version < 19)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    };
    before.run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO workflow_definitions (id, name, version, body) VALUES ('w@v1#x', 'w', 1, '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let now = Utc::now();
    let today = now.date_naive();
    let three_days_ago = now - chrono::Duration::days(3);
    let old = run_with_events(&pool, three_days_ago, now, 5, 3).await;
    let new = run_with_events(&pool, now, now, 4, 4).await;

    let store = PgStore::from_pool(pool.clone());
    store.migrate().await.unwrap();

    let days: Vec<String> = ["run_events_default".to_owned()]
        .into_iter()
        .chain((0..=10).map(|i| partition(today - Days::new(3) + Days::new(i))))
        .collect();
    assert_eq!(partitions(&pool).await, days);
    assert_eq!(scalar(&pool, "SELECT count(*) FROM run_events").await, 9);
    let old_day = partition(three_days_ago.date_naive());
    let in_old_day = format!("SELECT count(*) FROM {old_day}");
    assert_eq!(scalar(&pool, &in_old_day).await, 3);
    let in_today = format!("SELECT count(*) FROM {}", partition(today));
    assert_eq!(scalar(&pool, &in_today).await, 2 + 4);
    let in_default = "SELECT count(*) FROM run_events_default";
    assert_eq!(scalar(&pool, in_default).await, 0);
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(to_regclass('run_events_unpartitioned'))"
        )
        .await,
        0
    );

    // The history of each run, whole and in order.
    let t = TenantId::new("t");
    for (id, n) in [(old, 5), (new, 4)] {
        let events = store.events(&t, RunId(id), 0).await.unwrap().unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=n).collect::<Vec<u64>>());
    }
    let after_2 = store.events(&t, RunId(old), 2).await.unwrap().unwrap();
    assert_eq!(after_2.len(), 3);

    assert_shape(&pool).await;
}

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn the_days_ahead_are_added_and_a_day_already_in_default_is_left_there(pool: PgPool) {
    let store = PgStore::from_pool(pool.clone());
    let today = Utc::now().date_naive();
    // A fresh install: today and 7 days ahead.
    let ahead: Vec<String> = ["run_events_default".to_owned()]
        .into_iter()
        .chain((0..=7).map(|i| partition(today + Days::new(i))))
        .collect();
    assert_eq!(partitions(&pool).await, ahead);
    assert_shape(&pool).await;

    // Ten days on without upkeep: an event of day 9 went to the default
    // partition; adding days 8 to 12 creates all but day 9.
    sqlx::query(
        "INSERT INTO run_events (run_id, seq, at, kind, attempt, run_state, actor) \
         VALUES ($1, 1, $2, 'run_started', 0, 'PENDING', 'seed')",
    )
    .bind(Uuid::now_v7())
    .bind(
        (today + Days::new(9))
            .and_hms_opt(6, 0, 0)
            .unwrap()
            .and_utc(),
    )
    .execute(&pool)
    .await
    .unwrap();
    let created = store.add_event_days(today + Days::new(8), 4).await.unwrap();
    assert_eq!(created, 4);
    let names = partitions(&pool).await;
    for i in [8, 10, 11, 12] {
        assert!(names.contains(&partition(today + Days::new(i))), "{i}");
    }
    assert!(!names.contains(&partition(today + Days::new(9))));
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM run_events_default").await,
        1
    );
    // Again: nothing more to add.
    assert_eq!(
        store.add_event_days(today, 12).await.unwrap(),
        0,
        "{names:?}"
    );
    // No day older than a year to drop.
    let year_ago = Utc::now() - chrono::Duration::days(365);
    assert_eq!(
        store.drop_event_day(year_ago, Pace::FULL).await.unwrap(),
        None
    );

    // What an interrupted drop leaves (a detached past day, a kept day
    // never attached) goes at the next recheck; not while another replica
    // holds the drop lock (its drop is under way, the kept day its copy).
    let now_us = Utc::now().timestamp_micros();
    let left = [
        "run_events_p20200101".to_owned(),
        format!("run_events_k20200102_{now_us}"),
    ];
    for t in &left {
        let sql = format!("CREATE TABLE {t} (LIKE run_events)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    let exists = |t: &str| format!("SELECT count(to_regclass('{t}'))");
    let mut other = pool.acquire().await.unwrap();
    drop_lock(&mut other, true).await;
    assert_eq!(
        store.recheck_kept_days(Pace::FULL).await.unwrap(),
        Vec::new()
    );
    for t in &left {
        assert_eq!(scalar(&pool, &exists(t)).await, 1, "{t} kept while locked");
    }
    drop_lock(&mut other, false).await;
    drop(other);
    assert_eq!(
        store.recheck_kept_days(Pace::FULL).await.unwrap(),
        Vec::new()
    );
    for t in &left {
        assert_eq!(scalar(&pool, &exists(t)).await, 0, "{t} dropped");
    }
}

/// A day of 45,000 events of 4,500 runs, of which every seventh is still
/// stored: dropped (paced, in chunks of 64 pages: several here), the day holds
/// exactly the stored runs' events, in a kept day; while another replica
/// holds the drop lock, a drop leaves the day alone.
#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn a_day_is_copied_in_chunks_keeping_exactly_the_stored_runs_events(pool: PgPool) {
    let store = PgStore::from_pool(pool.clone());
    let day = Utc::now().date_naive() - Days::new(200);
    store.add_event_days(day, 0).await.unwrap();
    let noon = day.and_hms_opt(12, 0, 0).unwrap().and_utc();
    sqlx::query(
        "INSERT INTO workflow_definitions (id, name, version, body) VALUES ('w@v1#x', 'w', 1, '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO runs (id, tenant_id, workflow_name, workflow_version, definition_id, state, \
            input, input_hash, context, steps, last_seq, created_at, updated_at, finished_at) \
         SELECT gen_random_uuid(), 't', 'w', 1, 'w@v1#x', 'COMPLETED', jsonb_build_object('g', g), \
            'h', '{}', '[]', 10, $1, $1, $1 FROM generate_series(1, 4500) AS g",
    )
    .bind(noon)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO run_events (run_id, seq, at, kind, attempt, run_state, actor) \
         SELECT r.id, s, r.created_at + s * interval '1 ms', 'step_succeeded', 0, 'COMPLETED', 'seed' \
         FROM runs r, generate_series(1, 10) AS s",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM runs WHERE (input->>'g')::int % 7 <> 0")
        .execute(&pool)
        .await
        .unwrap();
    let stored = scalar(&pool, "SELECT count(*) FROM runs").await;
    assert_eq!(stored, 642);

    let before = Utc::now() - chrono::Duration::days(100);
    let mut other = pool.acquire().await.unwrap();
    drop_lock(&mut other, true).await;
    assert_eq!(
        store.drop_event_day(before, Pace::FULL).await.unwrap(),
        None
    );
    assert!(partitions(&pool).await.contains(&partition(day)));
    drop_lock(&mut other, false).await;
    drop(other);

    let dropped = store
        .drop_event_day(before, Pace::new(50))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dropped.partition, partition(day));
    assert_eq!((dropped.events, dropped.moved), (45_000, 6_420));
    let names = partitions(&pool).await;
    assert!(!names.contains(&partition(day)), "{names:?}");
    let kept = format!("run_events_k{}_", day.format("%Y%m%d"));
    assert_eq!(names.iter().filter(|n| n.starts_with(&kept)).count(), 1);
    // Every stored run has its ten events; no other run has any.
    let (from, to) = (
        noon - chrono::Duration::hours(12),
        noon + chrono::Duration::hours(12),
    );
    let per_run: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE r.id IS NULL) FROM run_events e \
         LEFT JOIN runs r ON r.id = e.run_id WHERE e.at >= $1 AND e.at < $2 GROUP BY e.run_id",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(per_run.len(), 642);
    assert!(per_run.iter().all(|&(n, orphan)| n == 10 && orphan == 0));
    // Nothing left over, and nothing to recheck: every kept event is needed.
    assert_eq!(
        store.drop_event_day(before, Pace::FULL).await.unwrap(),
        None
    );
    assert_eq!(
        store.recheck_kept_days(Pace::FULL).await.unwrap(),
        Vec::new()
    );
}
