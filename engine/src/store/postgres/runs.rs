//! Writing runs on PostgreSQL: events in one statement, releasing
//! concurrency keys, and inserting a run (shared by `create_run` and the
//! scheduler's fires, [`FireTx`]).

use super::*;

/// Events as parallel arrays, for `unnest` in one statement.
pub(super) struct EventArrays {
    pub(super) kinds: Vec<&'static str>,
    pub(super) steps: Vec<Option<String>>,
    pub(super) attempts: Vec<i32>,
    pub(super) states: Vec<&'static str>,
    pub(super) messages: Vec<Option<String>>,
    pub(super) actors: Vec<String>,
    pub(super) ats: Vec<DateTime<Utc>>,
}

impl EventArrays {
    pub(super) fn new(events: &[NewEvent]) -> Self {
        Self::of(events.iter())
    }

    /// The arrays of events given by reference.
    pub(super) fn of<'a>(events: impl Iterator<Item = &'a NewEvent> + Clone) -> Self {
        Self {
            kinds: events.clone().map(|e| e.kind.as_str()).collect(),
            steps: events.clone().map(|e| e.step.clone()).collect(),
            attempts: events.clone().map(|e| e.attempt as i32).collect(),
            states: events.clone().map(|e| e.run_state.as_str()).collect(),
            messages: events.clone().map(|e| e.message.clone()).collect(),
            actors: events.clone().map(|e| e.actor.clone()).collect(),
            ats: events.map(|e| e.at).collect(),
        }
    }
}

/// `INSERT INTO run_events` from the arrays bound at `$first..$first+6`,
/// numbering them after the run's previous `last_seq` taken from CTE `r`.
pub(super) fn insert_events_sql(first: usize) -> String {
    let p = |i: usize| format!("${}", first + i);
    format!(
        "INSERT INTO run_events (run_id, seq, at, kind, step, attempt, run_state, message, actor) \
         SELECT r.id, r.last_seq - cardinality({k}::text[]) + ev.ord, ev.at, ev.kind, ev.step, ev.attempt, ev.run_state, ev.message, ev.actor \
         FROM r, unnest({k}::text[], {s}::text[], {a}::int4[], {st}::text[], {m}::text[], {ac}::text[], {at}::timestamptz[]) \
            WITH ORDINALITY AS ev(kind, step, attempt, run_state, message, actor, at, ord)",
        k = p(0),
        s = p(1),
        a = p(2),
        st = p(3),
        m = p(4),
        ac = p(5),
        at = p(6),
    )
}

pub(super) fn bind_events<'q>(
    q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ev: &'q EventArrays,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    q.bind(&ev.kinds)
        .bind(&ev.steps)
        .bind(&ev.attempts)
        .bind(&ev.states)
        .bind(&ev.messages)
        .bind(&ev.actors)
        .bind(&ev.ats)
}

/// Frees the concurrency keys of `runs` and hands each to the oldest run
/// queued on it.
pub(super) async fn release_keys(
    tx: &mut sqlx::PgConnection,
    runs: &[Uuid],
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "WITH d AS (DELETE FROM concurrency_locks WHERE run_id = ANY($1) RETURNING tenant_id, key), \
         n AS (SELECT DISTINCT ON (q.tenant_id, q.concurrency_key) q.id, q.tenant_id, q.concurrency_key \
               FROM runs q JOIN d ON q.tenant_id = d.tenant_id AND q.concurrency_key = d.key \
               WHERE {} \
                 AND (q.queue_expires_at IS NULL OR q.queue_expires_at > $2) \
               ORDER BY q.tenant_id, q.concurrency_key, q.created_at, q.id), \
         l AS (INSERT INTO concurrency_locks (tenant_id, key, run_id) SELECT tenant_id, concurrency_key, id FROM n \
               ON CONFLICT DO NOTHING RETURNING run_id) \
         UPDATE runs SET next_run_at = LEAST($2, now()) FROM l WHERE runs.id = l.run_id",
        sql_terms::queued("q")
    )))
    .bind(runs)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What [`insert_run`] did inside the caller's transaction.
pub(super) enum RunInsert {
    /// The run, its lock (if any) and its first events are written.
    Created,
    /// The concurrency key is held and the policy is `reject`: nothing
    /// was written.
    KeyHeld { key: String },
    /// The idempotency key is taken: the transaction must be rolled back
    /// (the concurrency lock may have been taken).
    Duplicate,
}

