//! Signals, the same way on both backends: the [`SignalStore`] of every
//! [`SqlBackend`] (storing a signal with its event and the wake-up of its
//! run in three statements, a run's signals not yet taken, making a released run due), and
//! marking the signals checkpoints' steps took, inside their transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Conn, Dialect, ReadRow, SqlBackend, run_from_row, with_db};
use crate::ids::RunId;
use crate::run::state::RunState;
use crate::store::signals::received_message;
use crate::store::sql_terms::terminal_states;
use crate::store::{EventKind, Result, Signal, SignalAck, SignalStore, SignalTaken, SignalWrite};

use super::RUN_COLUMNS;

#[async_trait]
impl<T: SqlBackend> SignalStore for T {
    async fn signal(&self, w: &SignalWrite) -> Result<SignalAck> {
        // The common case, a new signal for a live run, is three statements:
        // the run's bump (which locks it and answers the run), the signal,
        // its event. A repeat or a finished run rolls the bump back and is
        // answered from a read.
        // A RUNNING run no executor holds is made due: its waiting step
        // looks at the signal (a run waiting for something else looks and
        // goes back to waiting).
        let bump = format!(
            "UPDATE runs SET last_seq = last_seq + 1, updated_at = $3, \
                next_run_at = CASE WHEN state = '{running}' AND lease_token IS NULL \
                    AND (next_run_at IS NULL OR next_run_at > $3) THEN $3 ELSE next_run_at END \
             WHERE id = $1 AND tenant_id = $2 AND state NOT IN {terminal} \
             RETURNING {RUN_COLUMNS}",
            running = RunState::Running.as_str(),
            terminal = terminal_states(),
        );
        let insert = "INSERT INTO run_signals \
                (run_id, tenant_id, name, idempotency_key, payload, actor, received_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7) \
            ON CONFLICT (run_id, name, idempotency_key) WHERE idempotency_key <> '' DO NOTHING \
            RETURNING id";
        let event = "INSERT INTO run_events \
                (run_id, seq, at, kind, step, attempt, run_state, message, actor) \
            VALUES ($1, $2, $3, $4, NULL, 0, $5, $6, $7)";
        let stored = with_db!(self.writes(), pool, D => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query(sqlx::AssertSqlSafe(bump))
                .bind(D::id(w.run_id.0))
                .bind(w.tenant_id.as_str())
                .bind(D::ts(w.now))
                .fetch_optional(&mut *tx)
                .await?;
            match row {
                None => None,
                Some(row) => {
                    let run = run_from_row(&row)?;
                    let inserted = sqlx::query(insert)
                        .bind(D::id(w.run_id.0))
                        .bind(w.tenant_id.as_str())
                        .bind(&w.name)
                        .bind(&w.idempotency_key)
                        .bind(D::json(&w.payload))
                        .bind(&w.actor)
                        .bind(D::ts(w.now))
                        .fetch_optional(&mut *tx)
                        .await?;
                    if inserted.is_some() {
                        sqlx::query(event)
                            .bind(D::id(w.run_id.0))
                            .bind(run.last_seq as i64)
                            .bind(D::ts(w.now))
                            .bind(EventKind::SignalReceived.as_str())
                            .bind(run.state.as_str())
                            .bind(received_message(w))
                            .bind(&w.actor)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        Some(run)
                    } else {
                        // A repeat: the bump is rolled back with the transaction.
                        None
                    }
                }
            }
        });
        match stored {
            Some(run) => Ok(SignalAck::Stored { run: Box::new(run) }),
            None => signal_not_stored(self, w).await,
        }
    }

    async fn pending_signals(&self, run: RunId) -> Result<Vec<Signal>> {
        let sql = "SELECT id, name, payload, received_at FROM run_signals \
                   WHERE run_id = $1 AND consumed_at IS NULL ORDER BY id";
        with_db!(self.reads(), pool, D => {
            let rows = sqlx::query(sql).bind(D::id(run.0)).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(Signal {
                        id: r.int64("id")?,
                        name: r.text("name")?,
                        payload: r.json("payload")?,
                        received_at: r.time("received_at")?,
                    })
                })
                .collect()
        })
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
/// checkpoints' transaction.
pub(crate) async fn take_signals(
    conn: Conn<'_>,
    taken: &[&SignalTaken],
    now: DateTime<Utc>,
) -> Result<()> {
    let sql = "UPDATE run_signals SET consumed_at = $1, consumed_by_step = $2 \
               WHERE id = $3 AND consumed_at IS NULL";
    with_db!(conn, c, D => {
        for t in taken {
            sqlx::query(sql)
                .bind(D::ts(now))
                .bind(&t.step)
                .bind(t.id)
                .execute(&mut *c)
                .await?;
        }
    });
    Ok(())
}
