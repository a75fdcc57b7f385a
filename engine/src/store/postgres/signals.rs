//! Signals on PostgreSQL: storing one (with its event and the wake-up of
//! the run), a run's signals not yet taken, marking one taken inside a
//! checkpoint's transaction, and making a released run due.

use super::*;
use crate::store::signals::{SignalAck, SignalTaken, SignalWrite, received_message};

pub(super) async fn signal(pool: &PgPool, w: &SignalWrite) -> Result<SignalAck> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE id = $1 AND tenant_id = $2 FOR UPDATE"
    )))
    .bind(w.run_id.0)
    .bind(w.tenant_id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(SignalAck::NotFound);
    };
    let run = run_from_row(&row)?;
    // A repeat is answered as the first was, even once the run is over.
    if !w.idempotency_key.is_empty() {
        let taken: Option<bool> = sqlx::query_scalar(
            "SELECT consumed_at IS NOT NULL FROM run_signals \
                 WHERE run_id = $1 AND name = $2 AND idempotency_key = $3",
        )
        .bind(w.run_id.0)
        .bind(&w.name)
        .bind(&w.idempotency_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(taken) = taken {
            return Ok(SignalAck::Duplicate { taken });
        }
    }
    if run.state.is_terminal() {
        return Ok(SignalAck::Terminal { run: Box::new(run) });
    }
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO run_signals (run_id, tenant_id, name, idempotency_key, payload, actor, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (run_id, name, idempotency_key) WHERE idempotency_key <> '' DO NOTHING \
         RETURNING id",
    )
    .bind(w.run_id.0)
    .bind(w.tenant_id.as_str())
    .bind(&w.name)
    .bind(&w.idempotency_key)
    .bind(&w.payload)
    .bind(&w.actor)
    .bind(w.now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(_) = id else {
        tx.rollback().await?;
        return Ok(SignalAck::Duplicate { taken: false });
    };
    sqlx::query(AssertSqlSafe(format!(
        "WITH r AS (UPDATE runs SET last_seq = last_seq + 1, updated_at = $2, \
            next_run_at = CASE WHEN state = '{running}' AND lease_token IS NULL \
                AND (next_run_at IS NULL OR next_run_at > $2) THEN $2 ELSE next_run_at END \
          WHERE id = $1 RETURNING last_seq, state) \
         INSERT INTO run_events (run_id, seq, at, kind, step, attempt, run_state, message, actor) \
         SELECT $1, r.last_seq, $2, $3, NULL, 0, r.state, $4, $5 FROM r",
        running = RunState::Running.as_str()
    )))
    .bind(w.run_id.0)
    .bind(w.now)
    .bind(EventKind::SignalReceived.as_str())
    .bind(received_message(w))
    .bind(&w.actor)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(SignalAck::Stored { run: Box::new(run) })
}

pub(super) async fn pending_signals(pool: &PgPool, run: RunId) -> Result<Vec<Signal>> {
    let rows = sqlx::query(
        "SELECT id, name, payload, received_at FROM run_signals \
         WHERE run_id = $1 AND consumed_at IS NULL ORDER BY id",
    )
    .bind(run.0)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Signal {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                payload: r.try_get("payload")?,
                received_at: r.try_get("received_at")?,
            })
        })
        .collect()
}

/// Marks the signals the applied checkpoints' steps took.
pub(super) async fn take(
    conn: &mut sqlx::PgConnection,
    taken: &[&SignalTaken],
    now: DateTime<Utc>,
) -> Result<()> {
    if taken.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = taken.iter().map(|t| t.id).collect();
    let steps: Vec<&str> = taken.iter().map(|t| t.step.as_str()).collect();
    sqlx::query(
        "UPDATE run_signals SET consumed_at = $3, consumed_by_step = t.step \
         FROM unnest($1::int8[], $2::text[]) AS t(id, step) \
         WHERE run_signals.id = t.id AND run_signals.consumed_at IS NULL",
    )
    .bind(&ids)
    .bind(&steps)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn wake_run(pool: &PgPool, run: RunId, now: DateTime<Utc>) -> Result<bool> {
    let n = sqlx::query(AssertSqlSafe(format!(
        "UPDATE runs SET next_run_at = $2 WHERE id = $1 AND state = '{}' \
            AND lease_token IS NULL AND (next_run_at IS NULL OR next_run_at > $2)",
        RunState::Running.as_str()
    )))
    .bind(run.0)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}
