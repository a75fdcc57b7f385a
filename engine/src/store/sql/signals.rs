//! Signals on both backends: the [`SignalStore`] of every [`SqlBackend`]
//! (storing signals with their events and the wake-up of their runs, one
//! statement per batch on PostgreSQL and one transaction per batch on
//! SQLite; the signals not yet taken of a batch of runs; making a released
//! run due), and marking the signals checkpoints' steps took, inside their
//! transaction.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Backed, Conn, Dialect, ReadRow, SqlBackend, run_from_row, with_db};
use crate::ids::RunId;
use crate::run::state::RunState;
use crate::store::signals::received_message;
use crate::store::sql_terms::terminal_states;
use crate::store::{
    EventKind, Result, RunRecord, Signal, SignalAck, SignalStore, SignalTaken, SignalWrite,
};

use super::RUN_COLUMNS;

#[async_trait]
impl<T: SqlBackend> SignalStore for T {
    async fn signal_many(&self, ws: &[SignalWrite]) -> Result<Vec<SignalAck>> {
        let mut acks: Vec<Option<SignalAck>> = vec![None; ws.len()];
        for round in rounds(ws) {
            let writes: Vec<&SignalWrite> = round.iter().map(|&i| &ws[i]).collect();
            let mut stored = match self.writes() {
                Backed::Postgres(pool) => signal_pg(pool, &writes).await?,
                Backed::Sqlite(pool) => signal_sqlite(pool, &writes).await?,
            };
            for i in round {
                acks[i] = Some(match stored.remove(&ws[i].run_id) {
                    Some(run) => SignalAck::Stored { run: Box::new(run) },
                    None => signal_not_stored(self, &ws[i]).await?,
                });
            }
        }
        Ok(acks.into_iter().flatten().collect())
    }

    async fn pending_signals(&self, run: RunId) -> Result<Vec<Signal>> {
        Ok(self
            .pending_signals_of(&[run])
            .await?
            .remove(&run)
            .unwrap_or_default())
    }

    async fn pending_signals_of(&self, runs: &[RunId]) -> Result<HashMap<RunId, Vec<Signal>>> {
        let mut found: HashMap<RunId, Vec<Signal>> = HashMap::new();
        if runs.is_empty() {
            return Ok(found);
        }
        with_db!(self.reads(), pool, D => {
            let mut q = sqlx::QueryBuilder::<<D as Dialect>::Db>::new(
                "SELECT run_id, id, name, payload, received_at FROM run_signals \
                 WHERE consumed_at IS NULL AND run_id IN (",
            );
            let mut ids = q.separated(", ");
            for r in runs {
                ids.push_bind(D::id(r.0));
            }
            q.push(") ORDER BY run_id, id");
            for r in q.build().fetch_all(pool).await? {
                let signal = signal_from_row(&r)?;
                found.entry(RunId(r.uuid("run_id")?)).or_default().push(signal);
            }
        });
        Ok(found)
    }

    async fn wake_run(&self, run: RunId, now: DateTime<Utc>) -> Result<bool> {
        let sql = format!(
            "UPDATE runs SET next_run_at = $2 WHERE id = $1 AND state = '{}' \
                AND lease_token IS NULL AND (next_run_at IS NULL OR next_run_at > $2)",
            RunState::Running.as_str()
        );
        let n = with_db!(self.writes(), pool, D => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(D::id(run.0))
                .bind(D::ts(now))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }
}

/// What the signal's bump sets on its run: one more event, and a RUNNING
/// run no executor holds made due at once (its waiting step looks at the
/// signal; a run waiting for something else looks and goes back to waiting).
/// `now`: the SQL expression of the signal's time.
fn bump_set(now: &str) -> String {
    format!(
        "last_seq = runs.last_seq + 1, updated_at = {now}, \
         next_run_at = CASE WHEN runs.state = '{}' AND runs.lease_token IS NULL \
             AND (runs.next_run_at IS NULL OR runs.next_run_at > {now}) THEN {now} \
             ELSE runs.next_run_at END",
        RunState::Running.as_str()
    )
}

/// Splits a batch of signals into rounds in which each run appears once
/// (one statement bumps a run once), keeping each run's signals in order.
fn rounds(ws: &[SignalWrite]) -> Vec<Vec<usize>> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut last_round: HashMap<RunId, usize> = HashMap::new();
    for (i, w) in ws.iter().enumerate() {
        let r = last_round.get(&w.run_id).map_or(0, |r| r + 1);
        if rounds.len() <= r {
            rounds.push(Vec::new());
        }
        rounds[r].push(i);
        last_round.insert(w.run_id, r);
    }
    rounds
}

