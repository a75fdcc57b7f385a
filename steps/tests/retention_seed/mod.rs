//! Seeding for the retention tests (`retention.rs`, `retention_days.rs`):
//! runs with their events written straight into either backend, a writer
//! appending to a live run as fast as it can and a sampler of how long
//! transactions hold locks on `runs` and `run_events`.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sagaflow_engine::state::RunState;
use sagaflow_steps::DomainDb;
use sagaflow_steps::maintenance::{MaintenanceConfig, RetentionConfig, RunRetentionRule};
use uuid::Uuid;

use crate::support::{Options, TENANT};

pub const DEF: &str = "seeded@v1#retention";

/// A value bound to a seeding statement, as each backend stores it.
pub enum Val {
    Id(Uuid),
    Text(String),
    Int(i64),
    /// An engine timestamp (INTEGER microseconds on SQLite).
    Ts(Option<DateTime<Utc>>),
    /// A domain timestamp (bound as it is by the domain repositories).
    DomainTs(DateTime<Utc>),
}

pub async fn exec(db: &DomainDb, sql: &str, vals: Vec<Val>) {
    match db {
        DomainDb::Postgres(p) => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
            for v in vals {
                q = match v {
                    Val::Id(u) => q.bind(u),
                    Val::Text(t) => q.bind(t),
                    Val::Int(n) => q.bind(n),
                    Val::Ts(t) => q.bind(t),
                    Val::DomainTs(t) => q.bind(t),
                };
            }
            q.execute(p).await.unwrap();
        }
        DomainDb::Sqlite(p) => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
            for v in vals {
                q = match v {
                    Val::Id(u) => q.bind(u.to_string()),
                    Val::Text(t) => q.bind(t),
                    Val::Int(n) => q.bind(n),
                    Val::Ts(t) => q.bind(t.map(|t| t.timestamp_micros())),
                    Val::DomainTs(t) => q.bind(t),
                };
            }
            q.execute(p).await.unwrap();
        }
    }
}

pub async fn count(db: &DomainDb, sql: &str) -> i64 {
    match db {
        DomainDb::Postgres(p) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(p)
            .await
            .unwrap(),
        DomainDb::Sqlite(p) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(p)
            .await
            .unwrap(),
    }
}

pub fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

/// Seeds `n` runs of `tenant`'s `workflow` in `state`, finished (when the
/// state is terminal) `age` ago, each with `events` events; returns their
/// ids.
#[allow(clippy::too_many_arguments)]
pub async fn runs(
    db: &DomainDb,
    tenant: &str,
    workflow: &str,
    state: RunState,
    age: chrono::Duration,
    n: usize,
    events: i64,
    now: DateTime<Utc>,
) -> Vec<Uuid> {
    let at = now - age;
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = Uuid::now_v7();
        exec(
            db,
            "INSERT INTO runs (id, tenant_id, workflow_name, workflow_version, definition_id, \
             state, input, input_hash, context, steps, last_seq, created_at, updated_at, \
             finished_at) VALUES ($1, $2, $3, 1, $4, $5, '{}', 'h', '{}', '[]', $6, $7, $7, $8)",
            vec![
                Val::Id(id),
                Val::Text(tenant.into()),
                Val::Text(workflow.into()),
                Val::Text(DEF.into()),
                Val::Text(state.as_str().into()),
                Val::Int(events),
                Val::Ts(Some(at - chrono::Duration::minutes(1))),
                Val::Ts(state.is_terminal().then_some(at)),
            ],
        )
        .await;
        for seq in 1..=events {
            exec(
                db,
                "INSERT INTO run_events (run_id, seq, at, kind, attempt, run_state, actor) \
                 VALUES ($1, $2, $3, 'run_started', 0, 'PENDING', 'seed')",
                vec![Val::Id(id), Val::Int(seq), Val::Ts(Some(at))],
            )
            .await;
        }
        ids.push(id);
    }
    ids
}

pub async fn seed_definition(db: &DomainDb) {
    exec(
        db,
        "INSERT INTO workflow_definitions (id, name, version, body) VALUES ($1, 'seeded', 1, '{}')",
        vec![Val::Text(DEF.into())],
    )
    .await;
}

/// Updates a live run and appends events to it as fast as it can until
/// `stop`; returns the longest single write and how many were made.
pub async fn live_writes(pool: sqlx::PgPool, run: Uuid, stop: Arc<AtomicBool>) -> (Duration, u64) {
    let (mut longest, mut n) = (Duration::ZERO, 0u64);
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let mut tx = pool.begin().await.unwrap();
        let seq: i64 = sqlx::query_scalar(
            "UPDATE runs SET last_seq = last_seq + 1, updated_at = now() WHERE id = $1 \
             RETURNING last_seq",
        )
        .bind(run)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO run_events (run_id, seq, at, kind, attempt, run_state, actor) \
             VALUES ($1, $2, now(), 'step_started', 0, 'RUNNING', 'live')",
        )
        .bind(run)
        .bind(seq)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        longest = longest.max(started.elapsed());
        n += 1;
    }
    (longest, n)
}

/// The longest any other backend's transaction has held a lock on `runs`
/// or `run_events`, sampled until `stop`.
pub async fn sample_locks(pool: sqlx::PgPool, stop: Arc<AtomicBool>) -> f64 {
    let mut max = 0.0f64;
    while !stop.load(Ordering::SeqCst) {
        let age: f64 = sqlx::query_scalar(
            "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - a.xact_start)), 0)::float8 \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.relation IN ('runs'::regclass, 'run_events'::regclass) \
             AND a.pid <> pg_backend_pid()",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        max = max.max(age);
        tokio::time::sleep(Duration::from_millis(5)).await; // lock-sampling poll interval
    }
    max
}

/// The retention ages of both tests: 90 days, capacity_check 7, the
/// tenant's keep_me for ever; batches of 4.
pub fn options() -> Options {
    Options {
        step_timeout_ms: 120_000,
        maintenance: MaintenanceConfig {
            batch_size: 4,
            retention: RetentionConfig {
                runs: vec![
                    RunRetentionRule {
                        tenant: None,
                        workflow: Some("capacity_check".into()),
                        days: 7,
                    },
                    RunRetentionRule {
                        tenant: Some(TENANT.into()),
                        workflow: Some("keep_me".into()),
                        days: 0,
                    },
                ],
                ..RetentionConfig::default()
            },
            ..MaintenanceConfig::default()
        },
        ..Options::default()
    }
}
