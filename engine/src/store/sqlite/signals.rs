//! Signals on SQLite: storing one (with its event and the wake-up of the
//! run), a run's signals not yet taken, marking one taken inside a
//! checkpoint's transaction, and making a released run due.

use super::*;
use crate::store::signals::{SignalAck, SignalTaken, SignalWrite, received_message};

pub(super) async fn signal(writer: &SqlitePool, w: &SignalWrite) -> Result<SignalAck> {
    let mut tx = writer.begin().await?;
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1 AND tenant_id = ?2"
    )))
    .bind(w.run_id.to_string())
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
                 WHERE run_id = ?1 AND name = ?2 AND idempotency_key = ?3",
        )
        .bind(w.run_id.to_string())
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
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (run_id, name, idempotency_key) WHERE idempotency_key <> '' DO NOTHING \
         RETURNING id",
    )
    .bind(w.run_id.to_string())
    .bind(w.tenant_id.as_str())
    .bind(&w.name)
    .bind(&w.idempotency_key)
    .bind(w.payload.to_string())
    .bind(&w.actor)
    .bind(micros(w.now))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(_) = id else {
        tx.rollback().await?;
        return Ok(SignalAck::Duplicate { taken: false });
    };
    let row = sqlx::query(AssertSqlSafe(format!(
        "UPDATE runs SET last_seq = last_seq + 1, updated_at = ?2, \
            next_run_at = CASE WHEN state = '{running}' AND lease_token IS NULL \
                AND (next_run_at IS NULL OR next_run_at > ?2) THEN ?2 ELSE next_run_at END \
         WHERE id = ?1 RETURNING last_seq, state",
        running = RunState::Running.as_str()
    )))
    .bind(w.run_id.to_string())
    .bind(micros(w.now))
    .fetch_one(&mut *tx)
    .await?;
    let last_seq: i64 = row.try_get("last_seq")?;
    let event = NewEvent {
        kind: EventKind::SignalReceived,
        step: None,
        attempt: 0,
        run_state: run.state,
        message: Some(received_message(w)),
        actor: w.actor.clone(),
        at: w.now,
    };
    insert_events(&mut tx, w.run_id, last_seq, std::slice::from_ref(&event)).await?;
    tx.commit().await?;
    Ok(SignalAck::Stored { run: Box::new(run) })
}

pub(super) async fn pending_signals(reader: &SqlitePool, run: RunId) -> Result<Vec<Signal>> {
    let rows = sqlx::query(
        "SELECT id, name, payload, received_at FROM run_signals \
         WHERE run_id = ?1 AND consumed_at IS NULL ORDER BY id",
    )
    .bind(run.to_string())
    .fetch_all(reader)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Signal {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                payload: json(r.try_get::<&str, _>("payload")?, "signal payload")?,
                received_at: from_micros(r.try_get("received_at")?)?,
            })
        })
        .collect()
}

/// Marks the signal a checkpoint's step took.
pub(super) async fn take(
    conn: &mut SqliteConnection,
    taken: &SignalTaken,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE run_signals SET consumed_at = ?2, consumed_by_step = ?3 \
         WHERE id = ?1 AND consumed_at IS NULL",
    )
    .bind(taken.id)
    .bind(micros(now))
    .bind(&taken.step)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn wake_run(writer: &SqlitePool, run: RunId, now: DateTime<Utc>) -> Result<bool> {
    let n = sqlx::query(AssertSqlSafe(format!(
        "UPDATE runs SET next_run_at = ?2 WHERE id = ?1 AND state = '{}' \
            AND lease_token IS NULL AND (next_run_at IS NULL OR next_run_at > ?2)",
        RunState::Running.as_str()
    )))
    .bind(run.to_string())
    .bind(micros(now))
    .execute(writer)
    .await?
    .rows_affected();
    Ok(n > 0)
}