const INSERT_SIGNAL: &str = "INSERT INTO run_signals \
    (run_id, tenant_id, name, idempotency_key, payload, actor, received_at)";

const INSERT_EVENT: &str = "INSERT INTO run_events \
    (run_id, seq, at, kind, step, attempt, run_state, message, actor)";

/// PostgreSQL: one statement, one round trip, for signals to distinct
/// runs. The live runs are locked first, in id order; the signals are
/// inserted for them (nothing on a repeated key); only then are the runs
/// bumped and their events appended, so a repeat or a finished run leaves
/// no trace. The bumped runs.
async fn signal_pg(pool: &sqlx::PgPool, ws: &[&SignalWrite]) -> Result<HashMap<RunId, RunRecord>> {
    let columns = RUN_COLUMNS
        .split(", ")
        .map(|c| format!("runs.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "WITH w AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], \
                $5::text[], $6::jsonb[], $7::text[], $8::text[]) \
                AS w(run_id, tenant_id, at, name, key, payload, actor, message)), \
         l AS (SELECT runs.id FROM runs JOIN w ON runs.id = w.run_id AND runs.tenant_id = w.tenant_id \
                WHERE runs.state NOT IN {terminal} ORDER BY runs.id FOR UPDATE OF runs), \
         s AS ({INSERT_SIGNAL} SELECT w.run_id, w.tenant_id, w.name, w.key, w.payload, w.actor, w.at \
                FROM w JOIN l ON l.id = w.run_id \
                ON CONFLICT (run_id, name, idempotency_key) WHERE idempotency_key <> '' \
                DO NOTHING RETURNING run_id), \
         r AS (UPDATE runs SET {bump} FROM s, w WHERE runs.id = s.run_id AND w.run_id = s.run_id \
                RETURNING {columns}), \
         e AS ({INSERT_EVENT} SELECT r.id, r.last_seq, w.at, $9, NULL, 0, r.state, w.message, w.actor \
                FROM r JOIN w ON w.run_id = r.id) \
         SELECT * FROM r",
        terminal = terminal_states(),
        bump = bump_set("w.at"),
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ws.iter().map(|w| w.run_id.0).collect::<Vec<_>>())
        .bind(ws.iter().map(|w| w.tenant_id.as_str()).collect::<Vec<_>>())
        .bind(ws.iter().map(|w| w.now).collect::<Vec<_>>())
        .bind(ws.iter().map(|w| w.name.as_str()).collect::<Vec<_>>())
        .bind(
            ws.iter()
                .map(|w| w.idempotency_key.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(ws.iter().map(|w| &w.payload).collect::<Vec<_>>())
        .bind(ws.iter().map(|w| w.actor.as_str()).collect::<Vec<_>>())
        .bind(ws.iter().map(|w| received_message(w)).collect::<Vec<_>>())
        .bind(EventKind::SignalReceived.as_str())
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| run_from_row(r).map(|run| (run.id, run)))
        .collect()
}

/// SQLite (no writes inside `WITH`): one transaction for the batch, and
/// per signal three statements under a savepoint, the bump first (it
/// answers the run); a repeat rolls its bump back. The bumped runs.
async fn signal_sqlite(
    pool: &sqlx::SqlitePool,
    ws: &[&SignalWrite],
) -> Result<HashMap<RunId, RunRecord>> {
    let mut tx = pool.begin().await?;
    let mut stored = HashMap::new();
    for w in ws {
        let mut one = sqlx::Connection::begin(&mut *tx).await?;
        if let Some(run) = signal_sqlite_one(&mut one, w).await? {
            one.commit().await?;
            stored.insert(run.id, run);
        }
        // Dropped without a commit: rolled back to the savepoint.
    }
    tx.commit().await?;
    Ok(stored)
}

