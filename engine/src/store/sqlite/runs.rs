//! Writing runs on SQLite: appending events, freeing and handing over
//! concurrency keys, and inserting a run (shared by `create_run` and the
//! scheduler's fires, [`FireTx`]).

use super::*;

/// Appends events after `last_seq` (the run's sequence after the update).
pub(super) async fn insert_events(
    conn: &mut SqliteConnection,
    run_id: RunId,
    last_seq: i64,
    events: &[NewEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let first = last_seq - events.len() as i64 + 1;
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO run_events (run_id, seq, at, kind, step, attempt, run_state, message, actor) ",
    );
    q.push_values(events.iter().enumerate(), |mut b, (i, e)| {
        b.push_bind(run_id.to_string())
            .push_bind(first + i as i64)
            .push_bind(micros(e.at))
            .push_bind(e.kind.as_str())
            .push_bind(e.step.clone())
            .push_bind(e.attempt as i64)
            .push_bind(e.run_state.as_str())
            .push_bind(e.message.clone())
            .push_bind(e.actor.clone());
    });
    q.build().execute(&mut *conn).await?;
    Ok(())
}

pub(super) async fn release_key(
    conn: &mut SqliteConnection,
    run_id: RunId,
    now: DateTime<Utc>,
) -> Result<()> {
    let freed =
        sqlx::query("DELETE FROM concurrency_locks WHERE run_id = ?1 RETURNING tenant_id, key")
            .bind(run_id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    let Some(freed) = freed else { return Ok(()) };
    let tenant: String = freed.try_get("tenant_id")?;
    let key: String = freed.try_get("key")?;
    hand_over(conn, &tenant, &key, now).await.map(|_| ())
}

/// Gives a free key to the oldest run queued on it whose queue time is not
/// up; false if there is none.
pub(super) async fn hand_over(
    conn: &mut SqliteConnection,
    tenant: &str,
    key: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let next: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT id FROM runs WHERE tenant_id = ?1 AND concurrency_key = ?2 AND {} \
         AND (queue_expires_at IS NULL OR queue_expires_at > ?3) \
         ORDER BY created_at, id LIMIT 1",
        sql_terms::queued("")
    )))
    .bind(tenant)
    .bind(key)
    .bind(micros(now))
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(next) = next {
        sqlx::query("INSERT INTO concurrency_locks (tenant_id, key, run_id) VALUES (?1, ?2, ?3)")
            .bind(tenant)
            .bind(key)
            .bind(&next)
            .execute(&mut *conn)
            .await?;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE runs SET next_run_at = MIN(?2, {DB_NOW}) WHERE id = ?1"
        )))
        .bind(&next)
        .bind(micros(now))
        .execute(&mut *conn)
        .await?;
        return Ok(true);
    }
    Ok(false)
}

/// What [`insert_run`] did inside the caller's transaction.
pub(super) enum RunInsert {
    /// The run, its lock (if any) and its first events are written.
    Created,
    /// The concurrency key is held and the policy is `reject`: nothing
    /// was written.
    KeyHeld { holder: RunId },
    /// The idempotency key is taken: the existing run, or a conflict.
    /// Nothing was written.
    Found(Box<CreateOutcome>),
}

/// Inserts a run, its steps and its first events on `tx` (a transaction the
/// caller commits), enforcing the idempotency and concurrency keys.
pub(super) async fn insert_run(tx: &mut SqliteConnection, new: &NewRun) -> Result<RunInsert> {
    let def = &new.definition.definition;
    if let Some(found) = sql::find_idempotent(Conn::from(&mut *tx), new).await? {
        return Ok(RunInsert::Found(Box::new(found)));
    }
    let mut queued = false;
    if let Some((key, policy)) = &new.concurrency {
        let holder: Option<String> = sqlx::query_scalar(
            "SELECT run_id FROM concurrency_locks WHERE tenant_id = ?1 AND key = ?2",
        )
        .bind(new.tenant_id.as_str())
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let waiting: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT 1 FROM runs WHERE tenant_id = ?1 AND concurrency_key = ?2 AND {} LIMIT 1",
            sql_terms::queued("")
        )))
        .bind(new.tenant_id.as_str())
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        match (holder, waiting, policy) {
            (None, None, _) => {
                sqlx::query(
                    "INSERT INTO concurrency_locks (tenant_id, key, run_id) VALUES (?1, ?2, ?3)",
                )
                .bind(new.tenant_id.as_str())
                .bind(key)
                .bind(new.id.to_string())
                .execute(&mut *tx)
                .await?;
            }
            (holder, _, ConcurrencyPolicy::Reject) => {
                let holder = holder
                    .and_then(|h| uuid::Uuid::parse_str(&h).ok())
                    .unwrap_or_default();
                return Ok(RunInsert::KeyHeld {
                    holder: RunId(holder),
                });
            }
            (_, _, ConcurrencyPolicy::Queue) => queued = true,
        }
    }
    let events = crate::run::start::start_events(&new.actor, new.now, queued);
    let input = new.input.to_string();
    // A queued run waits for its key, not for an executor: never leased.
    let lease = new.lease.as_ref().filter(|_| !queued);
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO runs (id, tenant_id, workflow_name, workflow_version, definition_id, state, \
            input, input_hash, context, steps, idempotency_key, concurrency_key, schedule_id, trace_id, \
            traceparent, last_seq, next_run_at, created_at, updated_at, queue_expires_at, \
            lease_owner, lease_token, lease_expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'PENDING', ?6, ?7, ?6, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16, ?17, \
            ?18, ?19, {DB_NOW} + ?20)"
    )))
    .bind(new.id.to_string())
    .bind(new.tenant_id.as_str())
    .bind(&def.name)
    .bind(def.version as i64)
    .bind(&new.definition.id)
    .bind(&input)
    .bind(&new.input_hash)
    .bind(steps_encode(&initial_steps(def)))
    .bind(&new.idempotency_key)
    .bind(new.concurrency.as_ref().map(|c| &c.0))
    .bind(new.schedule_id.map(|s| s.to_string()))
    .bind(&new.trace_id)
    .bind(&new.traceparent)
    .bind(events.len() as i64)
    .bind(if queued { None } else { Some(micros(new.now)) })
    .bind(micros(new.now))
    .bind(if queued { opt_micros(new.queue_expires_at()) } else { None })
    .bind(lease.map(|l| l.owner.as_str()))
    .bind(lease.map(|l| l.token.to_string()))
    .bind(lease.map(|l| duration_micros(l.lease)))
    .execute(&mut *tx)
    .await?;
    insert_events(&mut *tx, new.id, events.len() as i64, &events).await?;
    if !new.search.is_empty() {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO run_search (run_id, tenant_id, key, value) ");
        q.push_values(&new.search, |mut b, (key, value)| {
            b.push_bind(new.id.to_string())
                .push_bind(new.tenant_id.as_str())
                .push_bind(key)
                .push_bind(value);
        });
        q.build().execute(&mut *tx).await?;
    }
    Ok(RunInsert::Created)
}

#[async_trait]
impl FireTx for SqliteConnection {
    fn conn(&mut self) -> Conn<'_> {
        Conn::from(self)
    }

    async fn insert_run(&mut self, new: &NewRun) -> Result<RunInserted> {
        Ok(match insert_run(self, new).await? {
            RunInsert::Created => RunInserted::Created,
            RunInsert::Found(_) => RunInserted::Duplicate,
            RunInsert::KeyHeld { holder } => RunInserted::KeyHeld {
                holder: Some(holder),
            },
        })
    }
}
