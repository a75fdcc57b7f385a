//! SQLite checkpoints: one checkpoint written inside the caller's
//! transaction, fenced by the lease and the run's `last_seq`.

use super::*;

/// Writes one checkpoint inside the caller's transaction: fenced by the
/// lease (on the database's clock), applied only on top of the `last_seq`
/// it was computed from, and recognised by its id if it was applied before.
/// A run whose `last_seq` moved under a live lease for another reason (an
/// operator's cancellation appends an event) gets it applied after that.
pub(super) async fn checkpoint_one(
    tx: &mut SqliteConnection,
    cp: &Checkpoint,
) -> Result<CheckpointAck> {
    let mut expected = cp.expected_seq;
    for _ in 0..2 {
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE runs SET state = ?3, cursor = ?4, context = COALESCE(?5, context), steps = ?6, \
                error = ?7, \
                next_run_at = CASE WHEN ?12 IS NOT NULL THEN next_run_at \
                    WHEN cancel_request IS NOT NULL AND ?3 IN {cancel_states} \
                    THEN MIN(?10, {DB_NOW}) ELSE ?8 END, \
                finished_at = ?9, updated_at = ?10, last_seq = last_seq + ?11, \
                lease_expires_at = {DB_NOW} + ?12, \
                lease_owner = CASE WHEN ?12 IS NULL THEN NULL ELSE lease_owner END, \
                lease_token = CASE WHEN ?12 IS NULL THEN NULL ELSE lease_token END, \
                last_checkpoint = ?13 \
             WHERE id = ?1 AND lease_token = ?2 AND lease_expires_at > {DB_NOW} AND last_seq = ?14 \
             RETURNING last_seq, cancel_request",
            cancel_states = sql_terms::cancel_carried_out_states()
        )))
        .bind(cp.run_id.to_string())
        .bind(cp.lease.to_string())
        .bind(cp.state.as_str())
        .bind(cp.cursor as i64)
        .bind(cp.context.as_ref().map(Value::to_string))
        .bind(steps_encode(&cp.steps))
        .bind(&cp.error)
        .bind(opt_micros(cp.next_run_at))
        .bind(opt_micros(cp.finished_at))
        .bind(micros(cp.now))
        .bind(cp.events.len() as i64)
        .bind(cp.keep_lease.map(duration_micros))
        .bind(cp.id.to_string())
        .bind(expected as i64)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let last_seq: i64 = row.try_get("last_seq")?;
            let cancel: Option<String> = row.try_get("cancel_request")?;
            insert_events(&mut *tx, cp.run_id, last_seq, &cp.events).await?;
            if cp.release_concurrency_key {
                release_key(&mut *tx, cp.run_id, cp.now).await?;
            }
            if let Some(t) = &cp.take_signal {
                crate::store::sql::take_signals((&mut *tx).into(), &[t], cp.now).await?;
            }
            return Ok(CheckpointAck::Applied {
                cancel_request: cancel.as_deref().map(CancelRequest::parse).transpose()?,
            });
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT last_seq, cancel_request, last_checkpoint, lease_token, \
                lease_expires_at > {DB_NOW} AS live FROM runs WHERE id = ?1"
        )))
        .bind(cp.run_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(CheckpointAck::Fenced);
        };
        let last: Option<String> = row.try_get("last_checkpoint")?;
        let token: Option<String> = row.try_get("lease_token")?;
        let live: Option<bool> = row.try_get("live")?;
        let seq = row.try_get::<i64, _>("last_seq")? as u64;
        if last.as_deref() == Some(cp.id.to_string().as_str()) {
            let cancel: Option<String> = row.try_get("cancel_request")?;
            return Ok(CheckpointAck::Applied {
                cancel_request: cancel.as_deref().map(CancelRequest::parse).transpose()?,
            });
        }
        if token.as_deref() != Some(cp.lease.to_string().as_str())
            || live != Some(true)
            || seq == expected
        {
            return Ok(CheckpointAck::Fenced);
        }
        expected = seq;
    }
    Ok(CheckpointAck::Fenced)
}