async fn signal_sqlite_one(
    tx: &mut sqlx::SqliteConnection,
    w: &SignalWrite,
) -> Result<Option<RunRecord>> {
    type D = crate::store::sqlite::Lite;
    let bump = format!(
        "UPDATE runs SET {} WHERE id = $1 AND tenant_id = $2 AND state NOT IN {} \
         RETURNING {RUN_COLUMNS}",
        bump_set("$3"),
        terminal_states(),
    );
    let insert = format!(
        "{INSERT_SIGNAL} VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (run_id, name, idempotency_key) WHERE idempotency_key <> '' DO NOTHING \
         RETURNING id"
    );
    let event = format!("{INSERT_EVENT} VALUES ($1, $2, $3, $4, NULL, 0, $5, $6, $7)");
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(bump))
        .bind(D::id(w.run_id.0))
        .bind(w.tenant_id.as_str())
        .bind(D::ts(w.now))
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(None);
    };
    let run = run_from_row(&row)?;
    let inserted = sqlx::query(sqlx::AssertSqlSafe(insert))
        .bind(D::id(w.run_id.0))
        .bind(w.tenant_id.as_str())
        .bind(&w.name)
        .bind(&w.idempotency_key)
        .bind(D::json(&w.payload))
        .bind(&w.actor)
        .bind(D::ts(w.now))
        .fetch_optional(&mut *tx)
        .await?;
    if inserted.is_none() {
        return Ok(None); // a repeat: the caller rolls the bump back
    }
    sqlx::query(sqlx::AssertSqlSafe(event))
        .bind(D::id(w.run_id.0))
        .bind(run.last_seq as i64)
        .bind(D::ts(w.now))
        .bind(EventKind::SignalReceived.as_str())
        .bind(run.state.as_str())
        .bind(received_message(w))
        .bind(&w.actor)
        .execute(&mut *tx)
        .await?;
    Ok(Some(run))
}

fn signal_from_row(r: &impl ReadRow) -> Result<Signal> {
    Ok(Signal {
        id: r.int64("id")?,
        name: r.text("name")?,
        payload: r.json("payload")?,
        received_at: r.time("received_at")?,
    })
}

/// The answer to a signal that was not stored: the run is missing or
/// finished, or the key was seen before (answered as the first was, even
/// once the run is over).
async fn signal_not_stored<T: SqlBackend>(b: &T, w: &SignalWrite) -> Result<SignalAck> {
    let read_run = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1 AND tenant_id = $2");
    let seen = "SELECT consumed_at IS NOT NULL AS taken FROM run_signals \
                WHERE run_id = $1 AND name = $2 AND idempotency_key = $3";
    with_db!(b.writes(), pool, D => {
        let row = sqlx::query(sqlx::AssertSqlSafe(read_run))
            .bind(D::id(w.run_id.0))
            .bind(w.tenant_id.as_str())
            .fetch_optional(pool)
            .await?;
        let Some(row) = row else {
            return Ok(SignalAck::NotFound);
        };
        let run = run_from_row(&row)?;
        if !w.idempotency_key.is_empty() {
            let before = sqlx::query(seen)
                .bind(D::id(w.run_id.0))
                .bind(&w.name)
                .bind(&w.idempotency_key)
                .fetch_optional(pool)
                .await?;
            if let Some(r) = before {
                return Ok(SignalAck::Duplicate { taken: r.flag("taken")? });
            }
        }
        if run.state.is_terminal() {
            return Ok(SignalAck::Terminal { run: Box::new(run) });
        }
        Ok(SignalAck::Duplicate { taken: false })
    })
}

/// Marks the signals that the steps of applied checkpoints took, in the
/// checkpoints' transaction: one statement for the batch on PostgreSQL,
/// one per signal on SQLite (in process, no round trip).
pub(crate) async fn take_signals(
    conn: Conn<'_>,
    taken: &[&SignalTaken],
    now: DateTime<Utc>,
) -> Result<()> {
    if taken.is_empty() {
        return Ok(());
    }
    match conn {
        Backed::Postgres(c) => {
            let ids: Vec<i64> = taken.iter().map(|t| t.id).collect();
            let steps: Vec<&str> = taken.iter().map(|t| t.step.as_str()).collect();
            sqlx::query(
                "UPDATE run_signals SET consumed_at = $1, consumed_by_step = t.step \
                 FROM unnest($2::int8[], $3::text[]) AS t(id, step) \
                 WHERE run_signals.id = t.id AND run_signals.consumed_at IS NULL",
            )
            .bind(now)
            .bind(&ids)
            .bind(&steps)
            .execute(&mut *c)
            .await?;
        }
        Backed::Sqlite(c) => {
            type D = crate::store::sqlite::Lite;
            for t in taken {
                sqlx::query(
                    "UPDATE run_signals SET consumed_at = $1, consumed_by_step = $2 \
                     WHERE id = $3 AND consumed_at IS NULL",
                )
                .bind(D::ts(now))
                .bind(&t.step)
                .bind(t.id)
                .execute(&mut *c)
                .await?;
            }
        }
    }
    Ok(())
}
