//! PostgreSQL checkpoints: the executor's hot write, idempotent.
//!
//! A checkpoint applies only where the run's `last_seq` is the one it was
//! computed from, and records its id in `runs.last_checkpoint`. When a
//! commit's answer is lost and the checkpoint is sent again, the resend
//! finds its own id there and is acknowledged as applied: no event is
//! appended twice and `last_seq` moves once. A run whose `last_seq` moved
//! under a live lease for another reason (an operator's cancellation
//! appends an event) gets the checkpoint applied after it.
//!
//! A batch may hold two checkpoints of one run: a stale one, handed in by
//! an attempt whose lease ran out, and the live one of the replica or task
//! that took the run over. Each checkpoint is answered by its own id, and
//! its events are appended only if its own row update applied: the stale
//! one is fenced and leaves nothing behind.

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::{EventArrays, bind_events, micros};
use crate::store::sql_terms;
use crate::store::*;

/// Writes a batch of checkpoints on `conn` (see the module comment).
pub(super) async fn checkpoint_batch(
    conn: &mut sqlx::PgConnection,
    cps: &[Checkpoint],
) -> Result<Vec<CheckpointAck>> {
    let mut acks: Vec<Option<CheckpointAck>> = vec![None; cps.len()];
    let mut expected: Vec<u64> = cps.iter().map(|c| c.expected_seq).collect();
    // In run id order (see write_batch); the rounds after keep it.
    let mut todo: Vec<usize> = (0..cps.len()).collect();
    todo.sort_unstable_by_key(|&i| cps[i].run_id.0);
    for round in 0..3 {
        let batch: Vec<(&Checkpoint, u64)> = todo.iter().map(|&i| (&cps[i], expected[i])).collect();
        let applied = write_batch(conn, &batch).await?;
        let missing: Vec<usize> = todo
            .iter()
            .copied()
            .filter(|&i| match applied.get(&cps[i].id) {
                Some(cancel_request) => {
                    acks[i] = Some(CheckpointAck::Applied {
                        cancel_request: *cancel_request,
                    });
                    false
                }
                None => true,
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        let ids: Vec<Uuid> = missing.iter().map(|&i| cps[i].run_id.0).collect();
        let rows = sqlx::query(
            "SELECT id, last_seq, cancel_request, last_checkpoint, lease_token, \
                lease_expires_at > now() AS live FROM runs WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in &rows {
            found.insert(row.try_get::<Uuid, _>("id")?, row);
        }
        todo.clear();
        for i in missing {
            let cp = &cps[i];
            let Some(row) = found.get(&cp.run_id.0) else {
                acks[i] = Some(CheckpointAck::Fenced);
                continue;
            };
            let last: Option<Uuid> = row.try_get("last_checkpoint")?;
            let token: Option<Uuid> = row.try_get("lease_token")?;
            let live: Option<bool> = row.try_get("live")?;
            let seq = row.try_get::<i64, _>("last_seq")? as u64;
            if last == Some(cp.id) {
                // Applied before; its answer was lost.
                let c: Option<String> = row.try_get("cancel_request")?;
                acks[i] = Some(CheckpointAck::Applied {
                    cancel_request: c.as_deref().map(CancelRequest::parse).transpose()?,
                });
            } else if token == Some(cp.lease.0)
                && live == Some(true)
                && seq != expected[i]
                && round < 2
            {
                expected[i] = seq;
                todo.push(i);
            } else {
                acks[i] = Some(CheckpointAck::Fenced);
            }
        }
        if todo.is_empty() {
            break;
        }
    }
    Ok(acks
        .into_iter()
        .map(|a| a.unwrap_or(CheckpointAck::Fenced))
        .collect())
}

/// One statement updates every run of the batch (each fenced by its lease,
/// and applied only where the run's `last_seq` is the one the checkpoint
/// was computed from) and appends their events, numbered after it: the
/// events of a checkpoint join its own applied update, by checkpoint id, so
/// a fenced checkpoint of a run that another checkpoint of the batch
/// updated appends nothing. Returns the ids of the checkpoints applied,
/// with their runs' cancellation requests. Each checkpoint
/// comes with the `last_seq` it applies on. The caller hands the runs in
/// id order: the plan (a nested loop over the arrays, by the primary key)
/// then updates them in that order, the order in which lease renewals and
/// signal batches lock runs, so none of them waits for another crosswise.
/// On a table of a handful of runs the planner may scan it whole instead,
/// in the table's order; a deadlock there costs a second and the batch is
/// written run by run, nothing is lost. (Locking the runs explicitly first,
/// as a renewal does, cost 14 % of the throughput on this hot path.)
async fn write_batch(
    conn: &mut sqlx::PgConnection,
    cps: &[(&Checkpoint, u64)],
) -> Result<HashMap<Uuid, Option<CancelRequest>>> {
    let n = cps.len();
    let mut cids = Vec::with_capacity(n);
    let mut expected = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut cursors = Vec::with_capacity(n);
    let mut contexts = Vec::with_capacity(n);
    let mut steps = Vec::with_capacity(n);
    let mut errors = Vec::with_capacity(n);
    let mut next_runs = Vec::with_capacity(n);
    let mut finished = Vec::with_capacity(n);
    let mut nows = Vec::with_capacity(n);
    let mut counts = Vec::with_capacity(n);
    let mut leases = Vec::with_capacity(n);
    let mut ev_cps = Vec::new();
    let mut ev_ords = Vec::new();
    let mut all_events = Vec::new();
    for &(cp, expected_seq) in cps {
        ids.push(cp.run_id.0);
        cids.push(cp.id);
        expected.push(expected_seq as i64);
        tokens.push(cp.lease.0);
        states.push(cp.state.as_str());
        cursors.push(cp.cursor as i32);
        contexts.push(cp.context.as_ref());
        steps.push(steps_encode(&cp.steps));
        errors.push(cp.error.clone());
        next_runs.push(cp.next_run_at);
        finished.push(cp.finished_at);
        nows.push(cp.now);
        counts.push(cp.events.len() as i64);
        leases.push(cp.keep_lease.map(micros));
        for (i, e) in cp.events.iter().enumerate() {
            ev_cps.push(cp.id);
            ev_ords.push(i as i64 + 1);
            all_events.push(e);
        }
    }
    let ev = EventArrays::of(all_events.iter().copied());
    let q = sqlx::query(AssertSqlSafe(format!(
        "WITH c AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::jsonb[], \
                $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::int8[], \
                $12::int8[], $22::uuid[], $23::int8[]) \
              AS c(id, token, state, cursor, context, steps, error, next_run_at, finished_at, now, n, lease_us, \
                   cid, expected)), \
         r AS (UPDATE runs SET state = c.state, cursor = c.cursor, context = COALESCE(c.context, runs.context), \
                steps = c.steps, error = c.error, \
                next_run_at = CASE \
                    WHEN c.lease_us IS NOT NULL THEN runs.next_run_at \
                    WHEN runs.cancel_request IS NOT NULL AND c.state IN {cancel_states} \
                        THEN LEAST(c.now, now()) \
                    ELSE c.next_run_at END, \
                finished_at = c.finished_at, updated_at = c.now, last_seq = runs.last_seq + c.n, \
                lease_expires_at = now() + c.lease_us * interval '1 microsecond', \
                lease_owner = CASE WHEN c.lease_us IS NULL THEN NULL ELSE runs.lease_owner END, \
                lease_token = CASE WHEN c.lease_us IS NULL THEN NULL ELSE runs.lease_token END, \
                last_checkpoint = c.cid \
              FROM c WHERE runs.id = c.id AND runs.lease_token = c.token AND runs.lease_expires_at > now() \
                AND runs.last_seq = c.expected \
              RETURNING runs.id, runs.last_seq, runs.cancel_request, c.n, c.cid), \
         e AS (INSERT INTO run_events (run_id, seq, at, kind, step, attempt, run_state, message, actor) \
              SELECT r.id, r.last_seq - r.n + ev.ord, ev.at, ev.kind, ev.step, ev.attempt, ev.run_state, \
                     ev.message, ev.actor \
              FROM unnest($13::uuid[], $14::int8[], $15::text[], $16::text[], $17::int4[], $18::text[], \
                          $19::text[], $20::text[], $21::timestamptz[]) \
                   AS ev(cid, ord, kind, step, attempt, run_state, message, actor, at) \
              JOIN r ON r.cid = ev.cid) \
         SELECT cid, cancel_request FROM r",
        cancel_states = sql_terms::cancel_carried_out_states()
    )))
    .bind(&ids)
    .bind(&tokens)
    .bind(&states)
    .bind(&cursors)
    .bind(&contexts)
    .bind(&steps)
    .bind(&errors)
    .bind(&next_runs)
    .bind(&finished)
    .bind(&nows)
    .bind(&counts)
    .bind(&leases)
    .bind(&ev_cps)
    .bind(&ev_ords);
    let rows = bind_events(q, &ev)
        .bind(&cids)
        .bind(&expected)
        .fetch_all(&mut *conn)
        .await?;
    let mut applied = HashMap::with_capacity(rows.len());
    for row in &rows {
        let cid: Uuid = row.try_get("cid")?;
        let c: Option<String> = row.try_get("cancel_request")?;
        applied.insert(cid, c.as_deref().map(CancelRequest::parse).transpose()?);
    }
    Ok(applied)
}