/// Inserts a run, its steps and its first events on `tx` (a transaction the
/// caller commits), enforcing the idempotency and concurrency keys.
pub(super) async fn insert_run(tx: &mut sqlx::PgConnection, new: &NewRun) -> Result<RunInsert> {
    let def = &new.definition.definition;
    let mut queued = false;
    if let Some((key, policy)) = &new.concurrency {
        let got: Option<Uuid> = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO concurrency_locks (tenant_id, key, run_id) \
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM runs WHERE tenant_id = $1 \
               AND concurrency_key = $2 AND {}) \
             ON CONFLICT DO NOTHING RETURNING run_id",
            sql_terms::queued("")
        )))
        .bind(new.tenant_id.as_str())
        .bind(key)
        .bind(new.id.0)
        .fetch_optional(&mut *tx)
        .await?;
        if got.is_none() {
            match policy {
                ConcurrencyPolicy::Queue => queued = true,
                ConcurrencyPolicy::Reject => return Ok(RunInsert::KeyHeld { key: key.clone() }),
            }
        }
    }
    let events = crate::run::start::start_events(&new.actor, new.now, queued);
    let ev = EventArrays::new(&events);
    let sql = format!(
        "WITH r AS (INSERT INTO runs (id, tenant_id, workflow_name, workflow_version, definition_id, state, \
            input, input_hash, context, steps, idempotency_key, concurrency_key, schedule_id, trace_id, \
            traceparent, last_seq, next_run_at, created_at, updated_at, queue_expires_at, \
            lease_owner, lease_token, lease_expires_at) \
          VALUES ($1, $2, $3, $4, $5, 'PENDING', $6, $7, $6, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17, \
            $27, $28, now() + $29 * interval '1 microsecond') \
          ON CONFLICT (tenant_id, workflow_name, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
          RETURNING id, last_seq), \
          s AS (INSERT INTO run_search (run_id, tenant_id, key, value) \
            SELECT r.id, $2, sa.key, sa.value FROM r, unnest($18::text[], $19::text[]) AS sa(key, value)) {}",
        insert_events_sql(20)
    );
    let (search_keys, search_values): (Vec<&str>, Vec<&str>) = new
        .search
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .unzip();
    let steps = steps_encode(&initial_steps(def));
    let q = sqlx::query(AssertSqlSafe(sql))
        .bind(new.id.0)
        .bind(new.tenant_id.as_str())
        .bind(&def.name)
        .bind(def.version as i32)
        .bind(&new.definition.id)
        .bind(&new.input)
        .bind(&new.input_hash)
        .bind(&steps)
        .bind(&new.idempotency_key)
        .bind(new.concurrency.as_ref().map(|c| &c.0))
        .bind(new.schedule_id.map(|s| s.to_string()))
        .bind(&new.trace_id)
        .bind(&new.traceparent)
        .bind(events.len() as i64)
        .bind(if queued { None } else { Some(new.now) })
        .bind(new.now)
        .bind(if queued { new.queue_expires_at() } else { None })
        .bind(&search_keys)
        .bind(&search_values);
    // A queued run waits for its key, not for an executor: never leased.
    let lease = new.lease.as_ref().filter(|_| !queued);
    let inserted = bind_events(q, &ev)
        .bind(lease.map(|l| l.owner.as_str()))
        .bind(lease.map(|l| l.token.0))
        .bind(lease.map(|l| micros(l.lease)))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    Ok(if inserted == 0 {
        RunInsert::Duplicate
    } else {
        RunInsert::Created
    })
}

impl PgStore {
    /// The run a start with the same idempotency key created, if any.
    pub(super) async fn find_idempotent(&self, new: &NewRun) -> Result<Option<CreateOutcome>> {
        let mut conn = self.pool.acquire().await?;
        sql::find_idempotent(Conn::from(&mut *conn), new).await
    }
}

#[async_trait]
impl FireTx for sqlx::PgConnection {
    fn conn(&mut self) -> Conn<'_> {
        Conn::from(self)
    }

    async fn insert_run(&mut self, new: &NewRun) -> Result<RunInserted> {
        Ok(match insert_run(self, new).await? {
            RunInsert::Created => RunInserted::Created,
            RunInsert::Duplicate => RunInserted::Duplicate,
            RunInsert::KeyHeld { .. } => RunInserted::KeyHeld { holder: None },
        })
    }
}
